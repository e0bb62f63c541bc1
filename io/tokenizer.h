/* tokenizer.h — the byte-level tokenizer: tokens 0..255 are bytes, 256 ends a document.
 *
 * A byte vocabulary needs no vocabulary file, never fails to encode anything (UTF-8,
 * binary, any language) and round-trips exactly, which is what a trainer's tests and
 * small demos want. The token file records TOK_NAME so a model trained on one
 * tokenizer is never fed tokens of another.
 */
#ifndef TRIDENT_TOKENIZER_H
#define TRIDENT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define TOK_VOCAB_SIZE 257
#define TOK_EOT        256          /* end of document: separates documents in a stream */
#define TOK_NAME       "bytes+eot"  /* stored in the token file's `tokenizer` attribute */

/* What `trident sample` prints for TOK_EOT: a visible break between documents. */
#define TOK_EOT_TEXT   "\n<|endoftext|>\n"

/* Bytes a token outside [0, TOK_VOCAB_SIZE) decodes to (U+FFFD, the UTF-8 replacement
 * character): a model whose vocabulary is padded for tensor parallelism can still emit
 * such a token, and printing it must not fail or be silent. */
#define TOK_INVALID_TEXT "\xEF\xBF\xBD"

/* bytes[0..n) -> out[0..n); returns n (one token per byte; no EOT is appended). */
size_t tok_encode(const uint8_t *bytes, size_t n_bytes, uint16_t *out);

/* Upper bound on the bytes tok_decode*() writes for n_tokens tokens and this eot_text. */
size_t tok_decode_bound(size_t n_tokens, const char *eot_text);

/* tokens -> bytes. TOK_EOT becomes eot_text (nothing when eot_text is NULL), tokens out
 * of range become TOK_INVALID_TEXT. `out` holds tok_decode_bound(n, eot_text) bytes; no
 * terminating NUL is written. Returns the number of bytes written. */
size_t tok_decode(const int32_t *tokens, size_t n_tokens, const char *eot_text, uint8_t *out);
size_t tok_decode_u16(const uint16_t *tokens, size_t n_tokens, const char *eot_text,
                      uint8_t *out);

/* One token, for streaming output while sampling; returns bytes written (at most
 * tok_decode_bound(1, eot_text)). */
size_t tok_decode_one(int32_t token, const char *eot_text, uint8_t *out);

#endif

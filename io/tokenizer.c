/* tokenizer.c — byte-level tokenizer (see tokenizer.h). */
#include "tokenizer.h"

#include <string.h>

size_t tok_encode(const uint8_t *bytes, size_t n_bytes, uint16_t *out) {
    for (size_t i = 0; i < n_bytes; i++) out[i] = bytes[i];
    return n_bytes;
}

size_t tok_decode_bound(size_t n_tokens, const char *eot_text) {
    size_t per_token = sizeof(TOK_INVALID_TEXT) - 1;
    size_t eot_bytes = eot_text ? strlen(eot_text) : 0;
    if (eot_bytes > per_token) per_token = eot_bytes;
    return n_tokens * per_token;
}

size_t tok_decode_one(int32_t token, const char *eot_text, uint8_t *out) {
    if (token >= 0 && token < 256) {
        out[0] = (uint8_t)token;
        return 1;
    }
    const char *text = token == TOK_EOT ? eot_text : TOK_INVALID_TEXT;
    if (!text) return 0;
    size_t n = strlen(text);
    memcpy(out, text, n);
    return n;
}

size_t tok_decode(const int32_t *tokens, size_t n_tokens, const char *eot_text, uint8_t *out) {
    size_t n_bytes = 0;
    for (size_t i = 0; i < n_tokens; i++)
        n_bytes += tok_decode_one(tokens[i], eot_text, out + n_bytes);
    return n_bytes;
}

size_t tok_decode_u16(const uint16_t *tokens, size_t n_tokens, const char *eot_text,
                      uint8_t *out) {
    size_t n_bytes = 0;
    for (size_t i = 0; i < n_tokens; i++)
        n_bytes += tok_decode_one(tokens[i], eot_text, out + n_bytes);
    return n_bytes;
}

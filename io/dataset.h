/* dataset.h — the token corpus every rank of a training job reads.
 *
 * A corpus is one or more token files written by `trident prep` (format in prep.h).
 * Each holds /train/tokens and /val/tokens, 1-D uint16 arrays of documents each
 * followed by the EOT token. The corpus's training split is the concatenation of the
 * files' /train/tokens in list order (the same for /val/tokens); every offset below is
 * global over that concatenation, and a window may span two files.
 *
 * Two ways to read a step's windows:
 *  - dataset_read_windows(): synchronous, through HDF5 (one independent H5Dread of a
 *    union of hyperslabs per file);
 *  - dataset_prefetch() + dataset_wait(): asynchronous. A background thread, one per
 *    open dataset, reads with pread() at the byte offsets of the contiguous token
 *    arrays — no HDF5 call, since parallel HDF5 builds are not thread-safe. A file whose
 *    arrays are chunked or compressed (written by another tool) makes the whole corpus
 *    fall back to synchronous HDF5 reads inside dataset_wait(), with one warning.
 *
 * Every function is called from the thread that opened the dataset; the background
 * thread is internal and touches neither HDF5 nor MPI.
 */
#ifndef TRIDENT_DATASET_H
#define TRIDENT_DATASET_H

#include <mpi.h>
#include <stdint.h>

enum dataset_split { DS_TRAIN = 0, DS_VAL = 1 };

struct dataset;

/* `spec` names the corpus:
 *   "data/fortunes.h5"                              one file;
 *   "data/a.h5,data/b.h5"                           a comma-separated list, in that order;
 *   "data/fw-*-of-00008.h5"                         a glob(3) pattern, matches sorted by
 *                                                   name (strcmp: locale-independent).
 * List items may themselves be patterns. File names containing ',', '*', '?' or '['
 * are not supported.
 * Collective over comm: rank 0 expands the spec and broadcasts the list, so every rank
 * opens the same files in the same order. Validates the format, the attributes and the
 * token arrays of every file, and that all files share vocab_size, eot_token and
 * tokenizer; a bad corpus exits through tr_fail() on every rank with a message that
 * names the offending file. */
struct dataset *dataset_open(const char *spec, MPI_Comm comm);
void            dataset_close(struct dataset *ds);   /* collective over the same comm;
                                                        drops requests still in flight */

int         dataset_vocab_size(const struct dataset *ds);
int         dataset_eot_token (const struct dataset *ds);
const char *dataset_tokenizer (const struct dataset *ds);   /* e.g. "bytes+eot" */
const char *dataset_path      (const struct dataset *ds);   /* the spec, as given */
int         dataset_n_files   (const struct dataset *ds);
int64_t     dataset_n_tokens  (const struct dataset *ds, enum dataset_split split); /* total */
int64_t     dataset_n_docs    (const struct dataset *ds, enum dataset_split split); /* total */

/* Window i is tokens [offsets[i], offsets[i] + len) of `split`, stored as int32 at
 * out[i*len ...]. Windows may come in any order, repeat and overlap. Independent (not
 * collective): each rank calls it with its own windows, n_windows may be 0. An offset
 * out of range is a bug in the caller and aborts the job; a token >= vocab_size (a
 * corrupt file) aborts naming the file. */
void dataset_read_windows(struct dataset *ds, enum dataset_split split, const int64_t *offsets,
                          int n_windows, int len, int32_t *out);

/* Asynchronous dataset_read_windows(): prefetch checks the request (a window out of
 * range aborts here), copies the offsets (the caller may reuse them at once) and queues
 * it; wait blocks until the oldest queued request is read, copies its windows to out
 * (same layout and checks as dataset_read_windows) and returns the seconds the caller
 * spent in it: the "data wait" of a step, ~0 when I/O kept up. A request the thread
 * has not started yet when wait is called is read by the caller at once, so a wait
 * never costs much more than a synchronous read.
 *
 * Up to two requests may be queued; they complete in the order made, and wait always
 * returns the oldest. Wait without a queued request, or a third prefetch, is a bug and
 * aborts. An I/O error of the background read aborts the job in dataset_wait(), naming
 * the file. The training loop keeps one request in flight while it computes:
 *
 *     if (step == first_step) dataset_prefetch(ds, DS_TRAIN, offsets(step), n, len);
 *     t_data += dataset_wait(ds, batch);                        // windows of `step`
 *     dataset_prefetch(ds, DS_TRAIN, offsets(step + 1), n, len);
 *     ... forward/backward on batch ...
 *
 * While a training request is in flight, evaluation reads with dataset_read_windows()
 * (safe: the background thread uses its own file descriptors), so the FIFO order of the
 * training requests is undisturbed. */
void   dataset_prefetch(struct dataset *ds, enum dataset_split split, const int64_t *offsets,
                        int n_windows, int len);
double dataset_wait(struct dataset *ds, int32_t *out);

/* 1 when prefetches are served by the background thread, 0 when they fall back to
 * synchronous HDF5 reads in dataset_wait() (a chunked or compressed file). */
int dataset_is_async(const struct dataset *ds);

/* The most bytes the reader holds for requests of n_windows windows of len tokens: the
 * prefetch queue's buffers (the memory plan counts them). */
size_t dataset_buffer_bytes(int n_windows, int len);

#endif

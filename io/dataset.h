/* dataset.h — the token file reader every rank of a training job uses.
 *
 * The file (written by `trident prep`, format in README.md) holds /train/tokens and
 * /val/tokens, 1-D uint16 arrays of documents each followed by the EOT token. A rank
 * reads only the windows it needs: dataset_read_windows() turns a step's windows into
 * one independent H5Dread of a union of hyperslabs on the contiguous dataset.
 *
 * Not thread-safe: parallel HDF5 builds are not, so reads (and any prefetch) happen on
 * the thread that opened the file.
 */
#ifndef TRIDENT_DATASET_H
#define TRIDENT_DATASET_H

#include <mpi.h>
#include <stdint.h>

enum dataset_split { DS_TRAIN = 0, DS_VAL = 1 };

struct dataset;

/* Collective over comm (every rank opens the same file). Validates the format, the
 * attributes and both token arrays; a bad file exits through tr_fail() on every rank
 * with a message that names the file and what is wrong. */
struct dataset *dataset_open(const char *path, MPI_Comm comm);
void            dataset_close(struct dataset *ds);   /* collective over the same comm */

int         dataset_vocab_size(const struct dataset *ds);
int         dataset_eot_token (const struct dataset *ds);
const char *dataset_tokenizer (const struct dataset *ds);   /* e.g. "bytes+eot" */
const char *dataset_path      (const struct dataset *ds);
int64_t     dataset_n_tokens  (const struct dataset *ds, enum dataset_split split);
int64_t     dataset_n_docs    (const struct dataset *ds, enum dataset_split split);

/* Window i is tokens [offsets[i], offsets[i] + len) of `split`, stored as int32 at
 * out[i*len ...]. Windows may come in any order, repeat and overlap. Independent (not
 * collective): each rank calls it with its own windows, n_windows may be 0. An offset
 * out of range is a bug in the caller and aborts the job. */
void dataset_read_windows(struct dataset *ds, enum dataset_split split, const int64_t *offsets,
                          int n_windows, int len, int32_t *out);

#endif

/* ckpt.h — checkpoints: one HDF5 file per saved step, written collectively.
 *
 * Every tensor is stored at its full logical shape under /model/<name> (names and shapes
 * in src/model.h), the AdamW moments under /optim/m/<name> and /optim/v/<name>; each rank
 * writes only the shard it owns, as a hyperslab, in one collective write per tensor, so
 * there is no gather to rank 0 and no per-rank file, and any layout can read it back.
 * Root attributes: format, format_version, step, the config text, optimizer step count,
 * loss scale. Each dataset carries a layout-independent checksum.
 *
 * A checkpoint becomes visible only when complete: written as ckpt-NNNNNNNN.h5.tmp,
 * closed (flushed), renamed; then run_dir/latest is rewritten the same way. A torn or
 * corrupt file is never loaded: the reader falls back to the previous complete one.
 */
#ifndef TRIDENT_CKPT_H
#define TRIDENT_CKPT_H

#include <stddef.h>

struct config;
struct model;
struct optim;

#define CKPT_FORMAT         "trident-checkpoint"
#define CKPT_FORMAT_VERSION 1

/* Collective over MPI_COMM_WORLD. Saves step `step` (the number of steps completed) into
 * run_dir, then keeps only the newest `keep` checkpoints. Returns the path in out. */
void ckpt_save(const char *run_dir, int step, const struct model *m, const struct optim *o,
               int keep, char *out, size_t out_len);

/* Newest checkpoint in run_dir that opens and passes its checks; warns about (and
 * removes) torn ones. Returns 0 and the path, or -1 if there is none. Collective. */
int ckpt_find_latest(const char *run_dir, char *path, size_t path_len);

/* Read the config stored in a checkpoint (for eval/sample). Collective. */
void ckpt_read_config(const char *path, struct config *cfg);

/* Load weights (and, if o != NULL, the optimizer state) into this rank's shards of any
 * layout; verifies shapes, architecture and checksums. Returns the stored step.
 * Collective. A mismatching or corrupt file: tr_fail naming the file and tensor. */
int ckpt_load(const char *path, struct model *m, struct optim *o);

/* Resume from the newest checkpoint in run_dir that loads and verifies, falling back to
 * older ones (with a warning) past torn or corrupt files. Returns the step and the path,
 * or -1 when there is none (the model's contents are then undefined). Collective. */
int ckpt_resume_latest(const char *run_dir, struct model *m, struct optim *o, char *path,
                       size_t path_len);

#endif

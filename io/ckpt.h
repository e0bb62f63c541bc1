/* ckpt.h — checkpoints: one HDF5 file per saved step, written collectively.
 *
 * Every tensor is stored at its full logical shape under /model/<name> (names and shapes
 * in src/model.h), the AdamW moments under /optim/m/<name> and /optim/v/<name>; each rank
 * writes only the shard it owns, as a hyperslab, in one collective write per tensor, so
 * there is no gather to rank 0 and no per-rank file, and any layout can read it back.
 * Root attributes: format, format_version, step, the config text, optimizer step count,
 * loss scale, the step's training loss, skipped data steps, the list of tensors with
 * their shapes and checksums, and meta_checksum over all of these (so a flipped bit in
 * a shape or in the config is found like one in the data). Each dataset carries a
 * layout-independent checksum.
 *
 * A checkpoint becomes visible only when complete: written as ckpt-NNNNNNNN.h5.tmp,
 * closed (flushed), renamed; then run_dir/latest is rewritten the same way. A torn or
 * corrupt file is never loaded: the reader falls back to the previous complete one.
 */
#ifndef TRIDENT_CKPT_H
#define TRIDENT_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include "loss_scale.h"

struct config;
struct model;
struct optim;

#define CKPT_FORMAT         "trident-checkpoint"
#define CKPT_FORMAT_VERSION 1
#define CKPT_MAX_SKIPS      64

/* The run state saved beside the tensors. */
struct ckpt_meta {
    int     step;                   /* steps completed */
    double  loss;                   /* training loss of that step (NAN: unknown) */
    int     n_skips;                /* data steps skipped by divergence rollbacks */
    int64_t skips[CKPT_MAX_SKIPS];  /* ascending */
    /* the fp16 loss scaler's state (loss_scale_format), or "" when the run has none;
     * a file written without one reads back as "" */
    char    loss_scaler[LOSS_SCALE_TEXT_MAX];
};

/* Collective over MPI_COMM_WORLD. Saves meta->step into run_dir, then prunes: of the
 * checkpoints whose metadata verifies, the newest `keep`, the one just written and the
 * one with the lowest training loss stay; unreadable files are never counted or deleted.
 * Returns the path in out. Only the holder of the run directory's lock may call it. */
void ckpt_save(const char *run_dir, const struct ckpt_meta *meta, const struct model *m,
               const struct optim *o, int keep, char *out, size_t out_len);

/* Newest checkpoint in run_dir that opens and passes its header checks. Returns 0 and
 * the path, or -1 if there is none. Reads only: never writes or deletes. Collective. */
int ckpt_find_latest(const char *run_dir, char *path, size_t path_len);

/* Number of files named ckpt-*.h5 in run_dir, readable or not (0 if no directory). */
int ckpt_count(const char *run_dir);

/* Remove ckpt-*.h5.tmp files left by an interrupted save (with a warning each). Only the
 * holder of the run directory's lock may call it: another job may be writing them. */
void ckpt_clean_tmp(const char *run_dir);

/* Read the config stored in a checkpoint (for eval/sample). Collective. */
void ckpt_read_config(const char *path, struct config *cfg);

/* Load weights (and, if o != NULL, the optimizer state) into this rank's shards of any
 * layout; verifies shapes, architecture and checksums. Returns the stored step.
 * Collective. A mismatching or corrupt file: tr_fail naming the file and tensor. */
int ckpt_load(const char *path, struct model *m, struct optim *o);
/* The same, also returning the run state (meta may be NULL). */
int ckpt_load_meta(const char *path, struct model *m, struct optim *o, struct ckpt_meta *meta);

/* Resume from the newest checkpoint in run_dir that loads and verifies, falling back to
 * older ones (with a warning) past torn or corrupt files, metadata included. Returns the
 * step and the path, or -1 when run_dir holds no checkpoint file at all (the model's
 * contents are then undefined). When files exist but none loads: tr_fail (exit 1) with
 * every file and why it failed; never a silent fresh start. A verified checkpoint of
 * another architecture: exit 2. Collective. */
int ckpt_resume_latest(const char *run_dir, struct model *m, struct optim *o,
                       struct ckpt_meta *meta, char *path, size_t path_len);

#endif

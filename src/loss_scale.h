/* loss_scale.h — dynamic loss scaling for fp16 training, as a small pure state machine.
 *
 * fp16 gradients underflow (below 6e-8 they are 0) long before fp32 ones do, so the
 * loss is multiplied by `scale` before the backward pass and the gradients divided by it
 * before the optimizer step. The scale is kept as large as possible without overflow:
 *
 *   overflow (an inf or NaN in any gradient, on any rank):
 *       skip the step, scale = max(scale * backoff, min_scale), good_steps = 0
 *   clean step:
 *       apply the step, good_steps++; after growth_interval clean steps in a row,
 *       scale = min(scale * growth, max_scale) and good_steps = 0
 *
 * Usage, once per optimizer step:
 *
 *     int local = loss_scale_overflow_local(grads, n);   // this rank's shard only
 *     int any   = <MPI_MAX of local over the whole job>; // done by the caller
 *     if (loss_scale_update(&ls, any)) { unscale by 1/ls_before.scale; optimizer step }
 *
 * The overflow flag MUST be the same on every rank before loss_scale_update is called
 * (a max-reduction over every rank that holds gradients: data, pipeline and tensor
 * parallel groups alike). If one rank skipped a step that another applied, the replicas
 * would diverge silently. This module does no communication: the reduction belongs to
 * the communication layer, and every rank then runs the same update on the same input,
 * so the state stays identical everywhere without being broadcast.
 *
 * Note the order: loss_scale_update changes the scale, so the caller divides the
 * gradients by the scale that the backward pass used (read it before the update).
 *
 * The state is saved in a checkpoint as a text attribute (loss_scale_format), e.g.
 * "scale=65536 good_steps=12 skipped=3"; the options come from the run config.
 */
#ifndef TRIDENT_LOSS_SCALE_H
#define TRIDENT_LOSS_SCALE_H

#include <stddef.h>

struct loss_scale_opts {
    double init_scale;       /* first scale                       (default 2^16) */
    int    growth_interval;  /* clean steps in a row before growth (default 2000) */
    double growth;           /* factor on growth, > 1             (default 2)    */
    double backoff;          /* factor on overflow, in (0, 1)     (default 0.5)  */
    double min_scale;        /* lower clamp, > 0                  (default 1)    */
    double max_scale;        /* upper clamp, >= min_scale         (default 2^24) */
};

#define LOSS_SCALE_OPTS_DEFAULT \
    ((struct loss_scale_opts){ 65536.0, 2000, 2.0, 0.5, 1.0, 16777216.0 })

struct loss_scale {
    struct loss_scale_opts opts;
    double scale;       /* current multiplier of the loss */
    long   good_steps;  /* clean steps since the last growth or overflow */
    long   skipped;     /* steps skipped for overflow since the run began */
};

/* Longest text loss_scale_format writes, terminator included. */
#define LOSS_SCALE_TEXT_MAX 96

/* Checks opts (NULL: the defaults) and sets scale = init_scale clamped to
 * [min_scale, max_scale], counters 0. Returns 0, or -1 with *ls untouched and a reason
 * in err (when err != NULL) if an option is out of range. */
int    loss_scale_init(struct loss_scale *ls, const struct loss_scale_opts *opts,
                       char *err, size_t err_size);
/* One step's outcome; overflow_anywhere must be agreed by every rank (see above).
 * Returns 1 when the optimizer step is to be applied, 0 when it is to be skipped. */
int    loss_scale_update(struct loss_scale *ls, int overflow_anywhere);
/* 1 when any of grads[0..n) is inf or NaN, else 0 (OpenMP; reads every element). */
int    loss_scale_overflow_local(const float *grads, long n);

/* "scale=%.17g good_steps=%ld skipped=%ld" into buf (LOSS_SCALE_TEXT_MAX is enough).
 * Returns the length, or -1 if buf is too small. */
int    loss_scale_format(const struct loss_scale *ls, char *buf, size_t size);
/* Reads loss_scale_format's text into ls's state (ls->opts, from the config, are kept).
 * Every key exactly once, in that order, nothing else; scale finite and > 0, counters
 * >= 0. A scale outside [min_scale, max_scale] is clamped into it (the config of the
 * resumed run wins). Returns 0, or -1 with *ls untouched and a reason in err. */
int    loss_scale_parse(struct loss_scale *ls, const char *text, char *err, size_t err_size);

#endif

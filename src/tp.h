/* tp.h — tensor-parallel collectives, as named forward/backward pairs (Megatron-style).
 *
 *   copy:   forward identity,   backward all-reduce   (before a column-parallel GEMM:
 *           every rank feeds the same input, so input gradients are summed)
 *   reduce: forward all-reduce, backward identity     (after a row-parallel GEMM: the
 *           partial outputs are summed; the gradient is already replicated)
 *
 * Column-parallel and row-parallel layers in model.c only compose these. With tp = 1
 * every function is a no-op.
 */
#ifndef TRIDENT_TP_H
#define TRIDENT_TP_H

#include "grid.h"

/* in-place all-reduce of n floats over the tensor-parallel group; returns the seconds
 * spent */
double tp_allreduce(const struct grid *g, float *x, long n, enum comm_op op);

static inline double tp_copy_fwd(const struct grid *g, float *x, long n) {
    (void)g; (void)x; (void)n;
    return 0.0;
}
static inline double tp_copy_bwd(const struct grid *g, float *dx, long n) {
    return tp_allreduce(g, dx, n, COMM_SUM);
}
static inline double tp_reduce_fwd(const struct grid *g, float *x, long n) {
    return tp_allreduce(g, x, n, COMM_SUM);
}
static inline double tp_reduce_bwd(const struct grid *g, float *dx, long n) {
    (void)g; (void)dx; (void)n;
    return 0.0;
}

#endif

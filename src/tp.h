/* tp.h — tensor-parallel collectives, as named forward/backward pairs (Megatron-style).
 *
 *   copy:   forward identity,   backward all-reduce   (before a column-parallel GEMM:
 *           every rank feeds the same input, so input gradients are summed)
 *   reduce: forward all-reduce, backward identity     (after a row-parallel GEMM: the
 *           partial outputs are summed; the gradient is already replicated)
 *
 * Column-parallel and row-parallel layers in model.c only compose these. With tp = 1
 * every function is a no-op.
 *
 * The sums run in fp32 whatever the activations' dtype: a 16-bit tensor is widened into
 * the context's fp32 buffer, all-reduced, and rounded back once (the same rounding the
 * fp32 sum would get when stored), so a reduction never accumulates in 16 bits.
 */
#ifndef TRIDENT_TP_H
#define TRIDENT_TP_H

#include "backend.h"
#include "grid.h"

struct tp_ctx {
    const struct grid *g;
    struct backend *be;
    const struct kernels *k;
    struct tensor f32;       /* [1][n] fp32 staging for 16-bit sums (absent: fp32 only) */
};

/* in-place all-reduce of x over the tensor-parallel group; returns the seconds spent */
double tp_allreduce(const struct tp_ctx *c, struct tensor x, enum comm_op op);

static inline double tp_copy_fwd(const struct tp_ctx *c, struct tensor x) {
    (void)c; (void)x;
    return 0.0;
}
static inline double tp_copy_bwd(const struct tp_ctx *c, struct tensor dx) {
    return tp_allreduce(c, dx, COMM_SUM);
}
static inline double tp_reduce_fwd(const struct tp_ctx *c, struct tensor x) {
    return tp_allreduce(c, x, COMM_SUM);
}
static inline double tp_reduce_bwd(const struct tp_ctx *c, struct tensor dx) {
    (void)c; (void)dx;
    return 0.0;
}

#endif

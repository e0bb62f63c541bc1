/* tp.c — tensor-parallel all-reduce. */
#include "tp.h"

#include "common.h"

double tp_allreduce(const struct tp_ctx *c, struct tensor x, enum comm_op op) {
    const struct grid *g = c->g;
    long n = (long)tensor_numel(x);
    if (g->tp == 1 || n == 0) return 0.0;
    double t0 = tr_now();
    /* Every rank gets the same bits (Open MPI's all-reduce finishes with a
     * broadcast/all-gather of the reduced chunks), so replicated parameters stay
     * identical across the group. comm_allreduce splits buffers past MPI's int count. */
    if (x.dt == KDT_F32) {
        comm_allreduce(&g->comm, COMM_TP, x.data, n, COMM_F32, op);
    } else {
        if (tensor_numel(c->f32) < n)
            TR_ABORT("tensor-parallel staging holds %lld values, %ld needed",
                     (long long)tensor_numel(c->f32), n);
        struct tensor s = tensor_view(c->f32, 0, x.rows, x.cols);
        c->k->convert(c->be, s, x);
        comm_allreduce(&g->comm, COMM_TP, s.data, n, COMM_F32, op);
        c->k->convert(c->be, x, s);
    }
    return tr_now() - t0;
}

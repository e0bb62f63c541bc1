/* tp.c — tensor-parallel all-reduce. */
#include "tp.h"

#include "common.h"

double tp_allreduce(const struct grid *g, float *x, long n, enum comm_op op) {
    if (g->tp == 1 || n == 0) return 0.0;
    double t0 = tr_now();
    /* Every rank gets the same bits (Open MPI's all-reduce finishes with a
     * broadcast/all-gather of the reduced chunks), so replicated parameters stay
     * identical across the group. comm_allreduce splits buffers past MPI's int count. */
    comm_allreduce(&g->comm, COMM_TP, x, n, COMM_F32, op);
    return tr_now() - t0;
}

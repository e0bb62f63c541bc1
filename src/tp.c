/* tp.c — tensor-parallel all-reduce. */
#include "tp.h"

#include "common.h"

double tp_allreduce(const struct grid *g, float *x, long n, MPI_Op op) {
    if (g->tp == 1 || n == 0) return 0.0;
    double t0 = tr_now();
    /* MPI counts are int: split very large buffers. Every rank gets the same bits
     * (Open MPI's all-reduce finishes with a broadcast/all-gather of the reduced
     * chunks), so replicated parameters stay identical across the group. */
    const long chunk = 1L << 30;
    for (long off = 0; off < n; off += chunk)
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x + off, (int)TR_MIN(chunk, n - off), MPI_FLOAT,
                                op, g->tp_comm));
    return tr_now() - t0;
}

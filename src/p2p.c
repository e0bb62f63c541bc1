/* p2p.c — pipeline neighbours exchange activations and gradients. */
#include "p2p.h"

#include <limits.h>

#include "common.h"

/* One tag per (micro-batch, direction): a stage can have several micro-batches in
 * flight, and the two directions share the same pair of ranks. */
static int tag_of(int mb, int backward) { return 2 * (mb % 16000) + backward; }

static int count_of(long n) {
    if (n > INT_MAX) TR_ABORT("pipeline message of %ld floats exceeds MPI's int count", n);
    return (int)n;
}

void p2p_send_fwd(const struct grid *g, const float *x, long n, int mb, MPI_Request *req) {
    MPI_CHECK(MPI_Isend(x, count_of(n), MPI_FLOAT, g->pp_rank + 1, tag_of(mb, 0), g->pp_comm,
                        req));
}

double p2p_recv_fwd(const struct grid *g, float *x, long n, int mb) {
    double t0 = tr_now();
    MPI_CHECK(MPI_Recv(x, count_of(n), MPI_FLOAT, g->pp_rank - 1, tag_of(mb, 0), g->pp_comm,
                       MPI_STATUS_IGNORE));
    return tr_now() - t0;
}

void p2p_send_bwd(const struct grid *g, const float *dx, long n, int mb, MPI_Request *req) {
    MPI_CHECK(MPI_Isend(dx, count_of(n), MPI_FLOAT, g->pp_rank - 1, tag_of(mb, 1), g->pp_comm,
                        req));
}

double p2p_recv_bwd(const struct grid *g, float *dx, long n, int mb) {
    double t0 = tr_now();
    MPI_CHECK(MPI_Recv(dx, count_of(n), MPI_FLOAT, g->pp_rank + 1, tag_of(mb, 1), g->pp_comm,
                       MPI_STATUS_IGNORE));
    return tr_now() - t0;
}

double p2p_wait(MPI_Request *req) {
    if (*req == MPI_REQUEST_NULL) return 0.0;
    double t0 = tr_now();
    MPI_CHECK(MPI_Wait(req, MPI_STATUS_IGNORE));
    return tr_now() - t0;
}

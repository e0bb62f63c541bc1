/* p2p.c — pipeline neighbours exchange activations and gradients. */
#include "p2p.h"

#include "common.h"

/* One tag per (micro-batch, direction): a stage can have several micro-batches in
 * flight, and the two directions share the same pair of ranks. */
static int tag_of(int mb, int backward) { return 2 * (mb % 16000) + backward; }

void p2p_send_fwd(const struct grid *g, const float *x, long n, int mb, struct comm_req *req) {
    comm_send_start(&g->comm, COMM_PP, x, n, COMM_F32, g->pp_rank + 1, tag_of(mb, 0), req);
}

double p2p_recv_fwd(const struct grid *g, float *x, long n, int mb) {
    double t0 = tr_now();
    comm_recv(&g->comm, COMM_PP, x, n, COMM_F32, g->pp_rank - 1, tag_of(mb, 0));
    return tr_now() - t0;
}

void p2p_send_bwd(const struct grid *g, const float *dx, long n, int mb,
                  struct comm_req *req) {
    comm_send_start(&g->comm, COMM_PP, dx, n, COMM_F32, g->pp_rank - 1, tag_of(mb, 1), req);
}

double p2p_recv_bwd(const struct grid *g, float *dx, long n, int mb) {
    double t0 = tr_now();
    comm_recv(&g->comm, COMM_PP, dx, n, COMM_F32, g->pp_rank + 1, tag_of(mb, 1));
    return tr_now() - t0;
}

double p2p_wait(struct comm_req *req) {
    if (!req->be) return 0.0;
    double t0 = tr_now();
    comm_wait(req);
    return tr_now() - t0;
}

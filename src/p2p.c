/* p2p.c — pipeline neighbours exchange activations and gradients. */
#include "p2p.h"

#include "common.h"

/* One tag per (micro-batch, direction): a stage can have several micro-batches in
 * flight, and tags keep them apart. */
static int tag_of(int mb, int backward) { return 2 * (mb % 16000) + backward; }

enum comm_dtype p2p_comm_dtype(enum kdtype dt) {
    switch (dt) {
    case KDT_F32: return COMM_F32;
    case KDT_BF16: return COMM_BF16;
    case KDT_F16: return COMM_F16;
    case KDT_I32: return COMM_I32;
    default: TR_ABORT("no communication dtype for %s", kdtype_name(dt));
    }
}

void p2p_send_fwd(const struct grid *g, struct tensor x, int mb, struct comm_req *req) {
    comm_send_start(&g->comm, COMM_PP, x.data, (long)tensor_numel(x), p2p_comm_dtype(x.dt),
                    g->pp_rank + 1, tag_of(mb, 0), req);
}

double p2p_recv_fwd(const struct grid *g, struct tensor x, int mb) {
    double t0 = tr_now();
    comm_recv(&g->comm, COMM_PP, x.data, (long)tensor_numel(x), p2p_comm_dtype(x.dt),
              g->pp_rank - 1, tag_of(mb, 0));
    return tr_now() - t0;
}

void p2p_send_bwd(const struct grid *g, struct tensor dx, int mb, struct comm_req *req) {
    comm_send_start(&g->comm, COMM_PP, dx.data, (long)tensor_numel(dx), p2p_comm_dtype(dx.dt),
                    g->pp_rank - 1, tag_of(mb, 1), req);
}

double p2p_recv_bwd(const struct grid *g, struct tensor dx, int mb) {
    double t0 = tr_now();
    comm_recv(&g->comm, COMM_PP, dx.data, (long)tensor_numel(dx), p2p_comm_dtype(dx.dt),
              g->pp_rank + 1, tag_of(mb, 1));
    return tr_now() - t0;
}

double p2p_wait(struct comm_req *req) {
    if (!req->be) return 0.0;
    double t0 = tr_now();
    comm_wait(req);
    return tr_now() - t0;
}

/* p2p.h — point-to-point transfers between neighbouring pipeline stages.
 *
 * Activations go forward to pp_rank + 1, their gradients backward to pp_rank - 1, in the
 * tensor's own dtype (a 16-bit run moves half the bytes). Each micro-batch has its own
 * tag, so a stage with several micro-batches in flight matches them correctly. The
 * functions return the seconds spent waiting.
 */
#ifndef TRIDENT_P2P_H
#define TRIDENT_P2P_H

#include "grid.h"
#include "tensor.h"

void   p2p_send_fwd(const struct grid *g, struct tensor x, int mb, struct comm_req *req);
double p2p_recv_fwd(const struct grid *g, struct tensor x, int mb);
void   p2p_send_bwd(const struct grid *g, struct tensor dx, int mb, struct comm_req *req);
double p2p_recv_bwd(const struct grid *g, struct tensor dx, int mb);
/* wait for a send to complete (no-op on COMM_REQ_NULL); returns seconds waited */
double p2p_wait(struct comm_req *req);

/* the communication layer's name for a tensor dtype */
enum comm_dtype p2p_comm_dtype(enum kdtype dt);

#endif

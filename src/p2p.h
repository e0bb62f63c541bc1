/* p2p.h — point-to-point transfers between neighbouring pipeline stages.
 *
 * Activations go forward (stage s → s+1), their gradients backward (s+1 → s), on the
 * comm layer's pipeline group. Sends are non-blocking (the caller keeps the buffer alive
 * until the request completes), receives block and report the seconds spent waiting:
 * that time is the pipeline bubble. */
#ifndef TRIDENT_P2P_H
#define TRIDENT_P2P_H

#include "grid.h"

void   p2p_send_fwd(const struct grid *g, const float *x, long n, int mb, struct comm_req *req);
double p2p_recv_fwd(const struct grid *g, float *x, long n, int mb);
void   p2p_send_bwd(const struct grid *g, const float *dx, long n, int mb,
                    struct comm_req *req);
double p2p_recv_bwd(const struct grid *g, float *dx, long n, int mb);
/* wait for a send to complete (no-op on COMM_REQ_NULL); returns seconds waited */
double p2p_wait(struct comm_req *req);

#endif

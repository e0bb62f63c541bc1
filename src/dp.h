/* dp.h — data-parallel gradient reduction: bucketed, overlapped with the backward pass,
 * flat or hierarchical.
 *
 * Gradients are grouped into buckets of about bucket_mb, in the order the backward pass
 * finishes them (last layer first). As soon as every tensor of a bucket is final (the
 * last micro-batch's backward has passed it), its non-blocking reduction starts and is
 * pushed along between layers, so communication hides behind the remaining compute.
 *
 *   flat:         non-blocking all-reduce over COMM_DP
 *   zero = 1:     non-blocking reduce-scatter over COMM_DP: each dp rank receives the
 *                 sum of its ZeRO slice of the bucket (model_zero_slice) into m->z.grads
 *                 (a bucket's part of slice r is its intersection with slice r, maybe
 *                 empty); nothing else of m->grads is summed.
 *   hierarchical: reduce-scatter inside the node → all-reduce across nodes (of each
 *                 node's chunk) → all-gather inside the node. Only the 1/ranks_per_node
 *                 chunk crosses the network.
 *
 * The tied token embedding (PP > 1) is summed between the first and last stage first,
 * then reduced over dp, after the backward pass (dpr_finish).
 */
#ifndef TRIDENT_DP_H
#define TRIDENT_DP_H

#include "comm.h"
#include "model.h"

enum dp_algo { DP_FLAT = 0, DP_HIER = 1, DP_BF16 = 2, DP_ZERO = 3 };

struct dp_bucket;

struct dp_reducer {
    struct model *m;
    const struct grid *g;
    enum dp_algo algo;
    int n_buckets;
    struct dp_bucket *b;
    int *bucket_of;       /* param index → bucket (-1: not reduced by buckets) */
    int armed;            /* this backward pass is the last micro-batch's */
    int *order;           /* buckets in the order they started (the same on every rank) */
    int n_started, next_cross, next_gather; /* hierarchical: next to start each phase */
    struct comm gather;   /* hierarchical: COMM_DP_NODE duplicated, for the all-gathers only */
    double t_exposed;     /* seconds spent waiting in dpr_finish (not hidden) */
};

/* algo from cfg.allreduce: auto picks hierarchical when dp spans several nodes with the
 * same number of peers on each; hier on unequal nodes falls back to flat with a warning. */
void dpr_init(struct dp_reducer *r, struct model *m, const struct grid *g,
              const struct config *cfg);
void dpr_free(struct dp_reducer *r);

/* Call before the backward pass of the last micro-batch of a step. */
void dpr_arm(struct dp_reducer *r);
/* Tensors [first, first+n) of the table are final: start the buckets they complete. */
void dpr_ready(struct dp_reducer *r, int first, int n);
/* Push started reductions along (cheap; call between layers). */
void dpr_progress(struct dp_reducer *r);
/* Finish everything (and the tied embedding); afterwards every rank holds the sum of the
 * gradients over the data-parallel group (zero = 1: of its slice, in m->z.grads). */
void dpr_finish(struct dp_reducer *r);

/* One blocking all-reduce (sum) of the fp32 tensor x with the chosen algorithm — the same
 * code path as the buckets; used by tests and benchmarks. m (whose kernels round and sum)
 * is needed for DP_BF16 only. */
void dpr_allreduce(const struct grid *g, const struct model *m, enum dp_algo algo,
                   struct tensor x);

const char *dpr_algo_name(enum dp_algo a);

#endif

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
 *                 sum of its ZeRO slice of the bucket (dpr_zero_layout) into m->z.grads
 *                 (a bucket's part of slice r is its intersection with slice r, maybe
 *                 empty); nothing else of m->grads is summed. Its hierarchical form:
 *                 reduce-scatter inside the node, then reduce-scatter of the node's chunk
 *                 across nodes; its bf16 form: the all-to-all of grad_reduce = bf16, each
 *                 rank summing only its slice (no all-gather).
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

/* DP_ZERO*: zero = 1's reduce-scatters (flat, hierarchical, bf16 on the wire); the
 * others reduce every gradient on every rank */
enum dp_algo { DP_FLAT = 0, DP_HIER = 1, DP_BF16 = 2, DP_ZERO = 3, DP_ZERO_HIER = 4,
               DP_ZERO_BF16 = 5 };

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

/* algo from cfg.grad_reduce, cfg.allreduce and zero: grad_reduce = bf16 first; then
 * auto picks hierarchical when dp spans several nodes with the same number of peers on
 * each; hier on unequal nodes falls back to flat with a warning. */
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
 * gradients over the data-parallel group (zero = 1: of its slice, in m->z.grads; the
 * rest of m->grads is then free until the next step zeroes it). */
void dpr_finish(struct dp_reducer *r);

/* One blocking all-reduce (sum) of the fp32 tensor x with the chosen algorithm — the same
 * code path as the buckets; used by tests and benchmarks. m (whose kernels round and sum)
 * is needed for DP_BF16 only. */
void dpr_allreduce(const struct grid *g, const struct model *m, enum dp_algo algo,
                   struct tensor x);

const char *dpr_algo_name(enum dp_algo a);

/* The algorithm dpr_init picks for this config and grid (the DP_ZERO forms where
 * m->z.on would be set: zero = 1 and dp > 1); warn: say so when hier falls back to flat.
 * Needs only the grid's numbers (dp, dp_rank, dp_nodes, hier_ok), so the memory planner's
 * grids answer too. */
enum dp_algo dpr_choose(const struct config *cfg, const struct grid *g, int warn);

/* ZeRO-1's slices (zero = 1, dp > 1): the local buffer of n floats (the layout of table
 * pt) cut into dp contiguous slices; dp rank r takes floats [displs[r], displs[r] +
 * counts[r]). The same on every rank of the data-parallel group. Two rules shape it:
 *  - a cut inside a tensor falls on a multiple of KSTATE_BLOCK from that tensor's start
 *    (a cut in a gap between tensors moves to the next tensor's start), so int8 state
 *    quantizes the same 256-float blocks as zero = 0 and every slice starts on a
 *    4-float code word; slices differ from n / dp by less than a block;
 *  - with the hierarchical reduction (DP_ZERO_HIER: L dp ranks on each of N nodes, dp
 *    rank d = node * L + l) the slices lie in the buffer ordered by (l, node), not by d:
 *    position l * N + node. So the node-local reduce-scatter hands local rank l one
 *    contiguous chunk (the slices of every rank with local index l), and the cross-node
 *    reduce-scatter of that chunk, ordered by node, leaves each rank its own slice.
 *    The flat forms keep rank order (MPI's reduce-scatter needs it).
 * In elements, 64-bit: the planner sizes layouts too large to run; a run checks that its
 * slices fit an MPI count (model.c). */
void dpr_zero_layout(const struct params *pt, int64_t n, const struct config *cfg,
                     const struct grid *g, int64_t *counts, int64_t *displs);

#endif

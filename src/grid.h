/* grid.h — the 3D process grid (data × pipeline × tensor) and every communicator.
 *
 * One struct owns all communicators; grid_init() is the only place that builds them.
 * Rank order puts tensor-parallel peers fastest (they talk every layer, so they should
 * share a node), then data-parallel, then pipeline:
 *
 *     rank = tp + TP * (dp + DP * pp)
 *
 * Worked example, 16 ranks as DP=2 × PP=2 × TP=4 on nodes of 8 GPUs:
 *     pp=0: dp=0 → ranks 0..3 (tp 0..3),   dp=1 → ranks 4..7      (node 0)
 *     pp=1: dp=0 → ranks 8..11,            dp=1 → ranks 12..15    (node 1)
 *   tp_comm of rank 5 = {4,5,6,7}; dp_comm of rank 5 = {1,5}; pp_comm of rank 5 = {5,13}.
 *
 * "Node" is what MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) says, unless the environment
 * variable TRIDENT_RANKS_PER_NODE is set: then node = world_rank / that number, which
 * emulates several nodes on one machine (tests of the hierarchical all-reduce).
 */
#ifndef TRIDENT_GRID_H
#define TRIDENT_GRID_H

#include <mpi.h>

#include "comm.h"

struct config;

struct grid {
    int world_rank, world_size;
    int dp, tp, pp;                   /* sizes */
    int dp_rank, tp_rank, pp_rank;    /* coordinates of this rank */
    MPI_Comm tp_comm;                 /* same (dp, pp): size TP, rank tp_rank */
    MPI_Comm dp_comm;                 /* same (tp, pp): size DP, rank dp_rank */
    MPI_Comm pp_comm;                 /* same (dp, tp): size PP, rank pp_rank */
    MPI_Comm emb_comm;                /* first and last stage of one (dp, tp) pipeline:
                                         they share the tied token embedding (PP > 1) */
    /* hierarchical all-reduce over dp_comm: the node-local part and the cross-node part */
    int      node_id, n_nodes;        /* node of this rank; nodes in the job */
    int      ranks_per_node;          /* world ranks on this rank's node */
    MPI_Comm node_comm;               /* every rank on this rank's node (rank order) */
    MPI_Comm dp_node_comm;            /* dp peers on this rank's node */
    MPI_Comm dp_cross_comm;           /* dp peers with the same node-local index */
    int      dp_nodes;                /* nodes spanned by dp_comm */
    int      hier_ok;                 /* every node holds the same number of dp peers */
    int      tp_spans_nodes;          /* a TP group crosses a node boundary (slow) */
    struct comm comm;                 /* the comm layer on these groups: every
                                         training collective goes through it */
};

/* The one map between a world rank and its grid cell:
 *
 *     rank = tp + TP * (dp + DP * pp)        tp = rank % TP
 *                                            dp = (rank / TP) % DP
 *                                            pp = rank / (TP * DP)
 *
 * Worked example, DP=2 × PP=2 × TP=4 (16 ranks): grid_rank_of(g, 1, 1, 1) =
 * 1 + 4 * (1 + 2 * 1) = 13, and grid_coords(g, 13) gives tp = 13 % 4 = 1,
 * dp = (13 / 4) % 2 = 1, pp = 13 / 8 = 1. Only g->dp, g->tp and g->pp are read. */
int  grid_rank_of(const struct grid *g, int dp, int tp, int pp);
void grid_coords(const struct grid *g, int rank, int *dp, int *tp, int *pp);

/* Derive the layout from cfg (dp/tp/pp, 0 = derive) and the world size, refuse a bad
 * layout with a message naming the numbers and a layout that works, build every
 * communicator. Collective over MPI_COMM_WORLD. */
void grid_init(struct grid *g, const struct config *cfg);
void grid_free(struct grid *g);

/* Layout check without MPI (also used by tests): returns 0 when (dp,tp,pp) is valid for
 * the model in cfg and world, else writes the reason and a suggestion into msg/hint. */
int grid_check_layout(const struct config *cfg, int world, int dp, int tp, int pp,
                      char *msg, int msg_len, char *hint, int hint_len);

static inline int grid_is_first_stage(const struct grid *g) { return g->pp_rank == 0; }
static inline int grid_is_last_stage(const struct grid *g) { return g->pp_rank == g->pp - 1; }

#endif

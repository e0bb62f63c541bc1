/* comm_groups.h — who shares each communicator of the comm layer, as plain arithmetic on
 * the grid's rank formula (no MPI), so that the NCCL backend can check, before it
 * creates a communicator, that the group the grid built (src/grid.c, by MPI_Comm_split)
 * is the one intended, and so that the CPU tests can check both against each other.
 *
 *     rank = tp + TP * (dp + DP * pp)          (grid.h)
 *
 *   world     every rank, in world order
 *   tp        same (dp, pp), ordered by tp       dp   same (tp, pp), ordered by dp
 *   pp        same (dp, tp), ordered by pp
 *   emb       stage 0 and stage PP-1 of one (dp, tp) pipeline (one rank when PP = 1);
 *             middle stages are not members
 *   node      every rank on this rank's node, in world order
 *   dp_node   the dp peers on this rank's node, ordered by dp
 *   dp_cross  the dp peers whose index among their own node's dp peers equals this
 *             rank's, ordered by dp
 *
 * A member's index in the list is its rank in the group's MPI communicator, which is also
 * its NCCL rank; index 0 creates the group's ncclUniqueId and broadcasts it over that MPI
 * communicator (the group's own: the NCCL communicator of group X is bootstrapped on the
 * grid's MPI communicator of group X).
 *
 * Worked example, DP=2 × PP=2 × TP=4 (16 ranks) on nodes of 8: rank 5 (dp 1, tp 1, pp 0)
 * has tp {4,5,6,7} (NCCL rank 1), dp {1,5} (rank 1), pp {5,13} (rank 0), emb {5,13},
 * node {0..7}, dp_node {1,5} (both on node 0: rank 1), dp_cross {5} (rank 0).
 */
#ifndef TRIDENT_COMM_GROUPS_H
#define TRIDENT_COMM_GROUPS_H

#include "comm.h"

/* The layout: sizes, and the node of every world rank (node_of[r], any integer id; NULL:
 * nodes of ranks_per_node consecutive ranks, node = r / ranks_per_node). */
struct comm_layout {
    int dp, tp, pp;
    int ranks_per_node;     /* read only when node_of is NULL */
    const int *node_of;     /* dp * tp * pp entries, or NULL */
};

/* The members of group grp that world rank `rank` belongs to, in group-rank order, into
 * members (room for dp * tp * pp); returns how many (0: rank is not in grp, as a middle
 * stage is not in emb) and sets *me to rank's index among them (-1 when 0 returned). */
int comm_group_members(const struct comm_layout *l, enum comm_group grp, int rank,
                       int *members, int *me);

/* 1 when the NCCL backend gives group grp a pair of point-to-point communicators beside its
 * collective one (comm_nccl.c: one per direction of flow), else 0. Only the pipeline
 * sends and receives device buffers. */
int comm_group_has_p2p(enum comm_group grp);

/* The pipeline's point-to-point communicators, one per direction of flow (why: comm_nccl.c):
 * UP carries every message from a lower to a higher group rank, DOWN the others. A send
 * from me to peer and the receive that matches it (at peer, from me) pick the same one. */
enum comm_flow { COMM_FLOW_UP, COMM_FLOW_DOWN, COMM_N_FLOWS };
enum comm_flow comm_p2p_flow(int me, int peer, int sending);

/* 1 when all p counts are equal and displs lays them rank after rank from 0 (displs NULL:
 * taken to), so that one equal-count NCCL call (ncclAllGather, ncclReduceScatter) does
 * what the call with counts asks; else 0 (comm_nccl.c groups one call per member). */
int comm_counts_uniform(const int *counts, const int *displs, int p);

#endif

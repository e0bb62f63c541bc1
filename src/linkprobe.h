/* linkprobe.h — which rank's network link is slow: a measure that follows the link, not
 * the step.
 *
 * A rank's step time does not say whose link is slow: every rank ends its step in the
 * same gradient all-reduce, so all of them wait for the slowest transfer together. The
 * probe times the links themselves. Every link_probe_every steps each rank sends
 * LINKPROBE_BYTES to its partner on the next node (the rank with the same index on that
 * node) and waits for a one-byte acknowledgement; then the same to the previous node.
 * The ranks of one node take turns (index 0 first, then 1, ...), so two transfers never
 * share a node's link and nothing but the link itself slows a transfer down; the nodes
 * all send at once, each on its own link. Each transfer is done LINKPROBE_REPS times.
 *
 * A rank's bandwidth is the best of its transfers, in Mbit/s: a transfer crosses the
 * sender's link and the receiver's, so a rank next to a slow node has one slow partner
 * and one fast one, while a rank on the slow node has only slow ones. The best also
 * drops the transfers slowed by a busy moment of the machine (noise only ever slows).
 * Rank 0 gathers them: the slowest rank, the minimum, the median, and the straggler,
 * that slowest rank when it reaches less than LINKPROBE_SLOW_FRACTION of the median
 * (else none): a quarter, far below what a busy moment does to a transfer on a machine
 * whose ranks share cores (0.55 of the median at worst, seen on 4 ranks on 2 cores), far
 * above what a degraded link does (a 25-Gbit/s link among 100-Gbit/s ones). With two nodes every path crosses both links, so the probe measures the
 * slow pair but cannot say which end is slow: it names no straggler then (3 nodes or
 * more name it). A job on one node has no link to probe: the probe stays off.
 *
 * TRIDENT_SLOW_LINK="RANK:MBIT" (the unit test) makes rank RANK behave as if its link
 * carried MBIT Mbit/s both ways: its sends start, and its acknowledgements leave, only
 * after the time LINKPROBE_BYTES take at that rate. */
#ifndef TRIDENT_LINKPROBE_H
#define TRIDENT_LINKPROBE_H

#include "comm.h"

struct grid;

#define LINKPROBE_BYTES         (512 * 1024)
#define LINKPROBE_REPS          3
#define LINKPROBE_SLOW_FRACTION 0.25

struct linkprobe {
    int    every;          /* probe after every N-th step (0: off) */
    int    n_nodes;        /* nodes the probe spans (< 2: off) */
    int    local, n_local; /* this rank's index on its node; ranks per node */
    int    node;           /* this rank's node, 0..n_nodes-1 in rank order */
    int   *node_of;        /* every world rank's node */
    int    n_dirs;         /* 1 (two nodes: next = previous) or 2 */
    int    to[2], from[2]; /* world ranks: partner on the next / previous node, per direction */
    double slow_mbps;      /* TRIDENT_SLOW_LINK on this rank, else 0 */
    struct comm c;         /* a private duplicate of COMM_WORLD: never matches training */
    char  *buf;            /* LINKPROBE_BYTES to send, and to receive into */
    char  *rbuf;
};

/* What one probe found (complete on rank 0; the other ranks know only seconds). */
struct linkprobe_result {
    int    slowest_rank;   /* world rank of the lowest bandwidth */
    int    straggler;      /* slowest_rank when below LINKPROBE_SLOW_FRACTION × median, else -1 */
    double min_mbps, median_mbps, max_mbps;
    double seconds;        /* what the probe cost this rank */
};

/* Collective over COMM_WORLD: finds each rank's partners from the grid's nodes. every:
 * the config's link_probe_every. Nodes of unequal size, or one node: the probe is off
 * (rank 0 says why, unless it is one node: the common case). */
void linkprobe_init(struct linkprobe *lp, const struct grid *g, int every);
void linkprobe_free(struct linkprobe *lp);

/* Whether the probe runs after step `step` (1-based, steps completed). */
int  linkprobe_due(const struct linkprobe *lp, int step);

/* Collective over COMM_WORLD: one probe after step `step`, the result on rank 0, which
 * warns, naming the rank and its node, when there is a straggler. */
void linkprobe_run(struct linkprobe *lp, int step, struct linkprobe_result *res);

/* The verdict from every rank's bandwidth (n ranks, Mbit/s): min, median, max, the
 * slowest rank (lowest rank on a tie) and the straggler (or -1). Pure: the unit test's. */
void linkprobe_verdict(const double *mbps, int n, int can_name, struct linkprobe_result *res);

#endif

/* linkprobe.c — each rank's link bandwidth, timed in turns (see linkprobe.h). */
#include "linkprobe.h"

#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "grid.h"

enum { TAG_DATA = 1, TAG_ACK = 2 };

/* TRIDENT_SLOW_LINK="RANK:MBIT": the rate this rank's link pretends to have, else 0. */
static double slow_link_mbps(int world_rank) {
    const char *s = getenv("TRIDENT_SLOW_LINK");
    if (!s || !*s) return 0.0;
    int rank, used = 0;
    double mbit;
    if (sscanf(s, "%d:%lf%n", &rank, &mbit, &used) != 2 || s[used] || rank < 0 ||
        !isfinite(mbit) || mbit <= 0)
        tr_fail(TR_EXIT_USAGE, "give a rank and a rate in Mbit/s, e.g. TRIDENT_SLOW_LINK=3:10, "
                "or unset it", "TRIDENT_SLOW_LINK='%s' is not RANK:MBIT", s);
    return rank == world_rank ? mbit : 0.0;
}

void linkprobe_init(struct linkprobe *lp, const struct grid *g, int every) {
    memset(lp, 0, sizeof *lp);
    const int n = g->world_size, r = g->world_rank;
    /* every rank's node id (grid.c: its node's smallest world rank, or rank /
     * TRIDENT_RANKS_PER_NODE; either way below the world size), renumbered 0.. in rank
     * order, and each rank's index on its node */
    int *node_of = tr_malloc(sizeof(int) * (size_t)n);
    int *local_of = tr_malloc(sizeof(int) * (size_t)n);
    int *count = tr_calloc((size_t)n, sizeof(int));
    int *id_of = tr_malloc(sizeof(int) * (size_t)n);
    int *node_of_id = tr_malloc(sizeof(int) * (size_t)n);
    comm_allgather(&g->comm, COMM_WORLD, &g->node_id, 1, id_of, COMM_I32);
    for (int i = 0; i < n; i++) node_of_id[i] = -1;
    int n_nodes = 0;
    for (int i = 0; i < n; i++) {
        int id = id_of[i];
        if (id < 0 || id >= n) TR_ABORT("rank %d has the node id %d, outside 0..%d", i, id, n - 1);
        if (node_of_id[id] < 0) node_of_id[id] = n_nodes++;
        node_of[i] = node_of_id[id];
        local_of[i] = count[node_of[i]]++;
    }
    int equal = 1;
    for (int k = 1; k < n_nodes; k++) equal &= count[k] == count[0];
    lp->every = every;
    lp->n_nodes = n_nodes;
    lp->node = node_of[r];
    lp->local = local_of[r];
    lp->n_local = count[0];
    if (every > 0 && n_nodes < 2) {
        lp->every = 0; /* one node: no link between nodes to time */
    } else if (every > 0 && !equal) {
        lp->every = 0;
        tr_warn("link probe: off (the nodes hold different numbers of ranks, so ranks cannot "
                "be paired across nodes by their index on the node)");
    }
    if (lp->every > 0) {
        /* the partners: the ranks with this rank's index on the next and previous node */
        lp->n_dirs = n_nodes > 2 ? 2 : 1;
        for (int d = 0; d < lp->n_dirs; d++) {
            int step = d == 0 ? 1 : n_nodes - 1;
            int k_to = (lp->node + step) % n_nodes, k_from = (lp->node + n_nodes - step) % n_nodes;
            for (int i = 0; i < n; i++) {
                if (node_of[i] == k_to && local_of[i] == lp->local) lp->to[d] = i;
                if (node_of[i] == k_from && local_of[i] == lp->local) lp->from[d] = i;
            }
        }
        lp->slow_mbps = slow_link_mbps(r);
        comm_dup(&lp->c, &g->comm, COMM_WORLD);
        lp->buf = tr_calloc(LINKPROBE_BYTES, 1);
        lp->rbuf = tr_malloc(LINKPROBE_BYTES);
        tr_info("link probe: every %d steps, %d kB from each rank to the %s node, the %d "
                "rank%s of a node in turns, %d nodes%s", lp->every, LINKPROBE_BYTES / 1024,
                lp->n_dirs == 2 ? "next and to the previous" : "other", lp->n_local,
                lp->n_local == 1 ? "" : "s", n_nodes,
                n_nodes == 2 ? " (with two nodes a slow link is seen, but not whose it is)" : "");
    }
    lp->node_of = node_of;
    tr_free(id_of);
    tr_free(node_of_id);
    tr_free(local_of);
    tr_free(count);
}

void linkprobe_free(struct linkprobe *lp) {
    if (lp->every > 0) comm_free(&lp->c);
    tr_free(lp->buf);
    tr_free(lp->rbuf);
    tr_free(lp->node_of);
    memset(lp, 0, sizeof *lp);
}

int linkprobe_due(const struct linkprobe *lp, int step) {
    return lp->every > 0 && step > 0 && step % lp->every == 0;
}

/* One turn of this rank in direction d: LINKPROBE_BYTES to lp->to[d] until its
 * acknowledgement is back, while receiving the same from lp->from[d] and acknowledging
 * it. Returns the rate of this rank's own transfer, Mbit/s. Polled rather than waited
 * on, so that receiving never delays the moment this rank's acknowledgement arrives. */
static double exchange(struct linkprobe *lp, int d) {
    const int to = lp->to[d], from = lp->from[d];
    const double pace = lp->slow_mbps > 0 ? LINKPROBE_BYTES * 8.0 / (lp->slow_mbps * 1e6) : 0.0;
    struct comm_req rdata, rack, sdata = COMM_REQ_NULL, sack = COMM_REQ_NULL;
    char ack_in = 0, ack_out = 1;
    comm_recv_start(&lp->c, COMM_WORLD, lp->rbuf, LINKPROBE_BYTES, COMM_U8, from, TAG_DATA, &rdata);
    comm_recv_start(&lp->c, COMM_WORLD, &ack_in, 1, COMM_U8, to, TAG_ACK, &rack);
    const double t0 = tr_now();
    double t_ack = t0;
    int sent = 0, got = 0, acked = 0, done = 0;
    while (!(sent && acked && done)) {
        double now = tr_now();
        if (!sent && now - t0 >= pace) {
            comm_send_start(&lp->c, COMM_WORLD, lp->buf, LINKPROBE_BYTES, COMM_U8, to, TAG_DATA,
                            &sdata);
            sent = 1;
        }
        if (!got) got = comm_test(&rdata);
        if (got && !acked && now - t0 >= pace) {
            comm_send_start(&lp->c, COMM_WORLD, &ack_out, 1, COMM_U8, from, TAG_ACK, &sack);
            acked = 1;
        }
        if (!done && comm_test(&rack)) {
            done = 1;
            t_ack = tr_now();
        }
        /* ranks may share cores (more ranks than cores): let the partner run */
        if (!(sent && acked && done)) sched_yield();
    }
    comm_wait(&sdata);
    comm_wait(&sack);
    return LINKPROBE_BYTES * 8.0 / TR_MAX(t_ack - t0, 1e-9) / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void linkprobe_verdict(const double *mbps, int n, int can_name, struct linkprobe_result *res) {
    double *v = tr_malloc(sizeof(double) * (size_t)TR_MAX(n, 1));
    int slowest = 0;
    for (int i = 0; i < n; i++) {
        v[i] = mbps[i];
        if (mbps[i] < mbps[slowest]) slowest = i;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    res->slowest_rank = slowest;
    res->min_mbps = n ? v[0] : 0.0;
    res->max_mbps = n ? v[n - 1] : 0.0;
    res->median_mbps = n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    res->straggler = can_name && n > 0 && res->min_mbps < LINKPROBE_SLOW_FRACTION * res->median_mbps
                         ? slowest : -1;
    tr_free(v);
}

void linkprobe_run(struct linkprobe *lp, int step, struct linkprobe_result *res) {
    memset(res, 0, sizeof *res);
    res->slowest_rank = res->straggler = -1;
    if (lp->every <= 0) return;
    const double t0 = tr_now();
    double best = 0.0;
    /* the ranks of a node one after another, every node at once: one transfer per link */
    for (int d = 0; d < lp->n_dirs; d++)
        for (int rep = 0; rep < LINKPROBE_REPS; rep++)
            for (int i = 0; i < lp->n_local; i++) {
                comm_barrier(&lp->c, COMM_WORLD);
                if (lp->local == i) {
                    double mbps = exchange(lp, d); /* not inside TR_MAX: evaluated twice */
                    best = TR_MAX(best, mbps);
                }
            }
    const int n = comm_size(&lp->c, COMM_WORLD), root = comm_rank(&lp->c, COMM_WORLD) == 0;
    double *all = root ? tr_malloc(sizeof(double) * (size_t)n) : NULL;
    comm_gather(&lp->c, COMM_WORLD, &best, 1, all, COMM_F64, 0);
    if (root) {
        linkprobe_verdict(all, n, lp->n_dirs == 2, res);
        tr_free(all);
        if (res->straggler >= 0)
            tr_warn("link probe after step %d: rank %d (node %d of %d) sends at %.1f Mbit/s, "
                    "%.2g× the median rank's %.1f Mbit/s: its node's link is slow (a straggler "
                    "that every all-reduce waits for)", step, res->straggler,
                    lp->node_of[res->straggler], lp->n_nodes, res->min_mbps,
                    res->min_mbps / res->median_mbps, res->median_mbps);
    }
    res->seconds = tr_now() - t0;
}

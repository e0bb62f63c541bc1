/* comm_groups.c — the members of each comm group, from the grid's rank formula. */
#include "comm_groups.h"

static int world_of(const struct comm_layout *l) { return l->dp * l->tp * l->pp; }

static int node_of(const struct comm_layout *l, int r) {
    if (l->node_of) return l->node_of[r];
    return r / (l->ranks_per_node > 0 ? l->ranks_per_node : world_of(l));
}

static int rank_of(const struct comm_layout *l, int dp, int tp, int pp) {
    return tp + l->tp * (dp + l->dp * pp);
}

/* the dp peers of (tp, pp) on node `node`, ordered by dp; returns how many */
static int dp_peers_on(const struct comm_layout *l, int tp, int pp, int node, int *out) {
    int n = 0;
    for (int d = 0; d < l->dp; d++) {
        int r = rank_of(l, d, tp, pp);
        if (node_of(l, r) == node) out[n++] = r;
    }
    return n;
}

/* index of world rank r among the dp peers on its own node */
static int local_index(const struct comm_layout *l, int r, int tp, int pp) {
    int idx = 0;
    for (int d = 0; d < l->dp; d++) {
        int q = rank_of(l, d, tp, pp);
        if (q == r) return idx;
        if (node_of(l, q) == node_of(l, r)) idx++;
    }
    return -1;
}

int comm_group_members(const struct comm_layout *l, enum comm_group grp, int rank,
                       int *members, int *me) {
    const int world = world_of(l);
    const int tp = rank % l->tp, dp = (rank / l->tp) % l->dp, pp = rank / (l->tp * l->dp);
    int n = 0;
    *me = -1;
    switch (grp) {
    case COMM_WORLD:
        for (int r = 0; r < world; r++) members[n++] = r;
        break;
    case COMM_TP:
        for (int t = 0; t < l->tp; t++) members[n++] = rank_of(l, dp, t, pp);
        break;
    case COMM_DP:
        for (int d = 0; d < l->dp; d++) members[n++] = rank_of(l, d, tp, pp);
        break;
    case COMM_PP:
        for (int p = 0; p < l->pp; p++) members[n++] = rank_of(l, dp, tp, p);
        break;
    case COMM_EMB:
        if (pp != 0 && pp != l->pp - 1) break;
        members[n++] = rank_of(l, dp, tp, 0);
        if (l->pp > 1) members[n++] = rank_of(l, dp, tp, l->pp - 1);
        break;
    case COMM_NODE:
        for (int r = 0; r < world; r++)
            if (node_of(l, r) == node_of(l, rank)) members[n++] = r;
        break;
    case COMM_DP_NODE:
        n = dp_peers_on(l, tp, pp, node_of(l, rank), members);
        break;
    case COMM_DP_CROSS: {
        const int li = local_index(l, rank, tp, pp);
        for (int d = 0; d < l->dp; d++) {
            int q = rank_of(l, d, tp, pp);
            if (local_index(l, q, tp, pp) == li) members[n++] = q;
        }
        break;
    }
    default:
        return 0;
    }
    for (int i = 0; i < n; i++)
        if (members[i] == rank) *me = i;
    return n;
}

int comm_group_has_p2p(enum comm_group grp) { return grp == COMM_PP; }

enum comm_flow comm_p2p_flow(int me, int peer, int sending) {
    int up = sending ? peer > me : peer < me;
    return up ? COMM_FLOW_UP : COMM_FLOW_DOWN;
}

int comm_counts_uniform(const int *counts, const int *displs, int p) {
    for (int i = 0; i < p; i++)
        if (counts[i] != counts[0] || (displs && displs[i] != i * counts[0])) return 0;
    return 1;
}

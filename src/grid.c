/* grid.c — layout derivation, validation and communicator construction. */
#include "grid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"

int grid_check_layout(const struct config *cfg, int world, int dp, int tp, int pp, char *msg,
                      int msg_len, char *hint, int hint_len) {
    int vp = config_padded_vocab(cfg);
    msg[0] = hint[0] = '\0';
    if (dp < 1 || tp < 1 || pp < 1 || (long)dp * tp * pp != world)
        snprintf(msg, msg_len, "layout dp=%d × tp=%d × pp=%d = %ld ranks, but the job has %d",
                 dp, tp, pp, (long)dp * tp * pp, world);
    else if (cfg->n_head % tp)
        snprintf(msg, msg_len, "tp=%d does not divide n_head=%d (heads are split over "
                 "tensor-parallel ranks)", tp, cfg->n_head);
    else if (vp % tp)
        snprintf(msg, msg_len, "tp=%d does not divide the padded vocabulary %d", tp, vp);
    else if (cfg->n_layer < pp)
        snprintf(msg, msg_len, "pp=%d stages but only n_layer=%d layers (each stage needs "
                 "at least one)", pp, cfg->n_layer);
    if (!msg[0]) return 0;

    /* Suggest a valid layout for this world: prefer data parallelism (cheapest
     * communication), then tensor parallelism inside a node, then pipeline stages. */
    for (int t = 1; t <= world; t++) {
        if (world % t || cfg->n_head % t || vp % t) continue;
        for (int p = 1; p <= world / t; p++) {
            if ((world / t) % p || cfg->n_layer < p) continue;
            int d = world / t / p;
            if (d < 1) continue;
            snprintf(hint, hint_len, "for %d ranks try dp=%d tp=%d pp=%d "
                     "(--dp=%d --tp=%d --pp=%d), or change the number of ranks",
                     world, d, t, p, d, t, p);
            return 1;
        }
    }
    snprintf(hint, hint_len, "no layout of %d ranks fits this model; use another rank count",
             world);
    return 1;
}

/* Fill in the dimensions left at 0 from the world size. */
static void derive_layout(const struct config *cfg, int world, int *dp, int *tp, int *pp) {
    *dp = cfg->dp;
    *tp = cfg->tp;
    *pp = cfg->pp;
    /* With more than one dimension left open, tp and pp default to 1 and dp takes the
     * rest: data parallelism is the cheapest to communicate. */
    if (*tp == 0 && (*dp == 0 || *pp == 0)) *tp = 1;
    if (*pp == 0 && *dp == 0) *pp = 1;
    int known = (*dp ? *dp : 1) * (*tp ? *tp : 1) * (*pp ? *pp : 1);
    int *missing = !*dp ? dp : !*tp ? tp : !*pp ? pp : NULL;
    if (!missing) return;
    if (world % known) {
        char hint[200];
        snprintf(hint, sizeof hint, "launch a multiple of %d ranks, or set dp/tp/pp explicitly",
                 known);
        tr_fail(TR_EXIT_USAGE, hint, "cannot derive the layout: %d ranks are not a multiple of "
                "the %d given by the fixed dimensions", world, known);
    }
    *missing = world / known;
}

int grid_rank_of(const struct grid *g, int dp, int tp, int pp) {
    return tp + g->tp * (dp + g->dp * pp);
}

void grid_coords(const struct grid *g, int rank, int *dp, int *tp, int *pp) {
    *tp = rank % g->tp;
    *dp = (rank / g->tp) % g->dp;
    *pp = rank / (g->tp * g->dp);
}

static void split(MPI_Comm parent, int color, int key, MPI_Comm *out) {
    MPI_CHECK(MPI_Comm_split(parent, color, key, out));
}

void grid_init(struct grid *g, const struct config *cfg) {
    memset(g, 0, sizeof *g);
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &g->world_rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &g->world_size));
    derive_layout(cfg, g->world_size, &g->dp, &g->tp, &g->pp);

    char msg[256], hint[256];
    if (grid_check_layout(cfg, g->world_size, g->dp, g->tp, g->pp, msg, sizeof msg, hint,
                          sizeof hint))
        tr_fail(TR_EXIT_USAGE, hint, "%s", msg);

    int r = g->world_rank;
    grid_coords(g, r, &g->dp_rank, &g->tp_rank, &g->pp_rank);

    split(MPI_COMM_WORLD, g->dp_rank + g->dp * g->pp_rank, g->tp_rank, &g->tp_comm);
    split(MPI_COMM_WORLD, g->tp * g->pp_rank + g->tp_rank, g->dp_rank, &g->dp_comm);
    split(MPI_COMM_WORLD, g->tp * g->dp_rank + g->tp_rank, g->pp_rank, &g->pp_comm);
    int in_emb = grid_is_first_stage(g) || grid_is_last_stage(g);
    split(MPI_COMM_WORLD, in_emb ? g->tp * g->dp_rank + g->tp_rank : MPI_UNDEFINED,
          g->pp_rank, &g->emb_comm);

    /* Nodes: from the environment (emulation) or from shared-memory domains. */
    const char *env = getenv("TRIDENT_RANKS_PER_NODE");
    if (env && *env) {
        int rpn = atoi(env);
        if (rpn < 1)
            tr_fail(TR_EXIT_USAGE, "set it to a positive number of ranks per node",
                    "TRIDENT_RANKS_PER_NODE='%s' is not a positive integer", env);
        g->node_id = r / rpn;
    } else {
        MPI_Comm shm;
        MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, r, MPI_INFO_NULL,
                                      &shm));
        int leader = r; /* a node's id: the smallest world rank on it */
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &leader, 1, MPI_INT, MPI_MIN, shm));
        g->node_id = leader;
        MPI_CHECK(MPI_Comm_free(&shm));
    }
    split(MPI_COMM_WORLD, g->node_id, r, &g->node_comm);
    MPI_CHECK(MPI_Comm_size(g->node_comm, &g->ranks_per_node));
    int node_leader = 0;
    MPI_Comm_rank(g->node_comm, &node_leader);
    node_leader = node_leader == 0;
    MPI_CHECK(MPI_Allreduce(&node_leader, &g->n_nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));

    /* Hierarchical all-reduce over dp_comm: node-local group, then one group per
     * node-local index across nodes. Valid only if every node has the same count. */
    split(g->dp_comm, g->node_id, g->dp_rank, &g->dp_node_comm);
    int local_rank, local_size;
    MPI_Comm_rank(g->dp_node_comm, &local_rank);
    MPI_Comm_size(g->dp_node_comm, &local_size);
    split(g->dp_comm, local_rank, g->dp_rank, &g->dp_cross_comm);
    int lo = local_size, hi = local_size;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    g->hier_ok = lo == hi;
    int leaders = local_rank == 0;
    MPI_CHECK(MPI_Allreduce(&leaders, &g->dp_nodes, 1, MPI_INT, MPI_SUM, g->dp_comm));

    /* A TP group should sit on one node: it talks in every layer. */
    int node_lo = g->node_id, node_hi = g->node_id;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &node_lo, 1, MPI_INT, MPI_MIN, g->tp_comm));
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &node_hi, 1, MPI_INT, MPI_MAX, g->tp_comm));
    int spans = node_lo != node_hi;
    MPI_CHECK(MPI_Allreduce(&spans, &g->tp_spans_nodes, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (g->tp_spans_nodes)
        tr_warn("a tensor-parallel group of %d ranks spans nodes (%d ranks per node): every "
                "layer will talk across the network; use tp <= ranks per node", g->tp,
                g->ranks_per_node);
    comm_init(&g->comm, g, COMM_BACKEND_MPI);
}

void grid_free(struct grid *g) {
    comm_free(&g->comm);
    MPI_Comm *comms[] = {&g->tp_comm, &g->dp_comm, &g->pp_comm, &g->emb_comm,
                         &g->dp_node_comm, &g->dp_cross_comm, &g->node_comm};
    for (size_t i = 0; i < sizeof comms / sizeof comms[0]; i++)
        if (*comms[i] != MPI_COMM_NULL) MPI_Comm_free(comms[i]);
}

/* test_comm_groups.c — the comm groups' members (src/comm_groups.c, plain arithmetic)
 * against hand-written lists and against the communicators the grid builds with MPI
 * (src/grid.c), for every dp × tp × pp layout of the ranks it is started on, with 1, 2 and
 * 4 ranks per (emulated) node; and the NCCL backend's two host-side choices: which
 * point-to-point communicator a message takes, and when counts allow one equal-count call.
 * tests/run.sh starts it on 1 rank, tests/test_comm.sh on 2, 4 and 8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "comm_groups.h"
#include "common.h"
#include "config.h"
#include "grid.h"
#include "test.h"

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define MAX_RANKS 64

static const enum comm_group groups[] = {COMM_WORLD, COMM_TP,       COMM_DP,   COMM_PP,
                                         COMM_EMB,   COMM_DP_NODE,  COMM_DP_CROSS,
                                         COMM_NODE};

static int same_list(const int *a, int na, const int *b, int nb) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* the list, checked against what is expected (expected[0] < 0: not a member) */
static void expect_members(const struct comm_layout *l, enum comm_group grp, int rank,
                           const int *want, int n_want, int want_me) {
    int got[MAX_RANKS], me;
    int n = comm_group_members(l, grp, rank, got, &me);
    CHECK_MSG(same_list(got, n, want, n_want) && me == want_me,
              "rank %d group %s: %d members (first %d), me %d; expected %d (first %d), me %d",
              rank, comm_group_name(grp), n, n ? got[0] : -1, me, n_want,
              n_want ? want[0] : -1, want_me);
}

/* comm_groups.h's worked example: 16 ranks as DP=2 × PP=2 × TP=4, nodes of 8 */
static void test_worked_example_of_16_ranks(void) {
    struct comm_layout l = {.dp = 2, .tp = 4, .pp = 2, .ranks_per_node = 8};
    expect_members(&l, COMM_TP, 5, (int[]){4, 5, 6, 7}, 4, 1);
    expect_members(&l, COMM_DP, 5, (int[]){1, 5}, 2, 1);
    expect_members(&l, COMM_PP, 5, (int[]){5, 13}, 2, 0);
    expect_members(&l, COMM_EMB, 13, (int[]){5, 13}, 2, 1);
    expect_members(&l, COMM_NODE, 5, (int[]){0, 1, 2, 3, 4, 5, 6, 7}, 8, 5);
    expect_members(&l, COMM_DP_NODE, 5, (int[]){1, 5}, 2, 1);
    expect_members(&l, COMM_DP_CROSS, 5, (int[]){5}, 1, 0);
    /* nodes of 4: the dp peers 1 and 5 sit on nodes 0 and 1, one each */
    l.ranks_per_node = 4;
    expect_members(&l, COMM_DP_NODE, 5, (int[]){5}, 1, 0);
    expect_members(&l, COMM_DP_CROSS, 5, (int[]){1, 5}, 2, 1);
    /* three stages: the middle one is not in emb; stage 2 is its second member */
    struct comm_layout l3 = {.dp = 1, .tp = 2, .pp = 3, .ranks_per_node = 2};
    expect_members(&l3, COMM_EMB, 3, NULL, 0, -1);
    expect_members(&l3, COMM_EMB, 5, (int[]){1, 5}, 2, 1);
    expect_members(&l3, COMM_PP, 2, (int[]){0, 2, 4}, 3, 1);
    /* one stage: emb is the rank alone (it holds both ends of the tied embedding) */
    struct comm_layout l1 = {.dp = 4, .tp = 1, .pp = 1, .ranks_per_node = 4};
    expect_members(&l1, COMM_EMB, 2, (int[]){2}, 1, 0);
}

/* Uneven nodes (sizes 3, 5, 2, 6 over 16 ranks): every group is a partition of its
 * members (r lists s exactly when s lists r, with the same list), each list is in the
 * order the grid's splits use, and the cross groups of a dp group cover it once. */
static void test_groups_partition_the_ranks_on_uneven_nodes(void) {
    int node_of[16];
    const int sizes[] = {3, 5, 2, 6};
    for (int n = 0, r = 0; n < N_OF(sizes); n++)
        for (int i = 0; i < sizes[n]; i++) node_of[r++] = 10 * n + 7; /* any ids */
    struct comm_layout l = {.dp = 4, .tp = 2, .pp = 2, .node_of = node_of};
    for (int g = 0; g < N_OF(groups); g++)
        for (int r = 0; r < 16; r++) {
            int a[MAX_RANKS], me;
            int n = comm_group_members(&l, groups[g], r, a, &me);
            if (n == 0) {
                CHECK(groups[g] == COMM_EMB);
                continue;
            }
            CHECK(me >= 0 && a[me] == r);
            for (int i = 0; i < n; i++) {
                int b[MAX_RANKS], me_b;
                int nb = comm_group_members(&l, groups[g], a[i], b, &me_b);
                CHECK_MSG(same_list(a, n, b, nb) && me_b == i,
                          "group %s: rank %d lists %d, whose own list differs",
                          comm_group_name(groups[g]), r, a[i]);
                if (i > 0) CHECK(a[i] > a[i - 1]);
            }
        }
    /* rank 9's dp peers are 9 (node 2, alone) and 11, 13, 15 (node 3): its node group is
     * itself, its cross group the first dp peer of each node, {9, 11} */
    expect_members(&l, COMM_DP_NODE, 9, (int[]){9}, 1, 0);
    expect_members(&l, COMM_DP_CROSS, 9, (int[]){9, 11}, 2, 0);
    expect_members(&l, COMM_DP_CROSS, 15, (int[]){15}, 1, 0);
    CHECK(comm_group_has_p2p(COMM_PP) && !comm_group_has_p2p(COMM_DP) &&
          !comm_group_has_p2p(COMM_TP));
}

/* A send and the receive that matches it use one communicator; the two directions
 * between neighbours (activations up, gradients down) use different ones. */
static void test_p2p_flow_pairs_sends_with_their_receives(void) {
    for (int me = 0; me < 6; me++)
        for (int peer = 0; peer < 6; peer++) {
            if (peer == me) continue;
            CHECK_MSG(comm_p2p_flow(me, peer, 1) == comm_p2p_flow(peer, me, 0),
                      "send %d -> %d and its receive take different communicators", me, peer);
            CHECK_MSG(comm_p2p_flow(me, peer, 1) != comm_p2p_flow(peer, me, 1),
                      "%d -> %d and %d -> %d share a communicator", me, peer, peer, me);
        }
    CHECK(comm_p2p_flow(2, 3, 1) == COMM_FLOW_UP && comm_p2p_flow(3, 2, 1) == COMM_FLOW_DOWN);
}

/* one equal-count NCCL call only where it lays the slices where the counts ask */
static void test_counts_uniform_only_when_contiguous_and_equal(void) {
    CHECK(comm_counts_uniform((int[]){4, 4, 4}, (int[]){0, 4, 8}, 3));
    CHECK(comm_counts_uniform((int[]){4, 4, 4}, NULL, 3));
    CHECK(comm_counts_uniform((int[]){7}, (int[]){0}, 1));
    CHECK(!comm_counts_uniform((int[]){4, 4, 3}, NULL, 3));         /* unequal */
    CHECK(!comm_counts_uniform((int[]){4, 4, 4}, (int[]){0, 5, 10}, 3));  /* gaps */
    CHECK(!comm_counts_uniform((int[]){4, 4, 4}, (int[]){8, 4, 0}, 3));   /* reversed */
    CHECK(!comm_counts_uniform((int[]){4, 4}, (int[]){1, 5}, 2));         /* shifted */
}

/* the grid's MPI communicators (MPI_Comm_split) against the lists, on this layout */
static struct grid *cur;
static int cur_rpn;

static void test_grid_communicators_match_the_lists(void) {
    const struct grid *g = cur;
    struct comm_layout l = {.dp = g->dp, .tp = g->tp, .pp = g->pp, .ranks_per_node = cur_rpn};
    MPI_Group world_group;
    MPI_Comm_group(MPI_COMM_WORLD, &world_group);
    for (int i = 0; i < N_OF(groups); i++) {
        const struct comm_handle *h = &g->comm.grp[groups[i]];
        int want[MAX_RANKS], me;
        int n = comm_group_members(&l, groups[i], g->world_rank, want, &me);
        if (h->mpi == MPI_COMM_NULL) {
            CHECK_MSG(n == 0, "rank %d is in no %s communicator, the list has %d members",
                      g->world_rank, comm_group_name(groups[i]), n);
            continue;
        }
        int size, rank, got[MAX_RANKS], idx[MAX_RANKS];
        MPI_Comm_size(h->mpi, &size);
        MPI_Comm_rank(h->mpi, &rank);
        MPI_Group grp;
        MPI_Comm_group(h->mpi, &grp);
        for (int k = 0; k < size; k++) idx[k] = k;
        MPI_Group_translate_ranks(grp, size, idx, world_group, got);
        MPI_Group_free(&grp);
        CHECK_MSG(same_list(got, size, want, n) && rank == me,
                  "rank %d group %s: the grid has %d members (rank %d, first %d), the list %d "
                  "(me %d, first %d)", g->world_rank, comm_group_name(groups[i]), size, rank,
                  got[0], n, me, n ? want[0] : -1);
    }
    MPI_Group_free(&world_group);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int world;
    MPI_Comm_rank(MPI_COMM_WORLD, &test_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world > MAX_RANKS) {
        if (test_rank == 0) fprintf(stderr, "test_comm_groups: at most %d ranks\n", MAX_RANKS);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    RUN(test_worked_example_of_16_ranks);
    RUN(test_groups_partition_the_ranks_on_uneven_nodes);
    RUN(test_p2p_flow_pairs_sends_with_their_receives);
    RUN(test_counts_uniform_only_when_contiguous_and_equal);
    /* every dp × tp × pp = world, on nodes of 1, 2 and 4 ranks */
    const int rpns[] = {1, 2, 4};
    for (int tp = 1; tp <= world; tp++)
        for (int pp = 1; pp <= world / tp; pp++) {
            if (world % (tp * pp)) continue;
            for (int k = 0; k < N_OF(rpns); k++) {
                char env[16];
                snprintf(env, sizeof env, "%d", rpns[k]);
                setenv("TRIDENT_RANKS_PER_NODE", env, 1);
                struct config cfg;
                config_defaults(&cfg);
                cfg.n_layer = 8; cfg.n_head = 8; cfg.n_embd = 64; cfg.vocab_size = 512;
                cfg.seq_len = 8; cfg.block_size = 8; cfg.micro_batch = 1;
                cfg.dp = world / (tp * pp); cfg.tp = tp; cfg.pp = pp;
                struct grid g;
                grid_init(&g, &cfg);
                cur = &g;
                cur_rpn = rpns[k];
                if (test_rank == 0)
                    printf("# %d ranks as dp=%d tp=%d pp=%d, %d ranks per node\n", world, g.dp,
                           g.tp, g.pp, rpns[k]);
                RUN(test_grid_communicators_match_the_lists);
                grid_free(&g);
            }
        }
    /* a failure on any rank fails the run on rank 0 */
    MPI_Allreduce(MPI_IN_PLACE, &test_n_fail, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    int rc = test_rank == 0 ? test_summary() : test_n_fail != 0;
    MPI_Finalize();
    return rc;
}

/* test_comm.c — the comm layer against hand computations, on every group of several
 * layouts of whatever number of ranks it is started on (tests/test_comm.sh: 1 to 4).
 *
 * Each member fills its buffer from (its rank in the group, element index) with small
 * integers, so every sum is exact in every dtype and the expected result is a plain loop
 * over the group's ranks written here. 16-bit and byte dtypes are checked as raw bit
 * patterns (they are moved, never reduced).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "common.h"
#include "config.h"
#include "grid.h"
#include "test.h"

/* the layout under test (set by main before each round of RUN) */
static struct grid *cur;

static const enum comm_group groups[] = {COMM_WORLD, COMM_TP,       COMM_DP,
                                         COMM_PP,    COMM_EMB,      COMM_DP_NODE,
                                         COMM_DP_CROSS, COMM_NODE};
static const enum comm_dtype reduce_dtypes[] = {COMM_F32, COMM_F64, COMM_I32, COMM_I64,
                                                COMM_U64};
static const enum comm_dtype all_dtypes[] = {COMM_F32, COMM_F64, COMM_I32, COMM_I64,
                                             COMM_U64, COMM_BF16, COMM_F16, COMM_U8};
#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int in_group(enum comm_group grp) { return cur->comm.grp[grp].mpi != MPI_COMM_NULL; }

/* member r's element i: small, positive, not monotonic in r (so max and min differ) */
static double val(int r, long i) { return (double)((r * 7 + i * 3) % 5 + i + 1); }

static void put(void *buf, enum comm_dtype dt, long i, double v) {
    switch (dt) {
    case COMM_F32: ((float *)buf)[i] = (float)v; break;
    case COMM_F64: ((double *)buf)[i] = v; break;
    case COMM_I32: ((int32_t *)buf)[i] = (int32_t)v; break;
    case COMM_I64: ((int64_t *)buf)[i] = (int64_t)v; break;
    case COMM_U64: ((uint64_t *)buf)[i] = (uint64_t)v; break;
    default: break;
    }
}

static double get(const void *buf, enum comm_dtype dt, long i) {
    switch (dt) {
    case COMM_F32: return ((const float *)buf)[i];
    case COMM_F64: return ((const double *)buf)[i];
    case COMM_I32: return ((const int32_t *)buf)[i];
    case COMM_I64: return (double)((const int64_t *)buf)[i];
    case COMM_U64: return (double)((const uint64_t *)buf)[i];
    default: return 0.0;
    }
}

static double reduce_by_hand(int size, long i, enum comm_op op) {
    double acc = val(0, i);
    for (int r = 1; r < size; r++) {
        double v = val(r, i);
        acc = op == COMM_SUM ? acc + v : op == COMM_MAX ? (v > acc ? v : acc)
                                                         : (v < acc ? v : acc);
    }
    return acc;
}

/* a raw byte pattern for member r, element i, byte k (any dtype) */
static unsigned char pat(int r, long i, int k) { return (unsigned char)(r * 61 + i * 7 + k * 3 + 1); }

static void fill_pat(unsigned char *b, int r, long n, int eb) {
    for (long i = 0; i < n; i++)
        for (int k = 0; k < eb; k++) b[i * eb + k] = pat(r, i, k);
}

static int same_pat(const unsigned char *b, int r, long n, int eb) {
    for (long i = 0; i < n; i++)
        for (int k = 0; k < eb; k++)
            if (b[i * eb + k] != pat(r, i, k)) return 0;
    return 1;
}

/* ---------------------------------------------------------------------------------- */

static void test_groups_match_grid_coordinates(void) {
    const struct comm *c = &cur->comm;
    CHECK(comm_size(c, COMM_WORLD) == cur->world_size);
    CHECK(comm_rank(c, COMM_WORLD) == cur->world_rank);
    CHECK(comm_size(c, COMM_TP) == cur->tp && comm_rank(c, COMM_TP) == cur->tp_rank);
    CHECK(comm_size(c, COMM_DP) == cur->dp && comm_rank(c, COMM_DP) == cur->dp_rank);
    CHECK(comm_size(c, COMM_PP) == cur->pp && comm_rank(c, COMM_PP) == cur->pp_rank);
    CHECK(in_group(COMM_EMB) == (grid_is_first_stage(cur) || grid_is_last_stage(cur)));
    CHECK(grid_rank_of(cur, cur->dp_rank, cur->tp_rank, cur->pp_rank) == cur->world_rank);
    /* the node group: this node's ranks in world order (node_id is a world rank / rpn
     * or the node's smallest world rank: either way the first member's world rank is
     * the smallest on the node) */
    CHECK(comm_size(c, COMM_NODE) == cur->ranks_per_node);
    int lo = cur->world_rank;
    comm_allreduce(c, COMM_NODE, &lo, 1, COMM_I32, COMM_MIN);
    CHECK(comm_rank(c, COMM_NODE) == cur->world_rank - lo);
    int ids[2] = {cur->node_id, -cur->node_id};
    comm_allreduce(c, COMM_NODE, ids, 2, COMM_I32, COMM_MAX);
    CHECK(ids[0] == cur->node_id && -ids[1] == cur->node_id);
}

static void test_rank_map_round_trips_and_matches_worked_example(void) {
    struct grid g = {.dp = 2, .tp = 4, .pp = 2};
    CHECK(grid_rank_of(&g, 1, 1, 1) == 13);
    int dp, tp, pp;
    grid_coords(&g, 13, &dp, &tp, &pp);
    CHECK(dp == 1 && tp == 1 && pp == 1);
    grid_coords(&g, 5, &dp, &tp, &pp); /* grid.h: rank 5's tp group is {4..7} */
    CHECK(dp == 1 && tp == 1 && pp == 0);
    struct grid shapes[] = {{.dp = 3, .tp = 1, .pp = 1}, {.dp = 1, .tp = 3, .pp = 2},
                            {.dp = 2, .tp = 3, .pp = 4}};
    for (int s = 0; s < N_OF(shapes); s++) {
        const struct grid *h = &shapes[s];
        for (int r = 0; r < h->dp * h->tp * h->pp; r++) {
            grid_coords(h, r, &dp, &tp, &pp);
            CHECK(dp >= 0 && dp < h->dp && tp >= 0 && tp < h->tp && pp >= 0 && pp < h->pp);
            CHECK(grid_rank_of(h, dp, tp, pp) == r);
        }
    }
}

/* blocking, _start + comm_wait, _start + comm_test: every group, dtype and op */
static void test_allreduce_matches_hand_reduction(void) {
    const struct comm *c = &cur->comm;
    const long n = 7;
    const enum comm_op ops[] = {COMM_SUM, COMM_MAX, COMM_MIN};
    for (int gi = 0; gi < N_OF(groups); gi++) {
        enum comm_group grp = groups[gi];
        if (!in_group(grp)) continue;
        int r = comm_rank(c, grp), size = comm_size(c, grp);
        for (int di = 0; di < N_OF(reduce_dtypes); di++)
            for (int oi = 0; oi < N_OF(ops); oi++)
                for (int mode = 0; mode < 3; mode++) {
                    enum comm_dtype dt = reduce_dtypes[di];
                    uint64_t buf[16];
                    for (long i = 0; i < n; i++) put(buf, dt, i, val(r, i));
                    if (mode == 0) {
                        comm_allreduce(c, grp, buf, n, dt, ops[oi]);
                    } else {
                        struct comm_req req = COMM_REQ_NULL;
                        comm_allreduce_start(c, grp, buf, n, dt, ops[oi], &req);
                        if (mode == 1) comm_wait(&req);
                        else while (!comm_test(&req)) {}
                        CHECK(req.be == NULL);
                    }
                    for (long i = 0; i < n; i++)
                        CHECK_MSG(get(buf, dt, i) == reduce_by_hand(size, i, ops[oi]),
                                  "group %s dtype %s op %d mode %d element %ld: %g, expected %g",
                                  comm_group_name(grp), comm_dtype_name(dt), (int)ops[oi], mode,
                                  i, get(buf, dt, i), reduce_by_hand(size, i, ops[oi]));
                }
    }
}

/* member j receives counts[j] = j + 1 elements of the sum, laid out rank after rank */
/* maxloc and minloc: the extreme value and the lowest rank holding it, on every group;
 * values with ties (two members share the extreme) and without */
static void test_maxloc_and_minloc_name_the_lowest_holder(void) {
    const struct comm *c = &cur->comm;
    for (int gi = 0; gi < N_OF(groups); gi++) {
        enum comm_group grp = groups[gi];
        if (!in_group(grp)) continue;
        int r = comm_rank(c, grp), size = comm_size(c, grp);
        for (int kind = 0; kind < 3; kind++) {
            /* 0: distinct, largest at the middle member; 1: r / 2 (ties in pairs);
             * 2: all equal, negative */
            double mine = kind == 0 ? -(double)((r - size / 2) * (r - size / 2)) + 0.25
                        : kind == 1 ? (double)(r / 2) : -3.5;
            double hi = mine, lo = mine;
            int hi_rank = -1, lo_rank = -1;
            comm_allreduce_maxloc(c, grp, &hi, &hi_rank);
            comm_allreduce_minloc(c, grp, &lo, &lo_rank);
            double want_hi = 0, want_lo = 0;
            int want_hi_rank = -1, want_lo_rank = -1;
            for (int q = 0; q < size; q++) {
                double v = kind == 0 ? -(double)((q - size / 2) * (q - size / 2)) + 0.25
                         : kind == 1 ? (double)(q / 2) : -3.5;
                if (want_hi_rank < 0 || v > want_hi) { want_hi = v; want_hi_rank = q; }
                if (want_lo_rank < 0 || v < want_lo) { want_lo = v; want_lo_rank = q; }
            }
            CHECK_MSG(hi == want_hi && hi_rank == want_hi_rank,
                      "maxloc group %s kind %d: %g at %d, want %g at %d", comm_group_name(grp),
                      kind, hi, hi_rank, want_hi, want_hi_rank);
            CHECK_MSG(lo == want_lo && lo_rank == want_lo_rank,
                      "minloc group %s kind %d: %g at %d, want %g at %d", comm_group_name(grp),
                      kind, lo, lo_rank, want_lo, want_lo_rank);
        }
    }
}

/* fixed-size byte records (a host name, say) and 64-bit integers (pids): all-gathered */
static void test_allgather_of_byte_records(void) {
    const struct comm *c = &cur->comm;
    int r = comm_rank(c, COMM_WORLD), size = comm_size(c, COMM_WORLD);
    char rec[64] = {0};
    snprintf(rec, sizeof rec, "host-%d", r * 11);
    char (*all)[64] = calloc((size_t)size, sizeof *all);
    int64_t id = 1000000007LL * (r + 1), *ids = calloc((size_t)size, sizeof *ids);
    comm_allgather(c, COMM_WORLD, rec, sizeof rec, all, COMM_U8);
    comm_allgather(c, COMM_WORLD, &id, 1, ids, COMM_I64);
    for (int q = 0; q < size; q++) {
        char want[64];
        snprintf(want, sizeof want, "host-%d", q * 11);
        CHECK_MSG(strcmp(all[q], want) == 0, "record %d: '%s'", q, all[q]);
        CHECK(ids[q] == 1000000007LL * (q + 1));
    }
    free(all);
    free(ids);
}

/* A context on a bare communicator: COMM_WORLD is that communicator, nothing else is. */
static void test_context_on_a_bare_communicator(void) {
    struct comm on;
    comm_init_on(&on, cur->tp_comm, COMM_BACKEND_MPI);
    CHECK(comm_size(&on, COMM_WORLD) == cur->tp && comm_rank(&on, COMM_WORLD) == cur->tp_rank);
    CHECK(on.world_rank == cur->world_rank);
    CHECK(on.grp[COMM_DP].mpi == MPI_COMM_NULL && on.grp[COMM_NODE].mpi == MPI_COMM_NULL);
    int head[2] = {0, 0};
    if (cur->tp_rank == 0) { head[0] = 7; head[1] = cur->world_rank; }
    comm_bcast(&on, COMM_WORLD, head, 2, COMM_I32, 0);
    CHECK(head[0] == 7 && head[1] == cur->world_rank - cur->tp_rank);
    comm_free(&on); /* owns nothing: the grid's communicator stays */
    CHECK(cur->tp_comm != MPI_COMM_NULL);
}

static void test_reduce_scatter_gives_each_member_its_sum_slice(void) {
    const struct comm *c = &cur->comm;
    for (int gi = 0; gi < N_OF(groups); gi++) {
        enum comm_group grp = groups[gi];
        if (!in_group(grp)) continue;
        int r = comm_rank(c, grp), size = comm_size(c, grp);
        int counts[8], off = 0, total = size * (size + 1) / 2;
        for (int j = 0; j < size; j++) {
            counts[j] = j + 1;
            if (j < r) off += counts[j];
        }
        for (int di = 0; di < N_OF(reduce_dtypes); di++)
            for (int mode = 0; mode < 2; mode++) {
                enum comm_dtype dt = reduce_dtypes[di];
                uint64_t send[64], recv[8];
                for (long i = 0; i < total; i++) put(send, dt, i, val(r, i));
                if (mode == 0) {
                    comm_reduce_scatter(c, grp, send, recv, counts, dt, COMM_SUM);
                } else {
                    struct comm_req req = COMM_REQ_NULL;
                    comm_reduce_scatter_start(c, grp, send, recv, counts, dt, COMM_SUM, &req);
                    comm_wait(&req);
                }
                for (int i = 0; i < counts[r]; i++)
                    CHECK_MSG(get(recv, dt, i) == reduce_by_hand(size, off + i, COMM_SUM),
                              "group %s dtype %s element %d", comm_group_name(grp),
                              comm_dtype_name(dt), i);
            }
    }
}

/* every dtype, 16-bit and bytes included, lands bit for bit where it belongs */
static void test_allgather_and_allgatherv_place_every_member(void) {
    const struct comm *c = &cur->comm;
    for (int gi = 0; gi < N_OF(groups); gi++) {
        enum comm_group grp = groups[gi];
        if (!in_group(grp)) continue;
        int r = comm_rank(c, grp), size = comm_size(c, grp);
        for (int di = 0; di < N_OF(all_dtypes); di++)
            for (int mode = 0; mode < 2; mode++) {
                enum comm_dtype dt = all_dtypes[di];
                int eb = comm_dtype_bytes(dt);
                unsigned char send[64], recv[512];
                struct comm_req req = COMM_REQ_NULL;
                /* all-gather: 3 elements each */
                fill_pat(send, r, 3, eb);
                if (mode == 0) comm_allgather(c, grp, send, 3, recv, dt);
                else {
                    comm_allgather_start(c, grp, send, 3, recv, dt, &req);
                    comm_wait(&req);
                }
                for (int j = 0; j < size; j++)
                    CHECK_MSG(same_pat(recv + (long)j * 3 * eb, j, 3, eb),
                              "all-gather group %s dtype %s member %d", comm_group_name(grp),
                              comm_dtype_name(dt), j);
                /* all-gatherv: member j sends j + 1 elements, placed with a gap of one */
                int counts[8], displs[8], at = 0;
                for (int j = 0; j < size; j++) {
                    counts[j] = j + 1;
                    displs[j] = at;
                    at += counts[j] + 1;
                }
                memset(recv, 0xEE, sizeof recv);
                fill_pat(send, r, r + 1, eb);
                if (mode == 0) comm_allgatherv(c, grp, send, r + 1, recv, counts, displs, dt);
                else {
                    comm_allgatherv_start(c, grp, send, r + 1, recv, counts, displs, dt, &req);
                    comm_wait(&req);
                }
                for (int j = 0; j < size; j++) {
                    CHECK_MSG(same_pat(recv + (long)displs[j] * eb, j, counts[j], eb),
                              "all-gatherv group %s dtype %s member %d", comm_group_name(grp),
                              comm_dtype_name(dt), j);
                    const unsigned char *gap = recv + (long)(displs[j] + counts[j]) * eb;
                    for (int k = 0; k < eb; k++) CHECK(gap[k] == 0xEE);
                }
            }
    }
}

/* personalised exchange: member r sends j + r + 1 elements to member j (pattern r), with
 * gaps on both sides; every dtype, both forms */
static void test_alltoallv_delivers_each_pair(void) {
    const struct comm *c = &cur->comm;
    for (int gi = 0; gi < N_OF(groups); gi++) {
        enum comm_group grp = groups[gi];
        if (!in_group(grp)) continue;
        int r = comm_rank(c, grp), size = comm_size(c, grp);
        for (int di = 0; di < N_OF(all_dtypes); di++)
            for (int mode = 0; mode < 2; mode++) {
                enum comm_dtype dt = all_dtypes[di];
                int eb = comm_dtype_bytes(dt);
                unsigned char send[1024], recv[1024]; /* 4 ranks of 8 bytes: 26 each */
                int sc[8], sd[8], rc[8], rd[8], sat = 0, rat = 0;
                for (int j = 0; j < size; j++) {
                    sc[j] = j + r + 1;
                    sd[j] = sat;
                    sat += sc[j] + 1;
                    rc[j] = r + j + 1;
                    rd[j] = rat;
                    rat += rc[j] + 1;
                }
                for (int j = 0; j < size; j++) fill_pat(send + (long)sd[j] * eb, r, sc[j], eb);
                memset(recv, 0xEE, sizeof recv);
                struct comm_req req = COMM_REQ_NULL;
                if (mode == 0) comm_alltoallv(c, grp, send, sc, sd, recv, rc, rd, dt);
                else {
                    comm_alltoallv_start(c, grp, send, sc, sd, recv, rc, rd, dt, &req);
                    comm_wait(&req);
                }
                for (int j = 0; j < size; j++) {
                    CHECK_MSG(same_pat(recv + (long)rd[j] * eb, j, rc[j], eb),
                              "all-to-all group %s dtype %s from member %d",
                              comm_group_name(grp), comm_dtype_name(dt), j);
                    const unsigned char *gap = recv + (long)(rd[j] + rc[j]) * eb;
                    for (int k = 0; k < eb; k++) CHECK(gap[k] == 0xEE);
                }
            }
    }
}

static void test_bcast_from_every_root(void) {
    const struct comm *c = &cur->comm;
    for (int gi = 0; gi < N_OF(groups); gi++) {
        enum comm_group grp = groups[gi];
        if (!in_group(grp)) continue;
        int r = comm_rank(c, grp), size = comm_size(c, grp);
        for (int root = 0; root < size; root++)
            for (int di = 0; di < N_OF(all_dtypes); di++)
                for (int mode = 0; mode < 2; mode++) {
                    enum comm_dtype dt = all_dtypes[di];
                    int eb = comm_dtype_bytes(dt);
                    unsigned char buf[64];
                    memset(buf, 0, sizeof buf);
                    if (r == root) fill_pat(buf, root, 5, eb);
                    if (mode == 0) comm_bcast(c, grp, buf, 5, dt, root);
                    else {
                        struct comm_req req = COMM_REQ_NULL;
                        comm_bcast_start(c, grp, buf, 5, dt, root, &req);
                        comm_wait(&req);
                    }
                    CHECK_MSG(same_pat(buf, root, 5, eb), "group %s dtype %s root %d",
                              comm_group_name(grp), comm_dtype_name(dt), root);
                }
    }
}

/* A ring over the group: each member sends tags 3, 1, 2 (and two messages of tag 7) to
 * the next and receives tags 1, 2, 3 from the previous: matched by tag, and in send order
 * within one tag. Then a receive posted before its send. */
static void test_send_recv_match_by_tag_in_order(void) {
    const struct comm *c = &cur->comm;
    for (int gi = 0; gi < N_OF(groups); gi++) {
        enum comm_group grp = groups[gi];
        if (!in_group(grp)) continue;
        int r = comm_rank(c, grp), size = comm_size(c, grp);
        int next = (r + 1) % size, prev = (r + size - 1) % size;
        const int tags[5] = {3, 1, 2, 7, 7};
        double out[5][4], in[4];
        struct comm_req req[5];
        for (int k = 0; k < 5; k++) {
            for (int i = 0; i < 4; i++) out[k][i] = 1000.0 * r + 10.0 * k + i;
            comm_send_start(c, grp, out[k], 4, COMM_F64, next, tags[k], &req[k]);
        }
        const int want_k[5] = {1, 2, 0, 3, 4};  /* tags 1, 2, 3, then 7 twice in order */
        for (int q = 0; q < 5; q++) {
            int k = want_k[q];
            comm_recv(c, grp, in, 4, COMM_F64, prev, tags[k]);
            for (int i = 0; i < 4; i++)
                CHECK_MSG(in[i] == 1000.0 * prev + 10.0 * k + i,
                          "group %s tag %d element %d: %g", comm_group_name(grp), tags[k], i,
                          in[i]);
        }
        for (int k = 0; k < 5; k++) comm_wait(&req[k]);

        int32_t got[3] = {0, 0, 0}, mine[3] = {r, r + 1, r + 2};
        struct comm_req rr = COMM_REQ_NULL;
        comm_recv_start(c, grp, got, 3, COMM_I32, prev, 11, &rr);
        comm_barrier(c, grp);   /* the receive is posted everywhere before any send */
        if (size > 1) comm_send(c, grp, mine, 3, COMM_I32, next, 11);
        else {
            comm_send_start(c, grp, mine, 3, COMM_I32, next, 11, &req[0]);
            comm_wait(&req[0]);
        }
        comm_wait(&rr);
        CHECK(got[0] == prev && got[1] == prev + 1 && got[2] == prev + 2);
    }
}

static void test_gather_and_gatherv_reach_the_root(void) {
    const struct comm *c = &cur->comm;
    int r = comm_rank(c, COMM_WORLD), size = comm_size(c, COMM_WORLD), root = size - 1;
    int32_t mine[2] = {10 * r, 10 * r + 1}, all[16], counts[8], displs[8];
    comm_gather(c, COMM_WORLD, mine, 2, all, COMM_I32, root);
    if (r == root)
        for (int j = 0; j < size; j++) CHECK(all[2 * j] == 10 * j && all[2 * j + 1] == 10 * j + 1);
    for (int j = 0; j < size; j++) {
        counts[j] = j % 2 + 1;
        displs[j] = 2 * j;
    }
    memset(all, 0, sizeof all);
    comm_gatherv(c, COMM_WORLD, mine, r % 2 + 1, all, counts, displs, COMM_I32, root);
    if (r == root)
        for (int j = 0; j < size; j++) {
            CHECK(all[2 * j] == 10 * j);
            CHECK(all[2 * j + 1] == (j % 2 ? 10 * j + 1 : 0));
        }
}

static void test_16bit_reductions_are_refused_and_moves_allowed(void) {
    const struct comm *c = &cur->comm;
    const enum comm_op ops[] = {COMM_SUM, COMM_MAX, COMM_MIN};
    for (int oi = 0; oi < N_OF(ops); oi++) {
        CHECK(!comm_supports(c, ops[oi], COMM_BF16));
        CHECK(!comm_supports(c, ops[oi], COMM_F16));
        CHECK(!comm_supports(c, ops[oi], COMM_U8));
        for (int di = 0; di < N_OF(reduce_dtypes); di++)
            CHECK(comm_supports(c, ops[oi], reduce_dtypes[di]));
    }
    CHECK(comm_dtype_bytes(COMM_BF16) == 2 && comm_dtype_bytes(COMM_F16) == 2);
    CHECK(strcmp(comm_dtype_name(COMM_BF16), "bf16") == 0);
}

/* A duplicate is its own channel: a collective on it and one on the original, both in
 * flight, started in opposite orders on even and odd members, still match up. */
static void test_dup_is_a_separate_channel(void) {
    struct comm d;
    comm_dup(&d, &cur->comm, COMM_WORLD);
    int r = comm_rank(&d, COMM_WORLD), size = comm_size(&d, COMM_WORLD);
    CHECK(r == cur->world_rank && size == cur->world_size);
    CHECK(d.grp[COMM_TP].mpi == MPI_COMM_NULL);
    double a[3] = {r, r, r}, b[3] = {2.0 * r, 2.0 * r, 2.0 * r};
    struct comm_req ra = COMM_REQ_NULL, rb = COMM_REQ_NULL;
    if (r % 2 == 0) {
        comm_allreduce_start(&cur->comm, COMM_WORLD, a, 3, COMM_F64, COMM_SUM, &ra);
        comm_allreduce_start(&d, COMM_WORLD, b, 3, COMM_F64, COMM_MAX, &rb);
    } else {
        comm_allreduce_start(&d, COMM_WORLD, b, 3, COMM_F64, COMM_MAX, &rb);
        comm_allreduce_start(&cur->comm, COMM_WORLD, a, 3, COMM_F64, COMM_SUM, &ra);
    }
    comm_wait(&rb);
    comm_wait(&ra);
    for (int i = 0; i < 3; i++) {
        CHECK(a[i] == size * (size - 1) / 2.0);
        CHECK(b[i] == 2.0 * (size - 1));
    }
    comm_free(&d);
}

static void test_blocking_allreduce_of_nothing_and_null_request(void) {
    struct comm_req req = COMM_REQ_NULL;
    comm_wait(&req);            /* no-op */
    CHECK(comm_test(&req) == 1);
    comm_allreduce(&cur->comm, COMM_WORLD, NULL, 0, COMM_F32, COMM_SUM);
    CHECK(1);
}

/* ---------------------------------------------------------------------------------- */

static void run_all(void) {
    RUN(test_groups_match_grid_coordinates);
    RUN(test_rank_map_round_trips_and_matches_worked_example);
    RUN(test_allreduce_matches_hand_reduction);
    RUN(test_maxloc_and_minloc_name_the_lowest_holder);
    RUN(test_allgather_of_byte_records);
    RUN(test_context_on_a_bare_communicator);
    RUN(test_reduce_scatter_gives_each_member_its_sum_slice);
    RUN(test_allgather_and_allgatherv_place_every_member);
    RUN(test_alltoallv_delivers_each_pair);
    RUN(test_bcast_from_every_root);
    RUN(test_send_recv_match_by_tag_in_order);
    RUN(test_gather_and_gatherv_reach_the_root);
    RUN(test_16bit_reductions_are_refused_and_moves_allowed);
    RUN(test_dup_is_a_separate_channel);
    RUN(test_blocking_allreduce_of_nothing_and_null_request);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int world;
    MPI_Comm_rank(MPI_COMM_WORLD, &test_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    /* every dimension in turn carries all ranks; then dp over emulated 2-rank nodes
     * (the hierarchical all-reduce's node and cross-node groups) */
    struct { int dp, tp, pp; const char *rpn; } layouts[] = {
        {world, 1, 1, NULL}, {1, world, 1, NULL}, {1, 1, world, NULL}, {world, 1, 1, "2"}};
    for (int l = 0; l < N_OF(layouts); l++) {
        if (layouts[l].rpn) setenv("TRIDENT_RANKS_PER_NODE", layouts[l].rpn, 1);
        else unsetenv("TRIDENT_RANKS_PER_NODE");
        struct config cfg;
        config_defaults(&cfg);
        cfg.n_layer = 4; cfg.n_head = 12; cfg.n_embd = 48; cfg.vocab_size = 384;
        cfg.seq_len = 8; cfg.block_size = 8; cfg.micro_batch = 1;
        cfg.dp = layouts[l].dp; cfg.tp = layouts[l].tp; cfg.pp = layouts[l].pp;
        struct grid g;
        grid_init(&g, &cfg);
        cur = &g;
        if (test_rank == 0)
            printf("# %d ranks as dp=%d tp=%d pp=%d%s%s\n", world, g.dp, g.tp, g.pp,
                   layouts[l].rpn ? ", ranks per node " : "", layouts[l].rpn ? layouts[l].rpn : "");
        run_all();
        grid_free(&g);
    }
    /* a failure on any rank fails the run on rank 0 */
    MPI_Allreduce(MPI_IN_PLACE, &test_n_fail, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    int rc = test_rank == 0 ? test_summary() : test_n_fail != 0;
    MPI_Finalize();
    return rc;
}

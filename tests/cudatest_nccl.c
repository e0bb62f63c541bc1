/* cudatest_nccl.c — the NCCL backend of the comm layer (src/comm_nccl.c) on device
 * buffers against the MPI backend on the same host data, on 2 or more ranks with one GPU
 * each:
 *
 *     mpirun -np 2 bin-cuda/cudatest_nccl      (or -np 4 on a node of 4 GPUs; started
 *                                              alone it checks one rank's plumbing only)
 *
 * Every collective the trainer uses (all-reduce, reduce-scatter with equal and unequal
 * counts, all-gather(v), all-to-all(v), broadcast), the pipeline's send/receive in both
 * directions at once, bf16 sums, requests finished by comm_wait and by comm_test, a
 * duplicate's own communicators and host buffers on the NCCL context (they still go
 * through MPI). Each member's data is a function of (its rank, element index), the same
 * on both sides, so every NCCL result is compared with what MPI computes from the same
 * numbers. Where there is no GPU for every rank of a node, every case is skipped by name
 * with the reason.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "comm.h"
#include "common.h"
#include "config.h"
#include "grid.h"
#include "test.h"

/* why the cases cannot run here ("" when they can) */
static char no_run[256];
/* the layout under test: the grid (its comm is MPI's, the reference) and NCCL's */
static struct grid *cur;
static struct comm nc;
static cudaStream_t compute;

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define DEV_CHECK(call)                                                                 \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) {                                                        \
            fprintf(stderr, "[rank %d] %s:%d: %s: %s\n", test_rank, __FILE__, __LINE__, \
                    #call, cudaGetErrorString(e_));                                     \
            MPI_Abort(MPI_COMM_WORLD, 3);                                               \
        }                                                                               \
    } while (0)

static const enum comm_group coll_groups[] = {COMM_WORLD, COMM_TP, COMM_DP, COMM_PP,
                                              COMM_DP_NODE, COMM_DP_CROSS};

static int in_group(enum comm_group grp) { return cur->comm.grp[grp].mpi != MPI_COMM_NULL; }

/* member r's element i: integers (exact in every sum here) or, with frac, a spread of
 * signs and magnitudes */
static float val(int r, long i, int frac) {
    if (!frac) return (float)((r * 7 + i * 3) % 11 - 5);
    return (float)sin(0.37 * (double)(i + 1) + 1.3 * (double)r) * (float)(1 + (i % 7));
}

static uint16_t to_bf16(float f) {  /* round to nearest even (no NaNs here) */
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void *dev_from(const void *host, size_t n_bytes) {
    void *d = NULL;
    DEV_CHECK(cudaMalloc(&d, n_bytes ? n_bytes : 4));
    if (n_bytes) DEV_CHECK(cudaMemcpy(d, host, n_bytes, cudaMemcpyHostToDevice));
    return d;
}

/* the device buffer's bytes, once the compute stream (ordered after NCCL) is done */
static void to_host(void *host, const void *dev, size_t n_bytes) {
    DEV_CHECK(cudaStreamSynchronize(compute));
    if (n_bytes) DEV_CHECK(cudaMemcpy(host, dev, n_bytes, cudaMemcpyDeviceToHost));
}

static int same_bytes(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

/* ------------------------------------------------------------------------------------ */

/* f32 sum, max, min and i32 sum: NCCL's bits equal MPI's on integers (exact sums) */
static void test_allreduce_matches_mpi(void) {
    if (no_run[0]) SKIP("%s", no_run);
    const long n = 1000;
    float *h = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n),
          *got = malloc(sizeof(float) * n);
    const enum comm_op ops[] = {COMM_SUM, COMM_MAX, COMM_MIN};
    for (int gi = 0; gi < N_OF(coll_groups); gi++) {
        enum comm_group grp = coll_groups[gi];
        if (!in_group(grp)) continue;
        int me = comm_rank(&cur->comm, grp);
        for (int o = 0; o < N_OF(ops); o++) {
            for (long i = 0; i < n; i++) h[i] = ref[i] = val(me, i, 0);
            comm_allreduce(&cur->comm, grp, ref, n, COMM_F32, ops[o]);
            void *d = dev_from(h, sizeof(float) * n);
            comm_allreduce(&nc, grp, d, n, COMM_F32, ops[o]);
            to_host(got, d, sizeof(float) * n);
            CHECK_MSG(same_bytes(got, ref, sizeof(float) * n), "group %s op %d",
                      comm_group_name(grp), o);
            DEV_CHECK(cudaFree(d));
        }
        int32_t hi[64], refi[64], goti[64];
        for (int i = 0; i < 64; i++) hi[i] = refi[i] = (int32_t)val(me, i, 0) * 1000 + me;
        comm_allreduce(&cur->comm, grp, refi, 64, COMM_I32, COMM_SUM);
        void *d = dev_from(hi, sizeof hi);
        comm_allreduce(&nc, grp, d, 64, COMM_I32, COMM_SUM);
        to_host(goti, d, sizeof goti);
        CHECK(same_bytes(goti, refi, sizeof goti));
        DEV_CHECK(cudaFree(d));
    }
    free(h), free(ref), free(got);
}

/* bf16 sums, which MPI refuses: against MPI's fp32 sum of the same (bf16) values. Small
 * integers: every partial sum is exact in bf16, so the bits equal the fp32 sum's
 * rounding. Fractions: NCCL rounds to bf16 at each of its p - 1 hops, so each element is
 * within (p - 1) bf16 half-ulps of the magnitudes summed: |err| <= (p-1) * 2^-8 * sum|x|. */
static void test_bf16_sum_matches_fp32_reference(void) {
    if (no_run[0]) SKIP("%s", no_run);
    const long n = 4096;
    uint16_t *h = malloc(2 * n), *got = malloc(2 * n);
    float *ref = malloc(sizeof(float) * n), *mag = malloc(sizeof(float) * n);
    CHECK(comm_supports(&nc, COMM_SUM, COMM_BF16) && !comm_supports(&cur->comm, COMM_SUM,
                                                                     COMM_BF16));
    for (int frac = 0; frac <= 1; frac++)
        for (int gi = 0; gi < N_OF(coll_groups); gi++) {
            enum comm_group grp = coll_groups[gi];
            if (!in_group(grp)) continue;
            int me = comm_rank(&cur->comm, grp), p = comm_size(&cur->comm, grp);
            for (long i = 0; i < n; i++) {
                h[i] = to_bf16(val(me, i, frac));
                ref[i] = from_bf16(h[i]);
                mag[i] = fabsf(ref[i]);
            }
            comm_allreduce(&cur->comm, grp, ref, n, COMM_F32, COMM_SUM);
            comm_allreduce(&cur->comm, grp, mag, n, COMM_F32, COMM_SUM);
            void *d = dev_from(h, 2 * n);
            comm_allreduce(&nc, grp, d, n, COMM_BF16, COMM_SUM);
            to_host(got, d, 2 * n);
            int bad = 0;
            for (long i = 0; i < n; i++) {
                float g = from_bf16(got[i]);
                if (!frac) bad += got[i] != to_bf16(ref[i]);
                else bad += !(fabsf(g - ref[i]) <= (float)(p > 1 ? p - 1 : 1) * 0x1p-8f * mag[i]);
            }
            CHECK_MSG(bad == 0, "group %s (%s values): %d of %ld elements off", comm_group_name(grp),
                      frac ? "fractional" : "integer", bad, n);
            DEV_CHECK(cudaFree(d));
        }
    free(h), free(got), free(ref), free(mag);
}

/* equal counts (ncclReduceScatter) and unequal ones, one empty (grouped ncclReduce) */
static void test_reduce_scatter_with_equal_and_unequal_counts(void) {
    if (no_run[0]) SKIP("%s", no_run);
    for (int gi = 0; gi < N_OF(coll_groups); gi++) {
        enum comm_group grp = coll_groups[gi];
        if (!in_group(grp)) continue;
        int me = comm_rank(&cur->comm, grp), p = comm_size(&cur->comm, grp);
        for (int unequal = 0; unequal <= 1; unequal++) {
            int counts[64];
            long total = 0;
            for (int i = 0; i < p; i++) {
                counts[i] = unequal ? (i == 1 ? 0 : 37 + 11 * i) : 300;
                total += counts[i];
            }
            float *h = malloc(sizeof(float) * total), *ref = malloc(sizeof(float) * counts[me] + 4),
                  *got = malloc(sizeof(float) * counts[me] + 4);
            for (long i = 0; i < total; i++) h[i] = val(me, i, 0);
            comm_reduce_scatter(&cur->comm, grp, h, ref, counts, COMM_F32, COMM_SUM);
            void *ds = dev_from(h, sizeof(float) * total);
            void *dr = dev_from(NULL, sizeof(float) * counts[me]);
            comm_reduce_scatter(&nc, grp, ds, dr, counts, COMM_F32, COMM_SUM);
            to_host(got, dr, sizeof(float) * counts[me]);
            CHECK_MSG(same_bytes(got, ref, sizeof(float) * counts[me]), "group %s, %s counts",
                      comm_group_name(grp), unequal ? "unequal" : "equal");
            DEV_CHECK(cudaFree(ds));
            DEV_CHECK(cudaFree(dr));
            free(h), free(ref), free(got);
        }
    }
}

/* all-gather, and all-gather with counts: contiguous unequal slices and slices with gaps
 * (grouped broadcasts), in f32 and as raw bf16 */
static void test_allgather_and_allgatherv_match_mpi(void) {
    if (no_run[0]) SKIP("%s", no_run);
    for (int gi = 0; gi < N_OF(coll_groups); gi++) {
        enum comm_group grp = coll_groups[gi];
        if (!in_group(grp)) continue;
        int me = comm_rank(&cur->comm, grp), p = comm_size(&cur->comm, grp);
        for (int shape = 0; shape < 3; shape++) {
            int counts[64], displs[64];
            long total = 0;
            for (int i = 0; i < p; i++) {
                counts[i] = shape == 0 ? 129 : 20 + 13 * i;
                displs[i] = (int)total + (shape == 2 ? 5 : 0);  /* shape 2: a gap before each */
                total = displs[i] + counts[i];
            }
            for (int dti = 0; dti < 2; dti++) {
                enum comm_dtype dt = dti ? COMM_BF16 : COMM_F32;
                size_t eb = (size_t)comm_dtype_bytes(dt);
                char *h = malloc(eb * counts[me]), *ref = calloc(total, eb), *got = calloc(total, eb);
                for (long i = 0; i < counts[me]; i++) {
                    float v = val(me, i, 1);
                    if (dti) { uint16_t b = to_bf16(v); memcpy(h + 2 * i, &b, 2); }
                    else memcpy(h + 4 * i, &v, 4);
                }
                void *ds = dev_from(h, eb * counts[me]);
                void *dr = dev_from(ref, eb * total);  /* zeros: the gaps stay zero */
                if (shape == 0) {
                    comm_allgather(&cur->comm, grp, h, counts[me], ref, dt);
                    comm_allgather(&nc, grp, ds, counts[me], dr, dt);
                } else {
                    comm_allgatherv(&cur->comm, grp, h, counts[me], ref, counts, displs, dt);
                    comm_allgatherv(&nc, grp, ds, counts[me], dr, counts, displs, dt);
                }
                to_host(got, dr, eb * total);
                CHECK_MSG(same_bytes(got, ref, eb * total), "group %s shape %d dtype %s",
                          comm_group_name(grp), shape, comm_dtype_name(dt));
                DEV_CHECK(cudaFree(ds));
                DEV_CHECK(cudaFree(dr));
                free(h), free(ref), free(got);
            }
        }
    }
}

/* the bf16 gradient exchange's pattern (dp.c): slice j to member j, this member's slice
 * from everyone; and uneven counts with an empty pair */
static void test_alltoallv_matches_mpi(void) {
    if (no_run[0]) SKIP("%s", no_run);
    for (int gi = 0; gi < N_OF(coll_groups); gi++) {
        enum comm_group grp = coll_groups[gi];
        if (!in_group(grp)) continue;
        int me = comm_rank(&cur->comm, grp), p = comm_size(&cur->comm, grp);
        int sc[64], sd[64], rc[64], rd[64];
        long stot = 0, rtot = 0;
        for (int j = 0; j < p; j++) {
            /* what i sends j: (i + 2j) % 5 * 17 elements (0 for some pairs) */
            sc[j] = (me + 2 * j) % 5 * 17;
            rc[j] = (j + 2 * me) % 5 * 17;
            sd[j] = (int)stot;
            rd[j] = (int)rtot;
            stot += sc[j];
            rtot += rc[j];
        }
        float *h = malloc(sizeof(float) * (stot + 1)), *ref = calloc(rtot + 1, sizeof(float)),
              *got = calloc(rtot + 1, sizeof(float));
        for (long i = 0; i < stot; i++) h[i] = val(me, i, 1);
        comm_alltoallv(&cur->comm, grp, h, sc, sd, ref, rc, rd, COMM_F32);
        void *ds = dev_from(h, sizeof(float) * stot), *dr = dev_from(NULL, sizeof(float) * rtot);
        comm_alltoallv(&nc, grp, ds, sc, sd, dr, rc, rd, COMM_F32);
        to_host(got, dr, sizeof(float) * rtot);
        CHECK_MSG(same_bytes(got, ref, sizeof(float) * rtot), "group %s", comm_group_name(grp));
        DEV_CHECK(cudaFree(ds));
        DEV_CHECK(cudaFree(dr));
        free(h), free(ref), free(got);
    }
}

static void test_bcast_from_every_root(void) {
    if (no_run[0]) SKIP("%s", no_run);
    const long n = 777;
    int32_t h[777], got[777];
    for (int gi = 0; gi < N_OF(coll_groups); gi++) {
        enum comm_group grp = coll_groups[gi];
        if (!in_group(grp)) continue;
        int me = comm_rank(&cur->comm, grp), p = comm_size(&cur->comm, grp);
        for (int root = 0; root < p; root++) {
            for (long i = 0; i < n; i++) h[i] = (int32_t)(1000 * me + i);
            void *d = dev_from(h, sizeof h);
            comm_bcast(&nc, grp, d, n, COMM_I32, root);
            to_host(got, d, sizeof got);
            int bad = 0;
            for (long i = 0; i < n; i++) bad += got[i] != (int32_t)(1000 * root + i);
            CHECK_MSG(bad == 0, "group %s root %d: %d elements wrong", comm_group_name(grp),
                      root, bad);
            DEV_CHECK(cudaFree(d));
        }
    }
}

/* The pipeline's pattern, the one a single communicator would deadlock: every stage
 * starts, for several micro-batches, a send of "activations" up and of "gradients" down,
 * and receives both from its neighbours, before waiting for anything. Each message must
 * arrive intact and in order. */
static void test_send_recv_both_directions_at_once(void) {
    if (no_run[0]) SKIP("%s", no_run);
    if (!in_group(COMM_PP) || comm_size(&cur->comm, COMM_PP) < 2)
        SKIP("this layout has one pipeline stage (pp = 1)");
    /* 16 MB messages: more than NCCL's staging buffers (4 MB by default), so a send cannot
     * finish before its receive has been queued */
    const int n = 1 << 22, n_mb = 4;
    int me = comm_rank(&cur->comm, COMM_PP), p = comm_size(&cur->comm, COMM_PP);
    int up = me + 1 < p, down = me > 0;
    float *h = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
    void *sa[4], *sg[4], *ra[4], *rg[4];
    struct comm_req req[16];
    int nr = 0;
    for (int mb = 0; mb < n_mb; mb++) {
        for (int i = 0; i < n; i++) h[i] = (float)(me * 100000 + mb * 1000 + i % 1000);
        sa[mb] = dev_from(h, sizeof(float) * n);
        for (int i = 0; i < n; i++) h[i] = -(float)(me * 100000 + mb * 1000 + i % 1000);
        sg[mb] = dev_from(h, sizeof(float) * n);
        ra[mb] = dev_from(NULL, sizeof(float) * n);
        rg[mb] = dev_from(NULL, sizeof(float) * n);
    }
    for (int mb = 0; mb < n_mb; mb++) {
        if (up) comm_send_start(&nc, COMM_PP, sa[mb], n, COMM_F32, me + 1, 2 * mb, &req[nr++]);
        if (down) comm_send_start(&nc, COMM_PP, sg[mb], n, COMM_F32, me - 1, 2 * mb + 1, &req[nr++]);
        if (down) comm_recv_start(&nc, COMM_PP, ra[mb], n, COMM_F32, me - 1, 2 * mb, &req[nr++]);
        if (up) comm_recv_start(&nc, COMM_PP, rg[mb], n, COMM_F32, me + 1, 2 * mb + 1, &req[nr++]);
    }
    for (int i = 0; i < nr; i++) comm_wait(&req[i]);
    int bad = 0;
    for (int mb = 0; mb < n_mb; mb++) {
        if (down) {
            to_host(got, ra[mb], sizeof(float) * n);
            for (int i = 0; i < n; i++)
                bad += got[i] != (float)((me - 1) * 100000 + mb * 1000 + i % 1000);
        }
        if (up) {
            to_host(got, rg[mb], sizeof(float) * n);
            for (int i = 0; i < n; i++)
                bad += got[i] != -(float)((me + 1) * 100000 + mb * 1000 + i % 1000);
        }
        DEV_CHECK(cudaFree(sa[mb]));
        DEV_CHECK(cudaFree(sg[mb]));
        DEV_CHECK(cudaFree(ra[mb]));
        DEV_CHECK(cudaFree(rg[mb]));
    }
    CHECK_MSG(bad == 0, "stage %d: %d received elements wrong", me, bad);
    free(h), free(got);
}

/* a started all-reduce finished by polling comm_test; the compute stream's earlier work
 * (a memset queued just before) is what NCCL reduces */
static void test_request_completes_by_test_after_queued_work(void) {
    if (no_run[0]) SKIP("%s", no_run);
    const long n = 1 << 20;
    int p = comm_size(&cur->comm, COMM_WORLD);
    void *d = dev_from(NULL, sizeof(float) * n);
    /* 0x3f800000 = 1.0f: bytes 00 00 80 3f; a memset of 0 then a copy of ones, queued on
     * the compute stream without waiting */
    float *ones = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
    for (long i = 0; i < n; i++) ones[i] = 1.0f;
    DEV_CHECK(cudaMemsetAsync(d, 0, sizeof(float) * n, compute));
    DEV_CHECK(cudaMemcpyAsync(d, ones, sizeof(float) * n, cudaMemcpyHostToDevice, compute));
    struct comm_req r;
    comm_allreduce_start(&nc, COMM_WORLD, d, n, COMM_F32, COMM_SUM, &r);
    long polls = 0;
    while (!comm_test(&r)) polls++;
    CHECK(r.be == NULL);
    to_host(got, d, sizeof(float) * n);
    int bad = 0;
    for (long i = 0; i < n; i++) bad += got[i] != (float)p;
    CHECK_MSG(bad == 0, "%d of %ld elements are not %d (polled %ld times)", bad, n, p, polls);
    DEV_CHECK(cudaFree(d));
    free(ones), free(got);
}

/* host buffers on the NCCL context go through MPI (losses, norms); a duplicate has
 * communicators of its own and gives the same result */
static void test_host_buffers_and_a_duplicate(void) {
    if (no_run[0]) SKIP("%s", no_run);
    int p = comm_size(&cur->comm, COMM_WORLD), me = comm_rank(&cur->comm, COMM_WORLD);
    double loss = 1.5 + me;
    comm_allreduce(&nc, COMM_WORLD, &loss, 1, COMM_F64, COMM_SUM);
    CHECK_CLOSE(loss, 1.5 * p + (double)p * (p - 1) / 2, 0, 0);
    struct comm d;
    comm_dup(&d, &nc, COMM_DP);
    comm_set_stream(&d, compute);
    int pd = comm_size(&d, COMM_DP);
    float h[100], got[100];
    for (int i = 0; i < 100; i++) h[i] = (float)i;
    void *buf = dev_from(h, sizeof h);
    comm_allreduce(&d, COMM_DP, buf, 100, COMM_F32, COMM_SUM);
    to_host(got, buf, sizeof got);
    int bad = 0;
    for (int i = 0; i < 100; i++) bad += got[i] != (float)(i * pd);
    CHECK(bad == 0);
    DEV_CHECK(cudaFree(buf));
    comm_free(&d);
}

static void run_all(void) {
    RUN(test_allreduce_matches_mpi);
    RUN(test_bf16_sum_matches_fp32_reference);
    RUN(test_reduce_scatter_with_equal_and_unequal_counts);
    RUN(test_allgather_and_allgatherv_match_mpi);
    RUN(test_alltoallv_matches_mpi);
    RUN(test_bcast_from_every_root);
    RUN(test_send_recv_both_directions_at_once);
    RUN(test_request_completes_by_test_after_queued_work);
    RUN(test_host_buffers_and_a_duplicate);
}

/* Can the cases run: a GPU for every rank of this node? The verdict is the same on every
 * rank (the first reason any rank found). One rank runs every case but send/receive on
 * communicators of one member: the plumbing (streams, events, which buffers go where),
 * not yet the transfers. */
static void check_devices(int world) {
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    int local, local_n, n_dev = 0;
    MPI_Comm_rank(node, &local);
    MPI_Comm_size(node, &local_n);
    MPI_Comm_free(&node);
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    char why[256] = "";
    if (e != cudaSuccess || n_dev == 0)
        snprintf(why, sizeof why, "no CUDA device: %s",
                 e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
    else if (n_dev < local_n)
        snprintf(why, sizeof why, "%d ranks on this node but %d GPUs: NCCL needs a GPU per "
                 "rank", local_n, n_dev);
    else
        DEV_CHECK(cudaSetDevice(local));
    /* the first rank with a reason speaks for all */
    int has = why[0] != 0, first = has ? test_rank : world;
    MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first < world) {
        MPI_Bcast(why, sizeof why, MPI_CHAR, first, MPI_COMM_WORLD);
        snprintf(no_run, sizeof no_run, "%s", why);
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int world;
    MPI_Comm_rank(MPI_COMM_WORLD, &test_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    check_devices(world);
    if (no_run[0] || world > 64) {
        if (!no_run[0]) snprintf(no_run, sizeof no_run, "more than 64 ranks");
        run_all();
    } else {
        DEV_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
        /* every dimension in turn carries all ranks; then dp over emulated 1-rank nodes
         * (the hierarchical reduction's node and cross-node groups) */
        struct { int dp, tp, pp; const char *rpn; } layouts[] = {
            {world, 1, 1, NULL}, {1, world, 1, NULL}, {1, 1, world, NULL}, {world, 1, 1, "1"}};
        for (int l = 0; l < N_OF(layouts); l++) {
            if (layouts[l].rpn) setenv("TRIDENT_RANKS_PER_NODE", layouts[l].rpn, 1);
            else unsetenv("TRIDENT_RANKS_PER_NODE");
            struct config cfg;
            config_defaults(&cfg);
            cfg.n_layer = 8; cfg.n_head = 8; cfg.n_embd = 64; cfg.vocab_size = 512;
            cfg.seq_len = 8; cfg.block_size = 8; cfg.micro_batch = 1;
            cfg.dp = layouts[l].dp; cfg.tp = layouts[l].tp; cfg.pp = layouts[l].pp;
            struct grid g;
            grid_init(&g, &cfg);
            cur = &g;
            comm_init(&nc, &g, COMM_BACKEND_NCCL);
            comm_set_stream(&nc, compute);
            if (test_rank == 0)
                printf("# %d ranks as dp=%d tp=%d pp=%d%s%s\n", world, g.dp, g.tp, g.pp,
                       layouts[l].rpn ? ", ranks per node " : "",
                       layouts[l].rpn ? layouts[l].rpn : "");
            run_all();
            comm_free(&nc);
            grid_free(&g);
        }
        DEV_CHECK(cudaStreamDestroy(compute));
    }
    /* a failure on any rank fails the run on rank 0 */
    MPI_Allreduce(MPI_IN_PLACE, &test_n_fail, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    int rc = test_rank == 0 ? test_summary() : test_n_fail != 0;
    MPI_Finalize();
    return rc;
}

/* calibrate.c — `trident calibrate`: measure this machine into a hardware file for the
 * planner (src/plan.h). What it measures, and how, is written into the file beside each
 * number:
 *   peak_*      the FMA / bf16 dot-product probes (kernels_peak_flops*), all threads
 *   gemm_*      the kernel table's matmul on the bench model's shapes (1024 rows of 768 →
 *               3072 and 3072 → 768), forward and backward (input and weight gradients:
 *               twice the forward's FLOPs), best of many calls, per dtype
 *   kernels_bw_*  one bench-model layer's non-matmul kernels (two LayerNorms, attention,
 *               GELU, two residual adds; forward and backward) per dtype: the planner's
 *               byte count of them (plan_layer_kernel_bytes) over their best time. With
 *               16-bit operands the CPU backend widens them to fp32 copies: that is in it
 *   optim_*     the AdamW update (fp32 state: `adamw`, bf16 and int8: `adamw_state`) on
 *               4M parameters, parameters per second, best of calls
 *   mem_bandwidth  a STREAM-like triad a = b + s·c over 3 × 64 MB of doubles, all threads,
 *               best of 5 (3 arrays counted, as STREAM does)
 *   intra_*     under mpirun -np 2 (or more): a ping-pong between ranks 0 and 1 through the
 *               comm layer (8 bytes for the latency, 16 MB for the bandwidth, best of runs)
 * Per-device numbers divide the process's rate by its threads: a CPU node's "device" is a
 * core. Nothing between nodes can be measured on one machine: those lines are assumed
 * (10 Gb/s Ethernet) and say so.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "comm.h"
#include "common.h"
#include "config.h"
#include "kernels.h"
#include "memplan.h"
#include "plan.h"

/* FLOP/s of the matmul kernel of dtype dt on out[M][N] = a[M][K] · w[N][K]ᵀ */
static double gemm_rate(struct backend *be, enum kdtype dt, int M, int N, int K) {
    const struct kernels *k = backend_kernels(be);
    struct tensor a = tensor_2d(backend_alloc(be, kdtype_size(dt) * (size_t)M * K), dt, M, K);
    struct tensor w = tensor_2d(backend_alloc(be, kdtype_size(dt) * (size_t)N * K), dt, N, K);
    struct tensor o = tensor_2d(backend_alloc(be, kdtype_size(dt) * (size_t)M * N), dt, M, N);
    backend_memset(be, a.data, 0, tensor_bytes(a));
    backend_memset(be, w.data, 0, tensor_bytes(w));
    double best = 1e30, start = tr_now();
    for (int r = 0; r < 400 && (r < 8 || tr_now() - start < 0.5); r++) {
        double t0 = tr_now();
        k->matmul_fwd(be, o, a, w, TENSOR_NONE);
        backend_synchronize(be);
        if (r > 0) best = TR_MIN(best, tr_now() - t0);
    }
    backend_free_mem(be, a.data);
    backend_free_mem(be, w.data);
    backend_free_mem(be, o.data);
    return 2.0 * M * N * K / best;
}

/* FLOP/s of the matmul's backward on the same shape: dinp (dtype dt) and dw (fp32,
 * accumulated), 4·M·N·K FLOPs */
static double gemm_bwd_rate(struct backend *be, enum kdtype dt, int M, int N, int K) {
    const struct kernels *k = backend_kernels(be);
    const size_t e = kdtype_size(dt);
    struct tensor a = tensor_2d(backend_alloc(be, e * (size_t)M * K), dt, M, K);
    struct tensor w = tensor_2d(backend_alloc(be, e * (size_t)N * K), dt, N, K);
    struct tensor dout = tensor_2d(backend_alloc(be, e * (size_t)M * N), dt, M, N);
    struct tensor da = tensor_2d(backend_alloc(be, e * (size_t)M * K), dt, M, K);
    struct tensor dw = tensor_2d(backend_alloc(be, 4 * (size_t)N * K), KDT_F32, N, K);
    backend_memset(be, a.data, 0, tensor_bytes(a));
    backend_memset(be, w.data, 0, tensor_bytes(w));
    backend_memset(be, dout.data, 0, tensor_bytes(dout));
    backend_memset(be, dw.data, 0, tensor_bytes(dw));
    double best = 1e30, start = tr_now();
    for (int r = 0; r < 400 && (r < 8 || tr_now() - start < 0.5); r++) {
        double t0 = tr_now();
        k->matmul_bwd(be, da, dw, TENSOR_NONE, dout, a, w);
        backend_synchronize(be);
        if (r > 0) best = TR_MIN(best, tr_now() - t0);
    }
    backend_free_mem(be, a.data);
    backend_free_mem(be, w.data);
    backend_free_mem(be, dout.data);
    backend_free_mem(be, da.data);
    backend_free_mem(be, dw.data);
    return 4.0 * M * N * K / best;
}

/* the bench model's MLP shapes, both directions, forward and backward: time-weighted
 * like a training step (the backward does twice the forward's FLOPs) */
static double model_gemm(struct backend *be, enum kdtype dt) {
    double t = 0;   /* seconds per FLOP of the forward, summed over what a step runs */
    const int shapes[2][3] = {{1024, 3072, 768}, {1024, 768, 3072}};
    for (int i = 0; i < 2; i++) {
        const int M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
        t += 1.0 / gemm_rate(be, dt, M, N, K) + 2.0 / gemm_bwd_rate(be, dt, M, N, K);
    }
    return 6.0 / t;
}

/* Bytes per second of one bench-model layer's non-matmul kernels in dtype dt (B 4, T 256,
 * C 768, 12 heads): forward LayerNorm, attention, residual, LayerNorm, GELU, residual;
 * backward GELU, LayerNorm, attention, LayerNorm (the residuals' gradients pass through):
 * the planner's bytes of them (forward, and twice that backward) over the best time. */
static double layer_kernels_bw(struct backend *be, enum kdtype dt) {
    const struct kernels *k = backend_kernels(be);
    enum { B = 4, T = 256, C = 768, NH = 12, BT = B * T };
    const size_t e = kdtype_size(dt);
    struct tensor t[16];
    const int64_t shape[16][2] = {
        {BT, C}, {BT, C}, {1, BT}, {1, BT}, {1, C}, {1, C}, {BT, 3 * C}, {BT, C},
        {(int64_t)B * NH * T, T}, {BT, 4 * C}, {BT, 4 * C}, {BT, C}, {BT, 3 * C},
        {(int64_t)B * NH * T, T}, {1, C}, {1, C}};
    /* in, ln, mean, rstd, lnw, lnb, qkv, atty, att, fch, fch_gelu, xmid/dres, dqkv,
     * scratch (fp32), dw, db (fp32); mean and rstd fp32 */
    for (int i = 0; i < 16; i++) {
        enum kdtype ti = i == 2 || i == 3 || i >= 13 ? KDT_F32 : dt;
        size_t n = (size_t)(shape[i][0] * shape[i][1]);
        t[i] = tensor_2d(backend_alloc(be, kdtype_size(ti) * n), ti, shape[i][0], shape[i][1]);
        backend_memset(be, t[i].data, 0, tensor_bytes(t[i]));
    }
    struct tensor in = t[0], ln = t[1], mean = t[2], rstd = t[3], lnw = t[4], lnb = t[5],
                  qkv = t[6], atty = t[7], att = t[8], fch = t[9], fg = t[10], x = t[11],
                  dqkv = t[12], scratch = t[13], dw = t[14], db = t[15];
    double best = 1e30, start = tr_now();
    for (int r = 0; r < 200 && (r < 4 || tr_now() - start < 0.5); r++) {
        double t0 = tr_now();
        k->layernorm_fwd(be, ln, mean, rstd, in, lnw, lnb);
        k->attention_fwd(be, atty, att, qkv, B, NH);
        k->residual_fwd(be, x, x, in);
        k->layernorm_fwd(be, ln, mean, rstd, x, lnw, lnb);
        k->gelu_fwd(be, fg, fch);
        k->residual_fwd(be, x, x, in);
        k->gelu_bwd(be, fg, fch, fg);
        k->layernorm_bwd(be, x, dw, db, ln, in, lnw, mean, rstd);
        k->attention_bwd(be, dqkv, scratch, atty, qkv, att, B, NH);
        k->layernorm_bwd(be, x, dw, db, ln, in, lnw, mean, rstd);
        backend_synchronize(be);
        if (r > 0) best = TR_MIN(best, tr_now() - t0);
    }
    for (int i = 0; i < 16; i++) backend_free_mem(be, t[i].data);
    return 3.0 * BT * plan_layer_kernel_bytes(C, NH, T, 1, (double)e, 0) / best;
}

/* AdamW parameters per second on n parameters with state of form f (0 fp32, 1 bf16,
 * 2 int8), best of calls */
static double optim_rate(struct backend *be, int f) {
    const struct kernels *k = backend_kernels(be);
    const int64_t n = 4 << 20, nb = (n + KSTATE_BLOCK - 1) / KSTATE_BLOCK;
    struct tensor p = tensor_1d(backend_alloc(be, 4 * (size_t)n), KDT_F32, n);
    struct tensor g = tensor_1d(backend_alloc(be, 4 * (size_t)n), KDT_F32, n);
    struct kstate s[2];
    memset(s, 0, sizeof s);
    for (int i = 0; i < 2; i++) {
        if (f == 0) s[i].q = tensor_1d(backend_alloc(be, 4 * (size_t)n), KDT_F32, n);
        else if (f == 1) s[i].q = tensor_1d(backend_alloc(be, 2 * (size_t)n), KDT_BF16, n);
        else {
            s[i].q = tensor_1d(backend_alloc(be, (size_t)n), KDT_I32, n / 4);
            s[i].scale = tensor_1d(backend_alloc(be, 4 * (size_t)nb), KDT_F32, nb);
            backend_memset(be, s[i].scale.data, 0, tensor_bytes(s[i].scale));
        }
        backend_memset(be, s[i].q.data, 0, tensor_bytes(s[i].q));
    }
    /* small non-zero gradients: the int8 blocks are neither zero nor NaN (the usual path) */
    float *gh = tr_malloc(sizeof(float) * (size_t)n), *ph = tr_malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        gh[i] = 1e-3f * (float)((i * 7919) % 2001 - 1000) / 1000.0f;
        ph[i] = 0.01f;
    }
    backend_copy_h2d(be, g.data, gh, tensor_bytes(g));
    backend_copy_h2d(be, p.data, ph, tensor_bytes(p));
    tr_free(gh);
    tr_free(ph);
    double best = 1e30, start = tr_now();
    for (int r = 0; r < 200 && (r < 6 || tr_now() - start < 0.5); r++) {
        double t0 = tr_now();
        if (f == 0)
            k->adamw(be, p, g, s[0].q, s[1].q, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, r + 1);
        else
            k->adamw_state(be, p, g, s[0], s[1], 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, r + 1);
        backend_synchronize(be);
        if (r > 0) best = TR_MIN(best, tr_now() - t0);
    }
    backend_free_mem(be, p.data);
    backend_free_mem(be, g.data);
    for (int i = 0; i < 2; i++) {
        backend_free_mem(be, s[i].q.data);
        if (s[i].scale.data) backend_free_mem(be, s[i].scale.data);
    }
    return (double)n / best;
}

/* bytes/s of a = b + s·c over n doubles (3 arrays), best of 5 */
static double triad(void) {
    const size_t n = (64u << 20) / sizeof(double);
    double *a = tr_malloc(n * sizeof *a), *b = tr_malloc(n * sizeof *b), *c = tr_malloc(n * sizeof *c);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) { a[i] = 0; b[i] = 1; c[i] = 2; }
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = tr_now();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = b[i] + 3.0 * c[i];
        best = TR_MIN(best, tr_now() - t0);
    }
    volatile double sink = a[n / 2];
    (void)sink;
    tr_free(a); tr_free(b); tr_free(c);
    return 3.0 * n * sizeof(double) / best;
}

/* one-way time of an n-byte message between ranks 0 and 1 (half the best round trip) */
static double pingpong(const struct comm *c, long n, int reps) {
    int me = comm_rank(c, COMM_WORLD);
    unsigned char *buf = tr_malloc((size_t)n);
    memset(buf, 0, (size_t)n);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        comm_barrier(c, COMM_WORLD);
        double t0 = tr_now();
        if (me == 0) {
            comm_send(c, COMM_WORLD, buf, n, COMM_U8, 1, 7);
            comm_recv(c, COMM_WORLD, buf, n, COMM_U8, 1, 7);
        } else if (me == 1) {
            comm_recv(c, COMM_WORLD, buf, n, COMM_U8, 0, 7);
            comm_send(c, COMM_WORLD, buf, n, COMM_U8, 0, 7);
        }
        best = TR_MIN(best, (tr_now() - t0) / 2.0);
    }
    tr_free(buf);
    return best;
}

int calibrate_main(int argc, char **argv) {
    const char *out = "inputs/hardware/this-machine.hw";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
        else if (strncmp(argv[i], "--out=", 6) == 0) out = argv[i] + 6;
        else
            tr_fail(TR_EXIT_USAGE, "trident calibrate [--out FILE]",
                    "calibrate: unknown argument '%s'", argv[i]);
    }
    struct comm c;
    comm_init_on(&c, MPI_COMM_WORLD, COMM_BACKEND_MPI);
    int me = comm_rank(&c, COMM_WORLD), world = comm_size(&c, COMM_WORLD);

    /* the link first, while nothing else runs */
    double lat = 0, bw = 0;
    if (world >= 2) {
        lat = pingpong(&c, 8, 2000);
        bw = (16 << 20) / pingpong(&c, 16 << 20, 20);
    }
    comm_barrier(&c, COMM_WORLD);
    int rc = TR_EXIT_OK;
    if (me == 0) {
        int threads = kernels_threads(), cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
        const char *isa, *isa16;
        double p32 = kernels_peak_flops(&isa), pbf = kernels_peak_flops_matmul(KDT_BF16, &isa16);
        double pf16 = kernels_peak_flops_matmul(KDT_F16, NULL);
        char err[256];
        struct backend *be = backend_init(KDEV_CPU, 0, err, sizeof err);
        if (!be) tr_fail(TR_EXIT_FAILURE, "report this", "calibrate: no CPU backend: %s", err);
        double g32 = model_gemm(be, KDT_F32), gbf = model_gemm(be, KDT_BF16),
               gf16 = model_gemm(be, KDT_F16);
        double k32 = layer_kernels_bw(be, KDT_F32), kbf = layer_kernels_bw(be, KDT_BF16),
               kf16 = layer_kernels_bw(be, KDT_F16);
        double o32 = optim_rate(be, 0), obf = optim_rate(be, 1), oi8 = optim_rate(be, 2);
        backend_free(be);
        double mbw = triad();
        char src[64];
        int64_t limit = memplan_limit("auto", 0, src, sizeof src);
        if (limit <= 0 || limit == INT64_MAX) limit = (int64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s.tmp", out);
        FILE *f = fopen(tmp, "w");
        if (!f) tr_fail(TR_EXIT_USAGE, "give --out a writable path", "calibrate: cannot write '%s'", tmp);
        time_t now = time(NULL);
        char date[64];
        strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
        char host[128] = "";
        gethostname(host, sizeof host - 1);
        double d = threads;   /* per device (core): the process's rate over its threads */
        fprintf(f, "# this-machine.hw — written by `trident calibrate` on %s (%s), %d thread%s "
                "of %d cores, %d rank%s.\n# A CPU node's device is a core: per-device numbers "
                "are the process's rate / its threads.\nname = %s (calibrated %s)\n",
                host, date, threads, threads == 1 ? "" : "s", cores, world, world == 1 ? "" : "s",
                host, date);
        fprintf(f, "devices_per_node = %d\n", cores);
        fprintf(f, "# FMA-throughput probe (%s), all threads at once, / threads\n", isa);
        fprintf(f, "peak_fp32 = %.4g\n", p32 / d);
        fprintf(f, "# bf16: the matmul arithmetic's probe (%s); fp16: its probe (widened to fp32 "
                "without native fp16)\npeak_bf16 = %.4g\npeak_fp16 = %.4g\n", isa16, pbf / d, pf16 / d);
        fprintf(f, "# the kernel table's matmul on 1024×768→3072 and 1024×3072→768, forward and "
                "backward (time-weighted as in a step, best of calls over 0.5 s each), / threads\n");
        fprintf(f, "gemm_fp32 = %.4g\ngemm_bf16 = %.4g\ngemm_fp16 = %.4g\n", g32 / d, gbf / d, gf16 / d);
        fprintf(f, "# one layer's LayerNorms, attention, GELU and residuals (B 4, T 256, C 768, "
                "forward and backward): the planner's bytes of them / best time, / threads\n"
                "kernels_bw_fp32 = %.4g\nkernels_bw_bf16 = %.4g\nkernels_bw_fp16 = %.4g\n",
                k32 / d, kbf / d, kf16 / d);
        fprintf(f, "# the CPU backend runs 16-bit LayerNorm, attention, GELU, residual on fp32 "
                "copies, and keeps the attention probabilities\nkernels_16bit = widened\n"
                "attention = probs\n");
        fprintf(f, "# AdamW on 4M parameters (fp32 state: adamw; bf16, int8: adamw_state), "
                "parameters/s, best of calls, / threads\noptim_fp32 = %.4g\noptim_bf16 = %.4g\n"
                "optim_int8 = %.4g\n", o32 / d, obf / d, oi8 / d);
        fprintf(f, "# what `trident train` may use on this node (%s), / cores\n", src);
        fprintf(f, "mem_per_device = %.0fM\n", (double)limit / cores / (1024.0 * 1024.0));
        fprintf(f, "# STREAM-like triad a = b + s·c, 3 × 64 MB of doubles, %d threads, best of 5, / threads\n",
                threads);
        fprintf(f, "mem_bandwidth = %.4g\n", mbw / d);
        fprintf(f, "# MPI, BLAS, HDF5: measured at plan time by the same probe as the pre-flight\n"
                "runtime = measured\n");
        if (world >= 2)
            fprintf(f, "# ping-pong between ranks 0 and 1 through the comm layer (half the best "
                    "round trip): 8 bytes; 16 MB\nintra_latency = %.3g\nintra_bandwidth = %.4g\n",
                    lat, bw);
        else
            fprintf(f, "# NOT MEASURED (run `mpirun -np 2 trident calibrate` for these): assumed "
                    "shared-memory MPI, 1 us and the triad bandwidth / 4\nintra_latency = 1e-6\n"
                    "intra_bandwidth = %.4g\n", mbw / 4);
        fprintf(f, "# NOT MEASURED (one machine): assumed 10 Gb/s Ethernet, 20 us\n"
                "inter_latency = 2e-5\ninter_bandwidth = 1.25e9\n");
        int bad = fclose(f) != 0 || rename(tmp, out) != 0;
        if (bad) tr_fail(TR_EXIT_FAILURE, "check the directory", "calibrate: cannot write '%s'", out);
        printf("calibrate: wrote %s: peak fp32 %.0f GFLOP/s, bf16 %.0f per core; GEMM fp32 %.0f, "
               "bf16 %.0f, fp16 %.0f GFLOP/s per core; triad %.1f GB/s; layer kernels fp32 "
               "%.1f, bf16 %.1f GB/s; AdamW fp32 %.0f, bf16 %.0f, int8 %.0f M parameters/s "
               "(%d threads)", out, p32 / d / 1e9, pbf / d / 1e9, g32 / d / 1e9, gbf / d / 1e9,
               gf16 / d / 1e9, mbw / 1e9, k32 / 1e9, kbf / 1e9, o32 / 1e6, obf / 1e6, oi8 / 1e6,
               threads);
        if (world >= 2) printf("; ping-pong %.2f us, %.2f GB/s", lat * 1e6, bw / 1e9);
        printf("\n");
    }
    comm_barrier(&c, COMM_WORLD);
    comm_free(&c);
    return rc;
}

/* calibrate.c — `trident calibrate`: measure this machine into a hardware file for the
 * planner (src/plan.h). What it measures, and how, is written into the file beside each
 * number:
 *   peak_*      the FMA / bf16 dot-product probes (kernels_peak_flops*), all threads
 *   gemm_*      the kernel table's matmul on the bench model's shapes (1024 rows of 768 →
 *               3072 and 3072 → 768), best of many calls, per dtype
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

/* the bench model's MLP shapes, both directions: time-weighted like a training step */
static double model_gemm(struct backend *be, enum kdtype dt) {
    double up = gemm_rate(be, dt, 1024, 3072, 768), down = gemm_rate(be, dt, 1024, 768, 3072);
    return 2.0 / (1.0 / up + 1.0 / down);
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
        fprintf(f, "# the kernel table's matmul on 1024×768→3072 and 1024×3072→768 (harmonic "
                "mean, best of calls over 0.5 s each), / threads\n");
        fprintf(f, "gemm_fp32 = %.4g\ngemm_bf16 = %.4g\ngemm_fp16 = %.4g\n", g32 / d, gbf / d, gf16 / d);
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
               "bf16 %.0f, fp16 %.0f GFLOP/s per core; triad %.1f GB/s (%d threads)", out,
               p32 / d / 1e9, pbf / d / 1e9, g32 / d / 1e9, gbf / d / 1e9, gf16 / d / 1e9,
               mbw / 1e9, threads);
        if (world >= 2) printf("; ping-pong %.2f us, %.2f GB/s", lat * 1e6, bw / 1e9);
        printf("\n");
    }
    comm_barrier(&c, COMM_WORLD);
    comm_free(&c);
    return rc;
}

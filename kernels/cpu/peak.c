/* peak.c — the CPU's peak fp32 FLOP rate, measured: the reference for MFU.
 *
 * Every OpenMP thread runs, at the same time, independent chains of the widest vector
 * FMA the CPU has (AVX-512F, else AVX2 + FMA, else scalar fmaf): acc = acc * a + b.
 * One FMA is 2 FLOPs per lane. The chains are independent so that the FMA units never
 * wait for a result: an FMA has a latency of about 4 cycles and a core issues up to 2
 * per cycle, so at least 8 chains are needed; we run 16 (AVX-512: 32 registers) or 12
 * (AVX2: 16 registers). The compiler may not reorder the floating-point chains (no
 * -ffast-math), so the loop is what it says.
 *
 * Each ISA the CPU supports is measured and the fastest is kept (on some CPUs AVX-512
 * runs at half rate or lowers the clock, and AVX2 is then the real peak). The result is
 * the best of several repetitions of about 10 ms each, with every thread of the process
 * busy: what the cores this process owns can do at once, at the clock they actually hold
 * under full FMA load. The best, not the median: nothing can make FMA chains run faster
 * than the hardware, while another process on the same cores (a shared machine) slows
 * every repetition it overlaps, so the median of a busy machine's repetitions is its
 * load, not its peak (measured here: a median of 151 GFLOP/s on a 520 GFLOP/s machine
 * running three other jobs, below the BLAS's own sgemm rate).
 */
#include <math.h>
#include <omp.h>

#include "cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PEAK_X86 1
#else
#define PEAK_X86 0
#endif

/* Each kernel runs `iters` iterations of `chains` FMAs and returns a value that depends
 * on every chain (so nothing is optimised away). FLOPs = iters * chains * lanes * 2. */
enum { CH512 = 16, CH256 = 12, CHSCALAR = 8 };

#if PEAK_X86
__attribute__((target("avx512f"), noinline)) static float fma_avx512(long iters, float a,
                                                                      float b) {
    __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    __m512 c[CH512];
    for (int i = 0; i < CH512; i++) c[i] = _mm512_set1_ps((float)i * 0.01f);
    for (long n = 0; n < iters; n++) {
        c[0] = _mm512_fmadd_ps(c[0], va, vb);
        c[1] = _mm512_fmadd_ps(c[1], va, vb);
        c[2] = _mm512_fmadd_ps(c[2], va, vb);
        c[3] = _mm512_fmadd_ps(c[3], va, vb);
        c[4] = _mm512_fmadd_ps(c[4], va, vb);
        c[5] = _mm512_fmadd_ps(c[5], va, vb);
        c[6] = _mm512_fmadd_ps(c[6], va, vb);
        c[7] = _mm512_fmadd_ps(c[7], va, vb);
        c[8] = _mm512_fmadd_ps(c[8], va, vb);
        c[9] = _mm512_fmadd_ps(c[9], va, vb);
        c[10] = _mm512_fmadd_ps(c[10], va, vb);
        c[11] = _mm512_fmadd_ps(c[11], va, vb);
        c[12] = _mm512_fmadd_ps(c[12], va, vb);
        c[13] = _mm512_fmadd_ps(c[13], va, vb);
        c[14] = _mm512_fmadd_ps(c[14], va, vb);
        c[15] = _mm512_fmadd_ps(c[15], va, vb);
    }
    __m512 s = c[0];
    for (int i = 1; i < CH512; i++) s = _mm512_add_ps(s, c[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"), noinline)) static float fma_avx2(long iters, float a,
                                                                     float b) {
    __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    __m256 c[CH256];
    for (int i = 0; i < CH256; i++) c[i] = _mm256_set1_ps((float)i * 0.01f);
    for (long n = 0; n < iters; n++) {
        c[0] = _mm256_fmadd_ps(c[0], va, vb);
        c[1] = _mm256_fmadd_ps(c[1], va, vb);
        c[2] = _mm256_fmadd_ps(c[2], va, vb);
        c[3] = _mm256_fmadd_ps(c[3], va, vb);
        c[4] = _mm256_fmadd_ps(c[4], va, vb);
        c[5] = _mm256_fmadd_ps(c[5], va, vb);
        c[6] = _mm256_fmadd_ps(c[6], va, vb);
        c[7] = _mm256_fmadd_ps(c[7], va, vb);
        c[8] = _mm256_fmadd_ps(c[8], va, vb);
        c[9] = _mm256_fmadd_ps(c[9], va, vb);
        c[10] = _mm256_fmadd_ps(c[10], va, vb);
        c[11] = _mm256_fmadd_ps(c[11], va, vb);
    }
    __m256 s = c[0];
    for (int i = 1; i < CH256; i++) s = _mm256_add_ps(s, c[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

/* bf16 dot products (AVX512_BF16): vdpbf16ps adds the two products of each pair of bf16
 * lanes into an fp32 lane, 2 multiplies + 2 adds on 16 lanes: 64 FLOPs an instruction,
 * what the native bf16 GEMM (matmul16.c) runs on. a, b become bf16 pairs of small values
 * (the accumulators grow by about 2e-6 an iteration: no overflow, no subnormals). */
__attribute__((target("avx512f,avx512bf16"), noinline)) static float dpbf16_avx512(long iters,
                                                                                  float a,
                                                                                  float b) {
    __m512bh va = _mm512_cvtne2ps_pbh(_mm512_set1_ps(a * 0.001f), _mm512_set1_ps(a * 0.001f));
    __m512bh vb = _mm512_cvtne2ps_pbh(_mm512_set1_ps(b), _mm512_set1_ps(b));
    __m512 c[CH512];
    for (int i = 0; i < CH512; i++) c[i] = _mm512_set1_ps((float)i * 0.01f);
    for (long n = 0; n < iters; n++)
        for (int i = 0; i < CH512; i++) c[i] = _mm512_dpbf16_ps(c[i], va, vb);
    __m512 s = c[0];
    for (int i = 1; i < CH512; i++) s = _mm512_add_ps(s, c[i]);
    return _mm512_reduce_add_ps(s);
}
#endif

__attribute__((noinline)) static float fma_scalar(long iters, float a, float b) {
    float c[CHSCALAR];
    for (int i = 0; i < CHSCALAR; i++) c[i] = (float)i * 0.01f;
    for (long n = 0; n < iters; n++)
        for (int i = 0; i < CHSCALAR; i++) c[i] = fmaf(c[i], a, b);
    float s = 0;
    for (int i = 0; i < CHSCALAR; i++) s += c[i];
    return s;
}

struct isa {
    const char *name;
    float (*fn)(long, float, float);
    int flops_per_iter; /* chains * lanes * 2 */
};

static double now_s(void) { return omp_get_wtime(); }

static volatile float g_sink; /* keeps the results alive */

/* FLOP/s of every thread running fn for `iters` iterations at once. */
static double run_all_threads(const struct isa *is, long iters) {
    double t0 = 0, t1 = 0;
    float sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
        /* a, b chosen so that acc converges to b / (1 - a) = 1: no overflow, no
         * denormals, whatever the iteration count */
        float a = 0.999f, b = 0.001f;
#pragma omp barrier
#pragma omp master
        t0 = now_s();
        sink += is->fn(iters, a, b);
#pragma omp barrier
#pragma omp master
        t1 = now_s();
    }
    g_sink = sink;
    int nt = omp_get_max_threads();
    return (double)nt * (double)iters * is->flops_per_iter / (t1 - t0);
}

/* Best FLOP/s of `reps` runs of about 10 ms each. */
static double probe_isa(const struct isa *is, int reps) {
    /* calibrate on this thread alone (no barrier, whose wake-up can take a scheduler
     * time slice on a busy machine): double the work until the fastest of 3 runs takes
     * 5 ms, then run twice that. The fastest of 3, because a run preempted once would
     * otherwise stop the doubling at a size far too small to time. */
    long iters = 1 << 10;
    for (;;) {
        double best = 1e30;
        for (int i = 0; i < 3; i++) {
            double t0 = now_s();
            g_sink = is->fn(iters, 0.999f, 0.001f);
            double dt = now_s() - t0;
            if (dt < best) best = dt;
        }
        if (best >= 0.005 || iters > (1L << 40)) break;
        iters *= 2;
    }
    iters *= 2;
    run_all_threads(is, iters / 4); /* wakes every thread and its core's clock */
    double best = 0;
    for (int i = 0; i < (reps < 1 ? 1 : reps); i++) {
        double r = run_all_threads(is, iters);
        if (r > best) best = r;
    }
    return best;
}

double cpu_peak_flops(int reps, const char **isa_name) {
    struct isa cand[3];
    int n = 0;
#if PEAK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        cand[n++] = (struct isa){"avx512", fma_avx512, CH512 * 16 * 2};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        cand[n++] = (struct isa){"avx2", fma_avx2, CH256 * 8 * 2};
#endif
    if (n == 0) cand[n++] = (struct isa){"scalar", fma_scalar, CHSCALAR * 2};
    double best = 0;
    const char *best_name = cand[0].name;
    for (int i = 0; i < n; i++) {
        double f = probe_isa(&cand[i], reps);
        if (f > best) {
            best = f;
            best_name = cand[i].name;
        }
    }
    if (isa_name) *isa_name = best_name;
    return best;
}

double cpu_peak_flops_bf16(int reps, const char **isa_name) {
#if PEAK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512bf16")) {
        struct isa is = {"avx512_bf16", dpbf16_avx512, CH512 * 16 * 4};
        if (isa_name) *isa_name = is.name;
        return probe_isa(&is, reps);
    }
#endif
    return cpu_peak_flops(reps, isa_name);  /* no bf16 arithmetic: bf16 runs at fp32's */
}

double kernels_peak_flops(const char **isa_name) { return cpu_peak_flops(7, isa_name); }

double kernels_peak_flops_matmul(enum kdtype dt, const char **isa_name) {
    if (kernels_native_matmul(dt, NULL)) return cpu_peak_flops_bf16(7, isa_name);
    return cpu_peak_flops(7, isa_name);
}

/* test_peak.c — the reference for MFU: the FMA-throughput probe, the efficiency
 * arithmetic (MFU vs the hardware's peak, BLAS efficiency vs sgemm) and the FLOP count.
 * Nothing here is timed against a target: the only timing check compares the probe with
 * the BLAS's best on a large GEMM, which it must exceed by construction. */
#include <cblas.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <unistd.h>

#include "blas_core.h"

#include "common.h"
#include "config.h"
#include "cpu.h"
#include "kernels.h"
#include "model.h"
#include "test.h"

static void test_probe_returns_a_finite_positive_rate_and_its_isa(void) {
    const char *isa = NULL;
    double f = kernels_peak_flops(&isa);
    CHECK_MSG(isfinite(f) && f > 0, "peak %g FLOP/s", f);
    CHECK(isa != NULL);
    /* above 0.1 GFLOP/s (any CPU of this century), below 10 TFLOP/s per thread (far
     * beyond any CPU core): a wrong FLOP count or timer lands outside */
    int nt = kernels_threads();
    CHECK_MSG(f >= 1e8 && f <= 1e13 * nt, "peak %g FLOP/s on %d threads", f, nt);
    printf("  peak %.1f GFLOP/s (%s, %d threads)\n", f / 1e9, isa ? isa : "?", nt);
}

/* The peak is what the FMA units can do; no sgemm can beat it. Both are measured in
 * turns, several times, and each keeps its best, so a busy moment on a shared machine cannot make the probe alone look slow.
 * Margin 0.9: it fails when the probe misses a vector width (AVX2 instead of AVX-512 is
 * 0.5), a thread, or FMA ports (too few chains), while sgemm reaches 85-95 % of peak. */
static void test_probe_exceeds_sgemm_on_a_large_gemm(void) {
    const int n = 1024;
    float *A = tr_malloc(sizeof(float) * n * n), *B = tr_malloc(sizeof(float) * n * n);
    float *C = tr_malloc(sizeof(float) * n * n);
    for (long i = 0; i < (long)n * n; i++) {
        A[i] = (float)(i % 7) * 0.01f;
        B[i] = (float)(i % 5) * 0.01f;
    }
    double best_gemm = 1e30, peak = 0;
    for (int round = 0; round < 5; round++) {
        for (int r = 0; r < 4; r++) {
            double t0 = tr_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, A, n, B, n,
                        0.0f, C, n);
            double dt = tr_now() - t0;
            if (dt < best_gemm) best_gemm = dt;
        }
        double p = cpu_peak_flops(3, NULL);
        if (p > peak) peak = p;
    }
    double sgemm = 2.0 * n * n * n / best_gemm;
    printf("  peak %.1f GFLOP/s, sgemm %dx%dx%d %.1f GFLOP/s (BLAS core '%s'): ratio %.2f\n",
           peak / 1e9, n, n, n, sgemm / 1e9, kernels_blas_corename(), peak / sgemm);
    CHECK_MSG(peak >= 0.9 * sgemm, "probe %.1f GFLOP/s below sgemm %.1f GFLOP/s", peak / 1e9,
              sgemm / 1e9);
    tr_free(A);
    tr_free(B);
    tr_free(C);
}

/* The bf16 dot-product probe (the MFU reference of a native bf16 GEMM) beats the native
 * bf16 GEMM itself, measured in turns like the fp32 one; skipped without one. */
static void test_bf16_probe_exceeds_the_native_bf16_gemm(void) {
    const char *impl, *isa = NULL;
    if (!kernels_native_matmul(KDT_BF16, &impl)) SKIP("no native bf16 GEMM here: %s", impl);
    const int n = 1024;
    uint16_t *A = tr_malloc(2 * (size_t)n * n), *B = tr_malloc(2 * (size_t)n * n);
    float *C = tr_malloc(sizeof(float) * (size_t)n * n);
    for (long i = 0; i < (long)n * n; i++) {
        A[i] = 0x3c00 + (uint16_t)(i % 97);  /* bf16 values near 0.0078 */
        B[i] = 0x3c00 + (uint16_t)(i % 89);
    }
    double gemm = 0, peak = 0, peak32 = kernels_peak_flops(NULL);
    for (int round = 0; round < 3; round++) {
        for (int r = 0; r < 3; r++) {
            double t0 = tr_now();
            CHECK(cpu_gemm_bf16(0, 1, n, n, n, A, n, B, n, NULL, 0, 0, C, 0, n) == 0);
            double dt = tr_now() - t0;
            if (2.0 * n * n * n / dt > gemm) gemm = 2.0 * n * n * n / dt;
        }
        double p = kernels_peak_flops_matmul(KDT_BF16, &isa);
        if (p > peak) peak = p;
    }
    printf("  bf16 peak %.1f GFLOP/s (%s), native bf16 GEMM %.1f, fp32 peak %.1f\n", peak / 1e9,
           isa ? isa : "?", gemm / 1e9, peak32 / 1e9);
    CHECK_MSG(peak >= 0.9 * gemm, "bf16 peak %.1f GFLOP/s below the bf16 GEMM's %.1f",
              peak / 1e9, gemm / 1e9);
    tr_free(A);
    tr_free(B);
    tr_free(C);
}

static void test_mfu_is_against_the_peak_and_blas_eff_against_sgemm(void) {
    /* 1.2e12 FLOPs per step in 2 s on 2 ranks: 300 GFLOP/s per rank */
    struct model_eff e = model_efficiency(1.2e12, 2.0, 2, 500.0, 400.0);
    CHECK_CLOSE(e.gflops, 300.0, 1e-12, 0);
    CHECK_CLOSE(e.mfu, 300.0 / 500.0, 1e-12, 0);
    CHECK_CLOSE(e.blas_eff, 300.0 / 400.0, 1e-12, 0);
    /* a BLAS 5x slower (OpenBLAS' Prescott kernels): the model and the sgemm probe both
     * slow down, the FMA peak does not. MFU shows it, the BLAS efficiency does not. */
    struct model_eff slow = model_efficiency(1.2e12, 10.0, 2, 500.0, 80.0);
    CHECK_CLOSE(slow.mfu, e.mfu / 5, 1e-12, 0);
    CHECK_CLOSE(slow.blas_eff, e.blas_eff, 1e-12, 0);
    /* no reference: NaN, never a division by zero */
    struct model_eff none = model_efficiency(1.2e12, 2.0, 2, 0.0, 0.0);
    CHECK(isnan(none.mfu) && isnan(none.blas_eff));
    CHECK_CLOSE(none.gflops, 300.0, 1e-12, 0);
}

/* 6 per matmul parameter + causal attention 6·L·C·(T+1), for GPT-2 124M at T = 1024. */
static void test_flops_per_token_is_6n_plus_causal_attention(void) {
    struct config c;
    config_defaults(&c);
    config_set(&c, "n_layer", "12", "test");
    config_set(&c, "n_head", "12", "test");
    config_set(&c, "n_embd", "768", "test");
    config_set(&c, "vocab_size", "50257", "test");
    config_set(&c, "block_size", "1024", "test");
    config_set(&c, "seq_len", "1024", "test");
    double L = 12, C = 768, T = 1024, Vp = 50304;
    CHECK_CLOSE(config_padded_vocab(&c), Vp, 0, 0);
    double want = 6.0 * (12.0 * L * C * C + Vp * C) + 6.0 * L * C * (T + 1);
    CHECK_CLOSE(model_flops_per_token(&c), want, 1e-12, 0);
    /* attention grows by 6·L·C per token for each extra position of context: half of
     * PaLM's 12·L·C·T, which counts the masked upper triangle too */
    config_set(&c, "seq_len", "512", "test");
    CHECK_CLOSE(model_flops_per_token(&c), want - 6.0 * L * C * 512, 1e-12, 0);
}

int main(int argc, char **argv) {
    /* the fastest OpenBLAS kernels this CPU runs, whatever OPENBLAS_CORETYPE says: the
     * closer sgemm gets to the peak, the sharper the check that the probe exceeds it */
    int avx512 = 0, avx2 = 0;
    blas_cpu_flags(&avx512, &avx2);
    const char *better = blas_better_coretype(kernels_blas_corename(), avx512, avx2);
    if (better && !getenv("TRIDENT_TEST_PEAK_REEXEC")) {
        setenv("OPENBLAS_CORETYPE", better, 1);
        setenv("TRIDENT_TEST_PEAK_REEXEC", "1", 1);
        execv("/proc/self/exe", argv);
    }
    MPI_Init(&argc, &argv);
    RUN(test_probe_returns_a_finite_positive_rate_and_its_isa);
    RUN(test_probe_exceeds_sgemm_on_a_large_gemm);
    RUN(test_bf16_probe_exceeds_the_native_bf16_gemm);
    RUN(test_mfu_is_against_the_peak_and_blas_eff_against_sgemm);
    RUN(test_flops_per_token_is_6n_plus_causal_attention);
    int rc = test_summary();
    MPI_Finalize();
    return rc;
}

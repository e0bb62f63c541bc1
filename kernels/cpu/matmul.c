/* matmul.c — linear layers, out = inp @ W^T + bias, on OpenBLAS sgemm (bf16 GEMMs on
 * AVX512_BF16: matmul16.c). */
#include <cblas.h>
#include <string.h>

#include "common.h"
#include "convert.h"
#include "cpu.h"

/* Columns per dbias block: 64 floats = four cache lines, and a whole AVX-512 multiple. */
enum { MATMUL_COL_BLOCK = 64 };

void cpu_matmul_fwd(float *out, const float *inp, const float *w, const float *bias,
                    int M, int K, int N)
{
    /* The bias is fused for free: OpenBLAS zeroes C in a separate pass when beta == 0
     * but skips that pass when beta == 1, so writing the bias instead costs nothing. */
    float beta = 0.0f;
    if (bias) {
        beta = 1.0f;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < M; i++) memcpy(out + (size_t)i * N, bias, (size_t)N * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, inp, K, w, K,
                beta, out, N);
}

/* dbias[j] += sum_i dout[i][j], dout fp32 or (bf16 = 1) bf16, each value widened exactly
 * as it is read. Split by column blocks, each summed over rows in order, so the result is
 * the same for any thread count, and a bf16 dout gives the bits of widening it first; the
 * inner loop runs along a row. Inlined with a constant bf16, so each caller gets its own
 * vectorised loop. */
static inline __attribute__((always_inline)) void dbias_blocks(float *dbias, const void *dout,
                                                               int bf16, int M, int N)
{
    int n_blocks = (N + MATMUL_COL_BLOCK - 1) / MATMUL_COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < n_blocks; blk++) {
        int j0 = blk * MATMUL_COL_BLOCK;
        int nj = TR_MIN(MATMUL_COL_BLOCK, N - j0);
        float acc[MATMUL_COL_BLOCK] = { 0 };
        for (int i = 0; i < M; i++) {
            size_t at = (size_t)i * N + j0;
            if (bf16) {
                const uint16_t *row = (const uint16_t *)dout + at;
#pragma omp simd
                for (int j = 0; j < nj; j++) acc[j] += cvt_bf16_to_f32_1(row[j]);
            } else {
                const float *row = (const float *)dout + at;
#pragma omp simd
                for (int j = 0; j < nj; j++) acc[j] += row[j];
            }
        }
        for (int j = 0; j < nj; j++) dbias[j0 + j] += acc[j];
    }
}

static void matmul_dbias(float *dbias, const float *dout, int M, int N)
{
    dbias_blocks(dbias, dout, 0, M, N);
}

void cpu_matmul_dbias_bf16(float *dbias, const uint16_t *dout, int M, int N)
{
    dbias_blocks(dbias, dout, 1, M, N);
}

void cpu_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout,
                    const float *inp, const float *w, int M, int K, int N)
{
    /* dinp[M][K] = dout[M][N] @ w[N][K]: an activation gradient, overwritten (beta 0) */
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, w,
                    K, 0.0f, dinp, K);
    /* dw[N][K] += dout^T @ inp: a parameter gradient, accumulated (beta 1) */
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, inp,
                    K, 1.0f, dw, K);
    if (dbias) matmul_dbias(dbias, dout, M, N);
}

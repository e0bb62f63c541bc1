/* layernorm.c — LayerNorm over the last dimension, eps 1e-5. */
#include <math.h>

#include "common.h"
#include "cpu.h"

enum { LN_COL_BLOCK = 64 };

void cpu_layernorm_fwd(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *restrict x = inp + (size_t)n * C;
        float *restrict o = out + (size_t)n * C;
        /* Two passes over one row, which sits in L1: the centred variance avoids the
         * cancellation of E[x^2] - E[x]^2. simd reductions keep a fixed order. */
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < C; i++) s += x[i];
        float m = s / C;
        float v = 0.0f;
#pragma omp simd reduction(+ : v)
        for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
        float rs = 1.0f / sqrtf(v / C + 1e-5f);
#pragma omp simd
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * rs * w[i] + b[i];
        mean[n] = m;
        rstd[n] = rs;
    }
}

void cpu_layernorm_bwd(float *dinp, float *dw, float *db, const float *dout,
                       const float *inp, const float *w, const float *mean,
                       const float *rstd, int N, int C)
{
    int n_blocks = (C + LN_COL_BLOCK - 1) / LN_COL_BLOCK;
#pragma omp parallel
    {
        /* dinp: each row needs only its own two reductions, so rows split freely. */
#pragma omp for schedule(static) nowait
        for (int n = 0; n < N; n++) {
            const float *restrict x = inp + (size_t)n * C;
            const float *restrict g = dout + (size_t)n * C;
            float *restrict dx = dinp + (size_t)n * C;
            float m = mean[n], rs = rstd[n];
            float s_dn = 0.0f, s_dnn = 0.0f;
#pragma omp simd reduction(+ : s_dn, s_dnn)
            for (int i = 0; i < C; i++) {
                float dn = w[i] * g[i];
                s_dn += dn;
                s_dnn += dn * (x[i] - m) * rs;
            }
            s_dn /= C;
            s_dnn /= C;
#pragma omp simd
            for (int i = 0; i < C; i++)
                dx[i] += (w[i] * g[i] - s_dn - (x[i] - m) * rs * s_dnn) * rs;
        }
        /* dw, db sum over all rows: split by column block instead, each block summed
         * in row order (deterministic for any thread count, no atomics). */
#pragma omp for schedule(static)
        for (int blk = 0; blk < n_blocks; blk++) {
            int c0 = blk * LN_COL_BLOCK;
            int nc = TR_MIN(LN_COL_BLOCK, C - c0);
            float aw[LN_COL_BLOCK] = { 0 }, ab[LN_COL_BLOCK] = { 0 };
            for (int n = 0; n < N; n++) {
                const float *x = inp + (size_t)n * C + c0;
                const float *g = dout + (size_t)n * C + c0;
                float m = mean[n], rs = rstd[n];
#pragma omp simd
                for (int i = 0; i < nc; i++) {
                    aw[i] += (x[i] - m) * rs * g[i];
                    ab[i] += g[i];
                }
            }
            for (int i = 0; i < nc; i++) {
                dw[c0 + i] += aw[i];
                db[c0 + i] += ab[i];
            }
        }
    }
}

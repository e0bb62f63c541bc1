/* attention.c — causal multi-head self-attention as per-head sgemm calls.
 *
 * q, k, v of head h are read in place out of the qkv rows (leading dimension 3*Cq)
 * and the gradients are written in place into dqkv, so nothing is copied. The B*NH
 * (batch, head) pairs are split over OpenMP threads; OpenBLAS (OpenMP build) runs an
 * sgemm called inside a parallel region on the calling thread, which is what we want
 * for these small products. Each pair owns its own columns of out/dqkv and its own
 * T*T block of att/scratch, so threads never write the same memory.
 *
 * Causality is exploited in blocks of ATT_BLOCK rows: rows r0..r1-1 of the scores only
 * need keys 0..r1-1, so the products skip most of the masked upper triangle (5/8 of
 * the square's FLOPs remain at T = 4 * ATT_BLOCK) while each call stays a GEMM big
 * enough for BLAS to run at speed.
 */
#include <math.h>
#include <cblas.h>

#include "cpu.h"
#include "vmath.h"

enum { ATT_BLOCK = 64 };

/* Row t of the causal softmax in place: columns 0..t hold scores, columns > t get 0. */
static void attention_softmax_row(float *restrict row, int t, int T)
{
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j <= t; j++) mx = row[j] > mx ? row[j] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j <= t; j++) {
        float e = vm_expf(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j <= t; j++) row[j] *= inv;
    for (int j = t + 1; j < T; j++) row[j] = 0.0f;
}

void cpu_attention_fwd(float *out, float *att, const float *qkv, int B, int T, int Cq,
                       int NH)
{
    int hs = Cq / NH;
    int ld = 3 * Cq;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        const float *q = qkv + (size_t)b * T * ld + h * hs;
        const float *k = q + Cq;
        const float *v = q + 2 * Cq;
        float *p = att + (size_t)bh * T * T;
        for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
            int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, rb = r1 - r0;
            /* S[r0:r1, 0:r1] = scale * Q[r0:r1] K[0:r1]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rb, r1, hs, scale,
                        q + (size_t)r0 * ld, ld, k, ld, 0.0f, p + (size_t)r0 * T, T);
            /* masks (zeroes) every column > t, including those the GEMM skipped */
            for (int t = r0; t < r1; t++) attention_softmax_row(p + (size_t)t * T, t, T);
            /* O[r0:r1] = P[r0:r1, 0:r1] V[0:r1], into head h's columns of out */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rb, hs, r1, 1.0f,
                        p + (size_t)r0 * T, T, v, ld, 0.0f,
                        out + ((size_t)b * T + r0) * Cq + h * hs, Cq);
        }
    }
}

void cpu_attention_bwd(float *dqkv, float *scratch, const float *dout, const float *qkv,
                       const float *att, int B, int T, int Cq, int NH)
{
    int hs = Cq / NH;
    int ld = 3 * Cq;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        size_t q_off = (size_t)b * T * ld + h * hs;
        const float *q = qkv + q_off, *k = q + Cq, *v = q + 2 * Cq;
        float *dq = dqkv + q_off, *dk = dq + Cq, *dv = dq + 2 * Cq;
        const float *p = att + (size_t)bh * T * T;
        const float *dO = dout + (size_t)b * T * Cq + h * hs;
        float *ds = scratch + (size_t)bh * T * T;

        /* by row blocks: dP = dO V^T, softmax backward, dQ = dS K */
        for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
            int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T, rb = r1 - r0;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rb, r1, hs, 1.0f,
                        dO + (size_t)r0 * Cq, Cq, v, ld, 0.0f, ds + (size_t)r0 * T, T);
            /* dS = scale * P o (dP - rowsum(dP o P)), the score scale folded in;
             * masked entries are exactly 0 */
            for (int t = r0; t < r1; t++) {
                const float *restrict pr = p + (size_t)t * T;
                float *restrict dr = ds + (size_t)t * T;
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int j = 0; j <= t; j++) dot += pr[j] * dr[j];
#pragma omp simd
                for (int j = 0; j <= t; j++) dr[j] = scale * pr[j] * (dr[j] - dot);
                for (int j = t + 1; j < T; j++) dr[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rb, hs, r1, 1.0f,
                        ds + (size_t)r0 * T, T, k, ld, 0.0f, dq + (size_t)r0 * ld, ld);
        }
        /* by key blocks: keys c0..c1-1 are attended only by queries c0..T-1, so
         * dV[c0:c1] = P[c0:T, c0:c1]^T dO[c0:T] and dK[c0:c1] = dS[c0:T, c0:c1]^T Q[c0:T] */
        for (int c0 = 0; c0 < T; c0 += ATT_BLOCK) {
            int cb = (c0 + ATT_BLOCK < T ? c0 + ATT_BLOCK : T) - c0;
            size_t off = (size_t)c0 * T + c0;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cb, hs, T - c0, 1.0f,
                        p + off, T, dO + (size_t)c0 * Cq, Cq, 0.0f, dv + (size_t)c0 * ld, ld);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cb, hs, T - c0, 1.0f,
                        ds + off, T, q + (size_t)c0 * ld, ld, 0.0f, dk + (size_t)c0 * ld, ld);
        }
    }
}

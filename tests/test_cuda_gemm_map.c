/* test_cuda_gemm_map.c — the row-major to column-major mapping of the CUDA backend's GEMMs
 * (kernels/cuda/gemm_map.c), checked without a GPU: each call it gives is run by a plain
 * column-major reference GEMM (the BLAS definition, op(A)(i,l) = A[i + l*lda] or, with op
 * T, A[l + i*lda]) and compared with kernels.h's row-major definition of the product. */
#include <stdlib.h>

#include "cuda/gemm_map.h"
#include "test.h"

static uint64_t rs = 0x2545f4914f6cdd1dull;
static double drand(void)
{
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0 - 0.5;
}

/* C (m x n, ldc) = beta C + op(A) op(B), column-major, in double */
static void ref_gemm(const struct gemm_call *g, const double *A, const double *B, double *C,
                     double beta)
{
    for (int64_t j = 0; j < g->n; j++)
        for (int64_t i = 0; i < g->m; i++) {
            double s = 0.0;
            for (int64_t l = 0; l < g->k; l++) {
                double a = g->transa ? A[l + i * g->lda] : A[i + l * g->lda];
                double b = g->transb ? B[j + l * g->ldb] : B[l + j * g->ldb];
                s += a * b;
            }
            C[i + j * g->ldc] = beta * C[i + j * g->ldc] + s;
        }
}

static const double *pick(enum gemm_operand o, const double *inp, const double *w,
                          const double *dout)
{
    return o == GEMM_INP ? inp : o == GEMM_W ? w : dout;
}

static void test_every_pass_computes_the_row_major_product(void)
{
    const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {8, 2, 9}, {13, 17, 4}, {1, 9, 6}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int64_t M = shapes[si][0], K = shapes[si][1], N = shapes[si][2];
        double *inp = malloc(sizeof(double) * M * K), *w = malloc(sizeof(double) * N * K),
               *dout = malloc(sizeof(double) * M * N), *out = calloc(M * N, sizeof(double)),
               *dinp = calloc(M * K, sizeof(double)), *dw = malloc(sizeof(double) * N * K),
               *dw0 = malloc(sizeof(double) * N * K);
        for (int64_t i = 0; i < M * K; i++) inp[i] = drand();
        for (int64_t i = 0; i < N * K; i++) w[i] = drand(), dw[i] = dw0[i] = drand();
        for (int64_t i = 0; i < M * N; i++) dout[i] = drand();

        struct gemm_call g = gemm_map(GEMM_FWD, M, K, N);
        ref_gemm(&g, pick(g.a, inp, w, dout), pick(g.b, inp, w, dout), out, 0.0);
        g = gemm_map(GEMM_DINP, M, K, N);
        ref_gemm(&g, pick(g.a, inp, w, dout), pick(g.b, inp, w, dout), dinp, 0.0);
        g = gemm_map(GEMM_DW, M, K, N);
        ref_gemm(&g, pick(g.a, inp, w, dout), pick(g.b, inp, w, dout), dw, 1.0);

        int bad = 0;
        for (int64_t i = 0; i < M; i++)  /* out[i][j] = sum_l inp[i][l] w[j][l] */
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t l = 0; l < K; l++) s += inp[i * K + l] * w[j * K + l];
                bad += fabs(out[i * N + j] - s) > 1e-12;
            }
        CHECK_MSG(!bad, "forward M%lld K%lld N%lld: %d wrong", (long long)M, (long long)K,
                  (long long)N, bad);
        bad = 0;
        for (int64_t i = 0; i < M; i++)  /* dinp[i][l] = sum_j dout[i][j] w[j][l] */
            for (int64_t l = 0; l < K; l++) {
                double s = 0;
                for (int64_t j = 0; j < N; j++) s += dout[i * N + j] * w[j * K + l];
                bad += fabs(dinp[i * K + l] - s) > 1e-12;
            }
        CHECK_MSG(!bad, "dinp M%lld K%lld N%lld: %d wrong", (long long)M, (long long)K,
                  (long long)N, bad);
        bad = 0;
        for (int64_t j = 0; j < N; j++)  /* dw[j][l] = dw0[j][l] + sum_i dout[i][j] inp[i][l] */
            for (int64_t l = 0; l < K; l++) {
                double s = dw0[j * K + l];
                for (int64_t i = 0; i < M; i++) s += dout[i * N + j] * inp[i * K + l];
                bad += fabs(dw[j * K + l] - s) > 1e-12;
            }
        CHECK_MSG(!bad, "dw M%lld K%lld N%lld: %d wrong", (long long)M, (long long)K,
                  (long long)N, bad);
        free(inp), free(w), free(dout), free(out), free(dinp), free(dw), free(dw0);
    }
}

/* the bias of the forward pass is one value per row of C: m must be N (out's columns) */
static void test_forward_bias_runs_along_cs_rows(void)
{
    struct gemm_call g = gemm_map(GEMM_FWD, 5, 3, 11);
    CHECK(g.m == 11 && g.ldc == 11 && g.n == 5);
}

int main(void)
{
    RUN(test_every_pass_computes_the_row_major_product);
    RUN(test_forward_bias_runs_along_cs_rows);
    return test_summary();
}

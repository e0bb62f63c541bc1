/* gemm_map.h — how each product of a linear layer (kernels.h's row-major conventions) is
 * asked of a column-major BLAS (cuBLAS, cuBLASLt): which tensor is A and which B, the
 * transposes, m, n, k and the leading dimensions. Plain C, so the CPU tests check the
 * mapping against the row-major definitions with a column-major reference GEMM
 * (tests/test_cuda_gemm_map.c); kernels/cuda/matmul.cu calls cuBLASLt with it.
 *
 * A row-major [r][c] matrix read column-major with ld = c is its transpose (c x r), so:
 *   forward  out[M][N] = inp[M][K] w[N][K]^T   <=>  out^T = w inp^T:
 *            m = N, n = M, k = K; A = w (op T, lda = K), B = inp (op N, ldb = K), ldc = N;
 *            a bias is one value per row of the column-major C (m = N).
 *   dinp     dinp[M][K] = dout[M][N] w[N][K]  <=>  dinp^T = w^T dout^T:
 *            m = K, n = M, k = N; A = w (op N, lda = K), B = dout (op N, ldb = N), ldc = K.
 *   dw       dw[N][K] += dout^T inp           <=>  dw^T += inp^T dout:
 *            m = K, n = N, k = M; A = inp (op N, lda = K), B = dout (op T, ldb = N), ldc = K.
 */
#ifndef TRIDENT_CUDA_GEMM_MAP_H
#define TRIDENT_CUDA_GEMM_MAP_H

#include <stdint.h>

enum gemm_pass { GEMM_FWD, GEMM_DINP, GEMM_DW };
enum gemm_operand { GEMM_INP, GEMM_W, GEMM_DOUT };

struct gemm_call {
    enum gemm_operand a, b;  /* the tensors that are A and B */
    int transa, transb;      /* 1: op T */
    int64_t m, n, k, lda, ldb, ldc;
};

/* The column-major call for one product of a layer with inp [M][K], w [N][K]. */
struct gemm_call gemm_map(enum gemm_pass pass, int64_t M, int64_t K, int64_t N);

#endif

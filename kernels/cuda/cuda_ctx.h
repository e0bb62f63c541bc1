/* cuda_ctx.h — the CUDA backend's per-rank context (behind struct backend's `dev`), for the
 * files of the core (backend_cuda.cu, matmul.cu, elementwise.cu, optimizers.cu), and the
 * checks their kernel entries share. Other CUDA files need only cuda_common.h.
 */
#ifndef TRIDENT_CUDA_CTX_H
#define TRIDENT_CUDA_CTX_H

#include <cublasLt.h>
#include <cublas_v2.h>

#include "cuda_common.h"
#ifdef __cplusplus
extern "C" {
#endif
#include "pool.h"
#ifdef __cplusplus
}
#endif

/* A failed cuBLAS / cuBLASLt call: abort naming it and its status. */
#define CUBLAS_CHECK(call)                                                               \
    do {                                                                                 \
        cublasStatus_t s_ = (call);                                                      \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                 \
            TR_ABORT("cuBLAS call failed: %s: status %d (%s)", #call, (int)s_,           \
                     cublasGetStatusString(s_));                                         \
    } while (0)

/* One cached GEMM plan (matmul.cu): the descriptors and the algorithm cuBLASLt chose for
 * one shape, dtype, layout, epilogue and pointer alignment. */
struct cuda_gemm_key {
    int a_type, c_type, compute, transa, transb, epilogue, bias_type;
    int64_t m, n, k, lda, ldb, ldc;
    uint32_t align_a, align_b, align_c, align_bias;
};
struct cuda_gemm_plan {
    struct cuda_gemm_key key;
    int used;                       /* 0: free slot */
    int have_algo;                  /* 0: cuBLASLt found none: cublasGemmEx instead */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
    size_t workspace;               /* bytes the algorithm needs */
    char desc[128];                 /* the algorithm, in words (cuda_matmul_algo) */
};
enum { CUDA_GEMM_CACHE = 64 };      /* a model has ~10 GEMM shapes per pass direction */

enum { CUDA_LT_WORKSPACE = 32 << 20 };  /* cuBLASLt's workspace (NVIDIA: 32 MiB on Hopper) */

struct cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;            /* cublasGemmEx, where cuBLASLt finds no algorithm */
    cublasLtHandle_t lt;
    void *lt_workspace;             /* CUDA_LT_WORKSPACE bytes, allocated at init */
    int tf32;                       /* TRIDENT_CUDA_TF32=1: fp32 GEMMs on TF32 tensor cores */
    /* the pool: one cudaMalloc at backend_reserve; before it, blocks come from cudaMalloc */
    void *pool_base;
    struct pool pool;
    void *host;                     /* pinned host bytes for values a kernel returns */
    struct cuda_gemm_plan gemm[CUDA_GEMM_CACHE];
    int gemm_next_evict;            /* round-robin victim when the cache is full */
    int64_t gemm_queries;           /* heuristic queries made (cache misses) */
    char last_algo[128];            /* the algorithm of the last GEMM (cuda_matmul_algo) */
};

#ifdef __cplusplus
extern "C" {
#endif
static inline struct cuda_ctx *cuda_ctx_of(struct backend *b) { return (struct cuda_ctx *)b->dev; }
/* The algorithm cuBLASLt chose for the last GEMM of backend b (its id, tile, stages,
 * split-K, or the cublasGemmEx fallback), and how many heuristic queries were made so far
 * (one per new shape: the plan cache). For benchmarks and logs. */
const char *cuda_matmul_algo(struct backend *b, int64_t *n_queries);
/* the cached plans' descriptors (backend_cuda.cu calls this when the context goes) */
void cuda_matmul_free_plans(struct cuda_ctx *c);
#ifdef __cplusplus
}
#endif

/* the shape checks of the kernel entries: abort naming kernel, argument and condition */
#define CUDA_NEED(cond, kname, what, t)                                                  \
    do {                                                                                 \
        if (!(cond))                                                                     \
            TR_ABORT("%s: %s is %s[%lld][%lld] (%s)", kname, what,                       \
                     (t).data ? kdtype_name((t).dt) : "absent", (long long)(t).rows,     \
                     (long long)(t).cols, #cond);                                        \
    } while (0)

#endif

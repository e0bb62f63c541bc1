/* matmul.cu — linear layers on cuBLASLt: out = inp @ w^T + bias, and its backward pass.
 *
 * Row-major to column-major: kernels.h's matrices are row-major, cuBLAS reads column-major;
 * gemm_map.h says which tensor is A and B, the transposes, m, n, k and the leading
 * dimensions of each product (out, dinp, dw), and tests/test_cuda_gemm_map.c checks them
 * against the row-major definitions on the CPU.
 * Types: A and B are the activation dtype (fp32, bf16 or fp16), products summed in fp32
 * (CUBLAS_COMPUTE_32F; TRIDENT_CUDA_TF32=1 allows TF32 for fp32 inputs); C is the act
 * dtype, or fp32 for dw (bf16/fp16 x bf16/fp16 -> fp32 C is one of cuBLASLt's supported
 * combinations). The BIAS epilogue takes a bias of D's dtype; an fp32 bias with a 16-bit
 * out, and any shape cuBLASLt finds no algorithm for, go through an fp32 product in a
 * workspace and one store kernel that adds the bias and rounds once (as the CPU does).
 * dbias is a column sum of dout: rows in fixed chunks, the chunks' partial sums added in
 * order, so it is deterministic (no atomics); it accumulates (+=), as dw.
 *
 * Plans (descriptors, layouts, the heuristic's algorithm) are cached by shape, dtype and
 * pointer alignment (a parameter sliced out of one buffer may be only 2-byte aligned, and
 * cuBLASLt's default assumes 256), so a training step queries the heuristic only for
 * shapes it has not seen; the cache is bounded (CUDA_GEMM_CACHE, round-robin eviction).
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cuda_ctx.h"
#include "dtype.cuh"

extern "C" {
#include "gemm_map.h"
}

enum { WS_ACC = 0, WS_DBIAS = 1 };  /* workspace slots of one matmul call */
enum { COLSUM_ROWS = 256, COLSUM_COLS = 32, COLSUM_TY = 8 };

static cudaDataType_t cu_type(enum kdtype dt)
{
    switch (dt) {
    case KDT_BF16: return CUDA_R_16BF;
    case KDT_F16: return CUDA_R_16F;
    default: return CUDA_R_32F;
    }
}

/* the largest power of two (at most 256) that divides the address */
static uint32_t align_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && a % al) al /= 2;
    return al;
}

/* ---------------------------------------------------------------------------------- */
/* kernels: the staged store and the bias gradient                                     */

/* out[i][j] = acc[i][j] (fp32; absent: 0) + bias[j] (absent: 0), rounded once to out's dtype */
__global__ static void store_bias_kernel(void *out, enum kdtype out_dt, const float *acc,
                                         const void *bias, enum kdtype bias_dt, int64_t M,
                                         int64_t N)
{
    const int64_t n = M * N;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float x = acc ? acc[i] : 0.0f;
        if (bias) x += ld_act(bias, bias_dt, i % N);
        st_act(out, out_dt, i, x);
    }
}

/* part[chunk][j] = sum of dout[i][j] over the rows i of chunk (COLSUM_ROWS rows each).
 * Block: COLSUM_COLS columns x COLSUM_TY row lanes; lane ty sums rows ty, ty+COLSUM_TY, ...
 * of the chunk in order, then lanes are added in order 0..COLSUM_TY-1. */
__global__ static void colsum_partial_kernel(float *part, const void *dout, enum kdtype dt,
                                             int64_t M, int64_t N)
{
    __shared__ float sh[COLSUM_TY][COLSUM_COLS];
    const int64_t j = blockIdx.x * (int64_t)COLSUM_COLS + threadIdx.x;
    const int64_t chunk = blockIdx.y, r0 = chunk * COLSUM_ROWS;
    const int64_t r1 = r0 + COLSUM_ROWS < M ? r0 + COLSUM_ROWS : M;
    float s = 0.0f;
    if (j < N)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += COLSUM_TY) s += ld_act(dout, dt, r * N + j);
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < N) {
        float t = 0.0f;
        for (int y = 0; y < COLSUM_TY; y++) t += sh[y][threadIdx.x];
        part[chunk * N + j] = t;
    }
}

/* dbias[j] += the sum over chunks of part[chunk][j], chunks in order */
__global__ static void colsum_finish_kernel(float *dbias, const float *part, int64_t n_chunks,
                                            int64_t N)
{
    const int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (j >= N) return;
    float s = 0.0f;
    for (int64_t c = 0; c < n_chunks; c++) s += part[c * N + j];
    dbias[j] += s;
}

static unsigned grid_1d(int64_t n, int threads)
{
    int64_t g = (n + threads - 1) / threads;
    return (unsigned)(g < 1 ? 1 : g > 65536 ? 65536 : g);
}

static void store_bias(struct backend *b, struct tensor out, const float *acc, struct tensor bias,
                       int64_t M, int64_t N)
{
    store_bias_kernel<<<grid_1d(M * N, 256), 256, 0, cuda_stream(b)>>>(
        out.data, out.dt, acc, bias.data, bias.dt, M, N);
    CUDA_CHECK_LAUNCH("store_bias_kernel");
}

static void dbias_accumulate(struct backend *b, float *dbias, struct tensor dout, int64_t M,
                             int64_t N)
{
    if (M == 0 || N == 0) return;
    const int64_t n_chunks = (M + COLSUM_ROWS - 1) / COLSUM_ROWS;
    const int64_t n_colblk = (N + COLSUM_COLS - 1) / COLSUM_COLS;
    if (n_chunks > 65535)
        TR_ABORT("matmul_bwd: %lld rows are more than the dbias kernel's %d row chunks of %d",
                 (long long)M, 65535, COLSUM_ROWS);
    float *part = (float *)backend_workspace(b, WS_DBIAS, sizeof(float) * (size_t)(n_chunks * N));
    dim3 grid((unsigned)n_colblk, (unsigned)n_chunks), block(COLSUM_COLS, COLSUM_TY);
    colsum_partial_kernel<<<grid, block, 0, cuda_stream(b)>>>(part, dout.data, dout.dt, M, N);
    CUDA_CHECK_LAUNCH("colsum_partial_kernel");
    colsum_finish_kernel<<<grid_1d(N, 256), 256, 0, cuda_stream(b)>>>(dbias, part, n_chunks, N);
    CUDA_CHECK_LAUNCH("colsum_finish_kernel");
}

/* ---------------------------------------------------------------------------------- */
/* cuBLASLt plans                                                                       */

static void plan_release(struct cuda_gemm_plan *p)
{
    if (!p->used) return;
    cublasLtMatrixLayoutDestroy(p->a);
    cublasLtMatrixLayoutDestroy(p->b);
    cublasLtMatrixLayoutDestroy(p->c);
    cublasLtMatmulDescDestroy(p->op);
    memset(p, 0, sizeof *p);
}

extern "C" void cuda_matmul_free_plans(struct cuda_ctx *c)
{
    for (int i = 0; i < CUDA_GEMM_CACHE; i++) plan_release(&c->gemm[i]);
}

extern "C" const char *cuda_matmul_algo(struct backend *b, int64_t *n_queries)
{
    struct cuda_ctx *c = cuda_ctx_of(b);
    if (n_queries) *n_queries = c->gemm_queries;
    return c->last_algo[0] ? c->last_algo : "none yet";
}

static void describe_algo(struct cuda_gemm_plan *p, char *buf, size_t len)
{
    int32_t id = -1;
    uint32_t tile = 0, stages = 0, splitk = 0;
    size_t w;
    cublasLtMatmulAlgoConfigGetAttribute(&p->algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &w);
    cublasLtMatmulAlgoConfigGetAttribute(&p->algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile,
                                         sizeof tile, &w);
    cublasLtMatmulAlgoConfigGetAttribute(&p->algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages,
                                         sizeof stages, &w);
    cublasLtMatmulAlgoConfigGetAttribute(&p->algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk,
                                         sizeof splitk, &w);
    snprintf(buf, len, "cublasLt algo %d tile %u stages %u splitK %u workspace %zu (m %lld n %lld k %lld)",
             (int)id, tile, stages, splitk, p->workspace, (long long)p->key.m,
             (long long)p->key.n, (long long)p->key.k);
}

/* The cached plan for key, made (and the heuristic asked) on a miss. */
static struct cuda_gemm_plan *plan_get(struct cuda_ctx *c, const struct cuda_gemm_key *key,
                                       const void *bias)
{
    int slot = -1;
    for (int i = 0; i < CUDA_GEMM_CACHE; i++) {
        if (c->gemm[i].used && memcmp(&c->gemm[i].key, key, sizeof *key) == 0) return &c->gemm[i];
        if (!c->gemm[i].used && slot < 0) slot = i;
    }
    if (slot < 0) {
        slot = c->gemm_next_evict;
        c->gemm_next_evict = (c->gemm_next_evict + 1) % CUDA_GEMM_CACHE;
        plan_release(&c->gemm[slot]);
    }
    struct cuda_gemm_plan *p = &c->gemm[slot];
    memset(p, 0, sizeof *p);
    p->key = *key;
    const cublasOperation_t ta = key->transa ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = key->transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, (cublasComputeType_t)key->compute, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (key->epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
        cublasLtEpilogue_t ep = (cublasLtEpilogue_t)key->epilogue;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep,
                                                    sizeof ep));
        /* the heuristic reads the bias pointer's alignment from here */
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &bias, sizeof bias));
    }
    /* stored shapes: op(A) is m x k, so A is m x k (N) or k x m (T); op(B) is k x n */
    const cudaDataType_t at = (cudaDataType_t)key->a_type, ct = (cudaDataType_t)key->c_type;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, at, key->transa ? key->k : key->m,
                                            key->transa ? key->m : key->k, key->lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, at, key->transb ? key->n : key->k,
                                            key->transb ? key->k : key->n, key->ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, ct, key->m, key->n, key->ldc));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = CUDA_LT_WORKSPACE;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                      &ws, sizeof ws));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key->align_a, sizeof key->align_a));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key->align_b, sizeof key->align_b));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key->align_c, sizeof key->align_c));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key->align_c, sizeof key->align_c));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    memset(&res, 0, sizeof res);
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->op, p->a, p->b, p->c, p->c, pref,
                                                       1, &res, &found);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    c->gemm_queries++;
    p->have_algo = st == CUBLAS_STATUS_SUCCESS && found > 0 && res.state == CUBLAS_STATUS_SUCCESS;
    if (p->have_algo) {
        p->algo = res.algo;
        p->workspace = res.workspaceSize;
        describe_algo(p, p->desc, sizeof p->desc);
    } else {
        snprintf(p->desc, sizeof p->desc, "cublasGemmEx (cuBLASLt found no algorithm) "
                 "(m %lld n %lld k %lld)", (long long)key->m, (long long)key->n, (long long)key->k);
    }
    p->used = 1;
    return p;
}

/* C (m x n, col-major, ldc) = op(A) op(B) + beta C (+ bias[m], bias of C's dtype). Returns 0
 * without doing anything when a bias was asked for and cuBLASLt has no algorithm for it;
 * without a bias a shape with no cuBLASLt algorithm runs on cublasGemmEx. */
static int gemm(struct backend *b, int transa, int transb, int64_t m, int64_t n, int64_t k,
                const void *A, int64_t lda, const void *B, int64_t ldb, enum kdtype ab_dt,
                void *C, int64_t ldc, enum kdtype c_dt, float beta, const void *bias)
{
    struct cuda_ctx *c = cuda_ctx_of(b);
    struct cuda_gemm_key key;
    memset(&key, 0, sizeof key);  /* the key is compared with memcmp: no stray padding */
    key.a_type = cu_type(ab_dt);
    key.c_type = cu_type(c_dt);
    key.compute = ab_dt == KDT_F32 && c->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    key.transa = transa;
    key.transb = transb;
    key.epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    key.bias_type = bias ? cu_type(c_dt) : -1;
    key.m = m, key.n = n, key.k = k, key.lda = lda, key.ldb = ldb, key.ldc = ldc;
    key.align_a = align_of(A), key.align_b = align_of(B), key.align_c = align_of(C);
    key.align_bias = bias ? align_of(bias) : 0;
    struct cuda_gemm_plan *p = plan_get(c, &key, bias);
    const float alpha = 1.0f;
    if (p->have_algo) {
        if (bias)
            CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                        &bias, sizeof bias));
        CUBLAS_CHECK(cublasLtMatmul(c->lt, p->op, &alpha, A, p->a, B, p->b, &beta, C, p->c, C,
                                    p->c, &p->algo, c->lt_workspace, p->workspace, c->stream));
        memcpy(c->last_algo, p->desc, sizeof c->last_algo);
        return 1;
    }
    if (bias) return 0;
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
        TR_ABORT("matmul: cuBLASLt has no algorithm for m %lld n %lld k %lld and the sizes are "
                 "too large for cublasGemmEx", (long long)m, (long long)n, (long long)k);
    CUBLAS_CHECK(cublasGemmEx(c->blas, transa ? CUBLAS_OP_T : CUBLAS_OP_N,
                              transb ? CUBLAS_OP_T : CUBLAS_OP_N, (int)m, (int)n, (int)k, &alpha,
                              A, cu_type(ab_dt), (int)lda, B, cu_type(ab_dt), (int)ldb, &beta, C,
                              cu_type(c_dt), (int)ldc, (cublasComputeType_t)key.compute,
                              CUBLAS_GEMM_DEFAULT));
    memcpy(c->last_algo, p->desc, sizeof c->last_algo);
    return 1;
}

/* The product `pass` of a layer (gemm_map.h) with the tensors' data, into C of dtype c_dt. */
static int gemm_pass(struct backend *b, enum gemm_pass pass, int64_t M, int64_t K, int64_t N,
                     const void *inp, const void *w, const void *dout, enum kdtype ab_dt,
                     void *C, enum kdtype c_dt, float beta, const void *bias)
{
    const struct gemm_call g = gemm_map(pass, M, K, N);
    const void *ops[3] = {inp, w, dout};  /* indexed by enum gemm_operand */
    return gemm(b, g.transa, g.transb, g.m, g.n, g.k, ops[g.a], g.lda, ops[g.b], g.ldb, ab_dt, C,
                g.ldc, c_dt, beta, bias);
}

/* ---------------------------------------------------------------------------------- */
/* the table's entries                                                                  */

static int is_act(struct tensor t) { return t.dt == KDT_F32 || kdtype_is_16bit(t.dt); }

extern "C" void cuda_matmul_fwd(struct backend *b, struct tensor out, struct tensor inp,
                                struct tensor w, struct tensor bias)
{
    const char *kn = "matmul_fwd";
    CUDA_NEED(inp.data && is_act(inp), kn, "inp", inp);
    CUDA_NEED(w.data && w.dt == inp.dt && w.cols == inp.cols, kn, "w", w);
    CUDA_NEED(out.data && out.dt == inp.dt && out.rows == inp.rows && out.cols == w.rows, kn,
              "out", out);
    CUDA_NEED(!bias.data || (is_act(bias) && (bias.dt == out.dt || bias.dt == KDT_F32) &&
                             tensor_numel(bias) == w.rows), kn, "bias", bias);
    const int64_t M = inp.rows, K = inp.cols, N = w.rows;
    if (M == 0 || N == 0) return;
    if (K == 0) {  /* no products: out = bias (or 0) */
        store_bias(b, out, NULL, bias, M, N);
        return;
    }
    if ((!bias.data || bias.dt == out.dt) &&
        gemm_pass(b, GEMM_FWD, M, K, N, inp.data, w.data, NULL, inp.dt, out.data, out.dt, 0.0f,
                  bias.data))
        return;
    /* an fp32 bias with a 16-bit out, or no fused algorithm: the product in fp32, then one
     * rounding with the bias added */
    float *acc = (float *)backend_workspace(b, WS_ACC, sizeof(float) * (size_t)(M * N));
    gemm_pass(b, GEMM_FWD, M, K, N, inp.data, w.data, NULL, inp.dt, acc, KDT_F32, 0.0f, NULL);
    store_bias(b, out, acc, bias, M, N);
}

extern "C" void cuda_matmul_bwd(struct backend *b, struct tensor dinp, struct tensor dw,
                                struct tensor dbias, struct tensor dout, struct tensor inp,
                                struct tensor w)
{
    const char *kn = "matmul_bwd";
    CUDA_NEED(inp.data && is_act(inp), kn, "inp", inp);
    CUDA_NEED(w.data && w.dt == inp.dt && w.cols == inp.cols, kn, "w", w);
    CUDA_NEED(dout.data && dout.dt == inp.dt && dout.rows == inp.rows && dout.cols == w.rows, kn,
              "dout", dout);
    CUDA_NEED(!dinp.data || (dinp.dt == inp.dt && dinp.rows == inp.rows && dinp.cols == inp.cols),
              kn, "dinp", dinp);
    CUDA_NEED(!dw.data || (dw.dt == KDT_F32 && dw.rows == w.rows && dw.cols == w.cols), kn, "dw",
              dw);
    CUDA_NEED(!dbias.data || (dbias.dt == KDT_F32 && tensor_numel(dbias) == w.rows), kn, "dbias",
              dbias);
    const int64_t M = inp.rows, K = inp.cols, N = w.rows;
    /* dinp = dout w: an activation gradient, overwritten (beta 0) */
    if (dinp.data && M > 0 && K > 0) {
        if (N == 0) CUDA_CHECK(cudaMemsetAsync(dinp.data, 0, tensor_bytes(dinp), cuda_stream(b)));
        else gemm_pass(b, GEMM_DINP, M, K, N, NULL, w.data, dout.data, dout.dt, dinp.data,
                       dinp.dt, 0.0f, NULL);
    }
    /* dw += dout^T inp: a parameter gradient, accumulated (beta 1) in fp32 */
    if (dw.data && M > 0 && N > 0 && K > 0)
        gemm_pass(b, GEMM_DW, M, K, N, inp.data, NULL, dout.data, inp.dt, dw.data, KDT_F32, 1.0f,
                  NULL);
    if (dbias.data) dbias_accumulate(b, (float *)dbias.data, dout, M, N);
}

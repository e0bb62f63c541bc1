/* backend_cuda.cu — the CUDA backend's table: one GPU per rank, its own stream, cuBLAS and
 * cuBLASLt handles, and device memory from one pool sized by the memory plan.
 *
 * Everything a rank asks of its GPU is queued on the context's stream (a non-blocking
 * stream, so nothing orders it behind the legacy default stream), and returns without
 * waiting, except what hands a value to the host: a device-to-host copy, an event's
 * elapsed time, synchronize, and the kernels that return a number. Memory: before
 * backend_reserve (tests, tools) each block is a cudaMalloc; after it, every block comes
 * from the pool (kernels/cuda/pool.c), so nothing is allocated from the driver inside a
 * step and a plan that is too small fails with the numbers that show it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_ctx.h"

/* ---------------------------------------------------------------------------------- */
/* context                                                                              */

extern "C" cudaStream_t cuda_stream(struct backend *b) { return cuda_ctx_of(b)->stream; }

static void *cu_stream_op(const struct backend *b)
{
    return (void *)((const struct cuda_ctx *)b->dev)->stream;
}

/* A runtime call of init that failed: the reason in err, -1 (the caller cleans up). */
#define INIT_CHECK(call)                                                                 \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess) {                                                         \
            snprintf(err, err_len, "cannot open CUDA device %d: %s: %s\nHINT: check the "  \
                     "GPU with nvidia-smi (a busy, faulty or exclusive-process device)",  \
                     local_rank, #call, cudaGetErrorString(e_));                         \
            goto fail;                                                                   \
        }                                                                                \
    } while (0)
#define INIT_CHECK_BLAS(call)                                                            \
    do {                                                                                 \
        cublasStatus_t s_ = (call);                                                      \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                               \
            snprintf(err, err_len, "cannot open cuBLAS on CUDA device %d: %s: %s\nHINT: "  \
                     "check that the cuBLAS of the CUDA toolkit trident was built with "  \
                     "is installed, and the GPU's free memory", local_rank, #call,        \
                     cublasGetStatusString(s_));                                         \
            goto fail;                                                                   \
        }                                                                                \
    } while (0)

static void ctx_release(struct cuda_ctx *c)
{
    if (!c) return;
    if (c->stream) cudaStreamSynchronize(c->stream);
    cuda_matmul_free_plans(c);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->blas) cublasDestroy(c->blas);
    if (c->lt_workspace) cudaFree(c->lt_workspace);
    if (c->pool_base) cudaFree(c->pool_base);
    pool_destroy(&c->pool);
    if (c->host) cudaFreeHost(c->host);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

static int cu_init(struct backend *b, int local_rank, char *err, size_t err_len)
{
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev <= 0) {
        snprintf(err, err_len, "no CUDA device: %s\nHINT: set device = cpu, or run on a node "
                 "with an NVIDIA GPU and its driver loaded (nvidia-smi lists them)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 devices");
        cudaGetLastError();  /* leave no error behind for a later check to find */
        return -1;
    }
    /* One rank per GPU: a rank that would share a GPU (local_rank % n_dev) would compete for
     * its memory (each pool is sized for one rank) and its SMs, so it is refused. */
    if (local_rank < 0 || local_rank >= n_dev) {
        snprintf(err, err_len, "local rank %d has no GPU of its own: this node has %d CUDA "
                 "device%s (ranks 0..%d of a node each take one)\nHINT: run one rank per GPU: "
                 "--ntasks-per-node = GPUs per node (%d here), or mpirun with %d rank%s per node",
                 local_rank, n_dev, n_dev == 1 ? "" : "s", n_dev - 1, n_dev, n_dev,
                 n_dev == 1 ? "" : "s");
        return -1;
    }
    struct cuda_ctx *c = (struct cuda_ctx *)calloc(1, sizeof *c);
    if (!c) TR_ABORT("out of host memory allocating the CUDA context");
    c->device = local_rank;
    INIT_CHECK(cudaSetDevice(local_rank));
    INIT_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    INIT_CHECK_BLAS(cublasCreate(&c->blas));
    INIT_CHECK_BLAS(cublasSetStream(c->blas, c->stream));
    INIT_CHECK_BLAS(cublasLtCreate(&c->lt));
    /* outside the pool: the pool is reserved later, and this never changes size. cuBLAS
     * (the fallback GEMM) shares it, so it allocates no workspace of its own: both run
     * on the one stream, one after the other. */
    INIT_CHECK(cudaMalloc(&c->lt_workspace, CUDA_LT_WORKSPACE));
    INIT_CHECK_BLAS(cublasSetWorkspace(c->blas, c->lt_workspace, CUDA_LT_WORKSPACE));
    INIT_CHECK(cudaMallocHost(&c->host, 4096));
    {
        /* TF32 rounds fp32 GEMM inputs to 10 mantissa bits (about 1e-3 relative): off by
         * default, so that fp32 runs match the CPU reference; 1 trades that for speed */
        const char *tf = getenv("TRIDENT_CUDA_TF32");
        c->tf32 = tf && strcmp(tf, "1") == 0;
    }
    b->dev = c;
    return 0;
fail:
    cudaGetLastError();
    ctx_release(c);
    return -1;
}

static void cu_free(struct backend *b)
{
    ctx_release(cuda_ctx_of(b));
    b->dev = NULL;
}

/* ---------------------------------------------------------------------------------- */
/* memory                                                                               */

/* The rank's GPU for the calling thread: the CUDA runtime keeps the current device per
 * thread, and memory and copies may be asked for from a thread other than the one that
 * opened the backend (a checkpoint writer). */
static void use_device(const struct cuda_ctx *c)
{
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != c->device) CUDA_CHECK(cudaSetDevice(c->device));
}

static int in_pool(const struct cuda_ctx *c, const void *p)
{
    return c->pool_base && (const char *)p >= (const char *)c->pool_base &&
           (const char *)p < (const char *)c->pool_base + c->pool.size;
}

static void *cu_alloc(struct backend *b, size_t n_bytes)
{
    struct cuda_ctx *c = cuda_ctx_of(b);
    if (c->pool_base) {
        int64_t off = pool_alloc(&c->pool, n_bytes);
        if (off < 0) {
            char msg[768];
            pool_describe_failure(&c->pool, n_bytes, msg, sizeof msg);
            TR_ABORT("%s", msg);
        }
        return (char *)c->pool_base + off;
    }
    void *p = NULL;
    use_device(c);
    if (cudaMalloc(&p, n_bytes) != cudaSuccess) {
        cudaGetLastError();  /* backend_alloc reports the failure */
        return NULL;
    }
    return p;
}

static void cu_free_mem(struct backend *b, void *p)
{
    struct cuda_ctx *c = cuda_ctx_of(b);
    if (in_pool(c, p)) {
        if (pool_release(&c->pool, (uint64_t)((char *)p - (char *)c->pool_base)) != 0)
            TR_ABORT("the CUDA pool has no block at %p (freed twice?)", p);
        return;
    }
    use_device(c);
    CUDA_CHECK(cudaFree(p));
}

static int cu_reserve(struct backend *b, size_t n_bytes, char *err, size_t err_len)
{
    struct cuda_ctx *c = cuda_ctx_of(b);
    const double GiB = 1073741824.0;
    if (c->pool_base) {
        snprintf(err, err_len, "the CUDA memory pool is already reserved (%.2f GiB)\nHINT: "
                 "backend_reserve is called once, before the model allocates", c->pool.size / GiB);
        return -1;
    }
    size_t free_b = 0, total_b = 0;
    use_device(c);
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    if (n_bytes > free_b) {
        snprintf(err, err_len, "CUDA device %d has %.2f GiB free (of %.2f GiB) but this rank's "
                 "memory pool needs %.2f GiB (the memory plan and its margin)\nHINT: shrink the "
                 "plan (smaller micro_batch, recompute, more tensor or pipeline parallelism, "
                 "zero), free the GPU of other processes (nvidia-smi), or lower "
                 "TRIDENT_CUDA_POOL_MARGIN", c->device, free_b / GiB, total_b / GiB,
                 n_bytes / GiB);
        return -1;
    }
    size_t size = n_bytes / POOL_ALIGN * POOL_ALIGN;
    if (size == 0) return 0;
    cudaError_t e = cudaMalloc(&c->pool_base, size);
    if (e != cudaSuccess) {
        cudaGetLastError();
        c->pool_base = NULL;
        snprintf(err, err_len, "cannot reserve the CUDA memory pool: cudaMalloc of %.2f GiB "
                 "failed (%s) with %.2f GiB free\nHINT: shrink the memory plan or lower "
                 "TRIDENT_CUDA_POOL_MARGIN", size / GiB, cudaGetErrorString(e), free_b / GiB);
        return -1;
    }
    pool_init(&c->pool, size, POOL_BEST_FIT);
    return 0;
}

static void cu_memset(struct backend *b, void *p, int value, size_t n_bytes)
{
    CUDA_CHECK(cudaMemsetAsync(p, value, n_bytes, cuda_stream(b)));
}

static void cu_copy(struct backend *b, void *dst, const void *src, size_t n_bytes,
                    enum backend_copy_kind kind)
{
    cudaStream_t s = cuda_stream(b);
    use_device(cuda_ctx_of(b));
    switch (kind) {
    case BACKEND_H2D: {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyHostToDevice, s));
        /* From pageable memory the runtime has staged src before it returns; from pinned
         * memory the copy reads src later: wait, so that the caller may reuse src at once
         * (backend_copy_h2d's contract, as on the CPU). */
        cudaPointerAttributes a;
        if (cudaPointerGetAttributes(&a, src) == cudaSuccess && a.type == cudaMemoryTypeHost)
            CUDA_CHECK(cudaStreamSynchronize(s));
        cudaGetLastError();
        break;
    }
    case BACKEND_D2H:
        CUDA_CHECK(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyDeviceToHost, s));
        CUDA_CHECK(cudaStreamSynchronize(s));  /* the caller reads dst next */
        break;
    case BACKEND_D2D:
        if (dst != src) CUDA_CHECK(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyDeviceToDevice, s));
        break;
    }
}

/* ---------------------------------------------------------------------------------- */
/* events                                                                               */

static void cu_event_create(struct backend *b, struct backend_event *e)
{
    cudaEvent_t ev;
    CUDA_CHECK(cudaEventCreate(&ev));
    e->dev = (void *)ev;
}

static void cu_event_destroy(struct backend *b, struct backend_event *e)
{
    if (e->dev) CUDA_CHECK(cudaEventDestroy((cudaEvent_t)e->dev));
    e->dev = NULL;
}

static void cu_event_record(struct backend *b, struct backend_event *e)
{
    CUDA_CHECK(cudaEventRecord((cudaEvent_t)e->dev, cuda_stream(b)));
}

static double cu_event_elapsed(struct backend *b, const struct backend_event *start,
                               const struct backend_event *stop)
{
    float ms = 0.0f;
    CUDA_CHECK(cudaEventSynchronize((cudaEvent_t)stop->dev));
    CUDA_CHECK(cudaEventElapsedTime(&ms, (cudaEvent_t)start->dev, (cudaEvent_t)stop->dev));
    return 1e-3 * (double)ms;
}

static void cu_synchronize(struct backend *b) { CUDA_CHECK(cudaStreamSynchronize(cuda_stream(b))); }

/* ---------------------------------------------------------------------------------- */
/* the tables                                                                           */

extern "C" const struct kernels cuda_kernels = {
    /* .name            = */ "cuda",
    /* .matmul_fwd      = */ cuda_matmul_fwd,
    /* .matmul_bwd      = */ cuda_matmul_bwd,
    /* .layernorm_fwd   = */ cuda_layernorm_fwd,
    /* .layernorm_bwd   = */ cuda_layernorm_bwd,
    /* .attention_fwd   = */ cuda_attention_fwd,
    /* .attention_bwd   = */ cuda_attention_bwd,
    /* .gelu_fwd        = */ cuda_gelu_fwd,
    /* .gelu_bwd        = */ cuda_gelu_bwd,
    /* .residual_fwd    = */ cuda_residual_fwd,
    /* .embedding_fwd   = */ cuda_embedding_fwd,
    /* .embedding_bwd   = */ cuda_embedding_bwd,
    /* .xent_max        = */ cuda_xent_max,
    /* .xent_sumexp     = */ cuda_xent_sumexp,
    /* .xent_target     = */ cuda_xent_target,
    /* .xent_bwd        = */ cuda_xent_bwd,
    /* .xent_loss       = */ cuda_xent_loss,
    /* .adamw           = */ cuda_adamw,
    /* .adamw_state     = */ cuda_adamw_state,
    /* .lamb_moments    = */ cuda_lamb_moments,
    /* .lamb_apply      = */ cuda_lamb_apply,
    /* .lars_update     = */ cuda_lars_update,
    /* .sgd_update      = */ cuda_sgd_update,
    /* .state_to_f32    = */ cuda_state_to_f32,
    /* .state_from_f32  = */ cuda_state_from_f32,
    /* .sumsq           = */ cuda_sumsq,
    /* .scale           = */ cuda_scale,
    /* .convert         = */ cuda_convert,
    /* .accumulate      = */ cuda_accumulate,
    /* .count_nonfinite = */ cuda_count_nonfinite,
};

/* positional, in struct backend_ops' order (C++17 has no designated initializers) */
extern "C" const struct backend_ops backend_cuda_ops = {
    /* .name          = */ "cuda",
    /* .device        = */ KDEV_CUDA,
    /* .host_memory   = */ 0,
    /* .init          = */ cu_init,
    /* .free          = */ cu_free,
    /* .alloc         = */ cu_alloc,
    /* .free_mem      = */ cu_free_mem,
    /* .memset        = */ cu_memset,
    /* .copy          = */ cu_copy,
    /* .event_create  = */ cu_event_create,
    /* .event_destroy = */ cu_event_destroy,
    /* .event_record  = */ cu_event_record,
    /* .event_elapsed = */ cu_event_elapsed,
    /* .synchronize   = */ cu_synchronize,
    /* .reserve       = */ cu_reserve,
    /* .stream        = */ cu_stream_op,
    /* .kernels       = */ &cuda_kernels,
};

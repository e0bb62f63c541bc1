/* crossentropy.cu — softmax cross-entropy in steps over a vocabulary shard.
 *
 * Local column j is global column v0 + j; only global columns < V are real, so a row has
 * n_real = clamp(V - v0, 0, Vl) real columns and the padding after them never takes part
 * (its gradient is 0). Row reductions run one block per row: each thread over its strided
 * columns in order, then a fixed tree across the block, so every result is reproducible.
 * xent_loss sums the rows' losses in double in one block, in a fixed order, and waits
 * for its result.
 */
#include <math.h>

#include "cuda_common.h"
#include "dtype.cuh"
#include "launch.h"

#define FULL_MASK 0xffffffffu
enum { XENT_WARPS = CUDA_ELEM_THREADS / CUDA_WARP };

static int xent_n_real(int64_t Vl, int v0, int V)
{
    int64_t n = (int64_t)V - v0;
    return (int)(n < 0 ? 0 : n > Vl ? Vl : n);
}

/* the block's sum (op 0) or max (op 1) of x, in a fixed order; every thread gets it */
template <int OP>
static __device__ float block_reduce(float x, float *sh)
{
    const int lane = threadIdx.x % CUDA_WARP, warp = threadIdx.x / CUDA_WARP;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float y = __shfl_xor_sync(FULL_MASK, x, o);
        x = OP ? fmaxf(x, y) : x + y;
    }
    __syncthreads();  /* sh may still be read by a previous reduction */
    if (lane == 0) sh[warp] = x;
    __syncthreads();
    x = sh[0];
    for (int w = 1; w < XENT_WARPS; w++) x = OP ? fmaxf(x, sh[w]) : x + sh[w];
    return x;
}

__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
xent_max_kernel(float *rowmax, const void *logits, enum kdtype dt, int64_t Vl, int nr)
{
    __shared__ float sh[XENT_WARPS];
    const int64_t row = (int64_t)blockIdx.x * Vl;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < nr; j += blockDim.x) mx = fmaxf(mx, ld_act(logits, dt, row + j));
    mx = block_reduce<1>(mx, sh);
    if (threadIdx.x == 0) rowmax[blockIdx.x] = mx;
}

__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
xent_sumexp_kernel(float *sumexp, const void *logits, enum kdtype dt, const float *rowmax,
                   int64_t Vl, int nr)
{
    __shared__ float sh[XENT_WARPS];
    const int64_t row = (int64_t)blockIdx.x * Vl;
    const float mx = rowmax[blockIdx.x];
    float s = 0.0f;
    for (int j = threadIdx.x; j < nr; j += blockDim.x) s += expf(ld_act(logits, dt, row + j) - mx);
    s = block_reduce<0>(s, sh);
    if (threadIdx.x == 0) sumexp[blockIdx.x] = s;
}

__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
xent_target_kernel(float *tlogit, const void *logits, enum kdtype dt, const int32_t *targets,
                   int64_t N, int64_t Vl, int v0)
{
    for (int64_t n = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; n < N;
         n += (int64_t)gridDim.x * blockDim.x) {
        const int64_t j = (int64_t)targets[n] - v0;
        tlogit[n] = j >= 0 && j < Vl ? ld_act(logits, dt, n * Vl + j) : 0.0f;
    }
}

__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
xent_bwd_kernel(void *logits, enum kdtype dt, const float *rowmax, const float *sumexp,
                const int32_t *targets, float dloss, int64_t Vl, int nr, int v0)
{
    const int64_t row = (int64_t)blockIdx.x * Vl;
    const float mx = rowmax[blockIdx.x], inv = 1.0f / sumexp[blockIdx.x];
    const int64_t jt = (int64_t)targets[blockIdx.x] - v0;
    for (int64_t j = threadIdx.x; j < Vl; j += blockDim.x) {
        float g = 0.0f;  /* padded columns take no mass */
        if (j < nr) {
            g = expf(ld_act(logits, dt, row + j) - mx) * inv * dloss;
            if (j == jt) g -= dloss;
        }
        st_act(logits, dt, row + j, g);
    }
}

__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
xent_loss_kernel(double *loss, const float *rowmax, const float *sumexp, const float *tlogit,
                 int64_t N)
{
    __shared__ double sh[CUDA_ELEM_THREADS];
    double s = 0.0;
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x)
        s += log((double)sumexp[n]) + (double)rowmax[n] - (double)tlogit[n];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = CUDA_ELEM_THREADS / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) *loss = sh[0];
}

/* ---------------------------------------------------------------------------------- */

static void xent_rows(const char *kn, struct tensor logits, struct tensor row, const char *what)
{
    CUDA_NN_NEED(logits.data && cuda_is_float(logits) && logits.rows <= CUDA_MAX_GRID_X, kn,
              "logits", logits);
    CUDA_NN_NEED(row.data && row.dt == KDT_F32 && tensor_numel(row) == logits.rows, kn, what, row);
}

extern "C" void cuda_xent_max(struct backend *b, struct tensor rowmax, struct tensor logits,
                              int v0, int V)
{
    xent_rows("xent_max", logits, rowmax, "rowmax");
    const struct cuda_launch l = cuda_launch_block_rows(logits.rows);
    if (l.grid_x == 0) return;
    xent_max_kernel<<<(unsigned)l.grid_x, l.threads, 0, cuda_stream(b)>>>(
        (float *)rowmax.data, logits.data, logits.dt, logits.cols,
        xent_n_real(logits.cols, v0, V));
    CUDA_CHECK_LAUNCH("xent_max");
}

extern "C" void cuda_xent_sumexp(struct backend *b, struct tensor sumexp, struct tensor logits,
                                 struct tensor rowmax, int v0, int V)
{
    xent_rows("xent_sumexp", logits, sumexp, "sumexp");
    xent_rows("xent_sumexp", logits, rowmax, "rowmax");
    const struct cuda_launch l = cuda_launch_block_rows(logits.rows);
    if (l.grid_x == 0) return;
    xent_sumexp_kernel<<<(unsigned)l.grid_x, l.threads, 0, cuda_stream(b)>>>(
        (float *)sumexp.data, logits.data, logits.dt, (const float *)rowmax.data, logits.cols,
        xent_n_real(logits.cols, v0, V));
    CUDA_CHECK_LAUNCH("xent_sumexp");
}

extern "C" void cuda_xent_target(struct backend *b, struct tensor tlogit, struct tensor logits,
                                 struct tensor targets, int v0)
{
    xent_rows("xent_target", logits, tlogit, "tlogit");
    CUDA_NN_NEED(targets.data && targets.dt == KDT_I32 && tensor_numel(targets) == logits.rows,
              "xent_target", "targets", targets);
    const struct cuda_launch l = cuda_launch_elementwise(logits.rows);
    if (l.grid_x == 0) return;
    xent_target_kernel<<<(unsigned)l.grid_x, l.threads, 0, cuda_stream(b)>>>(
        (float *)tlogit.data, logits.data, logits.dt, (const int32_t *)targets.data,
        logits.rows, logits.cols, v0);
    CUDA_CHECK_LAUNCH("xent_target");
}

extern "C" void cuda_xent_bwd(struct backend *b, struct tensor logits, struct tensor rowmax,
                              struct tensor sumexp, struct tensor targets, float dloss, int v0,
                              int V)
{
    xent_rows("xent_bwd", logits, rowmax, "rowmax");
    xent_rows("xent_bwd", logits, sumexp, "sumexp");
    CUDA_NN_NEED(targets.data && targets.dt == KDT_I32 && tensor_numel(targets) == logits.rows,
              "xent_bwd", "targets", targets);
    const struct cuda_launch l = cuda_launch_block_rows(logits.rows);
    if (l.grid_x == 0) return;
    xent_bwd_kernel<<<(unsigned)l.grid_x, l.threads, 0, cuda_stream(b)>>>(
        logits.data, logits.dt, (const float *)rowmax.data, (const float *)sumexp.data,
        (const int32_t *)targets.data, dloss, logits.cols, xent_n_real(logits.cols, v0, V), v0);
    CUDA_CHECK_LAUNCH("xent_bwd");
}

extern "C" double cuda_xent_loss(struct backend *b, struct tensor rowmax, struct tensor sumexp,
                                 struct tensor tlogit)
{
    const char *kn = "xent_loss";
    CUDA_NN_NEED(rowmax.data && rowmax.dt == KDT_F32, kn, "rowmax", rowmax);
    CUDA_NN_NEED(sumexp.data && sumexp.dt == KDT_F32 &&
                  tensor_numel(sumexp) == tensor_numel(rowmax), kn, "sumexp", sumexp);
    CUDA_NN_NEED(tlogit.data && tlogit.dt == KDT_F32 &&
                  tensor_numel(tlogit) == tensor_numel(rowmax), kn, "tlogit", tlogit);
    cudaStream_t s = cuda_stream(b);
    double *d_loss = (double *)backend_workspace(b, 0, sizeof(double));
    xent_loss_kernel<<<1, CUDA_ELEM_THREADS, 0, s>>>(d_loss, (const float *)rowmax.data,
                                                     (const float *)sumexp.data,
                                                     (const float *)tlogit.data,
                                                     tensor_numel(rowmax));
    CUDA_CHECK_LAUNCH(kn);
    double loss = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&loss, d_loss, sizeof loss, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    return loss;
}

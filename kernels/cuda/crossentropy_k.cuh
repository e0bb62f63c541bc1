/* crossentropy_k.cuh — the device code of crossentropy.cu: the cross-entropy row reductions,
 * target gather, backward and loss sum. Only __global__ / __device__ functions and the types
 * and constants they use; the host launchers stay in crossentropy.cu, which includes this
 * file. tests/cuda_emu compiles it with g++ (-DTR_CUDA_EMU) against a CPU emulation of
 * blocks and warps, so the kernels' own source is checked in every CPU test run. */
#ifndef TRIDENT_CUDA_CROSSENTROPY_K_CUH
#define TRIDENT_CUDA_CROSSENTROPY_K_CUH

#include <math.h>

#include "dtype.cuh"
#include "launch.h"

#define FULL_MASK 0xffffffffu
enum { XENT_WARPS = CUDA_ELEM_THREADS / CUDA_WARP };

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

#endif

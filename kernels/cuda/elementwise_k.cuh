/* elementwise_k.cuh — the device code of elementwise.cu: residual, convert, scale,
 * accumulate, the sum-of-squares partials and the non-finite count. Only __global__ /
 * __device__ functions and the types and constants they use; the host launchers stay in
 * elementwise.cu, which includes this file. tests/cuda_emu compiles it with g++
 * (-DTR_CUDA_EMU) against a CPU emulation of blocks and warps, so the kernels' own source is
 * checked in every CPU test run. */
#ifndef TRIDENT_CUDA_ELEMENTWISE_K_CUH
#define TRIDENT_CUDA_ELEMENTWISE_K_CUH

#include "dtype.cuh"
#include "reduce.cuh"

enum { EW_THREADS = 256, EW_MAX_BLOCKS = 65536, SUMSQ_BLOCKS = 1024 };

#define GRID_STRIDE(i, n)                                                                \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n);            \
         i += (int64_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------------------------- */
/* kernels                                                                              */

__global__ static void residual_kernel(void *out, enum kdtype odt, const void *a, enum kdtype adt,
                                       const void *c, enum kdtype cdt, int64_t n)
{
    GRID_STRIDE(i, n) st_act(out, odt, i, ld_act(a, adt, i) + ld_act(c, cdt, i));
}

__global__ static void convert_kernel(void *dst, enum kdtype ddt, const void *src,
                                      enum kdtype sdt, int64_t n)
{
    GRID_STRIDE(i, n) st_act(dst, ddt, i, ld_act(src, sdt, i));
}

__global__ static void scale_kernel(void *x, enum kdtype dt, float s, int64_t n)
{
    GRID_STRIDE(i, n) st_act(x, dt, i, ld_act(x, dt, i) * s);
}

__global__ static void accumulate_kernel(float *dst, const void *src, enum kdtype sdt, int64_t n)
{
    GRID_STRIDE(i, n) dst[i] += ld_act(src, sdt, i);
}

/* one partial sum of squares per block: thread t of block g takes elements
 * g*256 + t, then + gridDim*256, ... in order */
__global__ static void sumsq_partial_kernel(double *part, const void *x, enum kdtype dt, int64_t n)
{
    __shared__ double sh[EW_THREADS];
    double s = 0.0;
    GRID_STRIDE(i, n)
    {
        double v = (double)ld_act(x, dt, i);
        s += v * v;
    }
    s = block_reduce<red_sum>(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

/* the count of inf/NaN: exponent bits all set (fp32 0x7f800000, bf16 0x7f80, fp16 0x7c00) */
__global__ static void nonfinite_kernel(unsigned long long *count, const void *x, enum kdtype dt,
                                        int64_t n)
{
    __shared__ int sh[EW_THREADS];
    int bad = 0;
    GRID_STRIDE(i, n)
    {
        if (dt == KDT_F32) bad += (((const uint32_t *)x)[i] & 0x7f800000u) == 0x7f800000u;
        else {
            const uint16_t e = dt == KDT_BF16 ? 0x7f80u : 0x7c00u;
            bad += (((const uint16_t *)x)[i] & e) == e;
        }
    }
    bad = block_reduce<red_sum>(bad, sh);
    /* an integer sum: the same whatever order the blocks add in */
    if (threadIdx.x == 0 && bad) atomicAdd(count, (unsigned long long)bad);
}

#endif

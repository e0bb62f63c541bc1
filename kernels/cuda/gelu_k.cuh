/* gelu_k.cuh — the device code of gelu.cu: GELU forward and backward. Only __global__ /
 * __device__ functions and the types and constants they use; the host launchers stay in
 * gelu.cu, which includes this file. tests/cuda_emu compiles it with g++ (-DTR_CUDA_EMU)
 * against a CPU emulation of blocks and warps, so the kernels' own source is checked in
 * every CPU test run. */
#ifndef TRIDENT_CUDA_GELU_K_CUH
#define TRIDENT_CUDA_GELU_K_CUH

#include <math.h>

#include "dtype.cuh"
#include "launch.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

static __device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
gelu_fwd_kernel(void *out, enum kdtype out_dt, const void *inp, enum kdtype inp_dt, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float x = ld_act(inp, inp_dt, i);
        const float u = GELU_K * (x + GELU_A * x * x * x);
        st_act(out, out_dt, i, x * sigmoid(2.0f * u));
    }
}

/* d/dx [x s(2u)] = s + x 2 s (1 - s) u', u' = k (1 + 3 a x^2). dinp may be dout: each
 * element is read, then written, by the same thread, so neither pointer is restrict. */
__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
gelu_bwd_kernel(void *dinp, enum kdtype di_dt, const void *inp, enum kdtype inp_dt,
                const void *dout, enum kdtype g_dt, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float x = ld_act(inp, inp_dt, i);
        const float u = GELU_K * (x + GELU_A * x * x * x);
        const float s = sigmoid(2.0f * u);
        const float du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
        const float g = ld_act(dout, g_dt, i);
        st_act(dinp, di_dt, i, g * (s + x * 2.0f * s * (1.0f - s) * du));
    }
}

#endif

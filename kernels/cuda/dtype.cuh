/* dtype.cuh — device-side loads and stores of the activation dtypes (fp32, bf16, fp16):
 * arithmetic is fp32 in every kernel; a 16-bit value is widened when it is loaded and
 * rounded to nearest even once, when it is stored (as the CPU backend's convert.c). */
#ifndef TRIDENT_CUDA_DTYPE_CUH
#define TRIDENT_CUDA_DTYPE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "tensor.h"

__device__ __forceinline__ float ld_act(const void *p, enum kdtype dt, int64_t i)
{
    switch (dt) {
    case KDT_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case KDT_F16: return __half2float(((const __half *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

__device__ __forceinline__ void st_act(void *p, enum kdtype dt, int64_t i, float x)
{
    switch (dt) {
    case KDT_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(x); break;
    case KDT_F16: ((__half *)p)[i] = __float2half_rn(x); break;
    default: ((float *)p)[i] = x; break;
    }
}

#endif

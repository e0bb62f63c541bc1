/* optimizers_k.cuh — the device code of optimizers.cu: AdamW, LAMB, LARS/SGD momentum and
 * the state conversions on state of any form. Only __global__ / __device__ functions and the
 * types and constants they use; the host launchers stay in optimizers.cu, which includes
 * this file. tests/cuda_emu compiles it with g++ (-DTR_CUDA_EMU) against a CPU emulation of
 * blocks and warps, so the kernels' own source is checked in every CPU test run. */
#ifndef TRIDENT_CUDA_OPTIMIZERS_K_CUH
#define TRIDENT_CUDA_OPTIMIZERS_K_CUH

#include <math.h>

#include "dtype.cuh"
#include "reduce.cuh"
extern "C" {
#include "kernels.h"
}

enum { QB = KSTATE_BLOCK };
enum sform { SF_F32, SF_BF16, SF_I8 };

/* a state buffer as the kernels see it */
struct dstate {
    int    form;   /* enum sform */
    void  *q;
    float *scale;  /* int8: one per block */
    int    role;   /* 0: signed (first moment, momentum), 1: second moment (>= 0) */
};

/* element i (of block blk) of s */
__device__ static float st_load(const dstate &s, int64_t blk, int64_t i)
{
    if (s.form == SF_F32) return ((const float *)s.q)[i];
    if (s.form == SF_BF16) return __bfloat162float(((const __nv_bfloat16 *)s.q)[i]);
    const float A = s.scale[blk];
    const int8_t c = ((const int8_t *)s.q)[i];
    if (s.role == 0) {
        float t = (float)c / 127.0f;  /* 127/127 is exactly 1: the block's max is A */
        return t * t * A * (c < 0 ? -1.0f : 1.0f);
    }
    float t = (float)(uint8_t)c / 255.0f, t2 = t * t;
    return t2 * t2 * A;
}

/* x (element j of block blk; active: j < the block's length) into s; returns the value
 * stored (rounded, or decoded again). Every thread of the block calls it. */
__device__ static float st_store(const dstate &s, int64_t blk, int64_t i, bool active, float x,
                                 float *shf, int *shi)
{
    if (s.form == SF_F32) {
        if (active) ((float *)s.q)[i] = x;
        return x;
    }
    if (s.form == SF_BF16) {
        __nv_bfloat16 h = __float2bfloat16_rn(x);
        if (active) ((__nv_bfloat16 *)s.q)[i] = h;
        return __bfloat162float(h);
    }
    const float a = active ? fabsf(x) : 0.0f;
    const float A = block_reduce<red_max>(a, shf);
    const int bad = block_reduce<red_max>(active && !isfinite(a) ? 1 : 0, shi);
    int8_t *q = (int8_t *)s.q;
    if (bad || A == 0.0f) {
        /* a NaN or inf stays visible in the scale (the state's finiteness check) */
        if (threadIdx.x == 0) s.scale[blk] = bad ? NAN : 0.0f;
        if (active) q[i] = 0;
        return bad ? NAN : 0.0f;
    }
    if (threadIdx.x == 0) s.scale[blk] = A;
    int8_t code;
    if (s.role == 0) {
        int c = __float2int_rn(127.0f * sqrtf(fabsf(x) / A));
        c = c > 127 ? 127 : c;
        code = (int8_t)(x < 0 ? -c : c);
    } else {
        float u = x > 0 ? x / A : 0.0f;
        int c = __float2int_rn(255.0f * sqrtf(sqrtf(u)));
        c = c > 255 ? 255 : c;
        code = (int8_t)(uint8_t)c;
    }
    if (active) q[i] = code;
    /* decode as st_load does (the scale just written is A) */
    if (s.role == 0) {
        float t = (float)code / 127.0f;
        return t * t * A * (code < 0 ? -1.0f : 1.0f);
    }
    float t = (float)(uint8_t)code / 255.0f, t2 = t * t;
    return t2 * t2 * A;
}

/* ---------------------------------------------------------------------------------- */
/* kernels (grid: one block of QB threads per state block)                             */

#define BLOCK_ELEMENT(n)                                                                 \
    const int64_t blk = blockIdx.x, i = blk * QB + threadIdx.x;                          \
    const bool active = i < (n)

__global__ static void adamw_kernel(float *P, const float *G, float *m, float *v, int64_t n,
                                    float lr, float b1, float b2, float eps, float wd, float gs,
                                    float c1, float c2)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float g = G[i] * gs;
        float mi = b1 * m[i] + (1.0f - b1) * g;
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        P[i] -= lr * ((mi * c1) / (sqrtf(vi * c2) + eps) + wd * P[i]);
    }
}

/* Adam's two moments of element i after gradient g (AdamW and LAMB alike; the CPU's
 * expressions in the CPU's order) */
__device__ static void adam_moments(const dstate &m, const dstate &v, int64_t blk, int64_t i,
                                    float g, float b1, float b2, float *mi, float *vi)
{
    *mi = b1 * st_load(m, blk, i) + (1.0f - b1) * g;
    *vi = b2 * st_load(v, blk, i) + (1.0f - b2) * g * g;
}

__global__ static void adamw_state_kernel(float *P, const float *G, dstate m, dstate v, int64_t n,
                                          float lr, float b1, float b2, float eps, float wd,
                                          float gs, float c1, float c2)
{
    __shared__ float shf[QB];
    __shared__ int shi[QB];
    BLOCK_ELEMENT(n);
    float mi = 0.0f, vi = 0.0f;
    if (active) {
        adam_moments(m, v, blk, i, G[i] * gs, b1, b2, &mi, &vi);
        P[i] -= lr * ((mi * c1) / (sqrtf(vi * c2) + eps) + wd * P[i]);
    }
    st_store(m, blk, i, active, mi, shf, shi);
    st_store(v, blk, i, active, vi, shf, shi);
}

/* part[blk] = the block's sum of r^2 over the owned elements */
__global__ static void lamb_moments_kernel(double *part, const float *P, const float *G, dstate m,
                                           dstate v, int64_t n, float b1, float b2, float eps,
                                           float wd, float gs, float c1, float c2, int64_t own0,
                                           int64_t own1)
{
    __shared__ float shf[QB];
    __shared__ int shi[QB];
    __shared__ double shd[QB];
    BLOCK_ELEMENT(n);
    float mi = 0.0f, vi = 0.0f;
    if (active) {
        adam_moments(m, v, blk, i, G[i] * gs, b1, b2, &mi, &vi);
    }
    mi = st_store(m, blk, i, active, mi, shf, shi);
    vi = st_store(v, blk, i, active, vi, shf, shi);
    double s = 0.0;
    if (active && i >= own0 && i < own1) {
        float r = (mi * c1) / (sqrtf(vi * c2) + eps) + wd * P[i];
        s = (double)r * r;
    }
    s = block_reduce<red_sum>(s, shd);
    if (threadIdx.x == 0) part[blk] = s;
}

__global__ static void lamb_apply_kernel(float *P, dstate m, dstate v, int64_t n, float lr,
                                         float eps, float wd, float c1, float c2)
{
    BLOCK_ELEMENT(n);
    if (!active) return;  /* no block-wide step here: idle threads may leave */
    float mi = st_load(m, blk, i), vi = st_load(v, blk, i);
    float r = (mi * c1) / (sqrtf(vi * c2) + eps) + wd * P[i];
    P[i] -= lr * r;
}

__global__ static void momentum_kernel(float *P, const float *G, dstate mom, int64_t n, float lr,
                                       float local_lr, float mu, float wd, float gs)
{
    __shared__ float shf[QB];
    __shared__ int shi[QB];
    BLOCK_ELEMENT(n);
    float mb = 0.0f;
    if (active) {
        mb = st_load(mom, blk, i);
        float g = G[i] * gs;
        mb = mu * mb + local_lr * (g + wd * P[i]);
        P[i] -= lr * mb;
    }
    st_store(mom, blk, i, active, mb, shf, shi);
}

__global__ static void state_to_f32_kernel(float *D, dstate s, int64_t n)
{
    BLOCK_ELEMENT(n);
    if (active) D[i] = st_load(s, blk, i);
}

__global__ static void state_from_f32_kernel(dstate d, const float *S, int64_t n)
{
    __shared__ float shf[QB];
    __shared__ int shi[QB];
    BLOCK_ELEMENT(n);
    st_store(d, blk, i, active, active ? S[i] : 0.0f, shf, shi);
}

#endif

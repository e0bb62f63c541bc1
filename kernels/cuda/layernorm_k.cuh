/* layernorm_k.cuh — the device code of layernorm.cu: LayerNorm forward, input gradient and
 * the dw/db partials. Only __global__ / __device__ functions and the types and constants
 * they use; the host launchers stay in layernorm.cu, which includes this file.
 * tests/cuda_emu compiles it with g++ (-DTR_CUDA_EMU) against a CPU emulation of blocks and
 * warps, so the kernels' own source is checked in every CPU test run. */
#ifndef TRIDENT_CUDA_LAYERNORM_K_CUH
#define TRIDENT_CUDA_LAYERNORM_K_CUH

#include <math.h>

#include "dtype.cuh"
#include "launch.h"

#define FULL_MASK 0xffffffffu

static __device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(FULL_MASK, x, o);
    return x;
}

__global__ void __launch_bounds__(CUDA_ROW_WARPS * CUDA_WARP)
layernorm_fwd_kernel(void *out, enum kdtype out_dt, float *mean, float *rstd,
                     const void *inp, enum kdtype inp_dt, const void *w, enum kdtype w_dt,
                     const void *bias, enum kdtype b_dt, int64_t N, int C)
{
    const int64_t n = (int64_t)blockIdx.x * CUDA_ROW_WARPS + threadIdx.x / CUDA_WARP;
    const int lane = threadIdx.x % CUDA_WARP;
    if (n >= N) return;  /* the whole warp: rows are warp-uniform */
    const int64_t row = n * C;
    float s = 0.0f;
    for (int i = lane; i < C; i += CUDA_WARP) s += ld_act(inp, inp_dt, row + i);
    const float m = warp_sum(s) / C;
    float v = 0.0f;
    for (int i = lane; i < C; i += CUDA_WARP) {
        const float d = ld_act(inp, inp_dt, row + i) - m;
        v = fmaf(d, d, v);
    }
    const float rs = 1.0f / sqrtf(warp_sum(v) / C + 1e-5f);
    for (int i = lane; i < C; i += CUDA_WARP) {
        const float xn = (ld_act(inp, inp_dt, row + i) - m) * rs;
        st_act(out, out_dt, row + i, xn * ld_act(w, w_dt, i) + ld_act(bias, b_dt, i));
    }
    if (lane == 0) {
        mean[n] = m;
        rstd[n] = rs;
    }
}

/* dinp += (w g - mean(w g) - xhat mean(w g xhat)) rstd, warp per row */
__global__ void __launch_bounds__(CUDA_ROW_WARPS * CUDA_WARP)
layernorm_bwd_inp_kernel(void *dinp, enum kdtype di_dt, const void *dout, enum kdtype g_dt,
                         const void *inp, enum kdtype inp_dt, const void *w, enum kdtype w_dt,
                         const float *mean, const float *rstd, int64_t N, int C)
{
    const int64_t n = (int64_t)blockIdx.x * CUDA_ROW_WARPS + threadIdx.x / CUDA_WARP;
    const int lane = threadIdx.x % CUDA_WARP;
    if (n >= N) return;
    const int64_t row = n * C;
    const float m = mean[n], rs = rstd[n];
    float s_dn = 0.0f, s_dnn = 0.0f;
    for (int i = lane; i < C; i += CUDA_WARP) {
        const float dn = ld_act(w, w_dt, i) * ld_act(dout, g_dt, row + i);
        s_dn += dn;
        s_dnn = fmaf(dn, (ld_act(inp, inp_dt, row + i) - m) * rs, s_dnn);
    }
    s_dn = warp_sum(s_dn) / C;
    s_dnn = warp_sum(s_dnn) / C;
    for (int i = lane; i < C; i += CUDA_WARP) {
        const float dn = ld_act(w, w_dt, i) * ld_act(dout, g_dt, row + i);
        const float xn = (ld_act(inp, inp_dt, row + i) - m) * rs;
        const float dx = (dn - s_dn - xn * s_dnn) * rs;
        st_act(dinp, di_dt, row + i, ld_act(dinp, di_dt, row + i) + dx);
    }
}

/* part[chunk][0][c] = sum over the chunk's rows of xhat * g, part[chunk][1][c] = of g */
__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
layernorm_bwd_partial_kernel(float *part, const void *dout, enum kdtype g_dt,
                             const void *inp, enum kdtype inp_dt, const float *mean,
                             const float *rstd, int64_t N, int C)
{
    const int c = blockIdx.x * CUDA_ELEM_THREADS + threadIdx.x;
    const int64_t chunk = blockIdx.y;
    if (c >= C) return;
    const int64_t n0 = chunk * CUDA_LN_CHUNK_ROWS;
    const int nr = cuda_tile_len(chunk, CUDA_LN_CHUNK_ROWS, N);
    float aw = 0.0f, ab = 0.0f;
    for (int r = 0; r < nr; r++) {
        const int64_t n = n0 + r, idx = n * C + c;
        const float g = ld_act(dout, g_dt, idx);
        aw = fmaf((ld_act(inp, inp_dt, idx) - mean[n]) * rstd[n], g, aw);
        ab += g;
    }
    part[(chunk * 2 + 0) * C + c] = aw;
    part[(chunk * 2 + 1) * C + c] = ab;
}

__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
layernorm_bwd_finish_kernel(float *dw, float *db, const float *part, int64_t n_chunks, int C)
{
    const int c = blockIdx.x * CUDA_ELEM_THREADS + threadIdx.x;
    if (c >= C) return;
    float aw = 0.0f, ab = 0.0f;
    for (int64_t k = 0; k < n_chunks; k++) {
        aw += part[(k * 2 + 0) * C + c];
        ab += part[(k * 2 + 1) * C + c];
    }
    dw[c] += aw;
    db[c] += ab;
}

#endif

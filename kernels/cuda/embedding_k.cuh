/* embedding_k.cuh — the device code of embedding.cu: embedding forward, the sort keys, dwte
 * over sorted runs and dwpe. Only __global__ / __device__ functions and the types and
 * constants they use; the host launchers stay in embedding.cu, which includes this file.
 * tests/cuda_emu compiles it with g++ (-DTR_CUDA_EMU) against a CPU emulation of blocks and
 * warps, so the kernels' own source is checked in every CPU test run. */
#ifndef TRIDENT_CUDA_EMBEDDING_K_CUH
#define TRIDENT_CUDA_EMBEDDING_K_CUH

#include "dtype.cuh"
#include "launch.h"

__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
embedding_fwd_kernel(void *out, enum kdtype out_dt, const int32_t *tokens, const void *wte,
                     enum kdtype wte_dt, const void *wpe, enum kdtype wpe_dt, int T, int C,
                     int v0, int Vl, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t bt = i / C;
        const int c = (int)(i % C);
        const int tok = tokens[bt] - v0;
        /* a token outside the shard contributes 0: the sum over shards is the full row */
        float x = tok >= 0 && tok < Vl ? ld_act(wte, wte_dt, (int64_t)tok * C + c) : 0.0f;
        if (wpe) x += ld_act(wpe, wpe_dt, (bt % T) * C + c);
        st_act(out, out_dt, i, x);
    }
}

__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
embedding_keys_kernel(int32_t *keys, int32_t *pos, const int32_t *tokens, int v0, int Vl,
                      int n)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const int tok = tokens[i] - v0;
        keys[i] = tok >= 0 && tok < Vl ? tok : Vl;
        pos[i] = i;
    }
}

/* block x: a position p of the sorted pairs; block y: CUDA_EMB_COLS columns */
__global__ void __launch_bounds__(CUDA_EMB_COLS)
embedding_dwte_kernel(float *dwte, const int32_t *keys, const int32_t *pos, const void *dout,
                      enum kdtype g_dt, int C, int Vl, int n)
{
    const int p = blockIdx.x;
    const int c = blockIdx.y * CUDA_EMB_COLS + threadIdx.x;
    const int key = keys[p];
    if (key >= Vl || (p > 0 && keys[p - 1] == key) || c >= C) return;
    float acc = 0.0f;
    for (int q = p; q < n && keys[q] == key; q++)
        acc += ld_act(dout, g_dt, (int64_t)pos[q] * C + c);
    dwte[(int64_t)key * C + c] += acc;
}

__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
embedding_dwpe_kernel(float *dwpe, const void *dout, enum kdtype g_dt, int B, int T, int C)
{
    const int64_t n = (int64_t)T * C;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int bb = 0; bb < B; bb++) acc += ld_act(dout, g_dt, (int64_t)bb * n + i);
        dwpe[i] += acc;
    }
}

#endif

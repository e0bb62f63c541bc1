/* attention_k.cuh — the device code of attention.cu: the flash-style attention forward and
 * its two backward kernels. Only __global__ / __device__ functions and the types and
 * constants they use; the host launchers stay in attention.cu, which includes this file.
 * tests/cuda_emu compiles it with g++ (-DTR_CUDA_EMU) against a CPU emulation of blocks and
 * warps, so the kernels' own source is checked in every CPU test run. */
#ifndef TRIDENT_CUDA_ATTENTION_K_CUH
#define TRIDENT_CUDA_ATTENTION_K_CUH

#include <math.h>

#include "dtype.cuh"
#include "launch.h"

#define FULL_MASK 0xffffffffu

/* The block's dynamic shared memory (its size is the launch's smem). The emulator in
 * tests/cuda_emu defines this itself, to hand out a buffer with guard bytes around it. */
#ifndef CUDA_DYN_SHARED
#define CUDA_DYN_SHARED(type, name) extern __shared__ type name[]
#endif

static __device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(FULL_MASK, x, o);
    return x;
}

static __device__ __forceinline__ float warp_max(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(FULL_MASK, x, o));
    return x;
}

/* Everything one attention call's kernels read and write. Token row r = b*T + t; in
 * qkv its q of head h is at column h*hs, k at Cq + h*hs, v at 2*Cq + h*hs. Per-row fp32
 * values (lse, D) are indexed by (b*NH + h)*T + t. */
struct att_args {
    const void *qkv;
    enum kdtype qkv_dt;
    void *out;              /* forward */
    enum kdtype out_dt;
    float *lse;             /* [B*NH*T] */
    const void *dout;       /* backward */
    enum kdtype dout_dt;
    void *dqkv;
    enum kdtype dqkv_dt;
    float *D;               /* backward scratch [B*NH*T] */
    int T, NH, Cq;
    float scale;
    int64_t BH, n_tiles;
};

/* Stage rows [t0, t0 + n_rows) of one head's q, k or v slice (column offset col) as fp32
 * into dst with row stride `stride`; rows at or past T are zeros. */
template <int HS>
static __device__ __forceinline__ void stage_rows(float *dst, int stride, const att_args &a,
                                                  int64_t seq_base, int col, int t0,
                                                  int n_rows)
{
    const int64_t ld = 3 * (int64_t)a.Cq;
    for (int e = threadIdx.x; e < n_rows * HS; e += blockDim.x) {
        const int r = e / HS, d = e % HS, t = t0 + r;
        dst[r * stride + d] =
            t < a.T ? ld_act(a.qkv, a.qkv_dt, seq_base + (int64_t)t * ld + col + d) : 0.0f;
    }
}

/* The same for rows of dout ([B*T][Cq], head h at column h*hs). */
template <int HS>
static __device__ __forceinline__ void stage_dout(float *dst, int stride, const att_args &a,
                                                  int64_t seq_base, int t0, int n_rows)
{
    for (int e = threadIdx.x; e < n_rows * HS; e += blockDim.x) {
        const int r = e / HS, d = e % HS, t = t0 + r;
        dst[r * stride + d] =
            t < a.T ? ld_act(a.dout, a.dout_dt, seq_base + (int64_t)t * a.Cq + d) : 0.0f;
    }
}

template <int HS>
static __device__ __forceinline__ float dot_rows(const float *x, const float *y)
{
    float acc = 0.0f;
#pragma unroll
    for (int d = 0; d < HS; d++) acc = fmaf(x[d], y[d], acc);
    return acc;
}

/* ---------------------------------------------------------------------------------- */
/* forward                                                                              */

template <int HS>
__global__ void __launch_bounds__(CUDA_ATT_THREADS) attention_fwd_kernel(att_args a)
{
    constexpr int NC = (HS + CUDA_WARP - 1) / CUDA_WARP;  /* output columns per lane */
    constexpr int R = CUDA_ATT_ROWS;
    CUDA_DYN_SHARED(float, smem);
    float *sQ = smem;                                 /* [BR][HS] */
    float *sK = sQ + CUDA_ATT_BR * HS;                /* [BC][HS+1] */
    float *sV = sK + CUDA_ATT_BC * (HS + 1);          /* [BC][HS] */

    const int64_t bh = blockIdx.x % a.BH;
    const int64_t tile = a.n_tiles - 1 - blockIdx.x / a.BH;  /* longest rows first */
    const int b = (int)(bh / a.NH), h = (int)(bh % a.NH);
    const int q0 = (int)(tile * CUDA_ATT_BR);
    const int warp = threadIdx.x / CUDA_WARP, lane = threadIdx.x % CUDA_WARP;
    const int64_t qkv_base = (int64_t)b * a.T * 3 * a.Cq + h * HS;

    stage_rows<HS>(sQ, HS, a, qkv_base, 0, q0, CUDA_ATT_BR);

    float m[R], l[R], o[R][NC];
#pragma unroll
    for (int rr = 0; rr < R; rr++) {
        m[rr] = -INFINITY;
        l[rr] = 0.0f;
#pragma unroll
        for (int c = 0; c < NC; c++) o[rr][c] = 0.0f;
    }

    const int n_kt = (int)cuda_att_key_tiles(q0, a.T);
    for (int kt = 0; kt < n_kt; kt++) {
        const int k0 = kt * CUDA_ATT_BC;
        __syncthreads();  /* the previous tile is consumed */
        stage_rows<HS>(sK, HS + 1, a, qkv_base, a.Cq, k0, CUDA_ATT_BC);
        stage_rows<HS>(sV, HS, a, qkv_base, 2 * a.Cq, k0, CUDA_ATT_BC);
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < R; rr++) {
            const int i = warp * R + rr, t = q0 + i;
            if (t >= a.T) continue;  /* the same for the whole warp */
            const int j = k0 + lane;
            const bool vis = j <= t;  /* j <= t < T: a real key */
            const float s = vis ? dot_rows<HS>(sQ + i * HS, sK + lane * (HS + 1)) * a.scale
                                : -INFINITY;
            const float mt = warp_max(s);
            if (mt == -INFINITY) continue;  /* no key of this tile is visible to row t */
            const float mn = fmaxf(m[rr], mt);
            const float corr = expf(m[rr] - mn);  /* 0 on the first visible tile */
            const float p = vis ? expf(s - mn) : 0.0f;
            l[rr] = l[rr] * corr + warp_sum(p);
            m[rr] = mn;
#pragma unroll
            for (int c = 0; c < NC; c++) o[rr][c] *= corr;
#pragma unroll 8
            for (int jj = 0; jj < CUDA_ATT_BC; jj++) {
                const float pj = __shfl_sync(FULL_MASK, p, jj);
#pragma unroll
                for (int c = 0; c < NC; c++) {
                    const int d = lane + CUDA_WARP * c;
                    if (d < HS) o[rr][c] = fmaf(pj, sV[jj * HS + d], o[rr][c]);
                }
            }
        }
    }

#pragma unroll
    for (int rr = 0; rr < R; rr++) {
        const int t = q0 + warp * R + rr;
        if (t >= a.T) continue;
        const float inv = 1.0f / l[rr];  /* l >= 1: the row's max contributes exp(0) */
        const int64_t orow = ((int64_t)b * a.T + t) * a.Cq + h * HS;
#pragma unroll
        for (int c = 0; c < NC; c++) {
            const int d = lane + CUDA_WARP * c;
            if (d < HS) st_act(a.out, a.out_dt, orow + d, o[rr][c] * inv);
        }
        if (lane == 0) a.lse[bh * a.T + t] = m[rr] + logf(l[rr]);
    }
}

/* ---------------------------------------------------------------------------------- */
/* backward 1: D and dQ, per query tile                                                 */

template <int HS>
__global__ void __launch_bounds__(CUDA_ATT_THREADS) attention_bwd_q_kernel(att_args a)
{
    constexpr int NC = (HS + CUDA_WARP - 1) / CUDA_WARP;
    constexpr int R = CUDA_ATT_ROWS;
    CUDA_DYN_SHARED(float, smem);
    float *sQ = smem;                                 /* [BR][HS] */
    float *sdO = sQ + CUDA_ATT_BR * HS;               /* [BR][HS] */
    float *sK = sdO + CUDA_ATT_BR * HS;               /* [BC][HS+1] */
    float *sV = sK + CUDA_ATT_BC * (HS + 1);          /* [BC][HS+1] */

    const int64_t bh = blockIdx.x % a.BH;
    const int64_t tile = a.n_tiles - 1 - blockIdx.x / a.BH;
    const int b = (int)(bh / a.NH), h = (int)(bh % a.NH);
    const int q0 = (int)(tile * CUDA_ATT_BR);
    const int warp = threadIdx.x / CUDA_WARP, lane = threadIdx.x % CUDA_WARP;
    const int64_t qkv_base = (int64_t)b * a.T * 3 * a.Cq + h * HS;
    const int64_t dout_base = (int64_t)b * a.T * a.Cq + h * HS;

    stage_rows<HS>(sQ, HS, a, qkv_base, 0, q0, CUDA_ATT_BR);
    stage_dout<HS>(sdO, HS, a, dout_base, q0, CUDA_ATT_BR);

    float lse[R], D[R], dq[R][NC];
#pragma unroll
    for (int rr = 0; rr < R; rr++) {
        const int t = q0 + warp * R + rr;
        lse[rr] = t < a.T ? a.lse[bh * a.T + t] : 0.0f;
        D[rr] = 0.0f;
#pragma unroll
        for (int c = 0; c < NC; c++) dq[rr][c] = 0.0f;
    }

    const int n_kt = (int)cuda_att_key_tiles(q0, a.T);
    /* pass 0: D (each lane sums its keys' P dP, the warp adds the lanes at the end);
     * pass 1: dQ with the finished D */
    for (int pass = 0; pass < 2; pass++) {
        for (int kt = 0; kt < n_kt; kt++) {
            const int k0 = kt * CUDA_ATT_BC;
            __syncthreads();
            stage_rows<HS>(sK, HS + 1, a, qkv_base, a.Cq, k0, CUDA_ATT_BC);
            stage_rows<HS>(sV, HS + 1, a, qkv_base, 2 * a.Cq, k0, CUDA_ATT_BC);
            __syncthreads();
#pragma unroll
            for (int rr = 0; rr < R; rr++) {
                const int i = warp * R + rr, t = q0 + i;
                if (t >= a.T) continue;
                const int j = k0 + lane;
                float p = 0.0f, dp = 0.0f;
                if (j <= t) {
                    const float s = dot_rows<HS>(sQ + i * HS, sK + lane * (HS + 1)) * a.scale;
                    p = expf(s - lse[rr]);
                    dp = dot_rows<HS>(sdO + i * HS, sV + lane * (HS + 1));
                }
                if (pass == 0) {
                    D[rr] = fmaf(p, dp, D[rr]);
                    continue;
                }
                const float ds = p * (dp - D[rr]) * a.scale;
#pragma unroll 8
                for (int jj = 0; jj < CUDA_ATT_BC; jj++) {
                    const float dsj = __shfl_sync(FULL_MASK, ds, jj);
#pragma unroll
                    for (int c = 0; c < NC; c++) {
                        const int d = lane + CUDA_WARP * c;
                        if (d < HS) dq[rr][c] = fmaf(dsj, sK[jj * (HS + 1) + d], dq[rr][c]);
                    }
                }
            }
        }
        if (pass == 0) {
#pragma unroll
            for (int rr = 0; rr < R; rr++) {
                D[rr] = warp_sum(D[rr]);
                const int t = q0 + warp * R + rr;
                if (t < a.T && lane == 0) a.D[bh * a.T + t] = D[rr];
            }
        }
    }

#pragma unroll
    for (int rr = 0; rr < R; rr++) {
        const int t = q0 + warp * R + rr;
        if (t >= a.T) continue;
        const int64_t row = ((int64_t)b * a.T + t) * 3 * a.Cq + h * HS;
#pragma unroll
        for (int c = 0; c < NC; c++) {
            const int d = lane + CUDA_WARP * c;
            if (d < HS) st_act(a.dqkv, a.dqkv_dt, row + d, dq[rr][c]);
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* backward 2: dK and dV, per key tile                                                  */

template <int HS>
__global__ void __launch_bounds__(CUDA_ATT_THREADS) attention_bwd_kv_kernel(att_args a)
{
    constexpr int NC = (HS + CUDA_WARP - 1) / CUDA_WARP;
    constexpr int R = CUDA_ATT_ROWS;
    CUDA_DYN_SHARED(float, smem);
    float *sK = smem;                                 /* [BR][HS] */
    float *sV = sK + CUDA_ATT_BR * HS;                /* [BR][HS] */
    float *sQ = sV + CUDA_ATT_BR * HS;                /* [BC][HS+1] */
    float *sdO = sQ + CUDA_ATT_BC * (HS + 1);         /* [BC][HS+1] */
    float *sL = sdO + CUDA_ATT_BC * (HS + 1);         /* [BC] lse */
    float *sD = sL + CUDA_ATT_BC;                     /* [BC] D */

    const int64_t bh = blockIdx.x % a.BH;
    const int64_t tile = blockIdx.x / a.BH;  /* the first key tiles have the most queries */
    const int b = (int)(bh / a.NH), h = (int)(bh % a.NH);
    const int k0 = (int)(tile * CUDA_ATT_BR);
    const int warp = threadIdx.x / CUDA_WARP, lane = threadIdx.x % CUDA_WARP;
    const int64_t qkv_base = (int64_t)b * a.T * 3 * a.Cq + h * HS;
    const int64_t dout_base = (int64_t)b * a.T * a.Cq + h * HS;

    stage_rows<HS>(sK, HS, a, qkv_base, a.Cq, k0, CUDA_ATT_BR);
    stage_rows<HS>(sV, HS, a, qkv_base, 2 * a.Cq, k0, CUDA_ATT_BR);

    float dk[R][NC], dv[R][NC];
#pragma unroll
    for (int rr = 0; rr < R; rr++)
#pragma unroll
        for (int c = 0; c < NC; c++) dk[rr][c] = dv[rr][c] = 0.0f;

    const int n_qt = (int)cuda_tile_count(a.T, CUDA_ATT_BC);
    for (int qt = (int)cuda_att_first_query_tile(k0); qt < n_qt; qt++) {
        const int i0 = qt * CUDA_ATT_BC;
        __syncthreads();
        stage_rows<HS>(sQ, HS + 1, a, qkv_base, 0, i0, CUDA_ATT_BC);
        stage_dout<HS>(sdO, HS + 1, a, dout_base, i0, CUDA_ATT_BC);
        if (threadIdx.x < CUDA_ATT_BC) {
            const int i = i0 + threadIdx.x;
            sL[threadIdx.x] = i < a.T ? a.lse[bh * a.T + i] : 0.0f;
            sD[threadIdx.x] = i < a.T ? a.D[bh * a.T + i] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < R; rr++) {
            const int r = warp * R + rr, j = k0 + r;
            if (j >= a.T) continue;
            const int i = i0 + lane;
            const bool vis = i >= j && i < a.T;  /* query i attends key j */
            if (!__any_sync(FULL_MASK, vis)) continue;
            float p = 0.0f, ds = 0.0f;
            if (vis) {
                const float s = dot_rows<HS>(sQ + lane * (HS + 1), sK + r * HS) * a.scale;
                p = expf(s - sL[lane]);
                const float dp = dot_rows<HS>(sdO + lane * (HS + 1), sV + r * HS);
                ds = p * (dp - sD[lane]) * a.scale;
            }
#pragma unroll 8
            for (int ii = 0; ii < CUDA_ATT_BC; ii++) {
                const float pi = __shfl_sync(FULL_MASK, p, ii);
                const float dsi = __shfl_sync(FULL_MASK, ds, ii);
#pragma unroll
                for (int c = 0; c < NC; c++) {
                    const int d = lane + CUDA_WARP * c;
                    if (d < HS) {
                        dv[rr][c] = fmaf(pi, sdO[ii * (HS + 1) + d], dv[rr][c]);
                        dk[rr][c] = fmaf(dsi, sQ[ii * (HS + 1) + d], dk[rr][c]);
                    }
                }
            }
        }
    }

#pragma unroll
    for (int rr = 0; rr < R; rr++) {
        const int j = k0 + warp * R + rr;
        if (j >= a.T) continue;
        const int64_t row = ((int64_t)b * a.T + j) * 3 * a.Cq + h * HS;
#pragma unroll
        for (int c = 0; c < NC; c++) {
            const int d = lane + CUDA_WARP * c;
            if (d < HS) {
                st_act(a.dqkv, a.dqkv_dt, row + a.Cq + d, dk[rr][c]);
                st_act(a.dqkv, a.dqkv_dt, row + 2 * a.Cq + d, dv[rr][c]);
            }
        }
    }
}

#endif

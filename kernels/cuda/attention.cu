/* attention.cu — causal self-attention, flash style: nothing T x T is ever stored.
 *
 * Forward: a block owns one (sequence, head) pair and a tile of CUDA_ATT_BR query rows;
 * each of its warps owns CUDA_ATT_ROWS of those rows. The block walks the key tiles up to
 * the diagonal (CUDA_ATT_BC = 32 keys, one per lane), staging K and V in shared memory as
 * fp32. For each row a lane computes one score (its key's dot product with the query),
 * the warp keeps an online softmax (running max m, running sum l, fp32) and each lane
 * accumulates hs/32 output columns. The output is o / l; the row's log-sum-exp m + log l
 * (scores scaled by 1/sqrt(hs)) is the only thing kept for the backward pass, one fp32
 * per row in `att`.
 *
 * Backward, two kernels and no float atomics, each output element written by one lane:
 *  1. per query tile (dQ): the row's D = sum_j P_ij dP_ij (which equals dout . out, the
 *     softmax backward's row term, without needing `out`, which the kernel is not given)
 *     in a first walk over the key tiles, with P_ij = exp(s_ij - lse_i) recomputed from
 *     the saved log-sum-exp and dP_ij = dout_i . v_j; D goes to the scratch. A second walk
 *     accumulates dq_i = scale * sum_j P_ij (dP_ij - D_i) k_j. Recomputing P twice costs
 *     one more pass of dot products than recomputing `out` once would, and keeps the
 *     kernel one simple loop nest.
 *  2. per key tile (dK, dV): walks the query tiles from the diagonal to T with the
 *     queries' lse and D: dv_j = sum_i P_ij dout_i, dk_j = scale * sum_i dS_ij q_i.
 * Every sum runs in a fixed order (a lane over its own keys or columns, then a fixed
 * butterfly across the warp), so the results are bitwise reproducible.
 *
 * The arithmetic is fp32 on the CUDA cores (SIMT), not tensor cores: simple and exact
 * enough to check against the CPU, but several times slower than a tensor-core flash
 * kernel for large head sizes (see the README's CUDA section).
 *
 * Head sizes are template parameters (16, 32, 64, 128: those of the configs in inputs/ and
 * GPT-2 XL's); launch.c plans the launches and refuses any other.
 */
#include <math.h>

#include "cuda_common.h"
#include "dtype.cuh"
#include "launch.h"

#define FULL_MASK 0xffffffffu

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
    extern __shared__ float smem[];
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
    extern __shared__ float smem[];
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
    extern __shared__ float smem[];
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

/* ---------------------------------------------------------------------------------- */
/* launchers                                                                            */

/* Checks the shapes (as the CPU backend's attn_dims, with the CUDA form of att) and
 * plans the launches; aborts with the planner's message when the device cannot run them. */
static void att_setup(const char *kn, struct tensor qkv, struct tensor att, int B, int NH,
                      struct cuda_attn_plan *plan, att_args *a)
{
    CUDA_NN_NEED(qkv.data && cuda_is_float(qkv) && B > 0 && qkv.rows % B == 0 &&
                  qkv.cols % 3 == 0 && NH > 0 && (qkv.cols / 3) % NH == 0,
              kn, "qkv", qkv);
    const int T = (int)(qkv.rows / B), Cq = (int)(qkv.cols / 3);
    CUDA_NN_NEED(att.data && cuda_is_float(att) && att.rows == (int64_t)B * NH * T &&
                  att.cols == kernels_attention_saved_cols(KDEV_CUDA, T, att.dt) &&
                  (uintptr_t)att.data % sizeof(float) == 0,
              kn, "att (one fp32 log-sum-exp per row)", att);
    int dev = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    char err[512];
    if (cuda_attention_plan(B, NH, T, Cq / NH, (size_t)optin, plan, err, sizeof err))
        TR_ABORT("%s", err);
    *a = att_args{};
    a->qkv = qkv.data;
    a->qkv_dt = qkv.dt;
    a->lse = (float *)att.data;
    a->T = T;
    a->NH = NH;
    a->Cq = Cq;
    a->scale = 1.0f / sqrtf((float)(Cq / NH));
    a->BH = plan->BH;
    a->n_tiles = plan->n_tiles;
}

static void att_launch(void (*kernel)(att_args), const struct cuda_launch &l,
                       const att_args &a, cudaStream_t s, const char *name)
{
    if (l.grid_x == 0) return;
    if (l.smem_optin)
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)l.smem));
    kernel<<<(unsigned)l.grid_x, l.threads, l.smem, s>>>(a);
    CUDA_CHECK_LAUNCH(name);
}

template <int HS>
static void att_fwd(const cuda_attn_plan &p, const att_args &a, cudaStream_t s)
{
    att_launch(attention_fwd_kernel<HS>, p.fwd, a, s, "attention_fwd");
}

template <int HS>
static void att_bwd(const cuda_attn_plan &p, const att_args &a, cudaStream_t s)
{
    /* in stream order: the dK/dV kernel reads the D the dQ kernel writes */
    att_launch(attention_bwd_q_kernel<HS>, p.bwd_q, a, s, "attention_bwd (dQ)");
    att_launch(attention_bwd_kv_kernel<HS>, p.bwd_kv, a, s, "attention_bwd (dK, dV)");
}

extern "C" void cuda_attention_fwd(struct backend *b, struct tensor out, struct tensor att,
                                   struct tensor qkv, int B, int NH)
{
    const char *kn = "attention_fwd";
    cuda_attn_plan plan;
    att_args a;
    att_setup(kn, qkv, att, B, NH, &plan, &a);
    CUDA_NN_NEED(out.data && cuda_is_float(out) && out.rows == qkv.rows &&
                  out.cols == qkv.cols / 3, kn, "out", out);
    a.out = out.data;
    a.out_dt = out.dt;
    cudaStream_t s = cuda_stream(b);
    switch (plan.hs) {
    case 16: att_fwd<16>(plan, a, s); break;
    case 32: att_fwd<32>(plan, a, s); break;
    case 64: att_fwd<64>(plan, a, s); break;
    case 128: att_fwd<128>(plan, a, s); break;
    default: TR_ABORT("%s: head size %d has no kernel (launch.c and attention.cu disagree)",
                      kn, plan.hs);
    }
}

extern "C" void cuda_attention_bwd(struct backend *b, struct tensor dqkv, struct tensor scratch,
                                   struct tensor dout, struct tensor qkv, struct tensor att,
                                   int B, int NH)
{
    const char *kn = "attention_bwd";
    cuda_attn_plan plan;
    att_args a;
    att_setup(kn, qkv, att, B, NH, &plan, &a);
    CUDA_NN_NEED(dqkv.data && cuda_is_float(dqkv) && dqkv.rows == qkv.rows &&
                  dqkv.cols == qkv.cols, kn, "dqkv", dqkv);
    CUDA_NN_NEED(dout.data && cuda_is_float(dout) && dout.rows == qkv.rows &&
                  dout.cols == qkv.cols / 3, kn, "dout", dout);
    CUDA_NN_NEED(scratch.data && scratch.dt == KDT_F32 &&
                  tensor_numel(scratch) >= (int64_t)B * NH * a.T *
                                               kernels_attention_scratch_cols(KDEV_CUDA, a.T),
              kn, "scratch", scratch);
    a.dout = dout.data;
    a.dout_dt = dout.dt;
    a.dqkv = dqkv.data;
    a.dqkv_dt = dqkv.dt;
    a.D = (float *)scratch.data;
    cudaStream_t s = cuda_stream(b);
    switch (plan.hs) {
    case 16: att_bwd<16>(plan, a, s); break;
    case 32: att_bwd<32>(plan, a, s); break;
    case 64: att_bwd<64>(plan, a, s); break;
    case 128: att_bwd<128>(plan, a, s); break;
    default: TR_ABORT("%s: head size %d has no kernel (launch.c and attention.cu disagree)",
                      kn, plan.hs);
    }
}

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

#include "cuda_common.h"
#include "attention_k.cuh"

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

/* kernels.h — the compute interface of trident.
 *
 * src/ never calls BLAS or CUDA directly: it calls these functions through its
 * backend's table (backend_kernels), handing them typed tensors (kernels/tensor.h). One
 * table serves every element type: a kernel reads the dtype of each tensor it is given.
 * The CPU backend (kernels/cpu/, C + OpenMP + OpenBLAS) is the reference every other
 * backend is tested against; a CUDA backend (kernels/cuda/) will fill the same table.
 *
 * Element types (mixed precision, config key `precision`):
 *  - "activation" tensors (act) may be fp32, bf16 or fp16, all of one call alike: the
 *    weights' compute copy, activations, activation gradients, logits;
 *  - parameter gradients, optimizer state, master weights, LayerNorm statistics and the
 *    cross-entropy's per-row values are always fp32;
 *  - token ids are int32.
 * Arithmetic is fp32 inside every kernel (GEMMs accumulate in fp32, a 16-bit result is
 * rounded to nearest even once, when it is stored). The CPU backend multiplies bf16
 * matrices natively where the CPU has AVX512_BF16 and oneDNN is built in (bf16 products,
 * fp32 sums: kernels_native_matmul); every other 16-bit operand it widens to fp32 in a
 * workspace, computes, and narrows the result: 16 bits there halve the memory of what is
 * stored, not the arithmetic.
 *
 * Conventions (shared by every backend):
 *  - activations are row-major [rows][cols]; rows = B*T tokens;
 *  - weights are [out][in] row-major (as GPT-2): out = inp @ W^T + bias;
 *  - parameter gradients ACCUMULATE (+=), because they sum over micro-batches;
 *  - activation gradients are OVERWRITTEN (=), except where a function says it adds
 *    into a residual-stream gradient (layernorm_bwd), which is how the residual
 *    connections of the transformer sum their two gradient paths;
 *  - an absent tensor (TENSOR_NONE) skips what it is for, where a function allows it.
 * A shape that does not fit the others aborts with the kernel's name and the shapes.
 */
#ifndef TRIDENT_KERNELS_H
#define TRIDENT_KERNELS_H

#include <stdint.h>

#include "tensor.h"

enum kdevice { KDEV_CPU = 0, KDEV_CUDA = 1 };

struct backend;

/* One optimizer state buffer (a moment) of n elements, as the update kernels take it:
 *  - fp32 or bf16: q is a [1][n] tensor of that dtype, scale is absent (bf16 is rounded
 *    to nearest even after each update);
 *  - int8: q holds n bytes packed four to an int32 ([1][>= ceil(n/4)], KDT_I32), in blocks
 *    of KSTATE_BLOCK elements from the buffer's start, scale ([1][ceil(n/KSTATE_BLOCK)],
 *    fp32) is each block's largest magnitude A (NaN when the block holds a NaN or inf).
 *    Codes are companded so that small values keep a relative precision:
 *      first moment, momentum (signed): x = sign(c) (c/127)^2 A,   c in [-127, 127];
 *      second moment (role 1, >= 0):    x = (c/255)^4 A,          c in [0, 255] (unsigned).
 *    Encoding rounds the companded value to nearest; the block's largest element gets the
 *    largest code, so decoding and encoding again gives the same codes and scale (a
 *    checkpoint's fp32 copy of the state restores it bit for bit).
 * An update kernel decodes a block, updates it in fp32 and encodes it again. */
enum { KSTATE_BLOCK = 256 };
struct kstate {
    struct tensor q, scale;
};

struct kernels {
    const char *name;  /* "cpu" */

    /* out[M][N] = inp[M][K] @ w[N][K]^T (+ bias[1][N] when present). act: out, inp, w,
     * bias. */
    void (*matmul_fwd)(struct backend *b, struct tensor out, struct tensor inp,
                       struct tensor w, struct tensor bias);
    /* dinp[M][K]  = dout[M][N] @ w[N][K]           (act; skipped when absent)
     * dw[N][K]   += dout^T @ inp                   (fp32; skipped when absent)
     * dbias[1][N] += column sums of dout           (fp32; skipped when absent) */
    void (*matmul_bwd)(struct backend *b, struct tensor dinp, struct tensor dw,
                       struct tensor dbias, struct tensor dout, struct tensor inp,
                       struct tensor w);

    /* LayerNorm over the columns of inp[N][C], eps 1e-5: out = (x-mean)*rstd*w + b (act;
     * w, b: [1][C] act). mean[1][N], rstd[1][N] (fp32) are saved for the backward pass. */
    void (*layernorm_fwd)(struct backend *b, struct tensor out, struct tensor mean,
                          struct tensor rstd, struct tensor inp, struct tensor w,
                          struct tensor bias);
    /* dinp += ... (act; accumulates into the residual gradient), dw += , db += (fp32). */
    void (*layernorm_bwd)(struct backend *b, struct tensor dinp, struct tensor dw,
                          struct tensor db, struct tensor dout, struct tensor inp,
                          struct tensor w, struct tensor mean, struct tensor rstd);

    /* Causal self-attention over NH heads of size hs = Cq/NH, B sequences of
     * T = qkv.rows / B tokens (all act).
     * qkv: [B*T][3*Cq], each row is [q (Cq) | k (Cq) | v (Cq)], head h of q at
     *      columns h*hs .. h*hs+hs-1 (same for k, v).
     * out: [B*T][Cq] (heads concatenated); att: [B*NH*T][kernels_attention_saved_cols]
     * what the backward pass needs, in the backend's own form: on the CPU the softmax
     * probabilities (entries above the diagonal are written as 0), on CUDA each row's
     * log-sum-exp. Scale 1/sqrt(hs). */
    void (*attention_fwd)(struct backend *b, struct tensor out, struct tensor att,
                          struct tensor qkv, int B, int NH);
    /* dqkv = ... (overwritten). scratch: fp32, at least [B*NH*T][kernels_attention_
     * scratch_cols] (it may have more rows: a buffer sized for the longest micro-batch). */
    void (*attention_bwd)(struct backend *b, struct tensor dqkv, struct tensor scratch,
                          struct tensor dout, struct tensor qkv, struct tensor att, int B,
                          int NH);

    /* GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
    void (*gelu_fwd)(struct backend *b, struct tensor out, struct tensor inp);
    /* dinp = dout * gelu'(inp)   (overwritten; dinp may be dout) */
    void (*gelu_bwd)(struct backend *b, struct tensor dinp, struct tensor inp,
                     struct tensor dout);

    /* out = a + c  (out may be a) */
    void (*residual_fwd)(struct backend *b, struct tensor out, struct tensor a,
                         struct tensor c);

    /* Token + position embedding with a vocabulary shard, tokens [B][T] (int32):
     * out[b*T+t][:] = (tok in [v0, v0+Vl) ? wte[tok-v0][:] : 0) + (wpe ? wpe[t][:] : 0).
     * wte: [Vl][C] (rows v0.. of the full table), wpe: [>=T][C] or absent (act). */
    void (*embedding_fwd)(struct backend *b, struct tensor out, struct tensor tokens,
                          struct tensor wte, struct tensor wpe, int v0);
    /* dwte[tok-v0][:] += dout[b*T+t][:] for tokens in the shard; dwpe[t][:] += sum_b dout
     * (skipped when dwpe is absent). dwte, dwpe fp32. Deterministic (no atomics, fixed
     * summation order). */
    void (*embedding_bwd)(struct backend *b, struct tensor dwte, struct tensor dwpe,
                          struct tensor dout, struct tensor tokens, int v0);

    /* Softmax cross-entropy over a vocabulary shard, in steps so that the caller can
     * combine shards with collectives between them (tensor parallelism) and never
     * gather the full logits. logits: [N][Vl] (act), global column of local column j is
     * v0+j; only global columns < V (the real vocabulary) take part: padded columns
     * never receive probability mass. rowmax, sumexp, tlogit: [1][N] fp32; targets
     * [1][N] int32.
     *  xent_max:    rowmax[n] = max_j logits[n][j]           (-INFINITY if no column)
     *  xent_sumexp: sumexp[n] = sum_j exp(logits[n][j] - rowmax[n])
     *  xent_target: tlogit[n] = logits[n][target[n]-v0] if the target is in the
     *               shard, else 0 (so a sum over shards gives the target logit)
     *  xent_bwd:    in place, logits become dlogits:
     *               (exp(l - rowmax)/sumexp - [j == target]) * dloss; padded: 0.
     *  xent_loss:   the sum over rows of log(sumexp[n]) + rowmax[n] - tlogit[n] (the
     *               loss of every row, from the combined values), in double. */
    void (*xent_max)(struct backend *b, struct tensor rowmax, struct tensor logits, int v0,
                     int V);
    void (*xent_sumexp)(struct backend *b, struct tensor sumexp, struct tensor logits,
                        struct tensor rowmax, int v0, int V);
    void (*xent_target)(struct backend *b, struct tensor tlogit, struct tensor logits,
                        struct tensor targets, int v0);
    void (*xent_bwd)(struct backend *b, struct tensor logits, struct tensor rowmax,
                     struct tensor sumexp, struct tensor targets, float dloss, int v0,
                     int V);
    double (*xent_loss)(struct backend *b, struct tensor rowmax, struct tensor sumexp,
                        struct tensor tlogit);

    /* AdamW with decoupled weight decay, bias-corrected, step t >= 1 (all fp32):
     * g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * p -= lr * ( (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd * p ). */
    void (*adamw)(struct backend *b, struct tensor p, struct tensor grad, struct tensor m,
                  struct tensor v, float lr, float b1, float b2, float eps, float wd,
                  float grad_scale, int t);

    /* The same AdamW step on state of any form (struct kstate; m: role 0, v: role 1).
     * With fp32 state it is `adamw`, bit for bit. The step uses the fp32 moments before
     * they are stored in their form. */
    void (*adamw_state)(struct backend *b, struct tensor p, struct tensor grad,
                        struct kstate m, struct kstate v, float lr, float b1, float b2,
                        float eps, float wd, float grad_scale, int t);
    /* LAMB, in two calls per tensor with a reduction of the norms between them:
     *  lamb_moments: g = grad * grad_scale; m, v as AdamW's, stored in their form; returns
     *    the sum of squares (double, fixed summation order) over elements [own0, own0+own_n)
     *    of r = (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd * p, r computed from the
     *    stored m, v;
     *  lamb_apply: p -= lr * r, r computed from the stored m, v the same way (the caller
     *    passes lr times the trust ratio ||p|| / ||r||). */
    double (*lamb_moments)(struct backend *b, struct tensor p, struct tensor grad,
                           struct kstate m, struct kstate v, float b1, float b2, float eps,
                           float wd, float grad_scale, int t, int64_t own0, int64_t own_n);
    void (*lamb_apply)(struct backend *b, struct tensor p, struct kstate m, struct kstate v,
                       float lr, float b1, float b2, float eps, float wd, int t);
    /* LARS: g = grad * grad_scale; mom = momentum * mom + local_lr * (g + wd * p);
     * p -= lr * mom (local_lr: the caller's trust * ||p|| / (||g|| + wd ||p||)). */
    void (*lars_update)(struct backend *b, struct tensor p, struct tensor grad,
                        struct kstate mom, float lr, float local_lr, float momentum, float wd,
                        float grad_scale);
    /* SGD with momentum: g = grad * grad_scale; mom = momentum * mom + g + wd * p;
     * p -= lr * mom. */
    void (*sgd_update)(struct backend *b, struct tensor p, struct tensor grad,
                       struct kstate mom, float lr, float momentum, float wd, float grad_scale);
    /* dst (fp32 [1][n]) = the values of state src (role 0: signed, 1: second moment) */
    void (*state_to_f32)(struct backend *b, struct tensor dst, struct kstate src, int role);
    /* state dst = src (fp32 [1][n]) in dst's form: rounded (bf16) or encoded (int8) */
    void (*state_from_f32)(struct backend *b, struct kstate dst, struct tensor src, int role);

    /* sum of squares in double, over an fp32 or 16-bit tensor (the gradient norm) */
    double (*sumsq)(struct backend *b, struct tensor x);
    /* x *= s (fp32 or 16-bit) */
    void (*scale)(struct backend *b, struct tensor x, float s);
    /* dst = src element by element, converted to dst's dtype (same number of elements;
     * fp32 -> 16-bit rounds to nearest even; same dtype: a copy) */
    void (*convert)(struct backend *b, struct tensor dst, struct tensor src);
    /* dst += src (fp32 dst, src of any float dtype): summing 16-bit partial results in
     * fp32, in the order the caller adds them */
    void (*accumulate)(struct backend *b, struct tensor dst, struct tensor src);
    /* the number of elements that are inf or NaN (fp32 or 16-bit) */
    int64_t (*count_nonfinite)(struct backend *b, struct tensor x);
};

/* What the attention kernels of device dev keep between the forward and the backward
 * pass, per (sequence, head, query) row, in columns of the activation dtype dt (the `att`
 * tensor of attention_fwd/bwd), and the fp32 columns per row of the backward's scratch:
 *  - the CPU keeps the softmax probabilities (T columns; scratch: T);
 *  - the CUDA backend's flash-style kernels keep the row's log-sum-exp, one fp32 value
 *    (1 column of fp32, 2 of a 16-bit dtype), and their scratch holds one fp32 per row
 *    (the row's sum of dout * out), so nothing T x T is ever stored.
 * The model allocates, and the memory plan counts, exactly this. */
int64_t     kernels_attention_saved_cols(enum kdevice dev, int T, enum kdtype dt);
int64_t     kernels_attention_scratch_cols(enum kdevice dev, int T);

/* How the CPU backend multiplies matrices of dtype dt in this process: 1 when it uses a
 * native 16-bit GEMM (bf16 through oneDNN on AVX512_BF16 CPUs, kernels/cpu/matmul16.c),
 * 0 when it widens to fp32 for sgemm; *impl (if not NULL) names the path. */
int         kernels_native_matmul(enum kdtype dt, const char **impl);

/* The CPU backend's BLAS: its core name (OpenBLAS' openblas_get_corename) and the
 * number of threads it uses. */
const char *kernels_blas_corename(void);
int         kernels_threads(void);

/* The hardware's peak fp32 FLOP/s for this process (all its threads at once), measured
 * by an FMA-throughput probe (kernels/cpu/peak.c; about 0.3 s); *isa_name (if not NULL)
 * says which vector ISA reached it ("avx512", "avx2", "scalar"). 2 FLOPs per FMA lane. */
double      kernels_peak_flops(const char **isa_name);
/* The peak of the arithmetic the matmuls of dtype dt use here (kernels_native_matmul):
 * the bf16 dot-product peak (AVX512_BF16: twice fp32's) for native bf16 GEMMs, else the
 * fp32 FMA peak ("avx512_bf16" in *isa_name for the former). MFU divides by this. */
double      kernels_peak_flops_matmul(enum kdtype dt, const char **isa_name);

#endif

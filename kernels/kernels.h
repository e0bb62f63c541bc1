/* kernels.h — the compute interface of trident.
 *
 * src/ never calls BLAS or CUDA directly: it calls these functions through a backend
 * table (struct kernels). The CPU backend (kernels/cpu/, C + OpenMP + OpenBLAS) is the
 * reference every other backend is tested against; a CUDA backend (kernels/cuda/) will
 * implement the same table.
 *
 * Element type: today every buffer is fp32 ("float"). The table is selected by
 * (device, dtype) in kernels_get(), so 16-bit variants arrive as new tables, not as
 * changes to the model code.
 *
 * Conventions (shared by every backend):
 *  - activations are row-major [rows][cols]; rows = B*T tokens;
 *  - weights are [out][in] row-major (as GPT-2): out = inp @ W^T + bias;
 *  - parameter gradients ACCUMULATE (+=), because they sum over micro-batches;
 *  - activation gradients are OVERWRITTEN (=), except where a function says it adds
 *    into a residual-stream gradient (layernorm_bwd), which is how the residual
 *    connections of the transformer sum their two gradient paths.
 */
#ifndef TRIDENT_KERNELS_H
#define TRIDENT_KERNELS_H

#include <stdint.h>

enum kdevice { KDEV_CPU = 0, KDEV_CUDA = 1 };
enum kdtype  { KDT_F32 = 0, KDT_BF16 = 1, KDT_F16 = 2 };

struct kernels {
    const char *name;  /* "cpu-f32" */

    /* out[M][N] = inp[M][K] @ w[N][K]^T (+ bias[N] when bias != NULL). */
    void (*matmul_fwd)(float *out, const float *inp, const float *w, const float *bias,
                       int M, int K, int N);
    /* dinp[M][K]  = dout[M][N] @ w[N][K]           (skipped when dinp == NULL)
     * dw[N][K]   += dout^T @ inp                   (skipped when dw == NULL)
     * dbias[N]   += column sums of dout            (skipped when dbias == NULL) */
    void (*matmul_bwd)(float *dinp, float *dw, float *dbias, const float *dout,
                       const float *inp, const float *w, int M, int K, int N);

    /* LayerNorm over the last dim C, eps 1e-5: out = (x-mean)*rstd*w + b.
     * mean[N], rstd[N] are saved for the backward pass. */
    void (*layernorm_fwd)(float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C);
    /* dinp += ...  (accumulates into the residual gradient), dw += , db += . */
    void (*layernorm_bwd)(float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const float *mean,
                          const float *rstd, int N, int C);

    /* Causal self-attention over NH heads of size hs = Cq/NH.
     * qkv: [B*T][3*Cq], each row is [q (Cq) | k (Cq) | v (Cq)], head h of q at
     *      columns h*hs .. h*hs+hs-1 (same for k, v).
     * out: [B*T][Cq] (heads concatenated); att: [B][NH][T][T] softmax probabilities
     * (entries above the diagonal are written as 0), kept for the backward pass.
     * Scale 1/sqrt(hs). */
    void (*attention_fwd)(float *out, float *att, const float *qkv, int B, int T,
                          int Cq, int NH);
    /* dqkv = ... (overwritten). scratch: at least B*NH*T*T floats. */
    void (*attention_bwd)(float *dqkv, float *scratch, const float *dout,
                          const float *qkv, const float *att, int B, int T, int Cq, int NH);

    /* GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
    void (*gelu_fwd)(float *out, const float *inp, long n);
    /* dinp = dout * gelu'(inp)   (overwritten; dinp may alias dout) */
    void (*gelu_bwd)(float *dinp, const float *inp, const float *dout, long n);

    /* out[i] = a[i] + b[i]  (out may alias a) */
    void (*residual_fwd)(float *out, const float *a, const float *b, long n);

    /* Token + position embedding with a vocabulary shard:
     * out[b,t,:] = (tok in [v0, v0+Vl) ? wte[tok-v0,:] : 0) + (wpe ? wpe[t,:] : 0).
     * wte: [Vl][C] (rows v0.. of the full table), wpe: [>=T][C]. */
    void (*embedding_fwd)(float *out, const int32_t *tokens, const float *wte,
                          const float *wpe, int B, int T, int C, int v0, int Vl);
    /* dwte[tok-v0,:] += dout[b,t,:] for tokens in the shard; dwpe[t,:] += sum_b dout
     * (skipped when dwpe == NULL). Deterministic (no atomics, fixed summation order). */
    void (*embedding_bwd)(float *dwte, float *dwpe, const float *dout,
                          const int32_t *tokens, int B, int T, int C, int v0, int Vl);

    /* Softmax cross-entropy over a vocabulary shard, in steps so that the caller can
     * combine shards with collectives between them (tensor parallelism) and never
     * gather the full logits. logits: [N][Vl], global column of local column j is
     * v0+j; only global columns < V (the real vocabulary) take part: padded columns
     * never receive probability mass.
     *  xent_max:    rowmax[n] = max_j logits[n][j]           (-INFINITY if no column)
     *  xent_sumexp: sumexp[n] = sum_j exp(logits[n][j] - rowmax[n])
     *  xent_target: tlogit[n] = logits[n][target[n]-v0] if the target is in the
     *               shard, else 0 (so a sum over shards gives the target logit)
     *  xent_bwd:    in place, logits become dlogits:
     *               (exp(l - rowmax)/sumexp - [j == target]) * dloss; padded: 0.
     *  loss of row n = log(sumexp[n]) + rowmax[n] - tlogit[n]  (global values). */
    void (*xent_max)(float *rowmax, const float *logits, int N, int Vl, int v0, int V);
    void (*xent_sumexp)(float *sumexp, const float *logits, const float *rowmax, int N,
                        int Vl, int v0, int V);
    void (*xent_target)(float *tlogit, const float *logits, const int32_t *targets,
                        int N, int Vl, int v0);
    void (*xent_bwd)(float *logits, const float *rowmax, const float *sumexp,
                     const int32_t *targets, float dloss, int N, int Vl, int v0, int V);

    /* AdamW with decoupled weight decay, bias-corrected, step t >= 1:
     * g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * p -= lr * ( (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd * p ). */
    void (*adamw)(float *p, const float *grad, float *m, float *v, long n, float lr,
                  float b1, float b2, float eps, float wd, float grad_scale, int t);

    /* sum of squares in double (for the global gradient norm) */
    double (*sumsq)(const float *x, long n);
    /* x *= s */
    void (*scale)(float *x, float s, long n);
};

/* The backend for (device, dtype), or NULL if it isn't built in. */
const struct kernels *kernels_get(enum kdevice dev, enum kdtype dt);

/* The CPU backend's BLAS: its core name (OpenBLAS' openblas_get_corename) and the
 * number of threads it uses. */
const char *kernels_blas_corename(void);
int         kernels_threads(void);

/* The hardware's peak fp32 FLOP/s for this process (all its threads at once), measured
 * by an FMA-throughput probe (kernels/cpu/peak.c; about 0.3 s); *isa_name (if not NULL)
 * says which vector ISA reached it ("avx512", "avx2", "scalar"). 2 FLOPs per FMA lane. */
double      kernels_peak_flops(const char **isa_name);

#endif

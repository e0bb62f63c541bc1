/* cpu.h — the CPU backend's fp32 kernels (private to kernels/). Semantics of each are
 * those of the matching member of struct kernels in kernels.h, on float arrays; the
 * table itself (kernels/cpu/typed.c, cpu_kernels) wraps them for typed tensors.
 *
 * Every kernel is OpenMP-parallel with static schedules and fixed summation orders,
 * so the same inputs give bit-identical outputs from run to run; reductions over rows
 * (dbias, LayerNorm dw/db, embedding grads) are split by column, so their results do
 * not even depend on the number of threads.
 */
#ifndef TRIDENT_KERNELS_CPU_H
#define TRIDENT_KERNELS_CPU_H

#include "kernels.h"

extern const struct kernels cpu_kernels;

void   cpu_matmul_fwd(float *out, const float *inp, const float *w, const float *bias,
                      int M, int K, int N);
void   cpu_matmul_bwd(float *dinp, float *dw, float *dbias, const float *dout,
                      const float *inp, const float *w, int M, int K, int N);
/* dbias[N] += column sums of a bf16 dout[M][N]: the bits of cpu_matmul_bwd's on dout widened */
void   cpu_matmul_dbias_bf16(float *dbias, const uint16_t *dout, int M, int N);
/* matmul16.c: bf16 GEMM on AVX512_BF16 (oneDNN), for bf16 tensors.
 * C[M][N] = op(A)[M][K] @ op(B)[K][N] (+ bias[N]) (+ C when accumulate), row-major; op(X)
 * is X, or X^T when trans_x (X stored [K][M] or [N][K]); A, B bf16, fp32 sums; C fp32, or
 * bf16 when c_bf16; bias fp32, or bf16 when bias_bf16. Returns 0 when done, -1 when it
 * cannot (no oneDNN, no avx512_bf16, TRIDENT_BF16_GEMM=0, or oneDNN refused the shape):
 * the caller then computes the product its own way. Not thread-safe: one caller. */
int    cpu_gemm_bf16_ready(void);          /* 1 when cpu_gemm_bf16 computes (CPU + library) */
const char *cpu_gemm_bf16_impl(void);      /* what it uses, or why not */
const char *cpu_gemm_bf16_last_impl(void); /* oneDNN's kernel for the last product */
int    cpu_gemm_bf16(int trans_a, int trans_b, int M, int N, int K, const uint16_t *A,
                     int lda, const uint16_t *B, int ldb, const void *bias, int bias_bf16,
                     int accumulate, void *C, int c_bf16, int ldc);
void   cpu_layernorm_fwd(float *out, float *mean, float *rstd, const float *inp,
                         const float *w, const float *b, int N, int C);
void   cpu_layernorm_bwd(float *dinp, float *dw, float *db, const float *dout,
                         const float *inp, const float *w, const float *mean,
                         const float *rstd, int N, int C);
void   cpu_attention_fwd(float *out, float *att, const float *qkv, int B, int T, int Cq,
                         int NH);
void   cpu_attention_bwd(float *dqkv, float *scratch, const float *dout, const float *qkv,
                         const float *att, int B, int T, int Cq, int NH);
void   cpu_gelu_fwd(float *out, const float *inp, long n);
void   cpu_gelu_bwd(float *dinp, const float *inp, const float *dout, long n);
void   cpu_residual_fwd(float *out, const float *a, const float *b, long n);
void   cpu_embedding_fwd(float *out, const int32_t *tokens, const float *wte,
                         const float *wpe, int B, int T, int C, int v0, int Vl);
void   cpu_embedding_bwd(float *dwte, float *dwpe, const float *dout,
                         const int32_t *tokens, int B, int T, int C, int v0, int Vl);
void   cpu_xent_max(float *rowmax, const float *logits, int N, int Vl, int v0, int V);
void   cpu_xent_sumexp(float *sumexp, const float *logits, const float *rowmax, int N,
                       int Vl, int v0, int V);
void   cpu_xent_target(float *tlogit, const float *logits, const int32_t *targets, int N,
                       int Vl, int v0);
void   cpu_xent_bwd(float *logits, const float *rowmax, const float *sumexp,
                    const int32_t *targets, float dloss, int N, int Vl, int v0, int V);
void   cpu_adamw(float *p, const float *grad, float *m, float *v, long n, float lr,
                 float b1, float b2, float eps, float wd, float grad_scale, int t);
/* optimizers.c: the optimizer-state kernels of the table, on typed tensors (kernels.h) */
void   cpu_t_adamw_state(struct backend *b, struct tensor p, struct tensor grad,
                         struct kstate m, struct kstate v, float lr, float b1, float b2,
                         float eps, float wd, float grad_scale, int t);
double cpu_t_lamb_moments(struct backend *b, struct tensor p, struct tensor grad,
                          struct kstate m, struct kstate v, float b1, float b2, float eps,
                          float wd, float grad_scale, int t, int64_t own0, int64_t own_n);
void   cpu_t_lamb_apply(struct backend *b, struct tensor p, struct kstate m, struct kstate v,
                        float lr, float b1, float b2, float eps, float wd, int t);
void   cpu_t_lars_update(struct backend *b, struct tensor p, struct tensor grad,
                         struct kstate mom, float lr, float local_lr, float momentum, float wd,
                         float grad_scale);
void   cpu_t_sgd_update(struct backend *b, struct tensor p, struct tensor grad,
                        struct kstate mom, float lr, float momentum, float wd, float grad_scale);
void   cpu_t_state_to_f32(struct backend *b, struct tensor dst, struct kstate src, int role);
void   cpu_t_state_from_f32(struct backend *b, struct kstate dst, struct tensor src, int role);
double cpu_sumsq(const float *x, long n);
void   cpu_scale(float *x, float s, long n);

/* peak.c: the best of `reps` runs of the fp32 FLOP/s of FMA chains on every OpenMP
 * thread at once, on the fastest ISA this CPU has (its name in *isa_name if not NULL). */
double cpu_peak_flops(int reps, const char **isa_name);
/* ... of bf16 dot products (vdpbf16ps, 4 FLOPs a lane) where the CPU has AVX512_BF16;
 * else the fp32 peak */
double cpu_peak_flops_bf16(int reps, const char **isa_name);

#endif

/* cuda_common.h — what every file of the CUDA backend shares (host C and nvcc C++ alike):
 * error checks, the per-rank device context behind struct backend's `dev`, the stream the
 * kernels run on, and the kernel entry points that fill the backend's kernel table
 * (kernels/kernels.h gives each one's contract; the CPU backend is the reference).
 *
 * Only files built by `make BACKEND=cuda` include this (*.cu, *_cuda.c, *_nccl.c).
 * Every kernel is queued on the context's stream and returns without waiting, except
 * those that return a value to the host (sumsq, xent_loss, count_nonfinite,
 * lamb_moments), which wait for their own result. Device memory comes from the backend's
 * pool (backend_alloc / backend_workspace), never from cudaMalloc inside a step.
 */
#ifndef TRIDENT_CUDA_COMMON_H
#define TRIDENT_CUDA_COMMON_H

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "backend_impl.h"
#include "common.h"
#ifdef __cplusplus
}
#endif

/* A failed CUDA runtime call is a bug or a broken device: abort naming the call. */
#define CUDA_CHECK(call)                                                                 \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess)                                                           \
            TR_ABORT("CUDA call failed: %s: %s (%s)", #call, cudaGetErrorString(e_),     \
                     cudaGetErrorName(e_));                                              \
    } while (0)
/* after a kernel launch: a bad launch configuration shows here, named */
#define CUDA_CHECK_LAUNCH(name) CUDA_CHECK(cudaPeekAtLastError())

#ifdef __cplusplus
extern "C" {
#endif

/* The stream every kernel of backend b is queued on (the context's own, not the default
 * stream). */
cudaStream_t cuda_stream(struct backend *b);

/* The kernel table's entries (kernels/kernels.h says what each computes). */
void cuda_matmul_fwd(struct backend *b, struct tensor out, struct tensor inp, struct tensor w,
                     struct tensor bias);
void cuda_matmul_bwd(struct backend *b, struct tensor dinp, struct tensor dw,
                     struct tensor dbias, struct tensor dout, struct tensor inp,
                     struct tensor w);
void cuda_layernorm_fwd(struct backend *b, struct tensor out, struct tensor mean,
                        struct tensor rstd, struct tensor inp, struct tensor w,
                        struct tensor bias);
void cuda_layernorm_bwd(struct backend *b, struct tensor dinp, struct tensor dw,
                        struct tensor db, struct tensor dout, struct tensor inp,
                        struct tensor w, struct tensor mean, struct tensor rstd);
void cuda_attention_fwd(struct backend *b, struct tensor out, struct tensor att,
                        struct tensor qkv, int B, int NH);
void cuda_attention_bwd(struct backend *b, struct tensor dqkv, struct tensor scratch,
                        struct tensor dout, struct tensor qkv, struct tensor att, int B,
                        int NH);
void cuda_gelu_fwd(struct backend *b, struct tensor out, struct tensor inp);
void cuda_gelu_bwd(struct backend *b, struct tensor dinp, struct tensor inp,
                   struct tensor dout);
void cuda_residual_fwd(struct backend *b, struct tensor out, struct tensor a, struct tensor c);
void cuda_embedding_fwd(struct backend *b, struct tensor out, struct tensor tokens,
                        struct tensor wte, struct tensor wpe, int v0);
void cuda_embedding_bwd(struct backend *b, struct tensor dwte, struct tensor dwpe,
                        struct tensor dout, struct tensor tokens, int v0);
void cuda_xent_max(struct backend *b, struct tensor rowmax, struct tensor logits, int v0, int V);
void cuda_xent_sumexp(struct backend *b, struct tensor sumexp, struct tensor logits,
                      struct tensor rowmax, int v0, int V);
void cuda_xent_target(struct backend *b, struct tensor tlogit, struct tensor logits,
                      struct tensor targets, int v0);
void cuda_xent_bwd(struct backend *b, struct tensor logits, struct tensor rowmax,
                   struct tensor sumexp, struct tensor targets, float dloss, int v0, int V);
double cuda_xent_loss(struct backend *b, struct tensor rowmax, struct tensor sumexp,
                      struct tensor tlogit);
void cuda_adamw(struct backend *b, struct tensor p, struct tensor grad, struct tensor m,
                struct tensor v, float lr, float b1, float b2, float eps, float wd,
                float grad_scale, int t);
void cuda_adamw_state(struct backend *b, struct tensor p, struct tensor grad, struct kstate m,
                      struct kstate v, float lr, float b1, float b2, float eps, float wd,
                      float grad_scale, int t);
double cuda_lamb_moments(struct backend *b, struct tensor p, struct tensor grad,
                         struct kstate m, struct kstate v, float b1, float b2, float eps,
                         float wd, float grad_scale, int t, int64_t own0, int64_t own_n);
void cuda_lamb_apply(struct backend *b, struct tensor p, struct kstate m, struct kstate v,
                     float lr, float b1, float b2, float eps, float wd, int t);
void cuda_lars_update(struct backend *b, struct tensor p, struct tensor grad,
                      struct kstate mom, float lr, float local_lr, float momentum, float wd,
                      float grad_scale);
void cuda_sgd_update(struct backend *b, struct tensor p, struct tensor grad, struct kstate mom,
                     float lr, float momentum, float wd, float grad_scale);
void cuda_state_to_f32(struct backend *b, struct tensor dst, struct kstate src, int role);
void cuda_state_from_f32(struct backend *b, struct kstate dst, struct tensor src, int role);
double cuda_sumsq(struct backend *b, struct tensor x);
void cuda_scale(struct backend *b, struct tensor x, float s);
void cuda_convert(struct backend *b, struct tensor dst, struct tensor src);
void cuda_accumulate(struct backend *b, struct tensor dst, struct tensor src);
int64_t cuda_count_nonfinite(struct backend *b, struct tensor x);

#ifdef __cplusplus
}
#endif

#endif

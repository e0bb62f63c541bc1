/* optimizers.cu — AdamW, LAMB, LARS and SGD with momentum on optimizer state of any form
 * (fp32, bf16, block-wise int8: struct kstate in kernels.h), and the state's conversion to
 * and from fp32; the CUDA twins of kernels/cpu/optimizers.c and adamw.c.
 *
 * One thread block per state block of KSTATE_BLOCK (256) elements, one thread per element:
 * a block's int8 scale is the block's largest magnitude, a block-wide reduction. Each
 * thread decodes its element, updates it in fp32 and encodes it again, with the CPU's
 * expressions in the CPU's order; the file is built with -fmad=false (Makefile), so no
 * multiply-add is fused and fp32 results match the CPU's bit for bit (the bias corrections
 * are computed on the host, in double, exactly as the CPU does). LAMB's sum of squares is
 * one double per block, then the blocks' sums in a fixed order: deterministic.
 */

#include "cuda_ctx.h"
#include "optimizers_k.cuh"

enum { WS_PART = 0 };
/* ---------------------------------------------------------------------------------- */
/* host side: checks, then one launch                                                   */

static int64_t n_blocks(int64_t n) { return (n + QB - 1) / QB; }

static dstate ds_of(const char *kn, const char *what, struct kstate s, int64_t n, int role)
{
    dstate r = {SF_F32, s.q.data, NULL, role};
    if (!s.q.data) TR_ABORT("%s: %s is absent", kn, what);
    if (s.q.dt == KDT_F32 || s.q.dt == KDT_BF16) {
        if (tensor_numel(s.q) != n || s.scale.data)
            TR_ABORT("%s: %s is %s[%lld] with%s a scale, for %lld elements", kn, what,
                     kdtype_name(s.q.dt), (long long)tensor_numel(s.q),
                     s.scale.data ? "" : "out", (long long)n);
        r.form = s.q.dt == KDT_F32 ? SF_F32 : SF_BF16;
        return r;
    }
    if (s.q.dt != KDT_I32 || tensor_numel(s.q) * 4 < n || !s.scale.data ||
        s.scale.dt != KDT_F32 || tensor_numel(s.scale) != n_blocks(n))
        TR_ABORT("%s: %s is %s[%lld] with %lld scales, for %lld int8 elements", kn, what,
                 kdtype_name(s.q.dt), (long long)tensor_numel(s.q),
                 (long long)(s.scale.data ? tensor_numel(s.scale) : 0), (long long)n);
    r.form = SF_I8;
    r.scale = (float *)s.scale.data;
    return r;
}

#define NEED_VEC(kn, what, t, n)                                                         \
    do {                                                                                 \
        if (!(t).data || (t).dt != KDT_F32 || tensor_numel(t) != (n))                    \
            TR_ABORT("%s: %s is not fp32[%lld]", kn, what, (long long)(n));              \
    } while (0)

/* the bias corrections, once per call in double as the CPU computes them */
static void bias_corr(float b1, float b2, int t, float *c1, float *c2)
{
    *c1 = (float)(1.0 / (1.0 - pow(b1, t)));
    *c2 = (float)(1.0 / (1.0 - pow(b2, t)));
}

/* grid for n elements, one block per state block; the grid's x size is at most 2^31-1 */
static unsigned grid_blocks(const char *kn, int64_t n)
{
    int64_t nb = n_blocks(n);
    if (nb > 0x7fffffff) TR_ABORT("%s: %lld elements are too many for one launch", kn, (long long)n);
    return (unsigned)nb;
}

extern "C" void cuda_adamw(struct backend *b, struct tensor p, struct tensor grad, struct tensor m,
                           struct tensor v, float lr, float b1, float b2, float eps, float wd,
                           float grad_scale, int t)
{
    const char *kn = "adamw";
    if (!p.data || p.dt != KDT_F32) TR_ABORT("%s: p is not an fp32 tensor", kn);
    const int64_t n = tensor_numel(p);
    NEED_VEC(kn, "grad", grad, n);
    NEED_VEC(kn, "m", m, n);
    NEED_VEC(kn, "v", v, n);
    if (!n) return;
    float c1, c2;
    bias_corr(b1, b2, t, &c1, &c2);
    int64_t g = n_blocks(n);
    adamw_kernel<<<(unsigned)(g > 65536 ? 65536 : g), QB, 0, cuda_stream(b)>>>(
        (float *)p.data, (const float *)grad.data, (float *)m.data, (float *)v.data, n, lr, b1,
        b2, eps, wd, grad_scale, c1, c2);
    CUDA_CHECK_LAUNCH("adamw_kernel");
}

extern "C" void cuda_adamw_state(struct backend *b, struct tensor p, struct tensor grad,
                                 struct kstate m, struct kstate v, float lr, float b1, float b2,
                                 float eps, float wd, float grad_scale, int t)
{
    const char *kn = "adamw_state";
    if (!p.data) TR_ABORT("%s: p is absent", kn);
    const int64_t n = tensor_numel(p);
    NEED_VEC(kn, "p", p, n);
    NEED_VEC(kn, "grad", grad, n);
    dstate sm = ds_of(kn, "m", m, n, 0), sv = ds_of(kn, "v", v, n, 1);
    if (sm.form == SF_F32 && sv.form == SF_F32) {  /* `adamw`, bit for bit */
        cuda_adamw(b, p, grad, m.q, v.q, lr, b1, b2, eps, wd, grad_scale, t);
        return;
    }
    if (!n) return;
    float c1, c2;
    bias_corr(b1, b2, t, &c1, &c2);
    adamw_state_kernel<<<grid_blocks(kn, n), QB, 0, cuda_stream(b)>>>(
        (float *)p.data, (const float *)grad.data, sm, sv, n, lr, b1, b2, eps, wd, grad_scale,
        c1, c2);
    CUDA_CHECK_LAUNCH("adamw_state_kernel");
}

extern "C" double cuda_lamb_moments(struct backend *b, struct tensor p, struct tensor grad,
                                    struct kstate m, struct kstate v, float b1, float b2,
                                    float eps, float wd, float grad_scale, int t, int64_t own0,
                                    int64_t own_n)
{
    const char *kn = "lamb_moments";
    if (!p.data) TR_ABORT("%s: p is absent", kn);
    const int64_t n = tensor_numel(p);
    NEED_VEC(kn, "p", p, n);
    NEED_VEC(kn, "grad", grad, n);
    if (own0 < 0 || own_n < 0 || own0 + own_n > n)
        TR_ABORT("%s: owned range [%lld, +%lld) outside %lld elements", kn, (long long)own0,
                 (long long)own_n, (long long)n);
    dstate sm = ds_of(kn, "m", m, n, 0), sv = ds_of(kn, "v", v, n, 1);
    if (!n) return 0.0;
    float c1, c2;
    bias_corr(b1, b2, t, &c1, &c2);
    struct cuda_ctx *c = cuda_ctx_of(b);
    const int64_t nb = n_blocks(n);
    double *part = (double *)backend_workspace(b, WS_PART, sizeof(double) * (size_t)(nb + 1));
    lamb_moments_kernel<<<grid_blocks(kn, n), QB, 0, c->stream>>>(
        part + 1, (const float *)p.data, (const float *)grad.data, sm, sv, n, b1, b2, eps, wd,
        grad_scale, c1, c2, own0, own0 + own_n);
    CUDA_CHECK_LAUNCH("lamb_moments_kernel");
    sum_partials_f64<<<1, 1024, 0, c->stream>>>(part, part + 1, nb);
    CUDA_CHECK_LAUNCH("sum_partials_f64");
    CUDA_CHECK(cudaMemcpyAsync(c->host, part, sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return *(const double *)c->host;
}

extern "C" void cuda_lamb_apply(struct backend *b, struct tensor p, struct kstate m,
                                struct kstate v, float lr, float b1, float b2, float eps,
                                float wd, int t)
{
    const char *kn = "lamb_apply";
    if (!p.data) TR_ABORT("%s: p is absent", kn);
    const int64_t n = tensor_numel(p);
    NEED_VEC(kn, "p", p, n);
    dstate sm = ds_of(kn, "m", m, n, 0), sv = ds_of(kn, "v", v, n, 1);
    if (!n) return;
    float c1, c2;
    bias_corr(b1, b2, t, &c1, &c2);
    lamb_apply_kernel<<<grid_blocks(kn, n), QB, 0, cuda_stream(b)>>>((float *)p.data, sm, sv, n,
                                                                     lr, eps, wd, c1, c2);
    CUDA_CHECK_LAUNCH("lamb_apply_kernel");
}

static void momentum_update(struct backend *b, const char *kn, struct tensor p, struct tensor grad,
                            struct kstate mom, float lr, float local_lr, float mu, float wd,
                            float grad_scale)
{
    if (!p.data) TR_ABORT("%s: p is absent", kn);
    const int64_t n = tensor_numel(p);
    NEED_VEC(kn, "p", p, n);
    NEED_VEC(kn, "grad", grad, n);
    dstate sm = ds_of(kn, "mom", mom, n, 0);
    if (!n) return;
    momentum_kernel<<<grid_blocks(kn, n), QB, 0, cuda_stream(b)>>>(
        (float *)p.data, (const float *)grad.data, sm, n, lr, local_lr, mu, wd, grad_scale);
    CUDA_CHECK_LAUNCH("momentum_kernel");
}

extern "C" void cuda_lars_update(struct backend *b, struct tensor p, struct tensor grad,
                                 struct kstate mom, float lr, float local_lr, float momentum,
                                 float wd, float grad_scale)
{
    momentum_update(b, "lars_update", p, grad, mom, lr, local_lr, momentum, wd, grad_scale);
}

extern "C" void cuda_sgd_update(struct backend *b, struct tensor p, struct tensor grad,
                                struct kstate mom, float lr, float momentum, float wd,
                                float grad_scale)
{
    momentum_update(b, "sgd_update", p, grad, mom, lr, 1.0f, momentum, wd, grad_scale);
}

extern "C" void cuda_state_to_f32(struct backend *b, struct tensor dst, struct kstate src, int role)
{
    const char *kn = "state_to_f32";
    if (!dst.data) TR_ABORT("%s: dst is absent", kn);
    const int64_t n = tensor_numel(dst);
    NEED_VEC(kn, "dst", dst, n);
    dstate s = ds_of(kn, "src", src, n, role);
    if (!n) return;
    state_to_f32_kernel<<<grid_blocks(kn, n), QB, 0, cuda_stream(b)>>>((float *)dst.data, s, n);
    CUDA_CHECK_LAUNCH("state_to_f32_kernel");
}

extern "C" void cuda_state_from_f32(struct backend *b, struct kstate dst, struct tensor src,
                                    int role)
{
    const char *kn = "state_from_f32";
    if (!src.data) TR_ABORT("%s: src is absent", kn);
    const int64_t n = tensor_numel(src);
    NEED_VEC(kn, "src", src, n);
    dstate s = ds_of(kn, "dst", dst, n, role);
    if (!n) return;
    state_from_f32_kernel<<<grid_blocks(kn, n), QB, 0, cuda_stream(b)>>>(s, (const float *)src.data,
                                                                         n);
    CUDA_CHECK_LAUNCH("state_from_f32_kernel");
}

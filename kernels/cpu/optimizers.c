/* optimizers.c — LAMB, LARS, SGD with momentum and AdamW on optimizer state of any form
 * (fp32, bf16, block-wise int8: struct kstate in kernels.h), and the state's conversion
 * to and from fp32.
 *
 * Every kernel walks the buffer in blocks of KSTATE_BLOCK elements (an int8 block's
 * scale covers one), in parallel over blocks: a block is decoded into fp32 arrays,
 * updated, and encoded again. LAMB's sum of squares is summed per block, then over the
 * blocks in order, so it depends on neither the thread count nor timing. The loops over a
 * block's elements vectorize (see the int8 codes below): the int8 AdamW update runs at the
 * speed of the bf16 one (tests/bench_optim.c), 40x its first scalar form.
 */
#include <math.h>
#include <string.h>

#include "backend_impl.h"
#include "common.h"
#include "convert.h"
#include "cpu.h"

enum { QB = KSTATE_BLOCK };
enum sform { SF_F32, SF_BF16, SF_I8 };

/* a state buffer as the loops see it */
struct sv {
    enum sform form;
    void  *q;
    float *scale;
    int    role;  /* 0: signed (first moment, momentum), 1: second moment (>= 0) */
};

static long n_blocks(long n) { return (n + QB - 1) / QB; }

static struct sv sv_of(const char *kn, const char *what, struct kstate s, long n, int role)
{
    struct sv r = {SF_F32, s.q.data, NULL, role};
    if (!s.q.data) TR_ABORT("%s: %s is absent", kn, what);
    if (s.q.dt == KDT_F32 || s.q.dt == KDT_BF16) {
        if (tensor_numel(s.q) != n || s.scale.data)
            TR_ABORT("%s: %s is %s[%lld] with%s a scale, for %ld elements", kn, what,
                     kdtype_name(s.q.dt), (long long)tensor_numel(s.q),
                     s.scale.data ? "" : "out", n);
        r.form = s.q.dt == KDT_F32 ? SF_F32 : SF_BF16;
        return r;
    }
    if (s.q.dt != KDT_I32 || tensor_numel(s.q) * 4 < n || !s.scale.data ||
        s.scale.dt != KDT_F32 || tensor_numel(s.scale) != n_blocks(n))
        TR_ABORT("%s: %s is %s[%lld] with %lld scales, for %ld int8 elements", kn, what,
                 kdtype_name(s.q.dt), (long long)tensor_numel(s.q),
                 (long long)(s.scale.data ? tensor_numel(s.scale) : 0), n);
    r.form = SF_I8;
    r.scale = s.scale.data;
    return r;
}

/* The int8 codes' loops are written so that the compiler vectorizes them (the Makefile
 * builds this file with -fno-math-errno: sqrtf is then the bare instruction). They give
 * the same bits as the scalar definition in kernels.h: the same operations in the same
 * order, exact negation instead of a multiplication by -1, the largest magnitude found on
 * the bit patterns (for finite floats their order is the numbers' order), and rounding to
 * nearest even by the 1.5·2^23 addition instead of lrintf (the same in the default
 * rounding mode, for the codes' range 0..255). */

/* round v (0 <= v < 2^22) to the nearest integer, ties to even, as lrintf does */
static inline int round_code(float v) { return (int)((v + 0x1.8p23f) - 0x1.8p23f); }

static void i8_decode(const int8_t *restrict q, float A, int role, int len, float *restrict x)
{
    if (role == 0) {
        for (int j = 0; j < len; j++) {
            float t = (float)q[j] / 127.0f;  /* 127/127 is exactly 1: the max is A */
            float y = t * t * A;
            x[j] = q[j] < 0 ? -y : y;
        }
    } else {
        for (int j = 0; j < len; j++) {
            float t = (float)(uint8_t)q[j] / 255.0f, t2 = t * t;
            x[j] = t2 * t2 * A;
        }
    }
}

/* the block's scale: its largest magnitude, NaN when it holds a NaN or inf */
static float i8_scale(const float *restrict x, int len)
{
    uint32_t top = 0;
    for (int j = 0; j < len; j++) {
        uint32_t u;
        memcpy(&u, &x[j], sizeof u);
        u &= 0x7fffffffu;
        top = u > top ? u : top;
    }
    if (top >= 0x7f800000u) return NAN;  /* inf, or a NaN: the state's finiteness check */
    float A;
    memcpy(&A, &top, sizeof A);
    return A;
}

static void i8_encode(const float *restrict x, float A, int role, int len, int8_t *restrict q)
{
    if (role == 0) {
        for (int j = 0; j < len; j++) {
            int c = round_code(127.0f * sqrtf(fabsf(x[j]) / A));
            c = c > 127 ? 127 : c;
            q[j] = (int8_t)(x[j] < 0 ? -c : c);
        }
    } else {
        for (int j = 0; j < len; j++) {
            float u = x[j] > 0 ? x[j] / A : 0.0f;
            int c = round_code(255.0f * sqrtf(sqrtf(u)));
            c = c > 255 ? 255 : c;
            q[j] = (int8_t)(uint8_t)c;
        }
    }
}

/* the len values of block blk (elements blk*QB ..) into x */
static void blk_load(const struct sv *s, long blk, int len, float *x)
{
    const long i0 = blk * QB;
    if (s->form == SF_F32) {
        memcpy(x, (const float *)s->q + i0, sizeof(float) * (size_t)len);
    } else if (s->form == SF_BF16) {
        const uint16_t *q = (const uint16_t *)s->q + i0;
        for (int j = 0; j < len; j++) x[j] = cvt_bf16_to_f32_1(q[j]);
    } else {
        i8_decode((const int8_t *)s->q + i0, s->scale[blk], s->role, len, x);
    }
}

/* x (len values of block blk) into the state; with stored, x becomes the values stored
 * (LAMB's ratio is computed from them), else it is left as it was */
static void blk_store(struct sv *s, long blk, int len, float *x, int stored)
{
    const long i0 = blk * QB;
    if (s->form == SF_F32) {
        memcpy((float *)s->q + i0, x, sizeof(float) * (size_t)len);
    } else if (s->form == SF_BF16) {
        uint16_t *q = (uint16_t *)s->q + i0;
        for (int j = 0; j < len; j++) q[j] = cvt_f32_to_bf16_1(x[j]);
        if (stored)
            for (int j = 0; j < len; j++) x[j] = cvt_bf16_to_f32_1(q[j]);
    } else {
        int8_t *q = (int8_t *)s->q + i0;
        float A = i8_scale(x, len);
        if (isnan(A) || A == 0.0f) {
            /* a NaN or inf stays visible in the scale (the state's finiteness check) */
            s->scale[blk] = A;
            for (int j = 0; j < len; j++) q[j] = 0;
            if (stored)
                for (int j = 0; j < len; j++) x[j] = A;
            return;
        }
        s->scale[blk] = A;
        i8_encode(x, A, s->role, len, q);
        if (stored) i8_decode(q, A, s->role, len, x);
    }
}

static int blk_len(long n, long blk) { return (int)(n - blk * QB < QB ? n - blk * QB : QB); }

/* Adam's moments of one block, in place: m = b1 m + (1-b1) g, v = b2 v + (1-b2) g², with
 * g = grad · grad_scale (AdamW and LAMB share it) */
static void adam_moments(float *m, float *v, const float *grad, int len, float grad_scale,
                         float b1, float b2)
{
    for (int j = 0; j < len; j++) {
        float g = grad[j] * grad_scale;
        m[j] = b1 * m[j] + (1.0f - b1) * g;
        v[j] = b2 * v[j] + (1.0f - b2) * g * g;
    }
}

#define NEED_VEC(kn, what, t, n)                                                         \
    do {                                                                                 \
        if (!(t).data || (t).dt != KDT_F32 || tensor_numel(t) != (n))                    \
            TR_ABORT("%s: %s is not fp32[%ld]", kn, what, (long)(n));                    \
    } while (0)

/* ---------------------------------------------------------------------------------- */
/* AdamW and LAMB                                                                       */

void cpu_t_adamw_state(struct backend *b, struct tensor p, struct tensor grad,
                       struct kstate m, struct kstate v, float lr, float b1, float b2,
                       float eps, float wd, float grad_scale, int t)
{
    const char *kn = "adamw_state";
    if (!p.data) TR_ABORT("%s: p is absent", kn);
    const long n = (long)tensor_numel(p);
    NEED_VEC(kn, "p", p, n);
    NEED_VEC(kn, "grad", grad, n);
    struct sv sm = sv_of(kn, "m", m, n, 0), sw = sv_of(kn, "v", v, n, 1);
    if (sm.form == SF_F32 && sw.form == SF_F32) {
        cpu_adamw(p.data, grad.data, sm.q, sw.q, n, lr, b1, b2, eps, wd, grad_scale, t);
        return;
    }
    float c1 = (float)(1.0 / (1.0 - pow(b1, t)));
    float c2 = (float)(1.0 / (1.0 - pow(b2, t)));
    float *P = p.data;
    const float *G = grad.data;
#pragma omp parallel for schedule(static)
    for (long blk = 0; blk < n_blocks(n); blk++) {
        float mb[QB], vb[QB];
        const int len = blk_len(n, blk);
        const long i0 = blk * QB;
        blk_load(&sm, blk, len, mb);
        blk_load(&sw, blk, len, vb);
        adam_moments(mb, vb, G + i0, len, grad_scale, b1, b2);
        for (int j = 0; j < len; j++)
            P[i0 + j] -= lr * ((mb[j] * c1) / (sqrtf(vb[j] * c2) + eps) + wd * P[i0 + j]);
        blk_store(&sm, blk, len, mb, 0);
        blk_store(&sw, blk, len, vb, 0);
    }
}

double cpu_t_lamb_moments(struct backend *b, struct tensor p, struct tensor grad,
                          struct kstate m, struct kstate v, float b1, float b2, float eps,
                          float wd, float grad_scale, int t, int64_t own0, int64_t own_n)
{
    const char *kn = "lamb_moments";
    if (!p.data) TR_ABORT("%s: p is absent", kn);
    const long n = (long)tensor_numel(p);
    NEED_VEC(kn, "p", p, n);
    NEED_VEC(kn, "grad", grad, n);
    if (own0 < 0 || own_n < 0 || own0 + own_n > n)
        TR_ABORT("%s: owned range [%lld, +%lld) outside %ld elements", kn, (long long)own0,
                 (long long)own_n, n);
    struct sv sm = sv_of(kn, "m", m, n, 0), sw = sv_of(kn, "v", v, n, 1);
    const long nb = n_blocks(n);
    double *part = backend_workspace(b, 0, sizeof(double) * (size_t)(nb ? nb : 1));
    float c1 = (float)(1.0 / (1.0 - pow(b1, t)));
    float c2 = (float)(1.0 / (1.0 - pow(b2, t)));
    const float *P = p.data, *G = grad.data;
#pragma omp parallel for schedule(static)
    for (long blk = 0; blk < nb; blk++) {
        float mb[QB], vb[QB];
        const int len = blk_len(n, blk);
        const long i0 = blk * QB;
        blk_load(&sm, blk, len, mb);
        blk_load(&sw, blk, len, vb);
        adam_moments(mb, vb, G + i0, len, grad_scale, b1, b2);
        blk_store(&sm, blk, len, mb, 1);
        blk_store(&sw, blk, len, vb, 1);
        double s = 0.0;
        for (int j = 0; j < len; j++) {
            long i = i0 + j;
            if (i < own0 || i >= own0 + own_n) continue;
            float r = (mb[j] * c1) / (sqrtf(vb[j] * c2) + eps) + wd * P[i];
            s += (double)r * r;
        }
        part[blk] = s;
    }
    double s = 0.0;
    for (long blk = 0; blk < nb; blk++) s += part[blk];
    return s;
}

void cpu_t_lamb_apply(struct backend *b, struct tensor p, struct kstate m, struct kstate v,
                      float lr, float b1, float b2, float eps, float wd, int t)
{
    const char *kn = "lamb_apply";
    if (!p.data) TR_ABORT("%s: p is absent", kn);
    const long n = (long)tensor_numel(p);
    NEED_VEC(kn, "p", p, n);
    struct sv sm = sv_of(kn, "m", m, n, 0), sw = sv_of(kn, "v", v, n, 1);
    float c1 = (float)(1.0 / (1.0 - pow(b1, t)));
    float c2 = (float)(1.0 / (1.0 - pow(b2, t)));
    float *P = p.data;
#pragma omp parallel for schedule(static)
    for (long blk = 0; blk < n_blocks(n); blk++) {
        float mb[QB], vb[QB];
        const int len = blk_len(n, blk);
        const long i0 = blk * QB;
        blk_load(&sm, blk, len, mb);
        blk_load(&sw, blk, len, vb);
        for (int j = 0; j < len; j++) {
            float r = (mb[j] * c1) / (sqrtf(vb[j] * c2) + eps) + wd * P[i0 + j];
            P[i0 + j] -= lr * r;
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* LARS and SGD: one momentum buffer                                                    */

static void momentum_update(const char *kn, struct tensor p, struct tensor grad,
                            struct kstate mom, float lr, float local_lr, float mu, float wd,
                            float grad_scale)
{
    if (!p.data) TR_ABORT("%s: p is absent", kn);
    const long n = (long)tensor_numel(p);
    NEED_VEC(kn, "p", p, n);
    NEED_VEC(kn, "grad", grad, n);
    struct sv sm = sv_of(kn, "mom", mom, n, 0);
    float *P = p.data;
    const float *G = grad.data;
#pragma omp parallel for schedule(static)
    for (long blk = 0; blk < n_blocks(n); blk++) {
        float mb[QB];
        const int len = blk_len(n, blk);
        const long i0 = blk * QB;
        blk_load(&sm, blk, len, mb);
        for (int j = 0; j < len; j++) {
            float g = G[i0 + j] * grad_scale;
            mb[j] = mu * mb[j] + local_lr * (g + wd * P[i0 + j]);
            P[i0 + j] -= lr * mb[j];
        }
        blk_store(&sm, blk, len, mb, 0);
    }
}

void cpu_t_lars_update(struct backend *b, struct tensor p, struct tensor grad,
                       struct kstate mom, float lr, float local_lr, float momentum, float wd,
                       float grad_scale)
{
    momentum_update("lars_update", p, grad, mom, lr, local_lr, momentum, wd, grad_scale);
}

void cpu_t_sgd_update(struct backend *b, struct tensor p, struct tensor grad,
                      struct kstate mom, float lr, float momentum, float wd, float grad_scale)
{
    momentum_update("sgd_update", p, grad, mom, lr, 1.0f, momentum, wd, grad_scale);
}

/* ---------------------------------------------------------------------------------- */
/* conversion to and from fp32 (checkpoints)                                            */

void cpu_t_state_to_f32(struct backend *b, struct tensor dst, struct kstate src, int role)
{
    const char *kn = "state_to_f32";
    if (!dst.data) TR_ABORT("%s: dst is absent", kn);
    const long n = (long)tensor_numel(dst);
    NEED_VEC(kn, "dst", dst, n);
    struct sv s = sv_of(kn, "src", src, n, role);
    float *D = dst.data;
#pragma omp parallel for schedule(static)
    for (long blk = 0; blk < n_blocks(n); blk++)
        blk_load(&s, blk, blk_len(n, blk), D + blk * QB);
}

void cpu_t_state_from_f32(struct backend *b, struct kstate dst, struct tensor src, int role)
{
    const char *kn = "state_from_f32";
    if (!src.data) TR_ABORT("%s: src is absent", kn);
    const long n = (long)tensor_numel(src);
    NEED_VEC(kn, "src", src, n);
    struct sv s = sv_of(kn, "dst", dst, n, role);
    const float *S = src.data;
#pragma omp parallel for schedule(static)
    for (long blk = 0; blk < n_blocks(n); blk++) {
        float x[QB];
        const int len = blk_len(n, blk);
        memcpy(x, S + blk * QB, sizeof(float) * (size_t)len);
        blk_store(&s, blk, len, x, 0);
    }
}

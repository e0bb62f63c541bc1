/* test_kernels.c — the CPU backend's kernel table against independent references.
 *
 * fp32: forward kernels are compared with straightforward double loops written here
 * (they never call a kernel). Every backward kernel is checked against central finite
 * differences of those double references, with the random objective L = sum(out * R)
 * so that every output element carries weight. Small odd sizes (T=7, C=12, NH=3) catch
 * indexing and stride mistakes that square power-of-two sizes hide.
 *
 * bf16 and fp16: the contract (kernels.h, kernels/cpu/typed.c) is fp32 arithmetic and
 * one rounding, to nearest even, when a 16-bit result is stored. So every kernel run on
 * 16-bit tensors must give, bit for bit, the fp32 kernel's result on the widened
 * (exactly representable) inputs, rounded by the scalar reference of
 * kernels/cpu/convert.h; fp32 outputs (parameter gradients, LayerNorm statistics,
 * cross-entropy row values) must equal the fp32 kernel's bit for bit. Every buffer of
 * those tests comes from backend_alloc (64-byte aligned, as the backend's workspaces
 * are), so the fp32 kernel sees the same alignment on both paths.
 *
 * A shape that does not fit aborts with the kernel's name: checked in forked children.
 */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "kernels.h"
#include "cpu/blas_core.h"
#include "cpu/convert.h"
#include "cpu/vmath.h"
#include "test.h"

/* The backend every test runs on (created in main). */
static struct backend *g_be;

static const struct kernels *K(void) { return backend_kernels(g_be); }

/* host arrays wrapped as tensors: the CPU backend's memory is host memory (NULL: absent) */
static struct tensor F(const float *p, int64_t rows, int64_t cols)
{
    return tensor_2d((void *)p, KDT_F32, rows, cols);
}
static struct tensor I32(const int32_t *p, int64_t rows, int64_t cols)
{
    return tensor_2d((void *)p, KDT_I32, rows, cols);
}

/* ---------------------------------------------------------------------------------- */
/* helpers: random numbers, buffers, gradient comparison                              */

struct rng { uint64_t s; };

static double rng_uniform(struct rng *r, double lo, double hi)
{
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (double)(r->s >> 11) * 0x1p-53;
}

static float *fvec(long n, struct rng *r, double lo, double hi)
{
    float *x = malloc((size_t)n * sizeof *x);
    for (long i = 0; i < n; i++) x[i] = r ? (float)rng_uniform(r, lo, hi) : 0.0f;
    return x;
}

static double *dvec_from(const float *x, long n)
{
    double *d = malloc((size_t)n * sizeof *d);
    for (long i = 0; i < n; i++) d[i] = x[i];
    return d;
}

typedef double (*objective_fn)(const void *ctx);

/* Central differences of f with respect to every element of x (which f reads via ctx). */
static void fd_grad(double *grad, double *x, long n, objective_fn f, const void *ctx)
{
    for (long i = 0; i < n; i++) {
        double x0 = x[i], h = 1e-5 * fmax(1.0, fabs(x0));
        x[i] = x0 + h;
        double lp = f(ctx);
        x[i] = x0 - h;
        double lm = f(ctx);
        x[i] = x0;
        grad[i] = (lp - lm) / (2.0 * h);
    }
}

/* |analytic - numeric| <= rtol |numeric| + atol_rel * max|numeric| for every element;
 * prints the worst error relative to the gradient's scale. */
static void check_grad(const char *what, const float *analytic, const double *numeric,
                       long n, double rtol)
{
    double scale = 0.0, max_abs = 0.0;
    for (long i = 0; i < n; i++) scale = fmax(scale, fabs(numeric[i]));
    int bad = 0;
    for (long i = 0; i < n; i++) {
        double err = fabs(analytic[i] - numeric[i]);
        max_abs = fmax(max_abs, err);
        if (!(err <= rtol * fabs(numeric[i]) + 0.1 * rtol * scale)) {
            if (bad++ < 3)
                CHECK_MSG(0, "%s[%ld]: analytic %.9g vs numeric %.9g", what, i,
                          analytic[i], numeric[i]);
        }
    }
    CHECK(scale > 0.0);
    printf("       %-26s max |err| %.2e  (%.2e of max |grad| %.3g)\n", what, max_abs,
           scale > 0 ? max_abs / scale : 0.0, scale);
}

static void check_close_vec(const char *what, const float *got, const double *want, long n,
                            double rtol, double atol)
{
    double max_err = 0.0;
    int bad = 0;
    for (long i = 0; i < n; i++) {
        double err = fabs(got[i] - want[i]);
        max_err = fmax(max_err, err);
        if (!(err <= atol + rtol * fabs(want[i])) && bad++ < 3)
            CHECK_MSG(0, "%s[%ld] = %.9g, expected %.9g", what, i, got[i], want[i]);
    }
    printf("       %-26s max |err| %.2e\n", what, max_err);
}

static double dot_d(const double *a, const double *b, long n)
{
    double s = 0.0;
    for (long i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---------------------------------------------------------------------------------- */
/* double references                                                                  */

static void ref_matmul(double *out, const double *inp, const double *w, const double *b,
                       int M, int Kd, int N)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = b ? b[j] : 0.0;
            for (int k = 0; k < Kd; k++) s += inp[i * Kd + k] * w[j * Kd + k];
            out[i * N + j] = s;
        }
}

static void ref_layernorm(double *out, double *mean, double *rstd, const double *x,
                          const double *w, const double *b, int N, int C)
{
    for (int n = 0; n < N; n++) {
        double m = 0.0, v = 0.0;
        for (int i = 0; i < C; i++) m += x[n * C + i];
        m /= C;
        for (int i = 0; i < C; i++) v += (x[n * C + i] - m) * (x[n * C + i] - m);
        v /= C;
        double rs = 1.0 / sqrt(v + 1e-5);
        for (int i = 0; i < C; i++) out[n * C + i] = (x[n * C + i] - m) * rs * w[i] + b[i];
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = rs;
    }
}

static void ref_attention(double *out, double *att, const double *qkv, int B, int T,
                          int Cq, int NH)
{
    int hs = Cq / NH, ld = 3 * Cq;
    double scale = 1.0 / sqrt(hs);
    double *p = malloc((size_t)T * sizeof *p);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const double *q = qkv + (b * T + t) * ld + h * hs;
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j <= t; j++) {
                    const double *k = qkv + (b * T + j) * ld + Cq + h * hs;
                    double s = 0.0;
                    for (int d = 0; d < hs; d++) s += q[d] * k[d];
                    p[j] = s * scale;
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j <= t; j++) sum += (p[j] = exp(p[j] - mx));
                for (int j = 0; j < T; j++) {
                    double pj = j <= t ? p[j] / sum : 0.0;
                    if (att) att[((b * NH + h) * T + t) * T + j] = pj;
                    p[j] = pj;
                }
                for (int d = 0; d < hs; d++) {
                    double s = 0.0;
                    for (int j = 0; j <= t; j++) s += p[j] * qkv[(b * T + j) * ld + 2 * Cq + h * hs + d];
                    out[(b * T + t) * Cq + h * hs + d] = s;
                }
            }
    free(p);
}

static double ref_gelu(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* mean over rows of log(sum_{j<V} exp(l_j)) - l_target; logits [N][ld] */
static double ref_xent_mean(const double *logits, const int32_t *tgt, int N, int ld, int V)
{
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        const double *l = logits + (size_t)n * ld;
        double mx = -INFINITY, s = 0.0;
        for (int j = 0; j < V; j++) mx = fmax(mx, l[j]);
        for (int j = 0; j < V; j++) s += exp(l[j] - mx);
        total += log(s) + mx - l[tgt[n]];
    }
    return total / N;
}

/* ---------------------------------------------------------------------------------- */
/* matmul                                                                             */

struct matmul_ctx { double *inp, *w, *b, *r; int M, Kd, N; };

static double matmul_objective(const void *p)
{
    const struct matmul_ctx *c = p;
    double *out = malloc((size_t)c->M * c->N * sizeof *out);
    ref_matmul(out, c->inp, c->w, c->b, c->M, c->Kd, c->N);
    double L = dot_d(out, c->r, (long)c->M * c->N);
    free(out);
    return L;
}

static void test_matmul_fwd_matches_reference(void)
{
    struct rng r = { 1 };
    int M = 7, Kd = 12, N = 5;
    float *inp = fvec(M * Kd, &r, -1, 1), *w = fvec(N * Kd, &r, -1, 1), *b = fvec(N, &r, -1, 1);
    float *out = fvec(M * N, NULL, 0, 0);
    double *di = dvec_from(inp, M * Kd), *dw = dvec_from(w, N * Kd), *db = dvec_from(b, N);
    double *want = malloc(M * N * sizeof *want);
    K()->matmul_fwd(g_be, F(out, M, N), F(inp, M, Kd), F(w, N, Kd), F(b, 1, N));
    ref_matmul(want, di, dw, db, M, Kd, N);
    check_close_vec("matmul out (bias)", out, want, M * N, 1e-5, 1e-5);
    K()->matmul_fwd(g_be, F(out, M, N), F(inp, M, Kd), F(w, N, Kd), TENSOR_NONE);
    ref_matmul(want, di, dw, NULL, M, Kd, N);
    check_close_vec("matmul out (no bias)", out, want, M * N, 1e-5, 1e-5);
    free(inp); free(w); free(b); free(out); free(di); free(dw); free(db); free(want);
}

static void test_matmul_bwd_matches_finite_differences(void)
{
    struct rng r = { 2 };
    int M = 5, Kd = 7, N = 6;
    float *inp = fvec(M * Kd, &r, -1, 1), *w = fvec(N * Kd, &r, -1, 1), *b = fvec(N, &r, -1, 1);
    float *R = fvec(M * N, &r, -1, 1);
    float *dinp = fvec(M * Kd, &r, 1e3, 1e3), *dw = fvec(N * Kd, NULL, 0, 0), *db = fvec(N, NULL, 0, 0);
    struct matmul_ctx c = { dvec_from(inp, M * Kd), dvec_from(w, N * Kd), dvec_from(b, N),
                            dvec_from(R, M * N), M, Kd, N };
    K()->matmul_bwd(g_be, F(dinp, M, Kd), F(dw, N, Kd), F(db, 1, N), F(R, M, N), F(inp, M, Kd),
                    F(w, N, Kd));
    double *g = malloc(N * Kd * sizeof *g > M * Kd * sizeof *g ? N * Kd * sizeof *g : M * Kd * sizeof *g);
    fd_grad(g, c.inp, M * Kd, matmul_objective, &c);
    check_grad("matmul dinp", dinp, g, M * Kd, 1e-3);
    fd_grad(g, c.w, N * Kd, matmul_objective, &c);
    check_grad("matmul dw", dw, g, N * Kd, 1e-3);
    fd_grad(g, c.b, N, matmul_objective, &c);
    check_grad("matmul dbias", db, g, N, 1e-3);
    free(inp); free(w); free(b); free(R); free(dinp); free(dw); free(db); free(g);
    free(c.inp); free(c.w); free(c.b); free(c.r);
}

static void test_matmul_bwd_accumulates_dw_dbias_but_overwrites_dinp(void)
{
    struct rng r = { 3 };
    int M = 9, Kd = 5, N = 70;  /* N > 64: dbias spans two column blocks */
    float *inp = fvec(M * Kd, &r, -1, 1), *w = fvec(N * Kd, &r, -1, 1), *dout = fvec(M * N, &r, -1, 1);
    float *dinp1 = fvec(M * Kd, NULL, 0, 0), *dinp2 = fvec(M * Kd, NULL, 0, 0);
    float *dw = fvec(N * Kd, NULL, 0, 0), *db = fvec(N, NULL, 0, 0);
    float *dw1 = fvec(N * Kd, NULL, 0, 0), *db1 = fvec(N, NULL, 0, 0);
    K()->matmul_bwd(g_be, F(dinp1, M, Kd), F(dw, N, Kd), F(db, 1, N), F(dout, M, N), F(inp, M, Kd),
                    F(w, N, Kd));
    memcpy(dw1, dw, N * Kd * sizeof(float));
    memcpy(db1, db, N * sizeof(float));
    K()->matmul_bwd(g_be, F(dinp2, M, Kd), F(dw, N, Kd), F(db, 1, N), F(dout, M, N), F(inp, M, Kd),
                    F(w, N, Kd));
    CHECK(memcmp(dinp1, dinp2, M * Kd * sizeof(float)) == 0);
    for (int i = 0; i < N * Kd; i++) CHECK_CLOSE(dw[i], 2.0 * dw1[i], 1e-6, 1e-7);
    for (int i = 0; i < N; i++) CHECK_CLOSE(db[i], 2.0 * db1[i], 1e-6, 1e-7);
    /* NULL outputs are skipped */
    memcpy(dw1, dw, N * Kd * sizeof(float));
    K()->matmul_bwd(g_be, TENSOR_NONE, TENSOR_NONE, F(db, 1, N), F(dout, M, N), F(inp, M, Kd),
                    F(w, N, Kd));
    CHECK(memcmp(dw1, dw, N * Kd * sizeof(float)) == 0);
    free(inp); free(w); free(dout); free(dinp1); free(dinp2); free(dw); free(db); free(dw1); free(db1);
}

/* ---------------------------------------------------------------------------------- */
/* layernorm                                                                          */

struct ln_ctx { double *x, *w, *b, *r; int N, C; };

static double ln_objective(const void *p)
{
    const struct ln_ctx *c = p;
    double *out = malloc((size_t)c->N * c->C * sizeof *out);
    ref_layernorm(out, NULL, NULL, c->x, c->w, c->b, c->N, c->C);
    double L = dot_d(out, c->r, (long)c->N * c->C);
    free(out);
    return L;
}

static void test_layernorm_fwd_matches_reference(void)
{
    struct rng r = { 4 };
    int N = 7, C = 12;
    float *x = fvec(N * C, &r, -2, 3), *w = fvec(C, &r, 0.5, 1.5), *b = fvec(C, &r, -1, 1);
    float *out = fvec(N * C, NULL, 0, 0), *mean = fvec(N, NULL, 0, 0), *rstd = fvec(N, NULL, 0, 0);
    double *dx = dvec_from(x, N * C), *dw = dvec_from(w, C), *db = dvec_from(b, C);
    double *want = malloc(N * C * sizeof *want), *wm = malloc(N * sizeof *wm), *wr = malloc(N * sizeof *wr);
    K()->layernorm_fwd(g_be, F(out, N, C), F(mean, 1, N), F(rstd, 1, N), F(x, N, C), F(w, 1, C),
                       F(b, 1, C));
    ref_layernorm(want, wm, wr, dx, dw, db, N, C);
    check_close_vec("layernorm out", out, want, N * C, 1e-5, 1e-5);
    check_close_vec("layernorm mean", mean, wm, N, 1e-5, 1e-6);
    check_close_vec("layernorm rstd", rstd, wr, N, 1e-5, 1e-6);
    free(x); free(w); free(b); free(out); free(mean); free(rstd);
    free(dx); free(dw); free(db); free(want); free(wm); free(wr);
}

static void test_layernorm_bwd_matches_finite_differences_and_adds(void)
{
    struct rng r = { 5 };
    int N = 7, C = 70;  /* C > 64: dw/db span two column blocks */
    float *x = fvec(N * C, &r, -2, 3), *w = fvec(C, &r, 0.5, 1.5), *b = fvec(C, &r, -1, 1);
    float *R = fvec(N * C, &r, -1, 1);
    float *out = fvec(N * C, NULL, 0, 0), *mean = fvec(N, NULL, 0, 0), *rstd = fvec(N, NULL, 0, 0);
    /* gradients start non-zero: layernorm_bwd must add into all three */
    float *dx = fvec(N * C, &r, -1, 1), *dw = fvec(C, &r, -1, 1), *db = fvec(C, &r, -1, 1);
    float *dx0 = malloc(N * C * sizeof *dx0), *dw0 = malloc(C * sizeof *dw0), *db0 = malloc(C * sizeof *db0);
    memcpy(dx0, dx, N * C * sizeof(float)); memcpy(dw0, dw, C * sizeof(float)); memcpy(db0, db, C * sizeof(float));
    K()->layernorm_fwd(g_be, F(out, N, C), F(mean, 1, N), F(rstd, 1, N), F(x, N, C), F(w, 1, C),
                       F(b, 1, C));
    K()->layernorm_bwd(g_be, F(dx, N, C), F(dw, 1, C), F(db, 1, C), F(R, N, C), F(x, N, C), F(w, 1, C),
                       F(mean, 1, N), F(rstd, 1, N));
    for (int i = 0; i < N * C; i++) dx[i] -= dx0[i];
    for (int i = 0; i < C; i++) { dw[i] -= dw0[i]; db[i] -= db0[i]; }
    struct ln_ctx c = { dvec_from(x, N * C), dvec_from(w, C), dvec_from(b, C), dvec_from(R, N * C), N, C };
    double *g = malloc(N * C * sizeof *g);
    fd_grad(g, c.x, N * C, ln_objective, &c);
    check_grad("layernorm dinp (added)", dx, g, N * C, 1e-3);
    fd_grad(g, c.w, C, ln_objective, &c);
    check_grad("layernorm dw (added)", dw, g, C, 1e-3);
    fd_grad(g, c.b, C, ln_objective, &c);
    check_grad("layernorm db (added)", db, g, C, 1e-3);
    free(x); free(w); free(b); free(R); free(out); free(mean); free(rstd);
    free(dx); free(dw); free(db); free(dx0); free(dw0); free(db0); free(g);
    free(c.x); free(c.w); free(c.b); free(c.r);
}

/* ---------------------------------------------------------------------------------- */
/* attention                                                                          */

struct att_ctx { double *qkv, *r; int B, T, Cq, NH; };

static double att_objective(const void *p)
{
    const struct att_ctx *c = p;
    long n = (long)c->B * c->T * c->Cq;
    double *out = malloc(n * sizeof *out);
    ref_attention(out, NULL, c->qkv, c->B, c->T, c->Cq, c->NH);
    double L = dot_d(out, c->r, n);
    free(out);
    return L;
}

static void attention_fwd_check(int B, int T, int Cq, int NH, uint64_t seed)
{
    struct rng r = { seed };
    long nq = (long)B * T * 3 * Cq, no = (long)B * T * Cq, na = (long)B * NH * T * T;
    float *qkv = fvec(nq, &r, -2, 2), *out = fvec(no, NULL, 0, 0), *att = fvec(na, &r, 5, 5);
    double *dq = dvec_from(qkv, nq), *want = malloc(no * sizeof *want), *wa = malloc(na * sizeof *wa);
    K()->attention_fwd(g_be, F(out, B * T, Cq), F(att, B * NH * T, T), F(qkv, B * T, 3 * Cq), B, NH);
    ref_attention(want, wa, dq, B, T, Cq, NH);
    check_close_vec("attention out", out, want, no, 1e-5, 1e-5);
    check_close_vec("attention att", att, wa, na, 1e-5, 1e-6);
    int masked_zero = 1;
    for (int bh = 0; bh < B * NH; bh++)
        for (int t = 0; t < T; t++)
            for (int j = t + 1; j < T; j++) masked_zero &= att[(bh * T + t) * T + j] == 0.0f;
    CHECK(masked_zero);
    free(qkv); free(out); free(att); free(dq); free(want); free(wa);
}

/* T = 7 fits in one causal block of the kernel; T = 130 spans three, the last partial */
static void test_attention_fwd_matches_reference(void)
{
    attention_fwd_check(2, 7, 12, 3, 6);
    attention_fwd_check(1, 130, 8, 2, 60);
}

static void attention_bwd_check(int B, int T, int Cq, int NH, uint64_t seed)
{
    struct rng r = { seed };
    long nq = (long)B * T * 3 * Cq, no = (long)B * T * Cq, na = (long)B * NH * T * T;
    float *qkv = fvec(nq, &r, -2, 2), *out = fvec(no, NULL, 0, 0), *att = fvec(na, NULL, 0, 0);
    float *R = fvec(no, &r, -1, 1);
    /* NaN everywhere beforehand: dqkv must be fully overwritten, scratch never read */
    float *dqkv = fvec(nq, NULL, 0, 0), *scratch = fvec(na, NULL, 0, 0);
    for (long i = 0; i < nq; i++) dqkv[i] = NAN;
    for (long i = 0; i < na; i++) scratch[i] = NAN;
    K()->attention_fwd(g_be, F(out, B * T, Cq), F(att, B * NH * T, T), F(qkv, B * T, 3 * Cq), B, NH);
    K()->attention_bwd(g_be, F(dqkv, B * T, 3 * Cq), F(scratch, B * NH * T, T), F(R, B * T, Cq),
                       F(qkv, B * T, 3 * Cq), F(att, B * NH * T, T), B, NH);
    struct att_ctx c = { dvec_from(qkv, nq), dvec_from(R, no), B, T, Cq, NH };
    double *g = malloc(nq * sizeof *g);
    fd_grad(g, c.qkv, nq, att_objective, &c);
    check_grad("attention dqkv", dqkv, g, nq, 1e-3);
    free(qkv); free(out); free(att); free(R); free(dqkv); free(scratch); free(g);
    free(c.qkv); free(c.r);
}

static void test_attention_bwd_matches_finite_differences(void)
{
    attention_bwd_check(2, 7, 12, 3, 7);
    attention_bwd_check(1, 130, 4, 2, 70);
}

static void test_attention_fwd_bwd_is_bitwise_deterministic(void)
{
    struct rng r = { 8 };
    int B = 2, T = 64, Cq = 128, NH = 4;
    long nq = (long)B * T * 3 * Cq, no = (long)B * T * Cq, na = (long)B * NH * T * T;
    float *qkv = fvec(nq, &r, -2, 2), *R = fvec(no, &r, -1, 1);
    float *out[2], *att[2], *dqkv[2], *scratch = fvec(na, NULL, 0, 0);
    for (int k = 0; k < 2; k++) {
        out[k] = fvec(no, NULL, 0, 0); att[k] = fvec(na, NULL, 0, 0); dqkv[k] = fvec(nq, NULL, 0, 0);
        K()->attention_fwd(g_be, F(out[k], B * T, Cq), F(att[k], B * NH * T, T), F(qkv, B * T, 3 * Cq), B,
                           NH);
        K()->attention_bwd(g_be, F(dqkv[k], B * T, 3 * Cq), F(scratch, B * NH * T, T), F(R, B * T, Cq),
                           F(qkv, B * T, 3 * Cq), F(att[k], B * NH * T, T), B, NH);
    }
    CHECK(memcmp(out[0], out[1], no * sizeof(float)) == 0);
    CHECK(memcmp(att[0], att[1], na * sizeof(float)) == 0);
    CHECK(memcmp(dqkv[0], dqkv[1], nq * sizeof(float)) == 0);
    for (int k = 0; k < 2; k++) { free(out[k]); free(att[k]); free(dqkv[k]); }
    free(qkv); free(R); free(scratch);
}

/* ---------------------------------------------------------------------------------- */
/* gelu, residual                                                                     */

struct gelu_ctx { double *x, *r; long n; };

static double gelu_objective(const void *p)
{
    const struct gelu_ctx *c = p;
    double L = 0.0;
    for (long i = 0; i < c->n; i++) L += ref_gelu(c->x[i]) * c->r[i];
    return L;
}

static void test_gelu_fwd_matches_reference(void)
{
    struct rng r = { 9 };
    long n = 1001;
    float *x = fvec(n, &r, -8, 8), *out = fvec(n, NULL, 0, 0);
    x[0] = 0.0f; x[1] = -30.0f; x[2] = 30.0f; x[3] = 1e-20f;
    double *want = malloc(n * sizeof *want);
    for (long i = 0; i < n; i++) want[i] = ref_gelu(x[i]);
    K()->gelu_fwd(g_be, F(out, 1, n), F(x, 1, n));
    check_close_vec("gelu out", out, want, n, 1e-6, 1e-7);
    free(x); free(out); free(want);
}

static void test_gelu_bwd_matches_finite_differences_in_place(void)
{
    struct rng r = { 10 };
    long n = 301;
    float *x = fvec(n, &r, -5, 5), *R = fvec(n, &r, -1, 1), *d = fvec(n, NULL, 0, 0);
    memcpy(d, R, n * sizeof(float));
    K()->gelu_bwd(g_be, F(d, 1, n), F(x, 1, n), F(d, 1, n));  /* dinp aliases dout, as the model uses it */
    struct gelu_ctx c = { dvec_from(x, n), dvec_from(R, n), n };
    double *g = malloc(n * sizeof *g);
    fd_grad(g, c.x, n, gelu_objective, &c);
    check_grad("gelu dinp", d, g, n, 1e-4);
    free(x); free(R); free(d); free(g); free(c.x); free(c.r);
}

static void test_residual_adds_in_place(void)
{
    float a[5] = { 1, 2, 3, 4, 5 }, b[5] = { 10, 20, 30, 40, 50 };
    K()->residual_fwd(g_be, F(a, 1, 5), F(a, 1, 5), F(b, 1, 5));
    for (int i = 0; i < 5; i++) CHECK(a[i] == 11.0f * (i + 1));
}

/* ---------------------------------------------------------------------------------- */
/* embedding                                                                          */

struct emb_ctx { double *wte, *wpe, *r; const int32_t *tok; int B, T, C; };

static double emb_objective(const void *p)
{
    const struct emb_ctx *c = p;
    double L = 0.0;
    for (int bt = 0; bt < c->B * c->T; bt++)
        for (int i = 0; i < c->C; i++)
            L += (c->wte[c->tok[bt] * c->C + i] + c->wpe[(bt % c->T) * c->C + i]) * c->r[bt * c->C + i];
    return L;
}

static void test_embedding_matches_reference_and_finite_differences(void)
{
    struct rng r = { 11 };
    int B = 2, T = 5, C = 70, V = 10;
    int32_t tok[10] = { 3, 1, 3, 9, 0, 3, 3, 7, 1, 2 };  /* repeats: accumulation order */
    float *wte = fvec(V * C, &r, -1, 1), *wpe = fvec(T * C, &r, -1, 1), *R = fvec(B * T * C, &r, -1, 1);
    float *out = fvec(B * T * C, NULL, 0, 0);
    float *dwte = fvec(V * C, NULL, 0, 0), *dwpe = fvec(T * C, NULL, 0, 0);
    K()->embedding_fwd(g_be, F(out, B * T, C), I32(tok, B, T), F(wte, V, C), F(wpe, T, C), 0);
    int ok = 1;
    for (int bt = 0; bt < B * T; bt++)
        for (int i = 0; i < C; i++)
            ok &= out[bt * C + i] == wte[tok[bt] * C + i] + wpe[(bt % T) * C + i];
    CHECK(ok);
    K()->embedding_bwd(g_be, F(dwte, V, C), F(dwpe, T, C), F(R, B * T, C), I32(tok, B, T), 0);
    struct emb_ctx c = { dvec_from(wte, V * C), dvec_from(wpe, T * C), dvec_from(R, B * T * C), tok, B, T, C };
    double *g = malloc(V * C * sizeof *g);
    fd_grad(g, c.wte, V * C, emb_objective, &c);
    check_grad("embedding dwte", dwte, g, V * C, 1e-4);
    fd_grad(g, c.wpe, T * C, emb_objective, &c);
    check_grad("embedding dwpe", dwpe, g, T * C, 1e-4);
    free(wte); free(wpe); free(R); free(out); free(dwte); free(dwpe); free(g);
    free(c.wte); free(c.wpe); free(c.r);
}

static void test_embedding_shards_sum_to_unsharded(void)
{
    struct rng r = { 12 };
    int B = 2, T = 5, C = 12, V = 10, Vl = 4;  /* shards [0,4) [4,8) [8,12): 2 padded rows */
    int32_t tok[10] = { 3, 4, 9, 9, 0, 8, 3, 7, 5, 2 };
    float *wte = fvec(3 * Vl * C, &r, -1, 1), *wpe = fvec(T * C, &r, -1, 1), *R = fvec(B * T * C, &r, -1, 1);
    float *full = fvec(B * T * C, NULL, 0, 0), *part = fvec(B * T * C, NULL, 0, 0), *sum = fvec(B * T * C, NULL, 0, 0);
    float *dwte_full = fvec(3 * Vl * C, NULL, 0, 0), *dwte_sh = fvec(3 * Vl * C, NULL, 0, 0);
    float *dwpe_full = fvec(T * C, NULL, 0, 0), *dwpe_sh = fvec(T * C, NULL, 0, 0);
    K()->embedding_fwd(g_be, F(full, B * T, C), I32(tok, B, T), F(wte, V, C), F(wpe, T, C), 0);
    K()->embedding_bwd(g_be, F(dwte_full, V, C), F(dwpe_full, T, C), F(R, B * T, C), I32(tok, B, T), 0);
    for (int s = 0; s < 3; s++) {
        /* wpe belongs to one shard only, so the positions are counted once */
        const float *wp = s == 0 ? wpe : NULL;
        K()->embedding_fwd(g_be, F(part, B * T, C), I32(tok, B, T), F(wte + s * Vl * C, Vl, C), F(wp, T, C),
                           s * Vl);
        for (int i = 0; i < B * T * C; i++) sum[i] += part[i];
        K()->embedding_bwd(g_be, F(dwte_sh + s * Vl * C, Vl, C), F(s == 0 ? dwpe_sh : NULL, T, C),
                           F(R, B * T, C), I32(tok, B, T), s * Vl);
    }
    int ok = 1;
    for (int i = 0; i < B * T * C; i++) ok &= fabsf(sum[i] - full[i]) <= 1e-6f * fabsf(full[i]);
    CHECK(ok);
    CHECK(memcmp(dwte_full, dwte_sh, 3 * Vl * C * sizeof(float)) == 0);
    CHECK(memcmp(dwpe_full, dwpe_sh, T * C * sizeof(float)) == 0);
    free(wte); free(wpe); free(R); free(full); free(part); free(sum);
    free(dwte_full); free(dwte_sh); free(dwpe_full); free(dwpe_sh);
}

/* ---------------------------------------------------------------------------------- */
/* cross-entropy                                                                      */

struct xent_ctx { double *logits; const int32_t *tgt; int N, ld, V; };

static double xent_objective(const void *p)
{
    const struct xent_ctx *c = p;
    return ref_xent_mean(c->logits, c->tgt, c->N, c->ld, c->V);
}

/* Runs the four-step protocol over n_sh shards of Vl columns each, combining per-shard
 * values the way the tensor-parallel trainer does with collectives (max of maxes,
 * sum of sumexps taken at the global max, sum of target logits). logits [N][n_sh*Vl]
 * become dlogits. Returns the mean loss. */
static double xent_sharded(float *logits, const int32_t *tgt, int N, int V, int n_sh, int Vl)
{
    int ld = n_sh * Vl;
    float *sh = malloc((size_t)N * Vl * sizeof *sh), *tmp = malloc(N * sizeof *tmp);
    float *gmax = malloc(N * sizeof *gmax), *gsum = calloc(N, sizeof *gsum), *gt = calloc(N, sizeof *gt);
    for (int n = 0; n < N; n++) gmax[n] = -INFINITY;
    for (int pass = 0; pass < 4; pass++)
        for (int s = 0; s < n_sh; s++) {
            for (int n = 0; n < N; n++) memcpy(sh + n * Vl, logits + n * ld + s * Vl, Vl * sizeof(float));
            if (pass == 0) {
                K()->xent_max(g_be, F(tmp, 1, N), F(sh, N, Vl), s * Vl, V);
                for (int n = 0; n < N; n++) gmax[n] = fmaxf(gmax[n], tmp[n]);
            } else if (pass == 1) {
                K()->xent_sumexp(g_be, F(tmp, 1, N), F(sh, N, Vl), F(gmax, 1, N), s * Vl, V);
                for (int n = 0; n < N; n++) gsum[n] += tmp[n];
            } else if (pass == 2) {
                K()->xent_target(g_be, F(tmp, 1, N), F(sh, N, Vl), I32((int32_t *)tgt, 1, N), s * Vl);
                for (int n = 0; n < N; n++) gt[n] += tmp[n];
            } else {
                K()->xent_bwd(g_be, F(sh, N, Vl), F(gmax, 1, N), F(gsum, 1, N), I32((int32_t *)tgt, 1, N),
                              1.0f / N, s * Vl, V);
                for (int n = 0; n < N; n++) memcpy(logits + n * ld + s * Vl, sh + n * Vl, Vl * sizeof(float));
            }
        }
    double loss = 0.0;
    for (int n = 0; n < N; n++) loss += log(gsum[n]) + gmax[n] - gt[n];
    /* xent_loss: the same sum, in the same (row) order, in double */
    CHECK(K()->xent_loss(g_be, F(gmax, 1, N), F(gsum, 1, N), F(gt, 1, N)) == loss);
    free(sh); free(tmp); free(gmax); free(gsum); free(gt);
    return loss / N;
}

static void xent_check(int n_sh, int Vl, int V, uint64_t seed)
{
    struct rng r = { seed };
    int N = 6, ld = n_sh * Vl;
    int32_t tgt[6];
    for (int n = 0; n < N; n++) tgt[n] = (int32_t)(rng_uniform(&r, 0, V - 1e-9));
    tgt[N - 1] = V - 1;  /* the last real column, next to the padding */
    float *logits = fvec(N * ld, &r, -4, 4);
    for (int n = 0; n < N; n++)
        for (int j = V; j < ld; j++) logits[n * ld + j] = 1e3f;  /* padding would dominate */
    struct xent_ctx c = { dvec_from(logits, N * ld), tgt, N, ld, V };
    double loss = xent_sharded(logits, tgt, N, V, n_sh, Vl);
    char what[64];
    CHECK_CLOSE(loss, ref_xent_mean(c.logits, tgt, N, ld, V), 1e-5, 1e-6);
    double *g = malloc(N * ld * sizeof *g);
    fd_grad(g, c.logits, N * ld, xent_objective, &c);
    snprintf(what, sizeof what, "xent dlogits (%d shard%s)", n_sh, n_sh > 1 ? "s" : "");
    check_grad(what, logits, g, N * ld, 1e-3);
    int pad_zero = 1;
    for (int n = 0; n < N; n++)
        for (int j = V; j < ld; j++) pad_zero &= logits[n * ld + j] == 0.0f;
    CHECK(pad_zero);
    free(logits); free(g); free(c.logits);
}

static void test_xent_unsharded_matches_reference_and_finite_differences(void)
{
    xent_check(1, 13, 13, 13);
}

static void test_xent_vocab_shards_with_padding_match_reference(void)
{
    xent_check(3, 4, 11, 14);  /* 12 columns, column 11 is padding */
    xent_check(2, 8, 13, 15);  /* second shard has 3 padded columns */
}

static void test_xent_local_maxima_rescaled_equal_global(void)
{
    /* Alternative combination: each shard's sumexp at its own max, rescaled by
     * exp(local max - global max), must agree with the sumexp at the global max. */
    struct rng r = { 16 };
    int N = 4, Vl = 5, V = 9, n_sh = 2, ld = n_sh * Vl;
    float *logits = fvec(N * ld, &r, -6, 6), sh[4 * 5], lmax[2][4], lsum[2][4], gmax[4], gsum[4] = { 0 };
    for (int s = 0; s < n_sh; s++) {
        for (int n = 0; n < N; n++) memcpy(sh + n * Vl, logits + n * ld + s * Vl, Vl * sizeof(float));
        K()->xent_max(g_be, F(lmax[s], 1, N), F(sh, N, Vl), s * Vl, V);
        K()->xent_sumexp(g_be, F(lsum[s], 1, N), F(sh, N, Vl), F(lmax[s], 1, N), s * Vl, V);
    }
    for (int n = 0; n < N; n++) gmax[n] = fmaxf(lmax[0][n], lmax[1][n]);
    for (int s = 0; s < n_sh; s++) {
        float tmp[4];
        for (int n = 0; n < N; n++) memcpy(sh + n * Vl, logits + n * ld + s * Vl, Vl * sizeof(float));
        K()->xent_sumexp(g_be, F(tmp, 1, N), F(sh, N, Vl), F(gmax, 1, N), s * Vl, V);
        for (int n = 0; n < N; n++) gsum[n] += tmp[n];
    }
    for (int n = 0; n < N; n++) {
        double resc = lsum[0][n] * exp(lmax[0][n] - gmax[n]) + lsum[1][n] * exp(lmax[1][n] - gmax[n]);
        CHECK_CLOSE(gsum[n], resc, 1e-6, 0);
    }
    /* a shard with no real column: max -inf, sumexp 0 */
    float m, se, one = 1.0f, neg = -INFINITY;
    K()->xent_max(g_be, F(&m, 1, 1), F(&one, 1, 1), V, V);
    K()->xent_sumexp(g_be, F(&se, 1, 1), F(&one, 1, 1), F(&neg, 1, 1), V, V);
    CHECK(m == -INFINITY && se == 0.0f);
    free(logits);
}

/* ---------------------------------------------------------------------------------- */
/* optimizer and reductions                                                           */

static void test_adamw_matches_hand_computed_steps(void)
{
    float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, gs = 0.5f;
    for (int with_wd = 0; with_wd < 2; with_wd++) {
        float wd = with_wd ? 0.1f : 0.0f;
        float p[4] = { 0.5f, -1.0f, 2.0f, 0.0f }, m[4] = { 0 }, v[4] = { 0 };
        double pd[4], md[4] = { 0 }, vd[4] = { 0 };
        for (int i = 0; i < 4; i++) pd[i] = p[i];
        for (int t = 1; t <= 3; t++) {
            float g[4] = { 0.3f * t, -0.7f, 1e-3f, 2.0f / t };
            K()->adamw(g_be, F(p, 1, 4), F(g, 1, 4), F(m, 1, 4), F(v, 1, 4), lr, b1, b2, eps, wd, gs, t);
            for (int i = 0; i < 4; i++) {
                double gi = (double)g[i] * gs;
                md[i] = b1 * md[i] + (1 - (double)b1) * gi;
                vd[i] = b2 * vd[i] + (1 - (double)b2) * gi * gi;
                double mh = md[i] / (1 - pow(b1, t)), vh = vd[i] / (1 - pow(b2, t));
                pd[i] -= lr * (mh / (sqrt(vh) + eps) + wd * pd[i]);
            }
        }
        for (int i = 0; i < 4; i++) {
            CHECK_CLOSE(p[i], pd[i], 1e-5, 1e-6);
            CHECK_CLOSE(m[i], md[i], 1e-5, 1e-7);
            CHECK_CLOSE(v[i], vd[i], 1e-5, 1e-9);
        }
    }
}

static void test_sumsq_and_scale(void)
{
    struct rng r = { 17 };
    long n = 100003;
    float *x = fvec(n, &r, -1, 1);
    double want = 0.0;
    for (long i = 0; i < n; i++) want += (double)x[i] * x[i];
    double got = K()->sumsq(g_be, F(x, 1, n));
    CHECK_CLOSE(got, want, 1e-12, 0);
    CHECK(K()->sumsq(g_be, F(x, 1, n)) == got);  /* fixed summation order */
    CHECK(K()->sumsq(g_be, F(x, 1, 3)) == (double)x[0] * x[0] + (double)x[1] * x[1] + (double)x[2] * x[2]);
    CHECK(K()->sumsq(g_be, F(x, 1, 0)) == 0.0);
    K()->scale(g_be, F(x, 1, n), 0.5f);
    CHECK_CLOSE(K()->sumsq(g_be, F(x, 1, n)), 0.25 * want, 1e-12, 0);
    free(x);
}

/* ---------------------------------------------------------------------------------- */
/* vmath, BLAS core choice, backend table                                             */

static void test_vmath_exp_accuracy_and_limits(void)
{
    double max_rel = 0.0, x_worst = 0.0;
    long not_flushed = 0;
    for (double xd = -100.0; xd <= 88.7; xd += 3e-5) {
        float x = (float)xd;
        double e = exp((double)x), got = vm_expf(x);
        if (x < VM_EXP_MIN_X) {
            not_flushed += got != 0.0;  /* subnormal results are flushed to +0 */
        } else {
            double rel = fabs(got - e) / e;
            if (rel > max_rel) { max_rel = rel; x_worst = x; }
        }
    }
    printf("       vm_expf max rel err %.3g at x = %.6g over [ln(FLT_MIN), 88.7]\n", max_rel, x_worst);
    CHECK(max_rel <= 2.5e-7);
    CHECK(not_flushed == 0);
    CHECK(vm_expf(VM_EXP_MIN_X) >= FLT_MIN * 0.99999f);
    CHECK(vm_expf(-INFINITY) == 0.0f && vm_expf(-88.0f) == 0.0f && vm_expf(-1e30f) == 0.0f);
    CHECK(vm_expf(0.0f) == 1.0f);
    CHECK(isinf(vm_expf(88.73f)) && isinf(vm_expf(INFINITY)) && vm_expf(88.72f) < INFINITY);
    CHECK(isnan(vm_expf(NAN)));
    double tmax = 0.0;
    for (double xd = -20.0; xd <= 20.0; xd += 1e-3) tmax = fmax(tmax, fabs(vm_tanhf((float)xd) - tanh((float)xd)));
    printf("       vm_tanhf max abs err %.3g over [-20, 20]\n", tmax);
    CHECK(tmax <= 3e-7);
    CHECK(vm_tanhf(INFINITY) == 1.0f && vm_tanhf(-INFINITY) == -1.0f);
    CHECK(vm_sigmoidf(-INFINITY) == 0.0f && vm_sigmoidf(INFINITY) == 1.0f);
}

static void test_blas_better_coretype(void)
{
    const char *s;
    CHECK((s = blas_better_coretype("Prescott", 1, 1)) && strcmp(s, "SkylakeX") == 0);
    CHECK((s = blas_better_coretype("Haswell", 1, 1)) && strcmp(s, "SkylakeX") == 0);
    CHECK(blas_better_coretype("SkylakeX", 1, 1) == NULL);
    CHECK(blas_better_coretype("Cooperlake", 1, 1) == NULL);
    CHECK(blas_better_coretype("SapphireRapids", 1, 1) == NULL);
    CHECK((s = blas_better_coretype("Prescott", 0, 1)) && strcmp(s, "Haswell") == 0);
    CHECK((s = blas_better_coretype("Sandybridge", 0, 1)) && strcmp(s, "Haswell") == 0);
    CHECK(blas_better_coretype("Haswell", 0, 1) == NULL);
    CHECK(blas_better_coretype("Zen", 0, 1) == NULL);
    CHECK(blas_better_coretype("Prescott", 0, 0) == NULL);
    CHECK((s = blas_better_coretype(NULL, 1, 1)) && strcmp(s, "SkylakeX") == 0);
    int a512 = -1, a2 = -1;
    blas_cpu_flags(&a512, &a2);
    CHECK((a512 == 0 || a512 == 1) && (a2 == 0 || a2 == 1));
}


/* ---------------------------------------------------------------------------------- */
/* the table, and results independent of the thread count                             */

static void test_backend_kernels_is_the_one_cpu_table(void)
{
    const struct kernels *k = K();
    CHECK(k != NULL && k->name != NULL && strcmp(k->name, "cpu") == 0);
    if (!k) return;
    CHECK(k->matmul_fwd && k->matmul_bwd && k->layernorm_fwd && k->layernorm_bwd &&
          k->attention_fwd && k->attention_bwd && k->gelu_fwd && k->gelu_bwd &&
          k->residual_fwd && k->embedding_fwd && k->embedding_bwd && k->xent_max &&
          k->xent_sumexp && k->xent_target && k->xent_bwd && k->xent_loss && k->adamw &&
          k->sumsq && k->scale && k->convert && k->accumulate && k->count_nonfinite);
    /* one table for every backend of the device (and every dtype) */
    char err[256];
    struct backend *b2 = backend_init(KDEV_CPU, 0, err, sizeof err);
    CHECK_MSG(b2 != NULL, "backend_init(cpu): %s", err);
    if (b2) CHECK(backend_kernels(b2) == k);
    backend_free(b2);
    CHECK(kernels_blas_corename() != NULL && kernels_threads() >= 1);
    printf("       BLAS core %s, %d threads\n", kernels_blas_corename(), kernels_threads());
}

/* every element of got has want's bits (fp32) */
static void eq32(const char *what, const float *got, const float *want, long n)
{
    long bad = 0, first = -1;
    for (long i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0 && !bad++) first = i;
    CHECK_MSG(bad == 0, "%s: %ld of %ld values differ; first [%ld]: %.9g, want %.9g", what, bad,
              n, first, bad ? got[first] : 0.0, bad ? want[first] : 0.0);
}

/* cpu.h: per-row kernels, the reductions over rows that are split by column (dbias,
 * LayerNorm dw/db, embedding gradients), sumsq's fixed chunks and the conversions'
 * fixed blocks give the same bits whatever the number of threads. Run with 1, 2 and 3
 * threads (more threads than cores is fine) and compared bit for bit. */
static void test_results_do_not_depend_on_the_thread_count(void)
{
    enum { NT = 3, N = 37, C = 200, M = 33, Nm = 150, Km = 8, B = 3, T = 11, Ce = 150, V = 20,
           Vx = 50 };
    const long nbig = 100003;  /* above the conversions' parallel threshold, odd */
    struct rng r = { 18 };
    float *x = fvec(N * C, &r, -2, 3), *w = fvec(C, &r, 0.5, 1.5), *bb = fvec(C, &r, -1, 1);
    float *g = fvec(N * C, &r, -1, 1), *inp = fvec(M * Km, &r, -1, 1);
    float *wm = fvec(Nm * Km, &r, -1, 1), *dout = fvec(M * Nm, &r, -1, 1);
    float *demb = fvec(B * T * Ce, &r, -1, 1), *big = fvec(nbig, &r, -3, 3);
    float *logits = fvec(N * Vx, &r, -4, 4);
    int32_t tok[B * T], tgt[N];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)rng_uniform(&r, 0, V - 1e-9);
    for (int i = 0; i < N; i++) tgt[i] = (int32_t)rng_uniform(&r, 0, Vx - 1e-9);
    float *out[NT], *mean[NT], *rstd[NT], *dx[NT], *dw[NT], *db[NT], *dbias[NT], *dwte[NT],
        *dwpe[NT], *ge[NT], *mx[NT], *se[NT], *dl[NT];
    uint16_t *bf[NT];
    double ss[NT];
    int nt0 = omp_get_max_threads();
    for (int k = 0; k < NT; k++) {
        omp_set_num_threads(k + 1);
        out[k] = fvec(N * C, NULL, 0, 0); mean[k] = fvec(N, NULL, 0, 0); rstd[k] = fvec(N, NULL, 0, 0);
        dx[k] = fvec(N * C, NULL, 0, 0); dw[k] = fvec(C, NULL, 0, 0); db[k] = fvec(C, NULL, 0, 0);
        dbias[k] = fvec(Nm, NULL, 0, 0); dwte[k] = fvec(V * Ce, NULL, 0, 0);
        dwpe[k] = fvec(T * Ce, NULL, 0, 0); ge[k] = fvec(nbig, NULL, 0, 0);
        mx[k] = fvec(N, NULL, 0, 0); se[k] = fvec(N, NULL, 0, 0); dl[k] = fvec(N * Vx, NULL, 0, 0);
        bf[k] = calloc((size_t)nbig, sizeof(uint16_t));
        K()->layernorm_fwd(g_be, F(out[k], N, C), F(mean[k], 1, N), F(rstd[k], 1, N), F(x, N, C),
                           F(w, 1, C), F(bb, 1, C));
        K()->layernorm_bwd(g_be, F(dx[k], N, C), F(dw[k], 1, C), F(db[k], 1, C), F(g, N, C),
                           F(x, N, C), F(w, 1, C), F(mean[k], 1, N), F(rstd[k], 1, N));
        K()->matmul_bwd(g_be, TENSOR_NONE, TENSOR_NONE, F(dbias[k], 1, Nm), F(dout, M, Nm),
                        F(inp, M, Km), F(wm, Nm, Km));
        K()->embedding_bwd(g_be, F(dwte[k], V, Ce), F(dwpe[k], T, Ce), F(demb, B * T, Ce),
                           I32(tok, B, T), 0);
        K()->gelu_fwd(g_be, F(ge[k], 1, nbig), F(big, 1, nbig));
        ss[k] = K()->sumsq(g_be, F(big, 1, nbig));
        K()->convert(g_be, tensor_1d(bf[k], KDT_BF16, nbig), F(big, 1, nbig));
        memcpy(dl[k], logits, N * Vx * sizeof(float));
        K()->xent_max(g_be, F(mx[k], 1, N), F(dl[k], N, Vx), 0, Vx);
        K()->xent_sumexp(g_be, F(se[k], 1, N), F(dl[k], N, Vx), F(mx[k], 1, N), 0, Vx);
        K()->xent_bwd(g_be, F(dl[k], N, Vx), F(mx[k], 1, N), F(se[k], 1, N), I32(tgt, 1, N),
                      1.0f / N, 0, Vx);
    }
    omp_set_num_threads(nt0);
    for (int k = 1; k < NT; k++) {
        char what[64];
#define TC_EQ(name, arr, n)                                                          \
        do {                                                                         \
            snprintf(what, sizeof what, "%s (%d threads vs 1)", name, k + 1);        \
            eq32(what, arr[k], arr[0], n);                                           \
        } while (0)
        TC_EQ("layernorm out", out, N * C);
        TC_EQ("layernorm mean", mean, N);
        TC_EQ("layernorm rstd", rstd, N);
        TC_EQ("layernorm dinp", dx, N * C);
        TC_EQ("layernorm dw", dw, C);
        TC_EQ("layernorm db", db, C);
        TC_EQ("matmul dbias", dbias, Nm);
        TC_EQ("embedding dwte", dwte, V * Ce);
        TC_EQ("embedding dwpe", dwpe, T * Ce);
        TC_EQ("gelu out", ge, nbig);
        TC_EQ("xent rowmax", mx, N);
        TC_EQ("xent sumexp", se, N);
        TC_EQ("xent dlogits", dl, N * Vx);
#undef TC_EQ
        CHECK_MSG(ss[k] == ss[0], "sumsq with %d threads %.17g, with 1 %.17g", k + 1, ss[k], ss[0]);
        CHECK_MSG(memcmp(bf[k], bf[0], (size_t)nbig * sizeof(uint16_t)) == 0,
                  "convert fp32 -> bf16 with %d threads differs from 1 thread", k + 1);
    }
    for (int k = 0; k < NT; k++) {
        free(out[k]); free(mean[k]); free(rstd[k]); free(dx[k]); free(dw[k]); free(db[k]);
        free(dbias[k]); free(dwte[k]); free(dwpe[k]); free(ge[k]); free(mx[k]); free(se[k]);
        free(dl[k]); free(bf[k]);
    }
    free(x); free(w); free(bb); free(g); free(inp); free(wm); free(dout); free(demb); free(big);
    free(logits);
}

/* ---------------------------------------------------------------------------------- */
/* bf16 and fp16: the fp32 kernel on the widened inputs, rounded once                  */

static uint16_t to16(enum kdtype dt, float x)
{
    return dt == KDT_BF16 ? cvt_f32_to_bf16_1(x) : cvt_f32_to_f16_1(x);
}
static float from16(enum kdtype dt, uint16_t h)
{
    return dt == KDT_BF16 ? cvt_bf16_to_f32_1(h) : cvt_f16_to_f32_1(h);
}
static uint16_t nan16(enum kdtype dt) { return dt == KDT_BF16 ? 0x7fc0u : 0x7e00u; }

/* A backend of its own for one 16-bit test: its buffers go with it (backend_free). */
static struct backend *be_new(void)
{
    char err[256];
    struct backend *b = backend_init(KDEV_CPU, 0, err, sizeof err);
    CHECK_MSG(b != NULL, "backend_init(cpu): %s", err);
    return b;
}
static float *af(struct backend *b, long n)
{
    float *p = backend_alloc(b, (size_t)n * sizeof *p);
    memset(p, 0, (size_t)n * sizeof *p);
    return p;
}
static uint16_t *ah(struct backend *b, long n)
{
    uint16_t *p = backend_alloc(b, (size_t)n * sizeof *p);
    memset(p, 0, (size_t)n * sizeof *p);
    return p;
}
static float *af_rand(struct backend *b, long n, struct rng *r, double lo, double hi)
{
    float *p = af(b, n);
    for (long i = 0; i < n; i++) p[i] = (float)rng_uniform(r, lo, hi);
    return p;
}
static float *af_copy(struct backend *b, const float *src, long n)
{
    float *p = af(b, n);
    memcpy(p, src, (size_t)n * sizeof *p);
    return p;
}
static uint16_t *ah_copy(struct backend *b, const uint16_t *src, long n)
{
    uint16_t *p = ah(b, n);
    memcpy(p, src, (size_t)n * sizeof *p);
    return p;
}

/* n values drawn from [lo, hi) and rounded to dt: h holds them (what the 16-bit kernel
 * reads), f the same values widened to fp32, exactly (what the fp32 kernel reads). */
struct in16 { uint16_t *h; float *f; };

static struct in16 in16_rand(struct backend *b, enum kdtype dt, long n, struct rng *r,
                             double lo, double hi)
{
    struct in16 p = { ah(b, n), af(b, n) };
    for (long i = 0; i < n; i++) {
        p.h[i] = to16(dt, (float)rng_uniform(r, lo, hi));
        p.f[i] = from16(dt, p.h[i]);
    }
    return p;
}

/* got (16-bit values of dtype dt) is want (fp32) rounded by the scalar reference, element
 * by element. Returns how many of want's values were not representable in dt (had to be
 * rounded): where none were, the comparison proves nothing about the rounding. */
static long eq16(const char *what, enum kdtype dt, const uint16_t *got, const float *want,
                 long n)
{
    long bad = 0, first = -1, rounded = 0;
    for (long i = 0; i < n; i++) {
        uint16_t h = to16(dt, want[i]);
        float back = from16(dt, h);
        rounded += memcmp(&back, &want[i], sizeof back) != 0;
        if (got[i] != h && !bad++) first = i;
    }
    CHECK_MSG(bad == 0, "%s (%s): %ld of %ld values are not the rounded fp32 result; first [%ld]: "
              "0x%04x, want 0x%04x (fp32 %.9g)", what, kdtype_name(dt), bad, n, first,
              bad ? got[first] : 0u, bad ? to16(dt, want[first]) : 0u, bad ? want[first] : 0.0);
    printf("       %-30s %s: %s (%ld of %ld rounded)\n", what, kdtype_name(dt),
           bad ? "DIFFERS" : "bitwise equal", rounded, n);
    return rounded;
}

/* an input the kernel must not have written: h still widens to f */
static void unchanged16(const char *what, enum kdtype dt, struct in16 p, long n)
{
    long bad = 0;
    for (long i = 0; i < n; i++) {
        float v = from16(dt, p.h[i]);
        bad += memcmp(&v, &p.f[i], sizeof v) != 0;
    }
    CHECK_MSG(bad == 0, "%s (%s): an input was written (%ld elements)", what, kdtype_name(dt), bad);
}

#define T16(p, rows, cols) tensor_2d((p), dt, (rows), (cols))

static void matmul16(enum kdtype dt)
{
    struct backend *b = be_new();
    if (!b) return;
    const struct kernels *k = backend_kernels(b);
    struct rng r = { 21 + (uint64_t)dt };
    int M = 7, Kd = 13, N = 70;  /* N > 64: dbias spans two column blocks */
    struct in16 inp = in16_rand(b, dt, M * Kd, &r, -1, 1), w = in16_rand(b, dt, N * Kd, &r, -1, 1);
    struct in16 bias = in16_rand(b, dt, N, &r, -1, 1), dout = in16_rand(b, dt, M * N, &r, -1, 1);
    uint16_t *out = ah(b, M * N);
    float *ref = af(b, M * N);
    k->matmul_fwd(b, T16(out, M, N), T16(inp.h, M, Kd), T16(w.h, N, Kd), T16(bias.h, 1, N));
    k->matmul_fwd(b, F(ref, M, N), F(inp.f, M, Kd), F(w.f, N, Kd), F(bias.f, 1, N));
    CHECK(eq16("matmul_fwd out (bias)", dt, out, ref, M * N) > 0);
    k->matmul_fwd(b, T16(out, M, N), T16(inp.h, M, Kd), T16(w.h, N, Kd), TENSOR_NONE);
    k->matmul_fwd(b, F(ref, M, N), F(inp.f, M, Kd), F(w.f, N, Kd), TENSOR_NONE);
    CHECK(eq16("matmul_fwd out (no bias)", dt, out, ref, M * N) > 0);

    /* backward: dinp (16-bit) NaN beforehand, must be overwritten; dw, dbias (fp32) start
     * non-zero and accumulate, from the same values on both paths */
    uint16_t *dinp = ah(b, M * Kd);
    for (long i = 0; i < M * Kd; i++) dinp[i] = nan16(dt);
    float *dinp_ref = af(b, M * Kd);
    float *dw = af_rand(b, N * Kd, &r, -1, 1), *dw_ref = af_copy(b, dw, N * Kd);
    float *db = af_rand(b, N, &r, -1, 1), *db_ref = af_copy(b, db, N);
    k->matmul_bwd(b, T16(dinp, M, Kd), F(dw, N, Kd), F(db, 1, N), T16(dout.h, M, N),
                  T16(inp.h, M, Kd), T16(w.h, N, Kd));
    k->matmul_bwd(b, F(dinp_ref, M, Kd), F(dw_ref, N, Kd), F(db_ref, 1, N), F(dout.f, M, N),
                  F(inp.f, M, Kd), F(w.f, N, Kd));
    CHECK(eq16("matmul_bwd dinp", dt, dinp, dinp_ref, M * Kd) > 0);
    eq32("matmul_bwd dw (fp32)", dw, dw_ref, N * Kd);
    eq32("matmul_bwd dbias (fp32)", db, db_ref, N);
    /* absent outputs: dinp alone (reads w), dw alone (reads inp) */
    for (long i = 0; i < M * Kd; i++) dinp[i] = nan16(dt);
    k->matmul_bwd(b, T16(dinp, M, Kd), TENSOR_NONE, TENSOR_NONE, T16(dout.h, M, N),
                  T16(inp.h, M, Kd), T16(w.h, N, Kd));
    eq16("matmul_bwd dinp alone", dt, dinp, dinp_ref, M * Kd);
    k->matmul_bwd(b, TENSOR_NONE, F(dw, N, Kd), TENSOR_NONE, T16(dout.h, M, N),
                  T16(inp.h, M, Kd), T16(w.h, N, Kd));
    k->matmul_bwd(b, TENSOR_NONE, F(dw_ref, N, Kd), TENSOR_NONE, F(dout.f, M, N),
                  F(inp.f, M, Kd), F(w.f, N, Kd));
    eq32("matmul_bwd dw alone (fp32)", dw, dw_ref, N * Kd);
    eq32("matmul_bwd dbias untouched", db, db_ref, N);
    unchanged16("matmul inputs", dt, inp, M * Kd);
    unchanged16("matmul inputs", dt, w, N * Kd);
    unchanged16("matmul inputs", dt, bias, N);
    unchanged16("matmul inputs", dt, dout, M * N);
    backend_free(b);
}

static void layernorm16(enum kdtype dt)
{
    struct backend *b = be_new();
    if (!b) return;
    const struct kernels *k = backend_kernels(b);
    struct rng r = { 31 + (uint64_t)dt };
    int N = 7, C = 70;  /* C > 64: dw/db span two column blocks */
    struct in16 x = in16_rand(b, dt, N * C, &r, -2, 3), w = in16_rand(b, dt, C, &r, 0.5, 1.5);
    struct in16 bias = in16_rand(b, dt, C, &r, -1, 1), dout = in16_rand(b, dt, N * C, &r, -1, 1);
    uint16_t *out = ah(b, N * C);
    float *ref = af(b, N * C), *mean = af(b, N), *rstd = af(b, N), *mean_ref = af(b, N),
          *rstd_ref = af(b, N);
    k->layernorm_fwd(b, T16(out, N, C), F(mean, 1, N), F(rstd, 1, N), T16(x.h, N, C),
                     T16(w.h, 1, C), T16(bias.h, 1, C));
    k->layernorm_fwd(b, F(ref, N, C), F(mean_ref, 1, N), F(rstd_ref, 1, N), F(x.f, N, C),
                     F(w.f, 1, C), F(bias.f, 1, C));
    CHECK(eq16("layernorm_fwd out", dt, out, ref, N * C) > 0);
    eq32("layernorm_fwd mean (fp32)", mean, mean_ref, N);
    eq32("layernorm_fwd rstd (fp32)", rstd, rstd_ref, N);
    /* backward adds into dinp (16-bit: widened, added to, rounded), dw and db (fp32) */
    struct in16 dinp = in16_rand(b, dt, N * C, &r, -1, 1);
    float *dw = af_rand(b, C, &r, -1, 1), *dw_ref = af_copy(b, dw, C);
    float *db = af_rand(b, C, &r, -1, 1), *db_ref = af_copy(b, db, C);
    k->layernorm_bwd(b, T16(dinp.h, N, C), F(dw, 1, C), F(db, 1, C), T16(dout.h, N, C),
                     T16(x.h, N, C), T16(w.h, 1, C), F(mean, 1, N), F(rstd, 1, N));
    k->layernorm_bwd(b, F(dinp.f, N, C), F(dw_ref, 1, C), F(db_ref, 1, C), F(dout.f, N, C),
                     F(x.f, N, C), F(w.f, 1, C), F(mean, 1, N), F(rstd, 1, N));
    CHECK(eq16("layernorm_bwd dinp (added)", dt, dinp.h, dinp.f, N * C) > 0);
    eq32("layernorm_bwd dw (fp32)", dw, dw_ref, C);
    eq32("layernorm_bwd db (fp32)", db, db_ref, C);
    unchanged16("layernorm inputs", dt, x, N * C);
    unchanged16("layernorm inputs", dt, w, C);
    unchanged16("layernorm inputs", dt, dout, N * C);
    backend_free(b);
}

static void attention16_case(enum kdtype dt, int B, int T, int Cq, int NH, uint64_t seed)
{
    struct backend *b = be_new();
    if (!b) return;
    const struct kernels *k = backend_kernels(b);
    struct rng r = { seed + (uint64_t)dt };
    long nq = (long)B * T * 3 * Cq, no = (long)B * T * Cq, na = (long)B * NH * T * T;
    struct in16 qkv = in16_rand(b, dt, nq, &r, -2, 2), dout = in16_rand(b, dt, no, &r, -1, 1);
    uint16_t *out = ah(b, no), *att = ah(b, na);
    float *out_ref = af(b, no), *att_ref = af(b, na);
    for (long i = 0; i < na; i++) att[i] = nan16(dt);
    k->attention_fwd(b, T16(out, B * T, Cq), T16(att, B * NH * T, T), T16(qkv.h, B * T, 3 * Cq),
                     B, NH);
    k->attention_fwd(b, F(out_ref, B * T, Cq), F(att_ref, B * NH * T, T), F(qkv.f, B * T, 3 * Cq),
                     B, NH);
    CHECK(eq16("attention_fwd out", dt, out, out_ref, no) > 0);
    CHECK(eq16("attention_fwd att", dt, att, att_ref, na) > 0);
    int masked_zero = 1;
    for (int bh = 0; bh < B * NH; bh++)
        for (int t = 0; t < T; t++)
            for (int j = t + 1; j < T; j++) masked_zero &= att[((long)bh * T + t) * T + j] == 0;
    CHECK(masked_zero);
    /* backward reads the stored (rounded) probabilities: the fp32 kernel gets them widened.
     * dqkv and the scratch are NaN beforehand; the scratch is 16-bit, then fp32. */
    float *att_w = af(b, na), *dqkv_ref = af(b, nq), *scratch_ref = af(b, na);
    for (long i = 0; i < na; i++) att_w[i] = from16(dt, att[i]);
    uint16_t *dqkv = ah(b, nq), *dqkv2 = ah(b, nq), *scratch = ah(b, na);
    float *scratch32 = af(b, na);
    for (long i = 0; i < nq; i++) dqkv[i] = dqkv2[i] = nan16(dt);
    for (long i = 0; i < na; i++) { scratch[i] = nan16(dt); scratch32[i] = NAN; }
    k->attention_bwd(b, T16(dqkv, B * T, 3 * Cq), T16(scratch, B * NH * T, T),
                     T16(dout.h, B * T, Cq), T16(qkv.h, B * T, 3 * Cq), T16(att, B * NH * T, T),
                     B, NH);
    k->attention_bwd(b, F(dqkv_ref, B * T, 3 * Cq), F(scratch_ref, B * NH * T, T),
                     F(dout.f, B * T, Cq), F(qkv.f, B * T, 3 * Cq), F(att_w, B * NH * T, T), B,
                     NH);
    CHECK(eq16("attention_bwd dqkv", dt, dqkv, dqkv_ref, nq) > 0);
    k->attention_bwd(b, T16(dqkv2, B * T, 3 * Cq), F(scratch32, B * NH * T, T),
                     T16(dout.h, B * T, Cq), T16(qkv.h, B * T, 3 * Cq), T16(att, B * NH * T, T),
                     B, NH);
    CHECK_MSG(memcmp(dqkv, dqkv2, (size_t)nq * sizeof *dqkv) == 0,
              "attention_bwd (%s): an fp32 scratch gives other bits than a 16-bit one",
              kdtype_name(dt));
    unchanged16("attention inputs", dt, qkv, nq);
    unchanged16("attention inputs", dt, dout, no);
    backend_free(b);
}

static void attention16(enum kdtype dt)
{
    attention16_case(dt, 2, 7, 12, 3, 41);
    attention16_case(dt, 1, 70, 8, 2, 42);  /* T > 64: two causal blocks */
}

static void gelu_residual16(enum kdtype dt)
{
    struct backend *b = be_new();
    if (!b) return;
    const struct kernels *k = backend_kernels(b);
    struct rng r = { 51 + (uint64_t)dt };
    long n = 1001;
    struct in16 x = in16_rand(b, dt, n, &r, -8, 8), dout = in16_rand(b, dt, n, &r, -1, 1);
    const float special[4] = { 0.0f, -30.0f, 30.0f, 1e-20f };
    for (int i = 0; i < 4; i++) x.f[i] = from16(dt, x.h[i] = to16(dt, special[i]));
    uint16_t *out = ah(b, n), *dinp = ah(b, n);
    float *ref = af(b, n);
    k->gelu_fwd(b, T16(out, 1, n), T16(x.h, 1, n));
    k->gelu_fwd(b, F(ref, 1, n), F(x.f, 1, n));
    CHECK(eq16("gelu_fwd out", dt, out, ref, n) > 0);
    k->gelu_bwd(b, T16(dinp, 1, n), T16(x.h, 1, n), T16(dout.h, 1, n));
    k->gelu_bwd(b, F(ref, 1, n), F(x.f, 1, n), F(dout.f, 1, n));
    CHECK(eq16("gelu_bwd dinp", dt, dinp, ref, n) > 0);
    /* in place (dinp is dout), as the model calls it */
    uint16_t *d = ah_copy(b, dout.h, n);
    float *d_ref = af_copy(b, dout.f, n);
    k->gelu_bwd(b, T16(d, 1, n), T16(x.h, 1, n), T16(d, 1, n));
    k->gelu_bwd(b, F(d_ref, 1, n), F(x.f, 1, n), F(d_ref, 1, n));
    CHECK(eq16("gelu_bwd dinp in place", dt, d, d_ref, n) > 0);
    CHECK(memcmp(d, dinp, (size_t)n * sizeof *d) == 0);
    /* residual: out = a + c, apart and in place (out is a) */
    struct in16 a = in16_rand(b, dt, n, &r, -10, 10), c = in16_rand(b, dt, n, &r, -10, 10);
    k->residual_fwd(b, T16(out, 1, n), T16(a.h, 1, n), T16(c.h, 1, n));
    k->residual_fwd(b, F(ref, 1, n), F(a.f, 1, n), F(c.f, 1, n));
    CHECK(eq16("residual_fwd out", dt, out, ref, n) > 0);
    k->residual_fwd(b, T16(a.h, 1, n), T16(a.h, 1, n), T16(c.h, 1, n));
    k->residual_fwd(b, F(a.f, 1, n), F(a.f, 1, n), F(c.f, 1, n));
    CHECK(eq16("residual_fwd in place", dt, a.h, a.f, n) > 0);
    CHECK(memcmp(a.h, out, (size_t)n * sizeof *out) == 0);
    unchanged16("gelu inputs", dt, x, n);
    unchanged16("residual inputs", dt, c, n);
    backend_free(b);
}

static void embedding16(enum kdtype dt)
{
    struct backend *b = be_new();
    if (!b) return;
    const struct kernels *k = backend_kernels(b);
    struct rng r = { 61 + (uint64_t)dt };
    enum { B = 2, T = 5, C = 70, Vl = 4, NSH = 3 };  /* shards [0,4) [4,8) [8,12) */
    int32_t tok[B * T] = { 3, 4, 9, 9, 0, 8, 3, 7, 5, 2 };
    struct in16 wte = in16_rand(b, dt, NSH * Vl * C, &r, -1, 1), wpe = in16_rand(b, dt, T * C, &r, -1, 1);
    struct in16 dout = in16_rand(b, dt, B * T * C, &r, -1, 1);
    uint16_t *out = ah(b, B * T * C);
    float *ref = af(b, B * T * C), *out32 = af(b, B * T * C);
    long rounded = 0;
    for (int s = 0; s < NSH; s++)
        for (int with_wpe = 0; with_wpe < 2; with_wpe++) {
            struct tensor wp16 = with_wpe ? T16(wpe.h, T, C) : TENSOR_NONE;
            struct tensor wp32 = with_wpe ? F(wpe.f, T, C) : TENSOR_NONE;
            char what[64];
            snprintf(what, sizeof what, "embedding_fwd shard %d%s", s, with_wpe ? " + wpe" : "");
            for (long i = 0; i < B * T * C; i++) out[i] = nan16(dt);
            k->embedding_fwd(b, T16(out, B * T, C), I32(tok, B, T),
                             T16(wte.h + (size_t)s * Vl * C, Vl, C), wp16, s * Vl);
            k->embedding_fwd(b, F(ref, B * T, C), I32(tok, B, T),
                             F(wte.f + (size_t)s * Vl * C, Vl, C), wp32, s * Vl);
            rounded += eq16(what, dt, out, ref, B * T * C);
            /* fp32 out from 16-bit tables: the sum in fp32, stored without rounding */
            for (long i = 0; i < B * T * C; i++) out32[i] = NAN;
            k->embedding_fwd(b, F(out32, B * T, C), I32(tok, B, T),
                             T16(wte.h + (size_t)s * Vl * C, Vl, C), wp16, s * Vl);
            snprintf(what, sizeof what, "embedding_fwd shard %d%s (fp32 out)", s,
                     with_wpe ? " + wpe" : "");
            eq32(what, out32, ref, B * T * C);
        }
    CHECK(rounded > 0);
    /* backward: fp32 gradients, accumulated from non-zero values, the same on both paths */
    for (int s = 0; s < NSH; s++) {
        float *dwte = af_rand(b, Vl * C, &r, -1, 1), *dwte_ref = af_copy(b, dwte, Vl * C);
        float *dwpe = af_rand(b, T * C, &r, -1, 1), *dwpe_ref = af_copy(b, dwpe, T * C);
        struct tensor dp = s == 0 ? F(dwpe, T, C) : TENSOR_NONE;
        struct tensor dp_ref = s == 0 ? F(dwpe_ref, T, C) : TENSOR_NONE;
        k->embedding_bwd(b, F(dwte, Vl, C), dp, T16(dout.h, B * T, C), I32(tok, B, T), s * Vl);
        k->embedding_bwd(b, F(dwte_ref, Vl, C), dp_ref, F(dout.f, B * T, C), I32(tok, B, T),
                         s * Vl);
        char what[64];
        snprintf(what, sizeof what, "embedding_bwd dwte shard %d (%s)", s, kdtype_name(dt));
        eq32(what, dwte, dwte_ref, Vl * C);
        snprintf(what, sizeof what, "embedding_bwd dwpe shard %d (%s)", s, kdtype_name(dt));
        eq32(what, dwpe, dwpe_ref, T * C);
    }
    unchanged16("embedding inputs", dt, wte, NSH * Vl * C);
    unchanged16("embedding inputs", dt, wpe, T * C);
    unchanged16("embedding inputs", dt, dout, B * T * C);
    backend_free(b);
}

/* The four-step sharded protocol on 16-bit logits: per-shard fp32 row values equal the
 * fp32 kernel's on the widened logits; the dlogits are the fp32 ones rounded. */
static void xent16(enum kdtype dt)
{
    struct backend *b = be_new();
    if (!b) return;
    const struct kernels *k = backend_kernels(b);
    struct rng r = { 71 + (uint64_t)dt };
    enum { N = 6, NSH = 2, Vl = 8, V = 13 };  /* the second shard has 3 padded columns */
    int32_t tgt[N] = { 0, 12, 5, 8, 7, 3 };
    struct in16 lg[NSH];
    double *full = malloc(N * NSH * Vl * sizeof *full);  /* the widened logits, [N][NSH*Vl] */
    for (int s = 0; s < NSH; s++) {
        lg[s] = in16_rand(b, dt, N * Vl, &r, -4, 4);
        for (int n = 0; n < N; n++)
            for (int j = 0; j < Vl; j++) {
                if (s * Vl + j >= V) lg[s].f[n * Vl + j] = from16(dt, lg[s].h[n * Vl + j] = to16(dt, 1e3f));
                full[(n * NSH + s) * Vl + j] = lg[s].f[n * Vl + j];
            }
    }
    float *tmp = af(b, N), *tmp_ref = af(b, N), *gmax = af(b, N), *gsum = af(b, N), *gt = af(b, N);
    for (int n = 0; n < N; n++) gmax[n] = -INFINITY;
    char what[64];
    for (int s = 0; s < NSH; s++) {
        k->xent_max(b, F(tmp, 1, N), T16(lg[s].h, N, Vl), s * Vl, V);
        k->xent_max(b, F(tmp_ref, 1, N), F(lg[s].f, N, Vl), s * Vl, V);
        snprintf(what, sizeof what, "xent_max rowmax shard %d (%s)", s, kdtype_name(dt));
        eq32(what, tmp, tmp_ref, N);
        for (int n = 0; n < N; n++) gmax[n] = fmaxf(gmax[n], tmp[n]);
    }
    for (int s = 0; s < NSH; s++) {
        k->xent_sumexp(b, F(tmp, 1, N), T16(lg[s].h, N, Vl), F(gmax, 1, N), s * Vl, V);
        k->xent_sumexp(b, F(tmp_ref, 1, N), F(lg[s].f, N, Vl), F(gmax, 1, N), s * Vl, V);
        snprintf(what, sizeof what, "xent_sumexp shard %d (%s)", s, kdtype_name(dt));
        eq32(what, tmp, tmp_ref, N);
        for (int n = 0; n < N; n++) gsum[n] += tmp[n];
        k->xent_target(b, F(tmp, 1, N), T16(lg[s].h, N, Vl), I32(tgt, 1, N), s * Vl);
        k->xent_target(b, F(tmp_ref, 1, N), F(lg[s].f, N, Vl), I32(tgt, 1, N), s * Vl);
        snprintf(what, sizeof what, "xent_target shard %d (%s)", s, kdtype_name(dt));
        eq32(what, tmp, tmp_ref, N);
        for (int n = 0; n < N; n++) gt[n] += tmp[n];
    }
    /* the loss from the combined row values, against the double reference */
    double loss = k->xent_loss(b, F(gmax, 1, N), F(gsum, 1, N), F(gt, 1, N));
    CHECK_CLOSE(loss / N, ref_xent_mean(full, tgt, N, NSH * Vl, V), 1e-5, 1e-6);
    long rounded = 0;
    for (int s = 0; s < NSH; s++) {
        k->xent_bwd(b, T16(lg[s].h, N, Vl), F(gmax, 1, N), F(gsum, 1, N), I32(tgt, 1, N),
                    1.0f / N, s * Vl, V);
        k->xent_bwd(b, F(lg[s].f, N, Vl), F(gmax, 1, N), F(gsum, 1, N), I32(tgt, 1, N),
                    1.0f / N, s * Vl, V);
        snprintf(what, sizeof what, "xent_bwd dlogits shard %d", s);
        rounded += eq16(what, dt, lg[s].h, lg[s].f, N * Vl);
        int pad_zero = 1;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < Vl; j++)
                if (s * Vl + j >= V) pad_zero &= lg[s].h[n * Vl + j] == 0;
        CHECK(pad_zero);
    }
    CHECK(rounded > 0);
    /* a shard with no real column: max -inf, sumexp 0 */
    uint16_t *one = ah(b, 1);
    one[0] = to16(dt, 1.0f);
    float *neg = af(b, 1);
    neg[0] = -INFINITY;
    tmp[0] = 0.0f;
    k->xent_max(b, F(tmp, 1, 1), T16(one, 1, 1), V, V);
    CHECK(tmp[0] == -INFINITY);
    tmp[0] = 1.0f;
    k->xent_sumexp(b, F(tmp, 1, 1), T16(one, 1, 1), F(neg, 1, 1), V, V);
    CHECK(tmp[0] == 0.0f);
    free(full);
    backend_free(b);
}

/* The native bf16 GEMM (oneDNN, kernels/cpu/matmul16.c) on the model's kind of shapes:
 * its fp32 sums come in another order than sgemm's, so a bf16 result may round to the
 * neighbouring bf16 value (one unit in the last place) but never further; the fp32
 * weight gradient agrees to fp32 accuracy relative to the sum of |products|; dbias is
 * bit for bit. Skipped where the CPU or the build has no native bf16 GEMM. */
static void test_matmul_bf16_native_within_one_ulp(void)
{
    const char *impl;
    if (!kernels_native_matmul(KDT_BF16, &impl)) SKIP("no native bf16 GEMM here: %s", impl);
    printf("       %s\n", impl);
    const enum kdtype dt = KDT_BF16;
    struct backend *b = be_new();
    if (!b) return;
    const struct kernels *k = backend_kernels(b);
    struct rng r = { 77 };
    const int M = 96, Kd = 320, N = 200;
    struct in16 inp = in16_rand(b, dt, M * Kd, &r, -1, 1), w = in16_rand(b, dt, N * Kd, &r, -1, 1);
    struct in16 bias = in16_rand(b, dt, N, &r, -1, 1), dout = in16_rand(b, dt, M * N, &r, -1, 1);
    uint16_t *out = ah(b, M * N), *dinp = ah(b, M * Kd);
    float *ref = af(b, M * N), *dinp_ref = af(b, M * Kd);
    float *dw = af_rand(b, N * Kd, &r, -1, 1), *dw_ref = af_copy(b, dw, N * Kd);
    float *db = af_rand(b, N, &r, -1, 1), *db_ref = af_copy(b, db, N);
    k->matmul_fwd(b, T16(out, M, N), T16(inp.h, M, Kd), T16(w.h, N, Kd), T16(bias.h, 1, N));
    k->matmul_fwd(b, F(ref, M, N), F(inp.f, M, Kd), F(w.f, N, Kd), F(bias.f, 1, N));
    k->matmul_bwd(b, T16(dinp, M, Kd), F(dw, N, Kd), F(db, 1, N), T16(dout.h, M, N),
                  T16(inp.h, M, Kd), T16(w.h, N, Kd));
    k->matmul_bwd(b, F(dinp_ref, M, Kd), F(dw_ref, N, Kd), F(db_ref, 1, N), F(dout.f, M, N),
                  F(inp.f, M, Kd), F(w.f, N, Kd));
    struct { const char *what; const uint16_t *got; const float *want; long n; } c16[2] = {
        {"out", out, ref, (long)M * N}, {"dinp", dinp, dinp_ref, (long)M * Kd}};
    for (int c = 0; c < 2; c++) {
        long off1 = 0, far = 0;
        for (long i = 0; i < c16[c].n; i++) {
            int d = (int)c16[c].got[i] - (int)to16(dt, c16[c].want[i]);
            off1 += d == 1 || d == -1;
            far += d > 1 || d < -1;
        }
        CHECK_MSG(far == 0, "%s: %ld values more than one bf16 step from the fp32 result",
                  c16[c].what, far);
        printf("       %-5s %ld of %ld one step away, none further\n", c16[c].what, off1,
               c16[c].n);
    }
    /* dw[n][k] += sum_m dout[m][n] inp[m][k]: compare to the sum of |terms| */
    double worst = 0.0;
    for (int n = 0; n < N; n++)
        for (int kk = 0; kk < Kd; kk++) {
            double mag = 1.0;  /* the accumulated starting value is within [-1, 1] */
            for (int m = 0; m < M; m++) mag += fabs((double)dout.f[m * N + n] * inp.f[m * Kd + kk]);
            double e = fabs((double)dw[n * Kd + kk] - dw_ref[n * Kd + kk]) / mag;
            if (e > worst) worst = e;
        }
    CHECK_MSG(worst < 1e-6, "dw: error %.3g of the sum of |products|", worst);
    printf("       dw    worst error %.2g of the sum of |products|\n", worst);
    eq32("native matmul_bwd dbias (fp32)", db, db_ref, N);
    backend_free(b);
}

#define DT_TESTS(fn)                                                                 \
    static void test_##fn##_bf16_is_fp32_rounded_once(void) { fn(KDT_BF16); }        \
    static void test_##fn##_fp16_is_fp32_rounded_once(void) { fn(KDT_F16); }
DT_TESTS(matmul16)
DT_TESTS(layernorm16)
DT_TESTS(attention16)
DT_TESTS(gelu_residual16)
DT_TESTS(embedding16)
DT_TESTS(xent16)

/* ---------------------------------------------------------------------------------- */
/* whole-buffer operations on 16-bit tensors                                          */

static uint32_t fbits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }

/* fp32 values over a wide range of magnitudes, with the cases the rounding must get
 * right planted: ties (to even, both ways), overflow thresholds, subnormals, specials */
static void fill_hard_f32(float *x, long n, struct rng *r)
{
    for (long i = 0; i < n; i++) {
        double m = rng_uniform(r, 1, 2), e = floor(rng_uniform(r, -30, 20));
        x[i] = (float)(ldexp(m, (int)e) * (rng_uniform(r, 0, 1) < 0.5 ? -1 : 1));
    }
    const uint32_t planted[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u,
        0x7f800001u, 0x7fa12345u,                                  /* NaNs, one signalling */
        0x7f7fffffu, 0xff7fffffu, 0x7f7f8000u, 0x7f7f7fffu,        /* bf16 overflow edge */
        0x477fe000u, 0x477fefffu, 0x477ff000u, 0xc77ff000u,        /* 65504, < 65520, 65520 */
        0x3f808000u, 0x3f818000u, 0x3f808001u, 0xbf808000u,        /* bf16 ties, both ways */
        0x3f801000u, 0x3f803000u, 0x3f801001u,                     /* fp16 ties */
        0x00000001u, 0x80400000u, 0x007fffffu, 0x00008000u,        /* fp32 subnormals */
        0x33000000u, 0x33000001u, 0x387fc000u, 0x38800000u,        /* fp16 subnormal edges */
    };
    long np = (long)(sizeof planted / sizeof planted[0]);
    for (long k = 0; k < np && k < n; k++) {
        long i = (k * 7919 + 3) % n;
        memcpy(&x[i], &planted[k], 4);
    }
    if (n > np) memcpy(&x[n - 1], &planted[2], 4);  /* the tail of the last block: inf */
}

static void test_convert_matches_the_scalar_reference(void)
{
    struct backend *b = be_new();
    if (!b) return;
    const struct kernels *k = backend_kernels(b);
    struct rng r = { 81 };
    const long n = 70001;  /* parallel blocks and a SIMD tail */
    float *x = af(b, n), *back = af(b, n), *copy = af(b, n);
    fill_hard_f32(x, n, &r);
    for (int d = 0; d < 2; d++) {
        enum kdtype dt = d ? KDT_F16 : KDT_BF16;
        uint16_t *h = ah(b, n);
        k->convert(b, T16(h, 1, n), F(x, 1, n));
        long bad = 0, bad_back = 0;
        for (long i = 0; i < n; i++) bad += h[i] != to16(dt, x[i]);
        CHECK_MSG(bad == 0, "convert fp32 -> %s: %ld of %ld differ from the scalar reference",
                  kdtype_name(dt), bad, n);
        k->convert(b, F(back, 1, n), T16(h, 1, n));
        for (long i = 0; i < n; i++) bad_back += fbits(back[i]) != fbits(from16(dt, to16(dt, x[i])));
        CHECK_MSG(bad_back == 0, "convert fp32 -> %s -> fp32: %ld of %ld differ", kdtype_name(dt),
                  bad_back, n);
        /* every 16-bit pattern to fp32, and to the other 16-bit type (through fp32) */
        enum kdtype other = d ? KDT_BF16 : KDT_F16;
        uint16_t *all = ah(b, 65536), *conv = ah(b, 65536), *same = ah(b, 65536);
        float *wide = af(b, 65536);
        for (long i = 0; i < 65536; i++) all[i] = (uint16_t)i;
        k->convert(b, F(wide, 1, 65536), T16(all, 1, 65536));
        k->convert(b, tensor_1d(conv, other, 65536), T16(all, 1, 65536));
        k->convert(b, T16(same, 1, 65536), T16(all, 1, 65536));
        long bad_w = 0, bad_o = 0;
        for (long i = 0; i < 65536; i++) {
            bad_w += fbits(wide[i]) != fbits(from16(dt, all[i]));
            bad_o += conv[i] != to16(other, from16(dt, all[i]));
        }
        CHECK_MSG(bad_w == 0, "convert %s -> fp32: %ld of 65536 patterns differ", kdtype_name(dt), bad_w);
        CHECK_MSG(bad_o == 0, "convert %s -> %s: %ld of 65536 patterns differ", kdtype_name(dt),
                  kdtype_name(other), bad_o);
        CHECK_MSG(memcmp(same, all, 65536 * sizeof *all) == 0, "convert %s -> %s is not a copy",
                  kdtype_name(dt), kdtype_name(dt));
        printf("       convert fp32 <-> %s, %s -> %s: scalar reference bits\n", kdtype_name(dt),
               kdtype_name(dt), kdtype_name(other));
    }
    k->convert(b, F(copy, 1, n), F(x, 1, n));
    CHECK(memcmp(copy, x, (size_t)n * sizeof *x) == 0);
    backend_free(b);
}

static void test_accumulate_adds_any_float_dtype_into_fp32(void)
{
    struct backend *b = be_new();
    if (!b) return;
    const struct kernels *k = backend_kernels(b);
    struct rng r = { 82 };
    const long n = 50001;
    const enum kdtype dts[3] = { KDT_F32, KDT_BF16, KDT_F16 };
    for (int d = 0; d < 3; d++) {
        enum kdtype dt = dts[d];
        float *dst = af_rand(b, n, &r, -1, 1), *want = af_copy(b, dst, n);
        for (int rep = 0; rep < 2; rep++) {  /* twice: the caller's order of additions */
            struct tensor src;
            if (dt == KDT_F32) {
                float *s = af_rand(b, n, &r, -3, 3);
                for (long i = 0; i < n; i++) want[i] = want[i] + s[i];
                src = F(s, 1, n);
            } else {
                struct in16 s = in16_rand(b, dt, n, &r, -3, 3);
                for (long i = 0; i < n; i++) want[i] = want[i] + s.f[i];
                src = T16(s.h, 1, n);
            }
            k->accumulate(b, F(dst, 1, n), src);
        }
        char what[64];
        snprintf(what, sizeof what, "accumulate fp32 += %s", kdtype_name(dt));
        eq32(what, dst, want, n);
    }
    backend_free(b);
}

static void test_count_nonfinite_counts_inf_and_nan_not_the_largest_finite(void)
{
    struct backend *b = be_new();
    if (!b) return;
    const struct kernels *k = backend_kernels(b);
    struct rng r = { 83 };
    const long n = 100003;
    /* per dtype: 6 non-finite patterns (+-inf, quiet NaNs of both signs, a signalling
     * NaN, all-ones payload), then finite ones that must not count (largest of both
     * signs, smallest subnormal, -0) */
    const uint32_t f32_bad[6] = { 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fffffffu };
    const uint32_t f32_ok[4] = { 0x7f7fffffu, 0xff7fffffu, 0x00000001u, 0x80000000u };
    const uint16_t bf_bad[6] = { 0x7f80u, 0xff80u, 0x7fc0u, 0xffc0u, 0x7f81u, 0x7fffu };
    const uint16_t bf_ok[4] = { 0x7f7fu, 0xff7fu, 0x0001u, 0x8000u };
    const uint16_t h_bad[6] = { 0x7c00u, 0xfc00u, 0x7e00u, 0xfe00u, 0x7c01u, 0x7fffu };
    const uint16_t h_ok[4] = { 0x7bffu, 0xfbffu, 0x0001u, 0x8000u };
    const long at[10] = { 0, 1, 5000, 33333, 50001, 66666, 77777, 99999, 100001, 100002 };
    for (int d = 0; d < 3; d++) {
        enum kdtype dt = d == 0 ? KDT_F32 : d == 1 ? KDT_BF16 : KDT_F16;
        struct tensor t;
        if (dt == KDT_F32) {
            float *x = af_rand(b, n, &r, -1e30, 1e30);
            for (int i = 0; i < 10; i++) memcpy(&x[at[i]], i < 6 ? &f32_bad[i] : &f32_ok[i - 6], 4);
            t = F(x, 1, n);
        } else {
            struct in16 x = in16_rand(b, dt, n, &r, -6e4, 6e4);
            const uint16_t *bad = dt == KDT_BF16 ? bf_bad : h_bad, *ok = dt == KDT_BF16 ? bf_ok : h_ok;
            for (int i = 0; i < 10; i++) x.h[at[i]] = i < 6 ? bad[i] : ok[i - 6];
            t = T16(x.h, 1, n);
        }
        int64_t got = k->count_nonfinite(b, t);
        CHECK_MSG(got == 6, "count_nonfinite (%s) = %lld, want 6", kdtype_name(dt), (long long)got);
        CHECK(k->count_nonfinite(b, tensor_view(t, 0, 1, 1)) == 1);      /* +inf alone */
        CHECK(k->count_nonfinite(b, tensor_view(t, at[9], 1, 1)) == 0);  /* -0 alone */
    }
    CHECK(k->count_nonfinite(b, TENSOR_NONE) == 0);
    backend_free(b);
}

static void test_sumsq_and_scale_on_16bit(void)
{
    struct backend *b = be_new();
    if (!b) return;
    const struct kernels *k = backend_kernels(b);
    struct rng r = { 84 };
    const long n = 100003;
    for (int d = 0; d < 2; d++) {
        enum kdtype dt = d ? KDT_F16 : KDT_BF16;
        struct in16 x = in16_rand(b, dt, n, &r, -2, 2);
        double want = 0.0;
        for (long i = 0; i < n; i++) want += (double)x.f[i] * x.f[i];
        double got = k->sumsq(b, T16(x.h, 1, n));
        CHECK_MSG(got == k->sumsq(b, F(x.f, 1, n)), "sumsq (%s) is not the fp32 kernel's on the "
                  "widened values", kdtype_name(dt));
        CHECK_CLOSE(got, want, 1e-12, 0);
        CHECK(k->sumsq(b, T16(x.h, 1, 0)) == 0.0);
        /* scale: one fp32 product per element, rounded once */
        uint16_t *x0 = ah_copy(b, x.h, n), *want16 = ah(b, n);
        float s = 0.37f;
        for (long i = 0; i < n; i++) want16[i] = to16(dt, from16(dt, x0[i]) * s);
        k->scale(b, T16(x.h, 1, n), s);
        long bad = 0;
        for (long i = 0; i < n; i++) bad += x.h[i] != want16[i];
        CHECK_MSG(bad == 0, "scale (%s) by %g: %ld of %ld not the rounded fp32 product",
                  kdtype_name(dt), s, bad, n);
        /* a scale that overflows the type: inf where the rounded product is, counted */
        s = dt == KDT_F16 ? 40000.0f : 2e38f;
        memcpy(x.h, x0, (size_t)n * sizeof *x0);
        long n_inf = 0;
        for (long i = 0; i < n; i++) {
            want16[i] = to16(dt, from16(dt, x0[i]) * s);
            n_inf += !isfinite(from16(dt, want16[i]));
        }
        k->scale(b, T16(x.h, 1, n), s);
        CHECK(memcmp(x.h, want16, (size_t)n * sizeof *want16) == 0);
        CHECK(n_inf > 0 && n_inf < n);
        CHECK(k->count_nonfinite(b, T16(x.h, 1, n)) == n_inf);
        printf("       sumsq, scale %s: fp32 bits; x%g overflows %ld of %ld to inf\n",
               kdtype_name(dt), s, n_inf, n);
    }
    backend_free(b);
}

static void test_xent_loss_is_the_double_sum_over_rows(void)
{
    struct rng r = { 85 };
    enum { N = 1000 };
    float *mx = fvec(N, &r, -5, 5), *se = fvec(N, &r, 1, 100), *tl = fvec(N, &r, -10, 5);
    double want = 0.0;
    for (int n = 0; n < N; n++) want += log((double)se[n]) + (double)mx[n] - (double)tl[n];
    double got = K()->xent_loss(g_be, F(mx, 1, N), F(se, 1, N), F(tl, 1, N));
    CHECK_MSG(got == want, "xent_loss %.17g, double loop %.17g", got, want);
    /* by hand: log 1 + 1 - 1 = 0 and log 4 + 2 - 0.5 */
    float m2[2] = { 1, 2 }, s2[2] = { 1, 4 }, t2[2] = { 1, 0.5f };
    CHECK_CLOSE(K()->xent_loss(g_be, F(m2, 1, 2), F(s2, 1, 2), F(t2, 1, 2)), log(4.0) + 1.5, 1e-15, 0);
    CHECK(K()->xent_loss(g_be, F(m2, 1, 0), F(s2, 1, 0), F(t2, 1, 0)) == 0.0);
    free(mx); free(se); free(tl);
}

#undef T16

/* ---------------------------------------------------------------------------------- */
/* shapes that do not fit abort, naming the kernel                                    */

/* Runs fn in a forked child, its stderr captured into msg: 1 if the child exited (not
 * killed) with a non-zero status. */
static int child_exits_nonzero(void (*fn)(void), char *msg, size_t len)
{
    int fd[2];
    if (pipe(fd) != 0) return 0;
    fflush(NULL);  /* the child must not print our buffered output again */
    pid_t pid = fork();
    if (pid < 0) { close(fd[0]); close(fd[1]); return 0; }
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], STDERR_FILENO);
        close(fd[1]);
        alarm(60);  /* a hang is a failure (killed by SIGALRM), not a stuck suite */
        fn();
        _exit(0);  /* the call returned: no abort */
    }
    close(fd[1]);
    size_t got = 0;
    char sink[256];
    ssize_t nr;
    for (;;) {  /* read to EOF, keeping the first len-1 bytes */
        if (got + 1 < len) nr = read(fd[0], msg + got, len - 1 - got);
        else nr = read(fd[0], sink, sizeof sink);
        if (nr <= 0) break;
        if (got + 1 < len) got += (size_t)nr;
    }
    msg[got] = '\0';
    close(fd[0]);
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) return 0;
    return WIFEXITED(st) && WEXITSTATUS(st) != 0;
}

static void die_matmul_fwd_out_cols(void)
{
    float inp[7 * 5] = { 0 }, w[6 * 5] = { 0 }, out[7 * 7] = { 0 };
    /* out is [7][7], w has 6 rows: out.cols != w.rows */
    K()->matmul_fwd(g_be, F(out, 7, 7), F(inp, 7, 5), F(w, 6, 5), TENSOR_NONE);
}

static void die_matmul_bwd_dw_bf16(void)
{
    float inp[4 * 3] = { 0 }, w[2 * 3] = { 0 }, dout[4 * 2] = { 0 };
    uint16_t dw[2 * 3] = { 0 };  /* dw is a parameter gradient: fp32 only */
    K()->matmul_bwd(g_be, TENSOR_NONE, tensor_2d(dw, KDT_BF16, 2, 3), TENSOR_NONE, F(dout, 4, 2),
                    F(inp, 4, 3), F(w, 2, 3));
}

static void die_layernorm_fwd_short_rstd(void)
{
    float x[3 * 4] = { 0 }, out[3 * 4] = { 0 }, w[4] = { 0 }, bb[4] = { 0 }, m[3], rs[3];
    K()->layernorm_fwd(g_be, F(out, 3, 4), F(m, 1, 3), F(rs, 1, 2), F(x, 3, 4), F(w, 1, 4),
                       F(bb, 1, 4));
}

static void live_xent_loss(void)
{
    float m[2] = { 0 }, s[2] = { 1, 1 }, t[2] = { 0 };
    (void)K()->xent_loss(g_be, F(m, 1, 2), F(s, 1, 2), F(t, 1, 2));
}

static void test_shape_and_dtype_mismatches_abort_naming_the_kernel(void)
{
    struct { void (*fn)(void); const char *needle; } cases[] = {
        { die_matmul_fwd_out_cols, "matmul_fwd" },
        { die_matmul_bwd_dw_bf16, "matmul_bwd" },
        { die_layernorm_fwd_short_rstd, "layernorm_fwd" },
    };
    char msg[4096];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int died = child_exits_nonzero(cases[i].fn, msg, sizeof msg);
        CHECK_MSG(died, "%s: the child did not exit with a non-zero status (stderr: %s)",
                  cases[i].needle, msg);
        CHECK_MSG(strstr(msg, cases[i].needle) != NULL, "stderr does not name %s: %s",
                  cases[i].needle, msg);
        printf("       child: %s", msg);
        if (!*msg || msg[strlen(msg) - 1] != '\n') printf("\n");
    }
    /* the harness itself: a call that fits returns, and the child exits 0 */
    CHECK(!child_exits_nonzero(live_xent_loss, msg, sizeof msg));
    CHECK(msg[0] == '\0');
}

int main(void)
{
    char err[256];
    g_be = backend_init(KDEV_CPU, 0, err, sizeof err);
    if (!g_be) {
        fprintf(stderr, "test_kernels: backend_init(cpu): %s\n", err);
        return 1;
    }
    RUN(test_backend_kernels_is_the_one_cpu_table);
    RUN(test_matmul_fwd_matches_reference);
    RUN(test_matmul_bwd_matches_finite_differences);
    RUN(test_matmul_bwd_accumulates_dw_dbias_but_overwrites_dinp);
    RUN(test_layernorm_fwd_matches_reference);
    RUN(test_layernorm_bwd_matches_finite_differences_and_adds);
    RUN(test_attention_fwd_matches_reference);
    RUN(test_attention_bwd_matches_finite_differences);
    RUN(test_attention_fwd_bwd_is_bitwise_deterministic);
    RUN(test_gelu_fwd_matches_reference);
    RUN(test_gelu_bwd_matches_finite_differences_in_place);
    RUN(test_residual_adds_in_place);
    RUN(test_embedding_matches_reference_and_finite_differences);
    RUN(test_embedding_shards_sum_to_unsharded);
    RUN(test_xent_unsharded_matches_reference_and_finite_differences);
    RUN(test_xent_vocab_shards_with_padding_match_reference);
    RUN(test_xent_local_maxima_rescaled_equal_global);
    RUN(test_xent_loss_is_the_double_sum_over_rows);
    RUN(test_adamw_matches_hand_computed_steps);
    RUN(test_sumsq_and_scale);
    RUN(test_results_do_not_depend_on_the_thread_count);
    RUN(test_matmul16_bf16_is_fp32_rounded_once);
    RUN(test_matmul_bf16_native_within_one_ulp);
    RUN(test_matmul16_fp16_is_fp32_rounded_once);
    RUN(test_layernorm16_bf16_is_fp32_rounded_once);
    RUN(test_layernorm16_fp16_is_fp32_rounded_once);
    RUN(test_attention16_bf16_is_fp32_rounded_once);
    RUN(test_attention16_fp16_is_fp32_rounded_once);
    RUN(test_gelu_residual16_bf16_is_fp32_rounded_once);
    RUN(test_gelu_residual16_fp16_is_fp32_rounded_once);
    RUN(test_embedding16_bf16_is_fp32_rounded_once);
    RUN(test_embedding16_fp16_is_fp32_rounded_once);
    RUN(test_xent16_bf16_is_fp32_rounded_once);
    RUN(test_xent16_fp16_is_fp32_rounded_once);
    RUN(test_convert_matches_the_scalar_reference);
    RUN(test_accumulate_adds_any_float_dtype_into_fp32);
    RUN(test_count_nonfinite_counts_inf_and_nan_not_the_largest_finite);
    RUN(test_sumsq_and_scale_on_16bit);
    RUN(test_shape_and_dtype_mismatches_abort_naming_the_kernel);
    RUN(test_vmath_exp_accuracy_and_limits);
    RUN(test_blas_better_coretype);
    backend_free(g_be);
    return test_summary();
}

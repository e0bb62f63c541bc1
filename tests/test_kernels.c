/* test_kernels.c — the CPU backend against independent double-precision references.
 *
 * Forward kernels are compared with straightforward double loops written here (they
 * never call a kernel). Every backward kernel is checked against central finite
 * differences of those double references, with the random objective L = sum(out * R)
 * so that every output element carries weight. Small odd sizes (T=7, C=12, NH=3) catch
 * indexing and stride mistakes that square power-of-two sizes hide.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "cpu/blas_core.h"
#include "cpu/vmath.h"
#include "test.h"

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

static const struct kernels *K(void) { return kernels_get(KDEV_CPU, KDT_F32); }

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
    K()->matmul_fwd(out, inp, w, b, M, Kd, N);
    ref_matmul(want, di, dw, db, M, Kd, N);
    check_close_vec("matmul out (bias)", out, want, M * N, 1e-5, 1e-5);
    K()->matmul_fwd(out, inp, w, NULL, M, Kd, N);
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
    K()->matmul_bwd(dinp, dw, db, R, inp, w, M, Kd, N);
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
    K()->matmul_bwd(dinp1, dw, db, dout, inp, w, M, Kd, N);
    memcpy(dw1, dw, N * Kd * sizeof(float));
    memcpy(db1, db, N * sizeof(float));
    K()->matmul_bwd(dinp2, dw, db, dout, inp, w, M, Kd, N);
    CHECK(memcmp(dinp1, dinp2, M * Kd * sizeof(float)) == 0);
    for (int i = 0; i < N * Kd; i++) CHECK_CLOSE(dw[i], 2.0 * dw1[i], 1e-6, 1e-7);
    for (int i = 0; i < N; i++) CHECK_CLOSE(db[i], 2.0 * db1[i], 1e-6, 1e-7);
    /* NULL outputs are skipped */
    memcpy(dw1, dw, N * Kd * sizeof(float));
    K()->matmul_bwd(NULL, NULL, db, dout, inp, w, M, Kd, N);
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
    K()->layernorm_fwd(out, mean, rstd, x, w, b, N, C);
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
    K()->layernorm_fwd(out, mean, rstd, x, w, b, N, C);
    K()->layernorm_bwd(dx, dw, db, R, x, w, mean, rstd, N, C);
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
    K()->attention_fwd(out, att, qkv, B, T, Cq, NH);
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
    K()->attention_fwd(out, att, qkv, B, T, Cq, NH);
    K()->attention_bwd(dqkv, scratch, R, qkv, att, B, T, Cq, NH);
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
        K()->attention_fwd(out[k], att[k], qkv, B, T, Cq, NH);
        K()->attention_bwd(dqkv[k], scratch, R, qkv, att[k], B, T, Cq, NH);
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
    K()->gelu_fwd(out, x, n);
    check_close_vec("gelu out", out, want, n, 1e-6, 1e-7);
    free(x); free(out); free(want);
}

static void test_gelu_bwd_matches_finite_differences_in_place(void)
{
    struct rng r = { 10 };
    long n = 301;
    float *x = fvec(n, &r, -5, 5), *R = fvec(n, &r, -1, 1), *d = fvec(n, NULL, 0, 0);
    memcpy(d, R, n * sizeof(float));
    K()->gelu_bwd(d, x, d, n);  /* dinp aliases dout, as the model uses it */
    struct gelu_ctx c = { dvec_from(x, n), dvec_from(R, n), n };
    double *g = malloc(n * sizeof *g);
    fd_grad(g, c.x, n, gelu_objective, &c);
    check_grad("gelu dinp", d, g, n, 1e-4);
    free(x); free(R); free(d); free(g); free(c.x); free(c.r);
}

static void test_residual_adds_in_place(void)
{
    float a[5] = { 1, 2, 3, 4, 5 }, b[5] = { 10, 20, 30, 40, 50 };
    K()->residual_fwd(a, a, b, 5);
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
    K()->embedding_fwd(out, tok, wte, wpe, B, T, C, 0, V);
    int ok = 1;
    for (int bt = 0; bt < B * T; bt++)
        for (int i = 0; i < C; i++)
            ok &= out[bt * C + i] == wte[tok[bt] * C + i] + wpe[(bt % T) * C + i];
    CHECK(ok);
    K()->embedding_bwd(dwte, dwpe, R, tok, B, T, C, 0, V);
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
    K()->embedding_fwd(full, tok, wte, wpe, B, T, C, 0, V);
    K()->embedding_bwd(dwte_full, dwpe_full, R, tok, B, T, C, 0, V);
    for (int s = 0; s < 3; s++) {
        /* wpe belongs to one shard only, so the positions are counted once */
        const float *wp = s == 0 ? wpe : NULL;
        K()->embedding_fwd(part, tok, wte + s * Vl * C, wp, B, T, C, s * Vl, Vl);
        for (int i = 0; i < B * T * C; i++) sum[i] += part[i];
        K()->embedding_bwd(dwte_sh + s * Vl * C, s == 0 ? dwpe_sh : NULL, R, tok, B, T, C, s * Vl, Vl);
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
                K()->xent_max(tmp, sh, N, Vl, s * Vl, V);
                for (int n = 0; n < N; n++) gmax[n] = fmaxf(gmax[n], tmp[n]);
            } else if (pass == 1) {
                K()->xent_sumexp(tmp, sh, gmax, N, Vl, s * Vl, V);
                for (int n = 0; n < N; n++) gsum[n] += tmp[n];
            } else if (pass == 2) {
                K()->xent_target(tmp, sh, tgt, N, Vl, s * Vl);
                for (int n = 0; n < N; n++) gt[n] += tmp[n];
            } else {
                K()->xent_bwd(sh, gmax, gsum, tgt, 1.0f / N, N, Vl, s * Vl, V);
                for (int n = 0; n < N; n++) memcpy(logits + n * ld + s * Vl, sh + n * Vl, Vl * sizeof(float));
            }
        }
    double loss = 0.0;
    for (int n = 0; n < N; n++) loss += log(gsum[n]) + gmax[n] - gt[n];
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
        K()->xent_max(lmax[s], sh, N, Vl, s * Vl, V);
        K()->xent_sumexp(lsum[s], sh, lmax[s], N, Vl, s * Vl, V);
    }
    for (int n = 0; n < N; n++) gmax[n] = fmaxf(lmax[0][n], lmax[1][n]);
    for (int s = 0; s < n_sh; s++) {
        float tmp[4];
        for (int n = 0; n < N; n++) memcpy(sh + n * Vl, logits + n * ld + s * Vl, Vl * sizeof(float));
        K()->xent_sumexp(tmp, sh, gmax, N, Vl, s * Vl, V);
        for (int n = 0; n < N; n++) gsum[n] += tmp[n];
    }
    for (int n = 0; n < N; n++) {
        double resc = lsum[0][n] * exp(lmax[0][n] - gmax[n]) + lsum[1][n] * exp(lmax[1][n] - gmax[n]);
        CHECK_CLOSE(gsum[n], resc, 1e-6, 0);
    }
    /* a shard with no real column: max -inf, sumexp 0 */
    float m, se, one = 1.0f, neg = -INFINITY;
    K()->xent_max(&m, &one, 1, 1, V, V);
    K()->xent_sumexp(&se, &one, &neg, 1, 1, V, V);
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
            K()->adamw(p, g, m, v, 4, lr, b1, b2, eps, wd, gs, t);
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
    double got = K()->sumsq(x, n);
    CHECK_CLOSE(got, want, 1e-12, 0);
    CHECK(K()->sumsq(x, n) == got);  /* fixed summation order */
    CHECK(K()->sumsq(x, 3) == (double)x[0] * x[0] + (double)x[1] * x[1] + (double)x[2] * x[2]);
    CHECK(K()->sumsq(x, 0) == 0.0);
    K()->scale(x, 0.5f, n);
    CHECK_CLOSE(K()->sumsq(x, n), 0.25 * want, 1e-12, 0);
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

static void test_kernels_get_selects_cpu_f32_only(void)
{
    CHECK(K() != NULL && strcmp(K()->name, "cpu-f32") == 0);
    CHECK(kernels_get(KDEV_CPU, KDT_BF16) == NULL);
    CHECK(kernels_get(KDEV_CUDA, KDT_F32) == NULL);
    CHECK(kernels_blas_corename() != NULL && kernels_threads() >= 1);
    printf("       BLAS core %s, %d threads\n", kernels_blas_corename(), kernels_threads());
}

int main(void)
{
    RUN(test_kernels_get_selects_cpu_f32_only);
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
    RUN(test_adamw_matches_hand_computed_steps);
    RUN(test_sumsq_and_scale);
    RUN(test_vmath_exp_accuracy_and_limits);
    RUN(test_blas_better_coretype);
    return test_summary();
}

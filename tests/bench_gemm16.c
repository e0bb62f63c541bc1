/* bench_gemm16.c — bf16 GEMM candidates on the model's linear-layer shapes.
 *
 *   bin/bench_gemm16 [--op=fwd|bwd|both] [--M=ROWS] [--threads=1,2] [--reps=R]
 *                    [--shapes=all|small|model] [--no-check] [--best]
 *   bin/bench_gemm16 --table-check
 *
 * For each shape (K, N) with M rows (default 1024 = B*T) and each thread count, times
 * the linear layer's products (fwd: out = inp @ W^T; bwd: dinp = dout @ W and
 * dw += dout^T @ inp, fp32 dw) in several ways, interleaved rep by rep, and prints the
 * median GFLOP/s (2MKN per product) and its ratio to fp32 sgemm:
 *   fp32     cblas_sgemm on fp32 arrays (the fp32 model's path)
 *   widen    bf16 arrays widened to fp32 workspaces, sgemm, the bf16 result narrowed:
 *            what kernels/cpu/typed.c did for bf16 tensors, conversions included
 *   sbgemm   OpenBLAS cblas_sbgemm (bf16 in, fp32 out) + narrowing, where the linked
 *            libopenblas exports it (looked up at run time: Debian 12's does not)
 *   dnnl     cpu_gemm_bf16 (kernels/cpu/matmul16.c: oneDNN bf16 matmul), fp32 result
 *            narrowed by cpu_f32_to_bf16 (what typed.c does with it)
 *   dnnl16   the same with oneDNN writing the bf16 result itself (fwd and dinp)
 * Then, unless --no-check, the accuracy of each bf16 way against a double-precision
 * product of the same bf16 inputs, on sampled output elements, and whether the dnnl
 * result is the same bits from one run to the next.
 * --table-check runs the CPU kernel table's matmul_fwd / matmul_bwd on bf16 tensors
 * (whichever path typed.c takes) against double references and prints
 * "N passed, N failed" (exit 1 on a failure).
 * Each timing is the median of R reps (--best: the fastest; on a machine shared with
 * other jobs the median says what a run sees, the best what the code can do), fewer
 * for large shapes (at least 3), after one untimed call (oneDNN builds its kernel then).
 * dnnl16 is what typed.c now does for bf16 tensors (plus, in bwd, dbias read from bf16),
 * widen what it did before: their ratio ends each line.
 */
#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "common.h"
#include "cpu/convert.h"
#include "cpu/cpu.h"

typedef void (*sbgemm_fn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint,
                          blasint, blasint, float, const uint16_t *, blasint, const uint16_t *,
                          blasint, float, float *, blasint);
static sbgemm_fn sbgemm;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* one shape's arrays: inp[M][K], w[N][K], out[M][N]; dout[M][N], dinp[M][K], dw[N][K] */
struct bufs {
    int M, K, N;
    float *inp, *w, *dout, *out, *dinp, *dw;          /* fp32 */
    uint16_t *inp16, *w16, *dout16, *out16, *dinp16;  /* bf16 */
    float *ws_a, *ws_b, *ws_c, *ws_d;                  /* widen workspaces (fp32) */
};

static void *xmalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    return p;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float urand(void)  /* uniform in [-1, 1) */
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((double)(rng >> 11) * 0x1p-52 - 1.0);
}

static void bufs_init(struct bufs *b, int M, int K, int N)
{
    b->M = M; b->K = K; b->N = N;
    size_t mk = (size_t)M * K, nk = (size_t)N * K, mn = (size_t)M * N;
    b->inp = xmalloc(mk * 4); b->w = xmalloc(nk * 4); b->dout = xmalloc(mn * 4);
    b->out = xmalloc(mn * 4); b->dinp = xmalloc(mk * 4); b->dw = xmalloc(nk * 4);
    b->inp16 = xmalloc(mk * 2); b->w16 = xmalloc(nk * 2); b->dout16 = xmalloc(mn * 2);
    b->out16 = xmalloc(mn * 2); b->dinp16 = xmalloc(mk * 2);
    b->ws_a = xmalloc(mk * 4); b->ws_b = xmalloc(nk * 4); b->ws_c = xmalloc(mn * 4);
    b->ws_d = xmalloc((mk > mn ? mk : mn) * 4);
    /* activations of order 1, weights of order 0.02 (GPT-2's init), gradients small */
    for (size_t i = 0; i < mk; i++) b->inp[i] = urand();
    for (size_t i = 0; i < nk; i++) b->w[i] = 0.02f * urand();
    for (size_t i = 0; i < mn; i++) b->dout[i] = 1e-3f * urand();
    /* the fp32 arrays hold bf16 values, so every way multiplies the same numbers */
    cpu_f32_to_bf16(b->inp16, b->inp, (long)mk); cpu_bf16_to_f32(b->inp, b->inp16, (long)mk);
    cpu_f32_to_bf16(b->w16, b->w, (long)nk);     cpu_bf16_to_f32(b->w, b->w16, (long)nk);
    cpu_f32_to_bf16(b->dout16, b->dout, (long)mn); cpu_bf16_to_f32(b->dout, b->dout16, (long)mn);
    memset(b->dw, 0, nk * 4);
}

static void bufs_free(struct bufs *b)
{
    float *f[] = { b->inp, b->w, b->dout, b->out, b->dinp, b->dw, b->ws_a, b->ws_b, b->ws_c,
                   b->ws_d };
    uint16_t *h[] = { b->inp16, b->w16, b->dout16, b->out16, b->dinp16 };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(f[i]);
    for (size_t i = 0; i < sizeof h / sizeof *h; i++) free(h[i]);
}

enum way { W_F32, W_WIDEN, W_SBGEMM, W_DNNL, W_DNNL16, N_WAYS };
static const char *way_name[N_WAYS] = { "fp32", "widen", "sbgemm", "dnnl", "dnnl16" };

static int way_available(enum way w)
{
    if (w == W_SBGEMM) return sbgemm != NULL;
    if (w == W_DNNL || w == W_DNNL16) return cpu_gemm_bf16_ready();
    return 1;
}

static void need(int rc)
{
    if (rc != 0) { fprintf(stderr, "cpu_gemm_bf16 failed\n"); exit(1); }
}

/* out = inp @ W^T in way w (bf16 ways: the result in out16) */
static void run_fwd(enum way way, struct bufs *b)
{
    const int M = b->M, K = b->K, N = b->N;
    const long mk = (long)M * K, nk = (long)N * K, mn = (long)M * N;
    switch (way) {
    case W_F32:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, b->inp, K, b->w, K,
                    0.0f, b->out, N);
        break;
    case W_WIDEN:
        cpu_bf16_to_f32(b->ws_a, b->inp16, mk);
        cpu_bf16_to_f32(b->ws_b, b->w16, nk);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, b->ws_a, K,
                    b->ws_b, K, 0.0f, b->ws_c, N);
        cpu_f32_to_bf16(b->out16, b->ws_c, mn);
        break;
    case W_SBGEMM:
        sbgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, b->inp16, K, b->w16, K,
               0.0f, b->ws_c, N);
        cpu_f32_to_bf16(b->out16, b->ws_c, mn);
        break;
    case W_DNNL:
        need(cpu_gemm_bf16(0, 1, M, N, K, b->inp16, K, b->w16, K, NULL, 0, 0, b->ws_c, 0, N));
        cpu_f32_to_bf16(b->out16, b->ws_c, mn);
        break;
    case W_DNNL16:
        need(cpu_gemm_bf16(0, 1, M, N, K, b->inp16, K, b->w16, K, NULL, 0, 0, b->out16, 1, N));
        break;
    default: break;
    }
}

/* dinp = dout @ W (bf16 ways: into dinp16), dw += dout^T @ inp (fp32), as matmul_bwd */
static void run_bwd(enum way way, struct bufs *b)
{
    const int M = b->M, K = b->K, N = b->N;
    const long mk = (long)M * K, nk = (long)N * K, mn = (long)M * N;
    switch (way) {
    case W_F32:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, b->dout, N, b->w,
                    K, 0.0f, b->dinp, K);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, b->dout, N, b->inp,
                    K, 1.0f, b->dw, K);
        break;
    case W_WIDEN:  /* dout, inp and w widened once each, as typed.c does */
        cpu_bf16_to_f32(b->ws_c, b->dout16, mn);
        cpu_bf16_to_f32(b->ws_a, b->inp16, mk);
        cpu_bf16_to_f32(b->ws_b, b->w16, nk);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, b->ws_c, N,
                    b->ws_b, K, 0.0f, b->ws_d, K);
        cpu_f32_to_bf16(b->dinp16, b->ws_d, mk);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, b->ws_c, N,
                    b->ws_a, K, 1.0f, b->dw, K);
        break;
    case W_SBGEMM:
        sbgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, b->dout16, N, b->w16,
               K, 0.0f, b->ws_d, K);
        cpu_f32_to_bf16(b->dinp16, b->ws_d, mk);
        sbgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, b->dout16, N, b->inp16,
               K, 1.0f, b->dw, K);
        break;
    case W_DNNL:
    case W_DNNL16:
        if (way == W_DNNL16)
            need(cpu_gemm_bf16(0, 0, M, K, N, b->dout16, N, b->w16, K, NULL, 0, 0, b->dinp16, 1,
                               K));
        else {
            need(cpu_gemm_bf16(0, 0, M, K, N, b->dout16, N, b->w16, K, NULL, 0, 0, b->ws_d, 0,
                               K));
            cpu_f32_to_bf16(b->dinp16, b->ws_d, mk);
        }
        need(cpu_gemm_bf16(1, 0, N, K, M, b->dout16, N, b->inp16, K, NULL, 0, 1, b->dw, 0, K));
        break;
    default: break;
    }
}

static void run(int bwd, enum way way, struct bufs *b)
{
    if (bwd) run_bwd(way, b);
    else run_fwd(way, b);
}

/* ---------------------------------------------------------------------------------- */
/* accuracy: sampled elements against a double product of the same (bf16) inputs        */

struct err { double max_rel, sum_sq_err, sum_sq_ref; };

/* ref[i][j] = sum_k a(i,k) b(k,j) in double, and sum_k |a b| (the error scale) */
static void ref_dot(const float *a, long sa_i, long sa_k, const float *bm, long sb_k,
                    long sb_j, int i, int j, int K, double *ref, double *absref)
{
    double s = 0.0, sa = 0.0;
    for (int k = 0; k < K; k++) {
        double p = (double)a[i * sa_i + k * sa_k] * (double)bm[k * sb_k + j * sb_j];
        s += p;
        sa += fabs(p);
    }
    *ref = s;
    *absref = sa;
}

static void err_add(struct err *e, double got, double ref, double absref)
{
    double d = got - ref;
    double rel = absref > 0 ? fabs(d) / absref : 0.0;  /* componentwise, as in error bounds */
    if (rel > e->max_rel) e->max_rel = rel;
    e->sum_sq_err += d * d;
    e->sum_sq_ref += ref * ref;
}

static void print_err(const char *what, const struct err *e)
{
    printf("    %-34s max |err|/sum|a*b| %.2e   ||err||/||ref|| %.2e\n", what, e->max_rel,
           sqrt(e->sum_sq_err / (e->sum_sq_ref > 0 ? e->sum_sq_ref : 1)));
}

/* what dw holds before the accumulating product, in the accuracy check */
static float dw0(long i) { return 1e-3f * (float)((i * 2654435761L) % 2001 - 1000) / 1000.0f; }

static void check(struct bufs *b, int n_samples)
{
    const int M = b->M, K = b->K, N = b->N;
    const long mk = (long)M * K, mn = (long)M * N, nk = (long)N * K;
    printf("  accuracy, M=%d K=%d N=%d, %d sampled elements per product:\n", M, K, N,
           n_samples);
    enum way ways[] = { W_WIDEN, W_SBGEMM, W_DNNL, W_DNNL16 };
    for (size_t wi = 0; wi < sizeof ways / sizeof *ways; wi++) {
        enum way w = ways[wi];
        if (!way_available(w)) continue;
        /* fwd: the fp32 result before narrowing (ws_c; not for dnnl16) and the bf16 one */
        run_fwd(w, b);
        struct err e32 = { 0 }, e16 = { 0 }, edi = { 0 }, edw = { 0 };
        uint64_t save = rng;
        for (int s = 0; s < n_samples; s++) {
            int i = (int)((urand() + 1) * 0.5 * M) % M, j = (int)((urand() + 1) * 0.5 * N) % N;
            double ref, absref;
            ref_dot(b->inp, K, 1, b->w, 1, K, i, j, K, &ref, &absref);
            if (w != W_DNNL16) err_add(&e32, b->ws_c[(size_t)i * N + j], ref, absref);
            err_add(&e16, cvt_bf16_to_f32_1(b->out16[(size_t)i * N + j]), ref, absref);
        }
        /* bwd: dinp (bf16) and dw (fp32, accumulated onto dw0(i) below) */
        for (long i = 0; i < nk; i++) b->dw[i] = dw0(i);
        run_bwd(w, b);
        for (int s = 0; s < n_samples; s++) {
            int i = (int)((urand() + 1) * 0.5 * M) % M, k = (int)((urand() + 1) * 0.5 * K) % K;
            double ref, absref;
            ref_dot(b->dout, N, 1, b->w, K, 1, i, k, N, &ref, &absref);
            err_add(&edi, cvt_bf16_to_f32_1(b->dinp16[(size_t)i * K + k]), ref, absref);
            int n = (int)((urand() + 1) * 0.5 * N) % N;
            ref_dot(b->dout, 1, N, b->inp, K, 1, n, k, M, &ref, &absref);
            ref += dw0((long)n * K + k);
            absref += fabs(dw0((long)n * K + k));
            err_add(&edw, b->dw[(size_t)n * K + k], ref, absref);
        }
        rng = save;
        char what[64];
        printf("   %s:\n", way_name[w]);
        if (w != W_DNNL16) {
            snprintf(what, sizeof what, "out (fp32, before narrowing)");
            print_err(what, &e32);
        }
        print_err("out (bf16)", &e16);
        print_err("dinp (bf16)", &edi);
        print_err("dw (fp32)", &edw);
    }
    (void)mk; (void)mn;
    if (cpu_gemm_bf16_ready()) {  /* same bits twice, fwd (fp32 out) and dw */
        run_fwd(W_DNNL, b);
        float *first = xmalloc((size_t)mn * 4);
        memcpy(first, b->ws_c, (size_t)mn * 4);
        run_fwd(W_DNNL, b);
        int same_fwd = memcmp(first, b->ws_c, (size_t)mn * 4) == 0;
        free(first);
        memset(b->dw, 0, (size_t)nk * 4);
        run_bwd(W_DNNL, b);
        float *dw1 = xmalloc((size_t)nk * 4);
        memcpy(dw1, b->dw, (size_t)nk * 4);
        memset(b->dw, 0, (size_t)nk * 4);
        run_bwd(W_DNNL, b);
        int same_dw = memcmp(dw1, b->dw, (size_t)nk * 4) == 0;
        free(dw1);
        printf("  dnnl run to run (%d threads): fwd %s, dw %s\n", omp_get_max_threads(),
               same_fwd ? "identical" : "DIFFERENT", same_dw ? "identical" : "DIFFERENT");
        /* against the widened path: how many bf16 outputs differ, and by how many ulps */
        uint16_t *wide = xmalloc((size_t)mn * 2);
        run_fwd(W_WIDEN, b);
        memcpy(wide, b->out16, (size_t)mn * 2);
        run_fwd(W_DNNL16, b);
        /* (near-zero sums can differ by many ulps: the difference is measured against the
         * outputs' rms, the scale of the sums' rounding errors) */
        long n_diff = 0;
        double max_d = 0, sq = 0;
        for (long i = 0; i < mn; i++) {
            double x = cvt_bf16_to_f32_1(wide[i]), y = cvt_bf16_to_f32_1(b->out16[i]);
            n_diff += wide[i] != b->out16[i];
            if (fabs(x - y) > max_d) max_d = fabs(x - y);
            sq += x * x;
        }
        printf("  dnnl16 vs widen, bf16 out: %ld of %ld differ (%.3f%%), max |diff|/rms(out) "
               "%.2e\n", n_diff, mn, 100.0 * (double)n_diff / (double)mn,
               max_d / sqrt(sq / (double)mn));
        /* one thread against all of them */
        int nt = omp_get_max_threads();
        memcpy(wide, b->out16, (size_t)mn * 2);
        omp_set_num_threads(1);
        run_fwd(W_DNNL16, b);
        omp_set_num_threads(nt);
        printf("  dnnl16 with 1 thread vs %d: %s\n", nt,
               memcmp(wide, b->out16, (size_t)mn * 2) == 0 ? "identical" : "different bits");
        free(wide);
    }
}


/* ---------------------------------------------------------------------------------- */
/* the kernel table (typed.c) on bf16 tensors, against double references                */

static int tc_pass, tc_fail;
static void tc(int ok, const char *what, int M, int K, int N)
{
    if (ok) tc_pass++;
    else tc_fail++;
    if (!ok) printf("  FAIL %s (M=%d K=%d N=%d)\n", what, M, K, N);
}

static void fill16(uint16_t *h, float *f, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) {
        h[i] = cvt_f32_to_bf16_1(scale * urand());
        f[i] = cvt_bf16_to_f32_1(h[i]);
    }
}

static void table_check_shape(struct backend *be, const struct kernels *kt, int M, int K,
                              int N)
{
    size_t mk = (size_t)M * K, nk = (size_t)N * K, mn = (size_t)M * N;
    uint16_t *inp = xmalloc(mk * 2), *w = xmalloc(nk * 2), *bias = xmalloc((size_t)N * 2),
             *dout = xmalloc(mn * 2), *out = xmalloc(mn * 2), *out2 = xmalloc(mn * 2),
             *dinp = xmalloc(mk * 2), *dinp2 = xmalloc(mk * 2);
    float *inpf = xmalloc(mk * 4), *wf = xmalloc(nk * 4), *biasf = xmalloc((size_t)N * 4),
          *doutf = xmalloc(mn * 4), *dw = xmalloc(nk * 4), *dw0 = xmalloc(nk * 4),
          *dw2 = xmalloc(nk * 4), *db = xmalloc((size_t)N * 4), *db0 = xmalloc((size_t)N * 4),
          *dbw = xmalloc((size_t)N * 4);
    fill16(inp, inpf, mk, 1.0f);
    fill16(w, wf, nk, 0.02f);
    fill16(bias, biasf, (size_t)N, 0.1f);
    fill16(dout, doutf, mn, 1e-3f);
    for (size_t i = 0; i < nk; i++) dw0[i] = 1e-3f * urand();
    for (int j = 0; j < N; j++) db0[j] = 1e-3f * urand();
    struct tensor t_inp = tensor_2d(inp, KDT_BF16, M, K), t_w = tensor_2d(w, KDT_BF16, N, K),
                  t_bias = tensor_1d(bias, KDT_BF16, N), t_dout = tensor_2d(dout, KDT_BF16, M, N);

    /* forward, bias included: within bf16 rounding + fp32 summation of the double result */
    kt->matmul_fwd(be, tensor_2d(out, KDT_BF16, M, N), t_inp, t_w, t_bias);
    const char *impl = cpu_gemm_bf16_last_impl();
    int ok = 1;
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double ref, sa;
            ref_dot(inpf, K, 1, wf, 1, K, i, j, K, &ref, &sa);
            ref += biasf[j];
            sa += fabs(biasf[j]);
            double got = cvt_bf16_to_f32_1(out[(size_t)i * N + j]);
            double tol = 0x1p-8 * fabs(ref) * 1.01 + (K + 2) * 0x1p-24 * sa;
            if (!(fabs(got - ref) <= tol)) ok = 0;
            if (sa > 0 && fabs(got - ref) / sa > worst) worst = fabs(got - ref) / sa;
        }
    tc(ok, "matmul_fwd bf16 vs double", M, K, N);
    kt->matmul_fwd(be, tensor_2d(out2, KDT_BF16, M, N), t_inp, t_w, t_bias);
    tc(memcmp(out, out2, mn * 2) == 0, "matmul_fwd bf16 same bits twice", M, K, N);

    /* backward: dinp (bf16), dw += (fp32), dbias += (fp32, the widened path's bits) */
    memcpy(dw, dw0, nk * 4);
    memcpy(db, db0, (size_t)N * 4);
    kt->matmul_bwd(be, tensor_2d(dinp, KDT_BF16, M, K), tensor_2d(dw, KDT_F32, N, K),
                   tensor_1d(db, KDT_F32, N), t_dout, t_inp, t_w);
    int ok_di = 1, ok_dw = 1;
    double worst_di = 0, worst_dw = 0;
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) {
            double ref, sa;
            ref_dot(doutf, N, 1, wf, K, 1, i, k, N, &ref, &sa);
            double got = cvt_bf16_to_f32_1(dinp[(size_t)i * K + k]);
            if (!(fabs(got - ref) <= 0x1p-8 * fabs(ref) * 1.01 + (N + 2) * 0x1p-24 * sa)) ok_di = 0;
            if (sa > 0 && fabs(got - ref) / sa > worst_di) worst_di = fabs(got - ref) / sa;
        }
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double ref, sa;
            ref_dot(doutf, 1, N, inpf, K, 1, n, k, M, &ref, &sa);
            ref += dw0[(size_t)n * K + k];
            sa += fabs(dw0[(size_t)n * K + k]);
            double got = dw[(size_t)n * K + k];
            if (!(fabs(got - ref) <= (M + 2) * 0x1p-24 * sa)) ok_dw = 0;
            if (sa > 0 && fabs(got - ref) / sa > worst_dw) worst_dw = fabs(got - ref) / sa;
        }
    tc(ok_di, "matmul_bwd dinp bf16 vs double", M, K, N);
    tc(ok_dw, "matmul_bwd dw += fp32 vs double", M, K, N);
    memcpy(dbw, db0, (size_t)N * 4);
    cpu_matmul_bwd(NULL, NULL, dbw, doutf, NULL, NULL, M, K, N);  /* widened dout's dbias */
    tc(memcmp(db, dbw, (size_t)N * 4) == 0, "matmul_bwd dbias = widened path's bits", M, K, N);
    memcpy(dw2, dw0, nk * 4);
    kt->matmul_bwd(be, tensor_2d(dinp2, KDT_BF16, M, K), tensor_2d(dw2, KDT_F32, N, K),
                   TENSOR_NONE, t_dout, t_inp, t_w);
    tc(memcmp(dinp, dinp2, mk * 2) == 0 && memcmp(dw, dw2, nk * 4) == 0,
       "matmul_bwd bf16 same bits twice", M, K, N);
    /* dinp absent, dw only: the bf16 GEMM alone */
    memcpy(dw2, dw0, nk * 4);
    kt->matmul_bwd(be, TENSOR_NONE, tensor_2d(dw2, KDT_F32, N, K), TENSOR_NONE, t_dout, t_inp,
                   t_w);
    tc(memcmp(dw, dw2, nk * 4) == 0, "matmul_bwd dw alone = with dinp", M, K, N);
    printf("  table M=%-4d K=%-4d N=%-5d max |err|/sum|a*b|: out %.2e  dinp %.2e  dw %.2e  [%s]\n",
           M, K, N, worst, worst_di, worst_dw, cpu_gemm_bf16_ready() ? impl : "widen + sgemm");
    void *all[] = { inp, w, bias, dout, out, out2, dinp, dinp2, inpf, wf, biasf, doutf, dw, dw0,
                    dw2, db, db0, dbw };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

static int table_check(void)
{
    char err[256];
    struct backend *be = backend_init(KDEV_CPU, 0, err, sizeof err);
    if (!be) { printf("table check: backend_init: %s\n", err); return 1; }
    const struct kernels *kt = backend_kernels(be);
    static const int sh[][3] = { { 64, 64, 192 }, { 37, 96, 50 }, { 256, 768, 768 },
                                 { 128, 3072, 768 }, { 512, 64, 50304 / 16 } };
    printf("kernel table on bf16 tensors (%s):\n",
           cpu_gemm_bf16_ready() ? "bf16 GEMM" : "widen + sgemm");
    for (size_t i = 0; i < sizeof sh / sizeof *sh; i++)
        table_check_shape(be, kt, sh[i][0], sh[i][1], sh[i][2]);
    backend_free(be);
    printf("table check: %d passed, %d failed\n", tc_pass, tc_fail);
    return tc_fail != 0;
}

/* ---------------------------------------------------------------------------------- */

struct shape { int K, N; const char *name; int small; };
static const struct shape shapes[] = {
    { 768, 2304, "attn qkv", 0 },    { 768, 768, "attn proj", 0 }, { 768, 3072, "mlp fc", 0 },
    { 3072, 768, "mlp proj", 0 },    { 768, 50304, "lm head", 0 }, { 64, 192, "tiny qkv", 1 },
};

int main(int argc, char **argv)
{
    int M = 1024, max_reps = 7, do_fwd = 1, do_bwd = 0, do_check = 1, sel = 0, use_best = 0;
    int threads[8] = { 1, 2 }, n_threads = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--op=fwd") == 0) { do_fwd = 1; do_bwd = 0; }
        else if (strcmp(a, "--op=bwd") == 0) { do_fwd = 0; do_bwd = 1; }
        else if (strcmp(a, "--op=both") == 0) { do_fwd = 1; do_bwd = 1; }
        else if (strncmp(a, "--M=", 4) == 0) M = atoi(a + 4);
        else if (strncmp(a, "--reps=", 7) == 0) max_reps = atoi(a + 7);
        else if (strcmp(a, "--shapes=all") == 0) sel = 0;
        else if (strcmp(a, "--shapes=model") == 0) sel = 1;
        else if (strcmp(a, "--shapes=small") == 0) sel = 2;
        else if (strcmp(a, "--no-check") == 0) do_check = 0;
        else if (strcmp(a, "--best") == 0) use_best = 1;
        else if (strcmp(a, "--table-check") == 0) return table_check();
        else if (strncmp(a, "--threads=", 10) == 0) {
            n_threads = 0;
            for (char *p = (char *)a + 10; *p && n_threads < 8;) {
                threads[n_threads++] = (int)strtol(p, &p, 10);
                if (*p == ',') p++;
                else if (*p) break;
            }
        } else {
            fprintf(stderr,
                    "usage: %s [--op=fwd|bwd|both] [--M=ROWS] [--threads=1,2] [--reps=R] "
                    "[--shapes=all|model|small] [--no-check] [--best] | --table-check\n", argv[0]);
            return 2;
        }
    }
    if (M < 1 || max_reps < 1 || n_threads < 1) { fprintf(stderr, "bad arguments\n"); return 2; }
    sbgemm = (sbgemm_fn)dlsym(RTLD_DEFAULT, "cblas_sbgemm");
    const char *ct = getenv("OPENBLAS_CORETYPE");
    printf("OpenBLAS: %s, core %s (OPENBLAS_CORETYPE %s)\n", openblas_get_config(),
           openblas_get_corename(), ct ? ct : "unset");
    printf("sbgemm: %s\n", sbgemm ? "cblas_sbgemm found"
                                  : "n/a (the linked libopenblas does not export cblas_sbgemm)");
    printf("dnnl:   %s\n", cpu_gemm_bf16_impl());
    printf("M = %d; %s GFLOP/s (2MKN per product) and ratio to fp32 sgemm; bf16 ways "
           "include their conversions; dnnl16/widen: the speed-up of typed.c's bf16 path\n", M,
           use_best ? "best" : "median");

    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        if ((sel == 1 && shapes[s].small) || (sel == 2 && !shapes[s].small)) continue;
        struct bufs b;
        bufs_init(&b, M, shapes[s].K, shapes[s].N);
        for (int bwd = 0; bwd <= 1; bwd++) {
            if ((bwd && !do_bwd) || (!bwd && !do_fwd)) continue;
            double flop = (bwd ? 4.0 : 2.0) * M * (double)b.K * b.N;
            for (int ti = 0; ti < n_threads; ti++) {
                omp_set_num_threads(threads[ti]);
                openblas_set_num_threads(threads[ti]);
                /* one untimed call of each, which also sizes the reps */
                double t_one = 0;
                for (int w = 0; w < N_WAYS; w++) {
                    if (!way_available(w)) continue;
                    double t0 = now();
                    run(bwd, w, &b);
                    t_one += now() - t0;
                }
                int reps = (int)(2.0 / (t_one > 1e-9 ? t_one : 1e-9));
                if (reps > max_reps) reps = max_reps;
                if (reps < 3) reps = 3;
                double t[N_WAYS][64];
                if (reps > 64) reps = 64;
                for (int r = 0; r < reps; r++)
                    for (int w = 0; w < N_WAYS; w++) {
                        if (!way_available(w)) continue;
                        double t0 = now();
                        run(bwd, w, &b);
                        t[w][r] = now() - t0;
                    }
                char label[64];
                snprintf(label, sizeof label, "%s %s (%d,%d)", shapes[s].name,
                         bwd ? "bwd" : "fwd", b.K, b.N);
                printf("%-28s %dT r%-2d", label, threads[ti], reps);
                double f32 = 0;
                for (int w = 0; w < N_WAYS; w++) {
                    if (!way_available(w)) { printf("  %7s %-14s", way_name[w], "n/a"); continue; }
                    qsort(t[w], (size_t)reps, sizeof(double), cmp_double);
                    if (use_best) t[w][reps / 2] = t[w][0];  /* report the best instead */
                    double gf = flop / t[w][reps / 2] * 1e-9;
                    if (w == W_F32) f32 = gf;
                    printf("  %7s %6.1f", way_name[w], gf);
                    if (w == W_F32) printf("        ");
                    else printf(" (%4.2fx)", gf / f32);
                }
                if (cpu_gemm_bf16_ready())
                    printf("  dnnl16/widen %4.2fx [%s]", t[W_WIDEN][reps / 2] / t[W_DNNL16][reps / 2],
                           cpu_gemm_bf16_last_impl());
                printf("\n");
                fflush(stdout);
            }
        }
        if (do_check) {
            omp_set_num_threads(threads[n_threads - 1]);
            openblas_set_num_threads(threads[n_threads - 1]);
            check(&b, 512);
        }
        bufs_free(&b);
    }
    return 0;
}

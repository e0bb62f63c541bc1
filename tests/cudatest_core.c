/* cudatest_core.c — the CUDA backend's core against the CPU backend: the GEMMs, the
 * element-wise kernels and reductions, the optimizers on every state form, the memory
 * pool behind backend_alloc, copies and events.
 *
 * Both backends are in the CUDA binary: each case uploads the same random data to both,
 * runs the same table entry, downloads and compares within a tolerance that says why.
 * Without a CUDA device every case is skipped (named), never passed.
 * TRIDENT_CUDATEST_SELF=1 runs the comparisons with a second CPU backend in the GPU's
 * place, to check the suite itself on a machine without a GPU (the CUDA-only cases skip).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include "backend.h"
#include "backend_impl.h"
#include "convert.h"
#include "cuda_ctx.h"
#include "test.h"

static struct backend *gcpu, *ggpu;  /* the reference and the backend under test */
static int self_check;               /* ggpu is a CPU backend (TRIDENT_CUDATEST_SELF=1) */
static char no_gpu[512];             /* why there is no GPU to test ("" when there is one) */

#define NEED_GPU()                                                                       \
    do {                                                                                 \
        if (no_gpu[0]) SKIP("%.200s", no_gpu);                                               \
    } while (0)
#define NEED_REAL_GPU()                                                                  \
    do {                                                                                 \
        NEED_GPU();                                                                      \
        if (self_check) SKIP("TRIDENT_CUDATEST_SELF=1: a CPU backend stands in for the GPU"); \
    } while (0)

/* ---------------------------------------------------------------------------------- */
/* data                                                                                 */

static uint64_t rs = 0x853c49e6748fea9bull;
static float frand(void)  /* uniform in [-1, 1) */
{
    rs ^= rs >> 12;
    rs ^= rs << 25;
    rs ^= rs >> 27;
    return (float)((rs * 0x2545f4914f6cdd1dull) >> 40) / 8388608.0f - 1.0f;
}
static float *rand_vec(int64_t n, float lo, float hi)
{
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * 0.5f * (frand() + 1.0f);
    return v;
}

static const enum kdtype ACT[3] = {KDT_F32, KDT_BF16, KDT_F16};

/* the same values on both backends */
struct pair {
    struct tensor c, g;
};

static void *host_encode(enum kdtype dt, const float *v, int64_t n)
{
    void *h = malloc(kdtype_size(dt) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        if (dt == KDT_F32) ((float *)h)[i] = v[i];
        else if (dt == KDT_BF16) ((uint16_t *)h)[i] = cvt_f32_to_bf16_1(v[i]);
        else if (dt == KDT_F16) ((uint16_t *)h)[i] = cvt_f32_to_f16_1(v[i]);
        else ((int32_t *)h)[i] = (int32_t)v[i];
    }
    return h;
}

static struct tensor up1(struct backend *be, enum kdtype dt, int64_t rows, int64_t cols,
                         const float *v)
{
    const int64_t n = rows * cols;
    void *h = host_encode(dt, v, n);
    void *d = backend_alloc(be, kdtype_size(dt) * (size_t)n);
    backend_copy_h2d(be, d, h, kdtype_size(dt) * (size_t)n);
    free(h);
    return tensor_2d(d, dt, rows, cols);
}

static struct pair up(enum kdtype dt, int64_t rows, int64_t cols, const float *v)
{
    struct pair p = {up1(gcpu, dt, rows, cols, v), up1(ggpu, dt, rows, cols, v)};
    return p;
}

/* raw bytes of a tensor (n_bytes) from backend be */
static void *down_raw(struct backend *be, const void *d, size_t n_bytes)
{
    void *h = malloc(n_bytes ? n_bytes : 1);
    backend_copy_d2h(be, h, d, n_bytes);
    return h;
}

/* the tensor's values, widened to fp32 */
static float *down(struct backend *be, struct tensor t)
{
    const int64_t n = tensor_numel(t);
    void *h = down_raw(be, t.data, tensor_bytes(t));
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        if (t.dt == KDT_F32) v[i] = ((float *)h)[i];
        else if (t.dt == KDT_BF16) v[i] = cvt_bf16_to_f32_1(((uint16_t *)h)[i]);
        else if (t.dt == KDT_F16) v[i] = cvt_f16_to_f32_1(((uint16_t *)h)[i]);
        else v[i] = (float)((int32_t *)h)[i];
    }
    free(h);
    return v;
}

static void pair_free(struct pair p)
{
    backend_free_mem(gcpu, p.c.data);
    backend_free_mem(ggpu, p.g.data);
}

/* Compares the GPU's values with the CPU's: |g - c| <= atol + rtol |c|; NaN must meet NaN.
 * Returns the number of elements out of tolerance (the first few are printed). */
static int64_t compare(const char *what, struct pair p, double rtol, double atol)
{
    const int64_t n = tensor_numel(p.c);
    float *c = down(gcpu, p.c), *g = down(ggpu, p.g);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        int ok = isnan(c[i]) ? isnan(g[i])
                 : isinf(c[i]) ? g[i] == c[i]
                               : fabs((double)g[i] - c[i]) <= atol + rtol * fabs((double)c[i]);
        if (!ok && bad++ < 5)
            CHECK_MSG(0, "%s[%lld]: cuda %.9g, cpu %.9g (rtol %g, atol %g)", what, (long long)i,
                      g[i], c[i], rtol, atol);
    }
    if (bad > 5) CHECK_MSG(0, "%s: %lld of %lld elements out of tolerance", what, (long long)bad,
                           (long long)n);
    free(c);
    free(g);
    return bad;
}

/* the same bits on both backends (NaN: any NaN) */
static int64_t compare_exact(const char *what, struct pair p)
{
    return compare(what, p, 0.0, 0.0);
}

/* one ulp of the activation dtype, relative: what rounding a result to it may change */
static double ulp_of(enum kdtype dt)
{
    return dt == KDT_BF16 ? 1.0 / 128 : dt == KDT_F16 ? 1.0 / 1024 : 1.0 / 8388608;
}

/* ---------------------------------------------------------------------------------- */
/* GEMMs                                                                                */

struct mm_shape {
    int M, K, N;
};
static const struct mm_shape MM_SHAPES[] = {{1, 1, 1}, {7, 13, 5}, {64, 48, 96}, {33, 257, 130},
                                            {128, 64, 50304 / 64}};

/* Tolerances: both sides sum K products in fp32 (16-bit products are exact in fp32), in
 * different orders: about sqrt(K) * 2^-24 of the sum of |products| (K * 1 here, values in
 * [-1, 1]) apart, taken as 4e-6 * K. A 16-bit result is then rounded once, so the two may
 * land one ulp of the dtype apart: rtol 1 ulp (2 for bf16, whose ulp is coarse near a
 * rounding boundary after the summation difference). */
static void mm_tol(enum kdtype dt, int K, double *rtol, double *atol)
{
    *rtol = dt == KDT_F32 ? 1e-5 : 2 * ulp_of(dt);
    *atol = 4e-6 * (K > 0 ? K : 1);
}

static void test_matmul_fwd_matches_cpu_for_every_dtype_shape_and_bias(void)
{
    NEED_GPU();
    const struct kernels *kc = backend_kernels(gcpu), *kg = backend_kernels(ggpu);
    for (size_t s = 0; s < sizeof MM_SHAPES / sizeof *MM_SHAPES; s++) {
        const int M = MM_SHAPES[s].M, K = MM_SHAPES[s].K, N = MM_SHAPES[s].N;
        float *a = rand_vec((int64_t)M * K, -1, 1), *w = rand_vec((int64_t)N * K + 1, -1, 1),
              *bias = rand_vec(N, -1, 1);
        for (int d = 0; d < 3; d++) {
            const enum kdtype dt = ACT[d];
            /* bias: absent, of the act dtype (fused epilogue), fp32 (the staged path) */
            for (int bk = 0; bk < 3; bk++) {
                if (bk == 2 && dt == KDT_F32) continue;
                /* w one element into its buffer: 2- or 4-byte aligned, as a parameter
                 * sliced out of one buffer can be (odd shapes only) */
                const int shift = (K % 2) ? 1 : 0;
                struct pair A = up(dt, M, K, a), Wb = up(dt, 1, (int64_t)N * K + 1, w);
                struct pair W = {tensor_view(Wb.c, shift, N, K), tensor_view(Wb.g, shift, N, K)};
                struct pair B = {TENSOR_NONE, TENSOR_NONE};
                if (bk) B = up(bk == 1 ? dt : KDT_F32, 1, N, bias);
                float *zero = calloc((size_t)M * N, sizeof(float));
                struct pair O = up(dt, M, N, zero);
                free(zero);
                kc->matmul_fwd(gcpu, O.c, A.c, W.c, B.c);
                kg->matmul_fwd(ggpu, O.g, A.g, W.g, B.g);
                double rtol, atol;
                mm_tol(dt, K, &rtol, &atol);
                char what[96];
                snprintf(what, sizeof what, "matmul_fwd %s M%d K%d N%d bias %s", kdtype_name(dt),
                         M, K, N, bk == 0 ? "absent" : bk == 1 ? "act" : "fp32");
                compare(what, O, rtol, atol);
                pair_free(A), pair_free(Wb), pair_free(O);
                if (bk) pair_free(B);
            }
        }
        free(a), free(w), free(bias);
    }
}

static void test_matmul_bwd_matches_cpu_and_accumulates(void)
{
    NEED_GPU();
    const struct kernels *kc = backend_kernels(gcpu), *kg = backend_kernels(ggpu);
    for (size_t s = 0; s < sizeof MM_SHAPES / sizeof *MM_SHAPES; s++) {
        const int M = MM_SHAPES[s].M, K = MM_SHAPES[s].K, N = MM_SHAPES[s].N;
        float *a = rand_vec((int64_t)M * K, -1, 1), *w = rand_vec((int64_t)N * K, -1, 1),
              *dout = rand_vec((int64_t)M * N, -1, 1), *dw0 = rand_vec((int64_t)N * K, -1, 1),
              *db0 = rand_vec(N, -1, 1);
        for (int d = 0; d < 3; d++) {
            const enum kdtype dt = ACT[d];
            /* 0: all outputs; 1: no dinp (the first layer); 2: dinp only */
            for (int which = 0; which < 3; which++) {
                struct pair A = up(dt, M, K, a), W = up(dt, N, K, w), DO = up(dt, M, N, dout);
                struct pair DI = {TENSOR_NONE, TENSOR_NONE}, DW = DI, DB = DI;
                float *junk = rand_vec((int64_t)M * K, 5, 6);  /* dinp is overwritten */
                if (which != 1) DI = up(dt, M, K, junk);
                if (which != 2) DW = up(KDT_F32, N, K, dw0), DB = up(KDT_F32, 1, N, db0);
                free(junk);
                kc->matmul_bwd(gcpu, DI.c, DW.c, DB.c, DO.c, A.c, W.c);
                kg->matmul_bwd(ggpu, DI.g, DW.g, DB.g, DO.g, A.g, W.g);
                double rtol, atol;
                char what[96];
                if (which != 1) {
                    mm_tol(dt, N, &rtol, &atol);
                    snprintf(what, sizeof what, "matmul_bwd dinp %s M%d K%d N%d", kdtype_name(dt),
                             M, K, N);
                    compare(what, DI, rtol, atol);
                    pair_free(DI);
                }
                if (which != 2) {
                    /* fp32 sums over M rows (dw: of products, dbias: of values), + the
                     * previous value: summation order only */
                    snprintf(what, sizeof what, "matmul_bwd dw %s M%d K%d N%d", kdtype_name(dt),
                             M, K, N);
                    compare(what, DW, 1e-5, 4e-6 * M);
                    snprintf(what, sizeof what, "matmul_bwd dbias %s M%d N%d", kdtype_name(dt), M,
                             N);
                    compare(what, DB, 1e-5, 4e-6 * M);
                    pair_free(DW), pair_free(DB);
                }
                pair_free(A), pair_free(W), pair_free(DO);
            }
        }
        free(a), free(w), free(dout), free(dw0), free(db0);
    }
}

/* The dbias column sums are deterministic (no atomics): two runs, the same bits. */
static void test_dbias_is_deterministic(void)
{
    NEED_GPU();
    const struct kernels *kg = backend_kernels(ggpu);
    const int M = 3000, K = 8, N = 77;
    float *a = rand_vec((int64_t)M * K, -1, 1), *w = rand_vec((int64_t)N * K, -1, 1),
          *dout = rand_vec((int64_t)M * N, -1, 1);
    float *zero = calloc((size_t)N, sizeof(float));
    struct tensor A = up1(ggpu, KDT_BF16, M, K, a), W = up1(ggpu, KDT_BF16, N, K, w),
                  DO = up1(ggpu, KDT_BF16, M, N, dout);
    struct tensor D1 = up1(ggpu, KDT_F32, 1, N, zero), D2 = up1(ggpu, KDT_F32, 1, N, zero);
    kg->matmul_bwd(ggpu, TENSOR_NONE, TENSOR_NONE, D1, DO, A, W);
    kg->matmul_bwd(ggpu, TENSOR_NONE, TENSOR_NONE, D2, DO, A, W);
    void *h1 = down_raw(ggpu, D1.data, tensor_bytes(D1)), *h2 = down_raw(ggpu, D2.data, tensor_bytes(D2));
    CHECK(memcmp(h1, h2, tensor_bytes(D1)) == 0);
    free(h1), free(h2), free(a), free(w), free(dout), free(zero);
    backend_free_mem(ggpu, A.data), backend_free_mem(ggpu, W.data), backend_free_mem(ggpu, DO.data);
    backend_free_mem(ggpu, D1.data), backend_free_mem(ggpu, D2.data);
}

/* A shape seen before reuses its plan: no second heuristic query; the algorithm is named. */
static void test_gemm_plans_are_cached_and_named(void)
{
    NEED_REAL_GPU();
    const struct kernels *kg = backend_kernels(ggpu);
    const int M = 96, K = 80, N = 112;
    float *a = rand_vec((int64_t)M * K, -1, 1), *w = rand_vec((int64_t)N * K, -1, 1);
    struct tensor A = up1(ggpu, KDT_BF16, M, K, a), W = up1(ggpu, KDT_BF16, N, K, w),
                  O = up1(ggpu, KDT_BF16, M, N, a);
    int64_t q0, q1, q2;
    kg->matmul_fwd(ggpu, O, A, W, TENSOR_NONE);
    const char *name = cuda_matmul_algo(ggpu, &q0);
    CHECK_MSG(strncmp(name, "cublasLt algo", 13) == 0 || strncmp(name, "cublasGemmEx", 12) == 0,
              "algorithm: %s", name);
    printf("  bf16 %dx%dx%d: %s\n", M, K, N, name);
    kg->matmul_fwd(ggpu, O, A, W, TENSOR_NONE);
    cuda_matmul_algo(ggpu, &q1);
    CHECK_MSG(q1 == q0, "the same shape queried the heuristic again (%lld -> %lld)",
              (long long)q0, (long long)q1);
    struct tensor O2 = up1(ggpu, KDT_BF16, M - 1, N, a);
    kg->matmul_fwd(ggpu, O2, tensor_2d(A.data, KDT_BF16, M - 1, K), W, TENSOR_NONE);
    cuda_matmul_algo(ggpu, &q2);
    CHECK(q2 == q1 + 1);  /* a new shape: one query */
    /* more shapes than the cache holds: still correct, and bounded */
    for (int i = 1; i <= CUDA_GEMM_CACHE + 8; i++)
        kg->matmul_fwd(ggpu, tensor_2d(O.data, KDT_BF16, i % M + 1, N),
                       tensor_2d(A.data, KDT_BF16, i % M + 1, K), W, TENSOR_NONE);
    backend_synchronize(ggpu);
    free(a), free(w);
    backend_free_mem(ggpu, A.data), backend_free_mem(ggpu, W.data);
    backend_free_mem(ggpu, O.data), backend_free_mem(ggpu, O2.data);
}

/* ---------------------------------------------------------------------------------- */
/* element-wise and reductions                                                          */

static const int64_t EW_SIZES[] = {1, 255, 1000, 65537 * 3};

/* special values: NaN, +-inf, a subnormal, halfway cases of bf16 and fp16, fp16 overflow */
static void plant_specials(float *v, int64_t n)
{
    const float sp[] = {NAN, INFINITY, -INFINITY, 1e-40f, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256,
                        1.0f + 1.0f / 2048, 70000.0f, -0.0f, 65519.0f};
    for (size_t i = 0; i < sizeof sp / sizeof *sp && (int64_t)i * 7 < n; i++) v[i * 7] = sp[i];
}

/* residual, convert, scale, accumulate: one fp32 operation per element and one rounding,
 * the same on both sides, so the bits agree exactly */
static void test_elementwise_kernels_match_cpu_bit_for_bit(void)
{
    NEED_GPU();
    const struct kernels *kc = backend_kernels(gcpu), *kg = backend_kernels(ggpu);
    for (size_t s = 0; s < sizeof EW_SIZES / sizeof *EW_SIZES; s++) {
        const int64_t n = EW_SIZES[s];
        float *x = rand_vec(n, -3, 3), *y = rand_vec(n, -3, 3);
        plant_specials(x, n);
        char what[96];
        for (int d = 0; d < 3; d++) {
            for (int e = 0; e < 3; e++) {
                struct pair X = up(ACT[d], 1, n, x), Y = up(ACT[e], 1, n, y);
                /* convert: every dtype pair (same dtype: a copy) */
                kc->convert(gcpu, Y.c, X.c);
                kg->convert(ggpu, Y.g, X.g);
                snprintf(what, sizeof what, "convert %s->%s n%lld", kdtype_name(ACT[d]),
                         kdtype_name(ACT[e]), (long long)n);
                compare_exact(what, Y);
                pair_free(Y);
                /* residual into a third dtype, then in place (out = a) */
                Y = up(ACT[e], 1, n, y);
                struct pair O = up(ACT[(d + e) % 3], 1, n, y);
                kc->residual_fwd(gcpu, O.c, X.c, Y.c);
                kg->residual_fwd(ggpu, O.g, X.g, Y.g);
                snprintf(what, sizeof what, "residual %s+%s n%lld", kdtype_name(ACT[d]),
                         kdtype_name(ACT[e]), (long long)n);
                compare_exact(what, O);
                kc->residual_fwd(gcpu, X.c, X.c, Y.c);
                kg->residual_fwd(ggpu, X.g, X.g, Y.g);
                compare_exact("residual in place", X);
                pair_free(X), pair_free(Y), pair_free(O);
            }
            struct pair X = up(ACT[d], 1, n, x), F = up(KDT_F32, 1, n, y);
            kc->scale(gcpu, X.c, -0.37f);
            kg->scale(ggpu, X.g, -0.37f);
            snprintf(what, sizeof what, "scale %s n%lld", kdtype_name(ACT[d]), (long long)n);
            compare_exact(what, X);
            kc->accumulate(gcpu, F.c, X.c);
            kg->accumulate(ggpu, F.g, X.g);
            snprintf(what, sizeof what, "accumulate fp32 += %s n%lld", kdtype_name(ACT[d]),
                     (long long)n);
            compare_exact(what, F);
            pair_free(X), pair_free(F);
        }
        free(x), free(y);
    }
}

static void test_count_nonfinite_and_sumsq_match_cpu(void)
{
    NEED_GPU();
    const struct kernels *kc = backend_kernels(gcpu), *kg = backend_kernels(ggpu);
    for (size_t s = 0; s < sizeof EW_SIZES / sizeof *EW_SIZES; s++) {
        const int64_t n = EW_SIZES[s];
        float *x = rand_vec(n, -2, 2);
        for (int d = 0; d < 3; d++) {
            struct pair X = up(ACT[d], 1, n, x);
            /* sums of n squares in double, in different orders: 1e-12 relative */
            double sc = kc->sumsq(gcpu, X.c), sg = kg->sumsq(ggpu, X.g), sg2 = kg->sumsq(ggpu, X.g);
            CHECK_CLOSE(sg, sc, 1e-12, 0.0);
            CHECK_MSG(sg == sg2, "sumsq %s n%lld differs between two runs: %.17g %.17g",
                      kdtype_name(ACT[d]), (long long)n, sg, sg2);
            CHECK(kg->count_nonfinite(ggpu, X.g) == 0);
            pair_free(X);
        }
        plant_specials(x, n);  /* NaN, +inf, -inf and, in fp16, 70000 (overflows to inf) */
        for (int d = 0; d < 3; d++) {
            struct pair X = up(ACT[d], 1, n, x);
            int64_t cc = kc->count_nonfinite(gcpu, X.c), cg = kg->count_nonfinite(ggpu, X.g);
            CHECK_MSG(cg == cc, "count_nonfinite %s n%lld: cuda %lld, cpu %lld", kdtype_name(ACT[d]),
                      (long long)n, (long long)cg, (long long)cc);
            pair_free(X);
        }
        free(x);
    }
}

/* ---------------------------------------------------------------------------------- */
/* optimizers                                                                           */

enum form { F_F32, F_BF16, F_I8 };
static const char *FORM_NAME[] = {"fp32", "bf16", "int8"};

struct spair {
    struct kstate c, g;
    int64_t n;
};

/* state of form f holding the values v (encoded on the CPU, copied to both) */
static struct spair state_up(enum form f, int64_t n, const float *v, int role)
{
    struct spair s;
    memset(&s, 0, sizeof s);
    s.n = n;
    if (f != F_I8) {
        struct pair q = up(f == F_F32 ? KDT_F32 : KDT_BF16, 1, n, v);
        s.c.q = q.c, s.g.q = q.g;
        return s;
    }
    const int64_t nq = (n + 3) / 4, nb = (n + KSTATE_BLOCK - 1) / KSTATE_BLOCK;
    float *zq = calloc((size_t)nq, sizeof(float)), *zs = calloc((size_t)nb, sizeof(float));
    struct pair q = up(KDT_I32, 1, nq, zq), sc = up(KDT_F32, 1, nb, zs);
    s.c.q = q.c, s.g.q = q.g, s.c.scale = sc.c, s.g.scale = sc.g;
    struct pair src = up(KDT_F32, 1, n, v);
    backend_kernels(gcpu)->state_from_f32(gcpu, s.c, src.c, role);
    /* the GPU's copy is the CPU's encoding, byte for byte */
    void *hq = down_raw(gcpu, s.c.q.data, tensor_bytes(s.c.q));
    void *hs = down_raw(gcpu, s.c.scale.data, tensor_bytes(s.c.scale));
    backend_copy_h2d(ggpu, s.g.q.data, hq, tensor_bytes(s.c.q));
    backend_copy_h2d(ggpu, s.g.scale.data, hs, tensor_bytes(s.c.scale));
    free(hq), free(hs), free(zq), free(zs);
    pair_free(src);
    return s;
}

static void state_free(struct spair s)
{
    backend_free_mem(gcpu, s.c.q.data), backend_free_mem(ggpu, s.g.q.data);
    backend_free_mem(gcpu, s.c.scale.data), backend_free_mem(ggpu, s.g.scale.data);
}

/* Compares two states: their decoded values, and for int8 the codes and scales. The
 * kernels repeat the CPU's fp32 operations in its order (no fused multiply-add), so
 * they are expected to agree bit for bit; an int8 code may still differ by one where the
 * companded value lies within rounding of a half (allowed on 1 element in 1000), a
 * bf16 value by one ulp on as few. */
static void compare_state(const char *what, struct spair s, enum form f, int role)
{
    const struct kernels *kc = backend_kernels(gcpu), *kg = backend_kernels(ggpu);
    float *zero = calloc((size_t)s.n, sizeof(float));
    struct pair D = up(KDT_F32, 1, s.n, zero);
    free(zero);
    kc->state_to_f32(gcpu, D.c, s.c, role);
    kg->state_to_f32(ggpu, D.g, s.g, role);
    float *c = down(gcpu, D.c), *g = down(ggpu, D.g);
    float *scale = f == F_I8 ? down(gcpu, s.c.scale) : NULL;
    int64_t off = 0, far = 0;
    for (int64_t i = 0; i < s.n; i++) {
        if ((isnan(c[i]) && isnan(g[i])) || c[i] == g[i]) continue;
        off++;
        /* one step: a bf16 ulp, or one int8 code, which moves a value by at most
         * (2*127-1)/127^2 (signed) or 4/255 (second moment) of the block's scale */
        double step = f == F_BF16 ? fabs(c[i]) / 128
                      : f == F_I8 ? 0.016 * fabs(scale[i / KSTATE_BLOCK]) : 0;
        if (!(fabs((double)g[i] - c[i]) <= step) && far++ < 5)
            CHECK_MSG(0, "%s[%lld]: cuda %.9g, cpu %.9g", what, (long long)i, g[i], c[i]);
    }
    free(scale);
    CHECK_MSG(f == F_F32 ? off == 0 : off * 1000 <= s.n,
              "%s: %lld of %lld state values differ from the CPU's", what, (long long)off,
              (long long)s.n);
    if (f == F_I8) {  /* NaN blocks in the same places */
        float *sc = down(gcpu, s.c.scale), *sg = down(ggpu, s.g.scale);
        for (int64_t b = 0; b < tensor_numel(s.c.scale); b++)
            CHECK_MSG(isnan(sc[b]) == isnan(sg[b]), "%s: block %lld scale cuda %g, cpu %g", what,
                      (long long)b, sg[b], sc[b]);
        free(sc), free(sg);
    }
    free(c), free(g);
    pair_free(D);
}

static const int64_t OPT_SIZES[] = {1, 768, 1000, 70001};

/* the parameters: exactly equal expected; 2 ulps allowed in case the host compiler
 * reorders the CPU's expression (it does not with -std=c11's -ffp-contract=off) */
#define P_RTOL (2.0 / 8388608)

static void test_adamw_matches_cpu_bit_for_bit(void)
{
    NEED_GPU();
    const struct kernels *kc = backend_kernels(gcpu), *kg = backend_kernels(ggpu);
    for (size_t s = 0; s < sizeof OPT_SIZES / sizeof *OPT_SIZES; s++) {
        const int64_t n = OPT_SIZES[s];
        float *p = rand_vec(n, -1, 1), *gr = rand_vec(n, -1, 1), *m = rand_vec(n, -0.1f, 0.1f),
              *v = rand_vec(n, 0, 0.01f);
        struct pair P = up(KDT_F32, 1, n, p), G = up(KDT_F32, 1, n, gr), Mm = up(KDT_F32, 1, n, m),
                    V = up(KDT_F32, 1, n, v);
        for (int t = 1; t <= 3; t++) {
            kc->adamw(gcpu, P.c, G.c, Mm.c, V.c, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t);
            kg->adamw(ggpu, P.g, G.g, Mm.g, V.g, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t);
        }
        compare("adamw p", P, P_RTOL, 0);
        compare("adamw m", Mm, P_RTOL, 0);
        compare("adamw v", V, P_RTOL, 0);
        pair_free(P), pair_free(G), pair_free(Mm), pair_free(V);
        free(p), free(gr), free(m), free(v);
    }
}

/* grad values with a NaN in block 1 (when there is one): an int8 state's scale turns NaN */
static float *grads_with_nan(int64_t n)
{
    float *g = rand_vec(n, -1, 1);
    if (n > KSTATE_BLOCK + 3) g[KSTATE_BLOCK + 3] = NAN;
    return g;
}

static void test_adamw_state_and_lamb_match_cpu_on_every_form(void)
{
    NEED_GPU();
    const struct kernels *kc = backend_kernels(gcpu), *kg = backend_kernels(ggpu);
    const enum form FM[][2] = {{F_F32, F_F32}, {F_BF16, F_BF16}, {F_I8, F_I8}, {F_BF16, F_I8}};
    for (size_t s = 0; s < sizeof OPT_SIZES / sizeof *OPT_SIZES; s++) {
        const int64_t n = OPT_SIZES[s];
        for (size_t f = 0; f < sizeof FM / sizeof *FM; f++) {
            float *p = rand_vec(n, -1, 1), *gr = grads_with_nan(n), *gok = rand_vec(n, -1, 1),
                  *m = rand_vec(n, -0.1f, 0.1f), *v = rand_vec(n, 0, 0.01f);
            char what[96];
            /* AdamW: two clean steps, then one with the NaN gradient */
            struct pair P = up(KDT_F32, 1, n, p), G = up(KDT_F32, 1, n, gok),
                        GN = up(KDT_F32, 1, n, gr);
            struct spair Ms = state_up(FM[f][0], n, m, 0), Vs = state_up(FM[f][1], n, v, 1);
            for (int t = 1; t <= 3; t++) {
                struct pair g = t == 3 ? GN : G;
                kc->adamw_state(gcpu, P.c, g.c, Ms.c, Vs.c, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f,
                                1.0f, t);
                kg->adamw_state(ggpu, P.g, g.g, Ms.g, Vs.g, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f,
                                1.0f, t);
            }
            snprintf(what, sizeof what, "adamw_state %s/%s n%lld", FORM_NAME[FM[f][0]],
                     FORM_NAME[FM[f][1]], (long long)n);
            compare(what, P, FM[f][0] == F_F32 ? P_RTOL : 1e-5, FM[f][0] == F_F32 ? 0 : 1e-7);
            compare_state(what, Ms, FM[f][0], 0);
            compare_state(what, Vs, FM[f][1], 1);
            state_free(Ms), state_free(Vs), pair_free(P);

            /* LAMB over three owned ranges: all, a middle piece, none */
            const int64_t own[3][2] = {{0, n}, {n / 3, n / 2}, {n / 2, 0}};
            for (int o = 0; o < 3; o++) {
                P = up(KDT_F32, 1, n, p);
                Ms = state_up(FM[f][0], n, m, 0), Vs = state_up(FM[f][1], n, v, 1);
                double rc = kc->lamb_moments(gcpu, P.c, G.c, Ms.c, Vs.c, 0.9f, 0.999f, 1e-6f,
                                             0.01f, 0.5f, 2, own[o][0], own[o][1]);
                double rg = kg->lamb_moments(ggpu, P.g, G.g, Ms.g, Vs.g, 0.9f, 0.999f, 1e-6f,
                                             0.01f, 0.5f, 2, own[o][0], own[o][1]);
                /* the same r values summed in double in another order */
                CHECK_MSG(fabs(rg - rc) <= 1e-9 * fabs(rc), "lamb_moments %s n%lld own %lld+%lld: "
                          "cuda %.17g cpu %.17g", FORM_NAME[FM[f][0]], (long long)n,
                          (long long)own[o][0], (long long)own[o][1], rg, rc);
                kc->lamb_apply(gcpu, P.c, Ms.c, Vs.c, 1e-3f, 0.9f, 0.999f, 1e-6f, 0.01f, 2);
                kg->lamb_apply(ggpu, P.g, Ms.g, Vs.g, 1e-3f, 0.9f, 0.999f, 1e-6f, 0.01f, 2);
                snprintf(what, sizeof what, "lamb %s/%s n%lld", FORM_NAME[FM[f][0]],
                         FORM_NAME[FM[f][1]], (long long)n);
                compare(what, P, P_RTOL, 0);
                compare_state(what, Ms, FM[f][0], 0);
                compare_state(what, Vs, FM[f][1], 1);
                state_free(Ms), state_free(Vs), pair_free(P);
            }
            pair_free(G), pair_free(GN);
            free(p), free(gr), free(gok), free(m), free(v);
        }
    }
}

static void test_lars_and_sgd_match_cpu_on_every_form(void)
{
    NEED_GPU();
    const struct kernels *kc = backend_kernels(gcpu), *kg = backend_kernels(ggpu);
    for (size_t s = 0; s < sizeof OPT_SIZES / sizeof *OPT_SIZES; s++) {
        const int64_t n = OPT_SIZES[s];
        for (int f = 0; f < 3; f++) {
            float *p = rand_vec(n, -1, 1), *gr = grads_with_nan(n), *m = rand_vec(n, -0.1f, 0.1f);
            char what[96];
            for (int lars = 0; lars < 2; lars++) {
                struct pair P = up(KDT_F32, 1, n, p), G = up(KDT_F32, 1, n, gr);
                struct spair Ms = state_up((enum form)f, n, m, 0);
                for (int t = 0; t < 2; t++) {
                    if (lars) {
                        kc->lars_update(gcpu, P.c, G.c, Ms.c, 0.1f, 0.02f, 0.9f, 1e-4f, 0.5f);
                        kg->lars_update(ggpu, P.g, G.g, Ms.g, 0.1f, 0.02f, 0.9f, 1e-4f, 0.5f);
                    } else {
                        kc->sgd_update(gcpu, P.c, G.c, Ms.c, 0.01f, 0.9f, 1e-4f, 0.5f);
                        kg->sgd_update(ggpu, P.g, G.g, Ms.g, 0.01f, 0.9f, 1e-4f, 0.5f);
                    }
                }
                snprintf(what, sizeof what, "%s %s n%lld", lars ? "lars" : "sgd", FORM_NAME[f],
                         (long long)n);
                compare(what, P, f == F_F32 ? P_RTOL : 1e-5, f == F_F32 ? 0 : 1e-6);
                compare_state(what, Ms, (enum form)f, 0);
                state_free(Ms), pair_free(P), pair_free(G);
            }
            free(p), free(gr), free(m);
        }
    }
}

/* state_from_f32 on the GPU gives the CPU's codes and scales (a zero block, a NaN block,
 * a tail), and decoding then encoding again changes nothing (checkpoint round trip) */
static void test_state_conversion_matches_cpu_and_round_trips(void)
{
    NEED_GPU();
    const struct kernels *kc = backend_kernels(gcpu), *kg = backend_kernels(ggpu);
    const int64_t n = 5 * KSTATE_BLOCK + 77;
    for (int role = 0; role < 2; role++) {
        float *v = rand_vec(n, role ? 0 : -1, 1);
        for (int j = 0; j < KSTATE_BLOCK; j++) v[KSTATE_BLOCK + j] = 0.0f;  /* block 1: zeros */
        v[2 * KSTATE_BLOCK + 9] = NAN;                                      /* block 2: NaN */
        v[3 * KSTATE_BLOCK + 1] = role ? 1e-30f : -1e-30f;                   /* tiny values */
        for (int f = 1; f < 3; f++) {
            struct spair S = state_up((enum form)f, n, v, role);
            struct pair src = up(KDT_F32, 1, n, v);
            kg->state_from_f32(ggpu, S.g, src.g, role);  /* the GPU encodes for itself */
            char what[64];
            snprintf(what, sizeof what, "state_from_f32 %s role %d", FORM_NAME[f], role);
            compare_state(what, S, (enum form)f, role);
            if (f == F_I8) {
                struct pair q = {S.c.q, S.g.q};
                void *hc = down_raw(gcpu, q.c.data, (size_t)n), *hg = down_raw(ggpu, q.g.data, (size_t)n);
                int64_t diff = 0;
                for (int64_t i = 0; i < n; i++) diff += ((int8_t *)hc)[i] != ((int8_t *)hg)[i];
                CHECK_MSG(diff * 1000 <= n, "%s: %lld of %lld codes differ", what, (long long)diff,
                          (long long)n);
                free(hc), free(hg);
            }
            /* decode on the GPU, encode again: the same bytes */
            void *before = down_raw(ggpu, S.g.q.data, tensor_bytes(S.g.q));
            kg->state_to_f32(ggpu, src.g, S.g, role);
            kg->state_from_f32(ggpu, S.g, src.g, role);
            void *after = down_raw(ggpu, S.g.q.data, tensor_bytes(S.g.q));
            CHECK_MSG(memcmp(before, after, tensor_bytes(S.g.q)) == 0,
                      "%s: decoding and encoding again changed the state", what);
            free(before), free(after);
            state_free(S), pair_free(src);
            (void)kc;
        }
        free(v);
    }
}

/* ---------------------------------------------------------------------------------- */
/* the backend: pool, copies, events, init                                              */

static void test_copies_memset_and_events(void)
{
    NEED_GPU();
    const size_t sizes[] = {1, 3, 4096, 1000001};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        const size_t n = sizes[s];
        unsigned char *h = malloc(n), *back = malloc(n);
        for (size_t i = 0; i < n; i++) h[i] = (unsigned char)(i * 131 + 7);
        void *d1 = backend_alloc(ggpu, n), *d2 = backend_alloc(ggpu, n);
        backend_copy_h2d(ggpu, d1, h, n);
        backend_copy_d2d(ggpu, d2, d1, n);
        memset(back, 0, n);
        backend_copy_d2h(ggpu, back, d2, n);
        CHECK_MSG(memcmp(back, h, n) == 0, "%zu bytes did not round trip", n);
        backend_memset(ggpu, d2, 0xab, n > 2 ? n - 2 : n);
        backend_copy_d2h(ggpu, back, d2, n);
        int ok = 1;
        for (size_t i = 0; i < n; i++) ok &= back[i] == (n > 2 && i >= n - 2 ? h[i] : 0xab);
        CHECK_MSG(ok, "memset of %zu bytes", n);
        backend_free_mem(ggpu, d1), backend_free_mem(ggpu, d2);
        free(h), free(back);
    }
    /* events: elapsed time of queued work is positive and finite */
    struct backend_event *e0 = backend_event_new(ggpu), *e1 = backend_event_new(ggpu);
    const size_t big = 64 << 20;
    void *d = backend_alloc(ggpu, big);
    backend_event_record(ggpu, e0);
    for (int i = 0; i < 20; i++) backend_memset(ggpu, d, i, big);
    backend_event_record(ggpu, e1);
    double dt = backend_event_elapsed(ggpu, e0, e1);
    CHECK_MSG(dt > 0 && dt < 10, "elapsed %g s", dt);
    backend_event_free(ggpu, e0), backend_event_free(ggpu, e1);
    backend_free_mem(ggpu, d);
    backend_synchronize(ggpu);
}

/* From pinned host memory the copy must be done when backend_copy_h2d returns: the
 * source is changed right after, and the device must hold the old bytes. */
static void test_h2d_from_pinned_memory_is_done_on_return(void)
{
    NEED_REAL_GPU();
    const size_t n = 32 << 20;
    unsigned char *h = NULL;
    CHECK(cudaMallocHost((void **)&h, n) == cudaSuccess);
    if (!h) return;
    memset(h, 0x5a, n);
    void *d = backend_alloc(ggpu, n);
    backend_copy_h2d(ggpu, d, h, n);
    memset(h, 0x00, n);
    unsigned char *back = malloc(n);
    backend_copy_d2h(ggpu, back, d, n);
    int ok = 1;
    for (size_t i = 0; i < n; i += 4093) ok &= back[i] == 0x5a;
    CHECK(ok);
    free(back);
    backend_free_mem(ggpu, d);
    cudaFreeHost(h);
}

/* A fresh backend with a pool: blocks inside it, aligned, counted; a training step's
 * pattern (grow a workspace, come and go) reuses it; a second reserve is refused; a
 * reserve larger than the GPU's free memory is refused naming both. */
static void test_pool_serves_allocations_after_reserve(void)
{
    NEED_REAL_GPU();
    char err[768];
    struct backend *b = backend_init(KDEV_CUDA, 0, err, sizeof err);
    CHECK_MSG(b != NULL, "backend_init: %s", err);
    if (!b) return;
    struct cuda_ctx *c = cuda_ctx_of(b);
    void *early = backend_alloc(b, 1000);  /* before the reserve: straight from the driver */
    const size_t size = 64 << 20;
    CHECK(backend_reserve(b, size, err, sizeof err) == 0);
    CHECK(c->pool_base != NULL && c->pool.size == size);
    CHECK(backend_reserve(b, size, err, sizeof err) == -1 && strstr(err, "already reserved"));
    const char *base = c->pool_base;
    void *blk[16];
    for (int i = 0; i < 16; i++) {
        blk[i] = backend_alloc(b, (size_t)(i + 1) * 100000 + 3);
        CHECK((const char *)blk[i] >= base && (const char *)blk[i] < base + size);
        CHECK((uintptr_t)blk[i] % POOL_ALIGN == 0);
    }
    for (int i = 0; i < 16; i += 2) backend_free_mem(b, blk[i]);
    for (int step = 0; step < 100; step++) {  /* workspace growth and temporaries */
        void *ws = backend_workspace(b, 0, (size_t)(step % 10 + 1) << 16);
        void *tmp = backend_alloc(b, 12345);
        CHECK((const char *)ws >= base && (const char *)tmp >= base);
        backend_free_mem(b, tmp);
    }
    for (int i = 1; i < 16; i += 2) backend_free_mem(b, blk[i]);
    backend_free_mem(b, early);
    struct backend_mem ms;
    backend_mem_stats(b, &ms);
    CHECK(ms.n_allocs == 1);  /* the workspace slot */
    backend_free(b);

    b = backend_init(KDEV_CUDA, 0, err, sizeof err);
    if (!b) return;
    size_t free_b = 0, total_b = 0;
    CHECK(cudaMemGetInfo(&free_b, &total_b) == cudaSuccess);
    CHECK(backend_reserve(b, free_b + ((size_t)1 << 30), err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "GiB free") && strstr(err, "needs") && strstr(err, "\nHINT: "),
              "message: %s", err);
    backend_free(b);
}

/* Running out of the pool aborts with the sizes and the hint: run in a child process
 * (this binary with --exhaust-pool), whose output is read here. */
static void test_pool_exhaustion_names_sizes_and_hint(void)
{
    NEED_REAL_GPU();
    char self[4096], cmd[4200];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(len > 0);
    if (len <= 0) return;
    self[len] = '\0';
    snprintf(cmd, sizeof cmd, "'%s' --exhaust-pool 2>&1", self);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    if (!f) return;
    char out[8192];
    size_t got = fread(out, 1, sizeof out - 1, f);
    out[got] = '\0';
    int status = pclose(f);
    CHECK(status != 0);
    CHECK_MSG(strstr(out, "cannot hold a block of 16777216 bytes") &&
              strstr(out, "largest free range is 8388608 bytes") &&
              strstr(out, "HINT: ") && strstr(out, "TRIDENT_CUDA_POOL_MARGIN"),
              "child said: %s", out);
}

static int exhaust_pool(void)
{
    char err[512];
    struct backend *b = backend_init(KDEV_CUDA, 0, err, sizeof err);
    if (!b || backend_reserve(b, 16 << 20, err, sizeof err) != 0) {
        fprintf(stderr, "setup failed: %s\n", err);
        return 3;
    }
    backend_alloc(b, 8 << 20);
    backend_alloc(b, 16 << 20);  /* aborts */
    return 0;
}

/* A rank beyond the node's GPUs is refused (one rank per GPU), with the hint. */
static void test_a_rank_without_its_own_gpu_is_refused(void)
{
    NEED_REAL_GPU();
    int n = 0;
    CHECK(cudaGetDeviceCount(&n) == cudaSuccess);
    char err[512];
    struct backend *b = backend_init(KDEV_CUDA, n, err, sizeof err);
    CHECK(b == NULL);
    backend_free(b);
    CHECK_MSG(strstr(err, "no GPU of its own") && strstr(err, "HINT: run one rank per GPU") &&
              strstr(err, "--ntasks-per-node"), "message: %s", err);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--exhaust-pool") == 0) return exhaust_pool();
    unsetenv("TRIDENT_CUDA_TF32");  /* fp32 GEMMs in fp32: the tolerances assume it */
    char err[512] = "";
    gcpu = backend_init(KDEV_CPU, 0, err, sizeof err);
    if (!gcpu) {
        fprintf(stderr, "cannot open the CPU backend: %s\n", err);
        return 1;
    }
    const char *self = getenv("TRIDENT_CUDATEST_SELF");
    self_check = self && strcmp(self, "1") == 0;
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (self_check) {
        ggpu = backend_init(KDEV_CPU, 0, err, sizeof err);
    } else if (e != cudaSuccess || n_dev == 0) {
        snprintf(no_gpu, sizeof no_gpu, "no CUDA device: %s",
                 e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
    } else {
        ggpu = backend_init(KDEV_CUDA, 0, err, sizeof err);
        if (!ggpu) snprintf(no_gpu, sizeof no_gpu, "the CUDA backend did not open: %s", err);
    }
    RUN(test_matmul_fwd_matches_cpu_for_every_dtype_shape_and_bias);
    RUN(test_matmul_bwd_matches_cpu_and_accumulates);
    RUN(test_dbias_is_deterministic);
    RUN(test_gemm_plans_are_cached_and_named);
    RUN(test_elementwise_kernels_match_cpu_bit_for_bit);
    RUN(test_count_nonfinite_and_sumsq_match_cpu);
    RUN(test_adamw_matches_cpu_bit_for_bit);
    RUN(test_adamw_state_and_lamb_match_cpu_on_every_form);
    RUN(test_lars_and_sgd_match_cpu_on_every_form);
    RUN(test_state_conversion_matches_cpu_and_round_trips);
    RUN(test_copies_memset_and_events);
    RUN(test_h2d_from_pinned_memory_is_done_on_return);
    RUN(test_pool_serves_allocations_after_reserve);
    RUN(test_pool_exhaustion_names_sizes_and_hint);
    RUN(test_a_rank_without_its_own_gpu_is_refused);
    backend_free(ggpu);
    backend_free(gcpu);
    return test_summary();
}

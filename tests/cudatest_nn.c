/* cudatest_nn.c — the CUDA backend's neural-network kernels (LayerNorm, GELU, attention,
 * embedding, cross-entropy) against the CPU backend, the reference, on the same random
 * data, in fp32, bf16 and fp16, at odd shapes (T not a multiple of a tile, few rows, a
 * vocabulary shard with padding); the flash attention also at T = 2048 against a
 * double-precision computation on the host for a few rows. Without a CUDA device every
 * case is skipped, by name.
 *
 * Both backends get the same bytes (16-bit inputs are rounded once on the host), so they
 * differ only by summation order and by the rounding of a 16-bit result, which sets the
 * tolerances (tol_of): fp32 results agree to a few ulps of the sums involved; a 16-bit
 * result may round to the neighbouring value when the two fp32 results straddle a
 * rounding boundary, so 16-bit outputs are allowed 2 ulps of their dtype (bf16 2^-7
 * relative, fp16 2^-10) plus an absolute floor for values near 0.
 *
 * TRIDENT_CUDATEST_SELF=1 puts a second CPU backend in the GPU's place, to check the suite
 * itself (data, shapes, references, tolerances) on a machine without a GPU; the checks
 * that only mean something on CUDA (its log-sum-exp, its reproducibility) are then left
 * out, and the CPU's form of `att` and scratch is used on both sides.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "backend.h"
#include "convert.h"
#include "test.h"

static const enum kdtype dts[] = {KDT_F32, KDT_BF16, KDT_F16};

/* The two backends of one test; gpu NULL: skip, with the reason. */
struct pair {
    struct backend *cpu, *gpu;
    int self;         /* gpu is a CPU backend (TRIDENT_CUDATEST_SELF=1) */
    enum kdevice gdev;  /* the device gpu's attention state is shaped for */
    char why[256];
};

static int pair_open(struct pair *p)
{
    memset(p, 0, sizeof *p);
    char err[512];
    const char *self = getenv("TRIDENT_CUDATEST_SELF");
    if (self && strcmp(self, "1") == 0) {
        p->self = 1;
        p->gdev = KDEV_CPU;
        p->cpu = backend_init(KDEV_CPU, 0, err, sizeof err);
        p->gpu = backend_init(KDEV_CPU, 0, err, sizeof err);
        CHECK_MSG(p->cpu && p->gpu, "backend_init(cpu): %s", err);
        snprintf(p->why, sizeof p->why, "a CPU backend did not open");
        return p->cpu && p->gpu;
    }
    p->gdev = KDEV_CUDA;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(p->why, sizeof p->why, "no CUDA device: %s",
                 e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount reports 0");
        return 0;
    }
    p->cpu = backend_init(KDEV_CPU, 0, err, sizeof err);
    CHECK_MSG(p->cpu != NULL, "backend_init(cpu): %s", err);
    p->gpu = backend_init(KDEV_CUDA, 0, err, sizeof err);
    CHECK_MSG(p->gpu != NULL, "backend_init(cuda) with a device present: %s", err);
    if (!p->cpu || !p->gpu) {
        snprintf(p->why, sizeof p->why, "a backend did not open");
        return 0;
    }
    return 1;
}

static void pair_close(struct pair *p)
{
    if (p->cpu) backend_free(p->cpu);
    if (p->gpu) backend_free(p->gpu);
}

#define OPEN_OR_SKIP(p)                                                                  \
    struct pair p;                                                                       \
    if (!pair_open(&p)) {                                                                \
        pair_close(&p);                                                                  \
        if (test_cur_failed) return;                                                     \
        SKIP("%s", p.why);                                                               \
    }

/* ---------------------------------------------------------------------------------- */
/* tensors on both backends                                                             */

/* One logical tensor: the same bytes on the CPU (c) and the GPU (g). */
struct twin {
    struct tensor c, g;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void)  /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / (1 << 23))) - 1.0f;
}

static void to_bytes(void *dst, enum kdtype dt, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (dt == KDT_BF16) ((uint16_t *)dst)[i] = cvt_f32_to_bf16_1(src[i]);
        else if (dt == KDT_F16) ((uint16_t *)dst)[i] = cvt_f32_to_f16_1(src[i]);
        else if (dt == KDT_I32) ((int32_t *)dst)[i] = (int32_t)src[i];
        else ((float *)dst)[i] = src[i];
    }
}

static void from_bytes(float *dst, enum kdtype dt, const void *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (dt == KDT_BF16) dst[i] = cvt_bf16_to_f32_1(((const uint16_t *)src)[i]);
        else if (dt == KDT_F16) dst[i] = cvt_f16_to_f32_1(((const uint16_t *)src)[i]);
        else if (dt == KDT_I32) dst[i] = (float)((const int32_t *)src)[i];
        else dst[i] = ((const float *)src)[i];
    }
}

/* a [rows][cols] tensor of dtype dt holding vals (rounded to dt) on both, or zeros */
static struct twin twin_new(struct pair *p, enum kdtype dt, int64_t rows, int64_t cols,
                            const float *vals)
{
    struct twin t;
    const int64_t n = rows * cols;
    const size_t bytes = (size_t)n * kdtype_size(dt);
    void *h = calloc(1, bytes ? bytes : 1);
    if (vals) to_bytes(h, dt, vals, n);
    t.c = tensor_2d(backend_alloc(p->cpu, bytes), dt, rows, cols);
    t.g = tensor_2d(backend_alloc(p->gpu, bytes), dt, rows, cols);
    backend_copy_h2d(p->cpu, t.c.data, h, bytes);
    backend_copy_h2d(p->gpu, t.g.data, h, bytes);
    free(h);
    return t;
}

/* n random values in [-scale, scale) */
static float *rand_vals(int64_t n, float scale)
{
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = scale * frand();
    return v;
}

static struct twin twin_rand(struct pair *p, enum kdtype dt, int64_t rows, int64_t cols,
                             float scale)
{
    float *v = rand_vals(rows * cols, scale);
    struct twin t = twin_new(p, dt, rows, cols, v);
    free(v);
    return t;
}

static void twin_free(struct pair *p, struct twin *t)
{
    backend_free_mem(p->cpu, t->c.data);
    backend_free_mem(p->gpu, t->g.data);
}

/* the values of t on backend b, widened to fp32 (malloc'ed) */
static float *fetch(struct backend *b, struct tensor t)
{
    const int64_t n = tensor_numel(t);
    const size_t bytes = (size_t)n * kdtype_size(t.dt);
    void *h = malloc(bytes ? bytes : 1);
    backend_synchronize(b);
    backend_copy_d2h(b, h, t.data, bytes);
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    from_bytes(v, t.dt, h, n);
    free(h);
    return v;
}

/* Tolerance of a result of dtype dt whose fp32 computation has relative error rtol32. */
struct tol {
    double rtol, atol;
};
static struct tol tol_of(enum kdtype dt, double rtol32, double atol32)
{
    struct tol t = {rtol32, atol32};
    if (dt == KDT_BF16) t = (struct tol){rtol32 + 2.0 / 256, atol32 + 2.0 / 256 * 1e-2};
    if (dt == KDT_F16) t = (struct tol){rtol32 + 2.0 / 2048, atol32 + 2.0 / 2048 * 1e-2};
    return t;
}

/* GPU vs CPU, element by element: |g - c| <= atol * amax + rtol * |c|, amax the largest
 * |c| (a scale for values near 0). Reports the worst element. */
static void compare(const char *what, struct pair *p, struct twin t, struct tol tol)
{
    const int64_t n = tensor_numel(t.c);
    float *c = fetch(p->cpu, t.c), *g = fetch(p->gpu, t.g);
    double amax = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(c[i])) amax = fmax(amax, fabs((double)c[i]));
    int64_t worst = -1;
    double worst_excess = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)g[i] - (double)c[i]);
        const double lim = tol.atol * (amax > 1.0 ? amax : 1.0) + tol.rtol * fabs((double)c[i]);
        const int bad = !(d <= lim) && !(isinf(c[i]) && c[i] == g[i]);
        if (bad && (worst < 0 || d - lim > worst_excess)) {
            worst = i;
            worst_excess = d - lim;
        }
    }
    CHECK_MSG(worst < 0, "%s (%s): element %lld of %lld: cuda %.9g, cpu %.9g (rtol %g, atol %g)",
              what, kdtype_name(t.c.dt), (long long)worst, (long long)n,
              worst >= 0 ? g[worst] : 0.0, worst >= 0 ? c[worst] : 0.0, tol.rtol, tol.atol);
    free(c);
    free(g);
}

/* the GPU tensor is bitwise equal to the host bytes of a previous fetch */
static int same_bits(struct backend *b, struct tensor t, const float *prev)
{
    float *v = fetch(b, t);
    int same = memcmp(v, prev, sizeof(float) * (size_t)tensor_numel(t)) == 0;
    free(v);
    return same;
}

/* ---------------------------------------------------------------------------------- */
/* LayerNorm                                                                            */

static void test_layernorm_matches_cpu_in_every_dtype(void)
{
    OPEN_OR_SKIP(p);
    const struct kernels *kc = backend_kernels(p.cpu), *kg = backend_kernels(p.gpu);
    const int64_t shapes[][2] = {{37, 100}, {5, 768}, {1, 33}, {300, 64}};
    for (size_t s = 0; s < 4; s++)
        for (int d = 0; d < 3; d++) {
            const enum kdtype dt = dts[d];
            const int64_t N = shapes[s][0], C = shapes[s][1];
            struct twin inp = twin_rand(&p, dt, N, C, 2.0f), w = twin_rand(&p, dt, 1, C, 1.0f);
            struct twin bias = twin_rand(&p, dt, 1, C, 0.5f), out = twin_new(&p, dt, N, C, NULL);
            struct twin mean = twin_new(&p, KDT_F32, 1, N, NULL);
            struct twin rstd = twin_new(&p, KDT_F32, 1, N, NULL);
            kc->layernorm_fwd(p.cpu, out.c, mean.c, rstd.c, inp.c, w.c, bias.c);
            kg->layernorm_fwd(p.gpu, out.g, mean.g, rstd.g, inp.g, w.g, bias.g);
            /* fp32 statistics of <= 768 values in another order: ~1e-6 relative */
            compare("layernorm_fwd mean", &p, mean, tol_of(KDT_F32, 1e-5, 1e-6));
            compare("layernorm_fwd rstd", &p, rstd, tol_of(KDT_F32, 1e-5, 1e-6));
            compare("layernorm_fwd out", &p, out, tol_of(dt, 2e-5, 2e-6));

            /* backward: dinp accumulates into a residual gradient, dw/db into fp32 sums */
            struct twin dout = twin_rand(&p, dt, N, C, 1.0f), dinp = twin_rand(&p, dt, N, C, 1.0f);
            struct twin dw = twin_rand(&p, KDT_F32, 1, C, 1.0f);
            struct twin db = twin_rand(&p, KDT_F32, 1, C, 1.0f);
            float *dw0 = fetch(p.gpu, dw.g), *db0 = fetch(p.gpu, db.g);
            kc->layernorm_bwd(p.cpu, dinp.c, dw.c, db.c, dout.c, inp.c, w.c, mean.c, rstd.c);
            kg->layernorm_bwd(p.gpu, dinp.g, dw.g, db.g, dout.g, inp.g, w.g, mean.g, rstd.g);
            /* sums over N <= 300 rows / C <= 768 columns in another order */
            compare("layernorm_bwd dinp", &p, dinp, tol_of(dt, 1e-4, 1e-5));
            compare("layernorm_bwd dw", &p, dw, tol_of(KDT_F32, 1e-4, 1e-5));
            compare("layernorm_bwd db", &p, db, tol_of(KDT_F32, 1e-4, 1e-5));

            /* deterministic: the same inputs give the same bits */
            float *dw1 = fetch(p.gpu, dw.g), *db1 = fetch(p.gpu, db.g);
            struct twin dinp2 = twin_new(&p, dt, N, C, NULL);
            backend_copy_h2d(p.gpu, dw.g.data, dw0, sizeof(float) * (size_t)C);
            backend_copy_h2d(p.gpu, db.g.data, db0, sizeof(float) * (size_t)C);
            kg->layernorm_bwd(p.gpu, dinp2.g, dw.g, db.g, dout.g, inp.g, w.g, mean.g, rstd.g);
            CHECK_MSG(same_bits(p.gpu, dw.g, dw1) && same_bits(p.gpu, db.g, db1),
                      "layernorm_bwd dw/db differ between two identical runs (%s)",
                      kdtype_name(dt));
            free(dw0), free(db0), free(dw1), free(db1);
            struct twin *all[] = {&inp, &w, &bias, &out, &mean, &rstd, &dout, &dinp, &dw, &db,
                                  &dinp2};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) twin_free(&p, all[i]);
        }
    pair_close(&p);
}

/* ---------------------------------------------------------------------------------- */
/* GELU                                                                                 */

static void test_gelu_matches_cpu_and_runs_in_place(void)
{
    OPEN_OR_SKIP(p);
    const struct kernels *kc = backend_kernels(p.cpu), *kg = backend_kernels(p.gpu);
    for (int d = 0; d < 3; d++) {
        const enum kdtype dt = dts[d];
        const int64_t n = 1000003;  /* not a multiple of any block; > one grid-stride pass */
        struct twin inp = twin_rand(&p, dt, 1, n, 5.0f), out = twin_new(&p, dt, 1, n, NULL);
        kc->gelu_fwd(p.cpu, out.c, inp.c);
        kg->gelu_fwd(p.gpu, out.g, inp.g);
        /* expf vs the CPU's vectorised exp: a few ulps */
        compare("gelu_fwd", &p, out, tol_of(dt, 1e-5, 1e-7));
        struct twin dout = twin_rand(&p, dt, 1, n, 1.0f), dinp = twin_new(&p, dt, 1, n, NULL);
        kc->gelu_bwd(p.cpu, dinp.c, inp.c, dout.c);
        kg->gelu_bwd(p.gpu, dinp.g, inp.g, dout.g);
        compare("gelu_bwd", &p, dinp, tol_of(dt, 1e-5, 1e-7));
        /* in place: dinp is dout */
        kc->gelu_bwd(p.cpu, dout.c, inp.c, dout.c);
        kg->gelu_bwd(p.gpu, dout.g, inp.g, dout.g);
        compare("gelu_bwd in place", &p, dout, tol_of(dt, 1e-5, 1e-7));
        twin_free(&p, &inp), twin_free(&p, &out), twin_free(&p, &dout), twin_free(&p, &dinp);
    }
    pair_close(&p);
}

/* ---------------------------------------------------------------------------------- */
/* attention                                                                            */

static void attention_case(struct pair *p, enum kdtype dt, int B, int NH, int T, int hs)
{
    const struct kernels *kc = backend_kernels(p->cpu), *kg = backend_kernels(p->gpu);
    const int Cq = NH * hs;
    const int64_t BT = (int64_t)B * T, rows = (int64_t)B * NH * T;
    struct twin qkv = twin_rand(p, dt, BT, 3 * Cq, 1.5f), out = twin_new(p, dt, BT, Cq, NULL);
    struct twin dout = twin_rand(p, dt, BT, Cq, 1.0f), dqkv = twin_new(p, dt, BT, 3 * Cq, NULL);
    /* each backend keeps its own form of att and scratch */
    const int64_t ac = kernels_attention_saved_cols(KDEV_CPU, T, dt);
    const int64_t ag = kernels_attention_saved_cols(p->gdev, T, dt);
    struct tensor att_c = tensor_2d(backend_alloc(p->cpu, (size_t)(rows * ac) * kdtype_size(dt)),
                                    dt, rows, ac);
    struct tensor att_g = tensor_2d(backend_alloc(p->gpu, (size_t)(rows * ag) * kdtype_size(dt)),
                                    dt, rows, ag);
    const int64_t sc = kernels_attention_scratch_cols(KDEV_CPU, T);
    const int64_t sg = kernels_attention_scratch_cols(p->gdev, T);
    struct tensor scr_c = tensor_2d(backend_alloc(p->cpu, sizeof(float) * (size_t)(rows * sc)),
                                    KDT_F32, rows, sc);
    /* one row more than needed: a scratch sized for a longer micro-batch is allowed */
    struct tensor scr_g = tensor_2d(backend_alloc(p->gpu,
                                                  sizeof(float) * (size_t)((rows + 1) * sg)),
                                    KDT_F32, rows + 1, sg);
    kc->attention_fwd(p->cpu, out.c, att_c, qkv.c, B, NH);
    kg->attention_fwd(p->gpu, out.g, att_g, qkv.g, B, NH);
    char what[128];
    /* softmax-weighted sums over <= T keys, online (rescaled) vs two-pass: ~1e-6 */
    snprintf(what, sizeof what, "attention_fwd out B %d NH %d T %d hs %d", B, NH, T, hs);
    compare(what, p, out, tol_of(dt, 1e-4, 1e-5));
    kc->attention_bwd(p->cpu, dqkv.c, scr_c, dout.c, qkv.c, att_c, B, NH);
    kg->attention_bwd(p->gpu, dqkv.g, scr_g, dout.g, qkv.g, att_g, B, NH);
    /* Gradients are differences (dP - D) of sums: a looser absolute floor in fp32. In 16
     * bits the CPU's backward reads its probabilities rounded to the dtype (its att is a
     * 16-bit tensor) while the CUDA kernels recompute them in fp32 from the log-sum-exp:
     * each P differs by up to half an ulp of the dtype, which a sum over keys of mixed
     * signs turns into an absolute error of that order times the gradient's scale (and
     * more where dP - D cancels). The CUDA kernels' source run on the CPU under a thread
     * emulation of the GPU at these shapes differed from the CPU backend by at most
     * 3.6e-3 (bf16) and 9.5e-4 (fp16) of the largest gradient: the limits leave 2x. */
    struct tol tb = tol_of(dt, 1e-4, 5e-5);
    if (dt == KDT_BF16) tb = (struct tol){1.0 / 64, 1.0 / 128};
    if (dt == KDT_F16) tb = (struct tol){1.0 / 256, 1.0 / 512};
    snprintf(what, sizeof what, "attention_bwd dqkv B %d NH %d T %d hs %d", B, NH, T, hs);
    compare(what, p, dqkv, tb);
    twin_free(p, &qkv), twin_free(p, &out), twin_free(p, &dout), twin_free(p, &dqkv);
    backend_free_mem(p->cpu, att_c.data), backend_free_mem(p->gpu, att_g.data);
    backend_free_mem(p->cpu, scr_c.data), backend_free_mem(p->gpu, scr_g.data);
}

static void test_attention_matches_cpu_for_every_head_size_and_ragged_tiles(void)
{
    OPEN_OR_SKIP(p);
    /* T: 1, below a tile, one past a query tile (16), one past a key tile (32), ragged */
    const int cases[][4] = {{2, 4, 17, 16}, {1, 4, 33, 32}, {2, 2, 100, 64},
                            {1, 2, 70, 128}, {3, 1, 1, 64},  {1, 12, 64, 64}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int d = 0; d < 3; d++)
            attention_case(&p, dts[d], cases[c][0], cases[c][1], cases[c][2], cases[c][3]);
    pair_close(&p);
}

/* Double-precision attention of one head on the host: q, k, v, dO as [T][hs] */
struct head64 {
    int T, hs;
    const double *q, *k, *v, *dO;
    double scale;
};

static double ref_lse(const struct head64 *h, int i)
{
    double mx = -INFINITY;
    for (int j = 0; j <= i; j++) {
        double s = 0;
        for (int d = 0; d < h->hs; d++) s += h->q[i * h->hs + d] * h->k[j * h->hs + d];
        mx = fmax(mx, s * h->scale);
    }
    double sum = 0;
    for (int j = 0; j <= i; j++) {
        double s = 0;
        for (int d = 0; d < h->hs; d++) s += h->q[i * h->hs + d] * h->k[j * h->hs + d];
        sum += exp(s * h->scale - mx);
    }
    return mx + log(sum);
}

static double ref_p(const struct head64 *h, const double *lse, int i, int j)
{
    double s = 0;
    for (int d = 0; d < h->hs; d++) s += h->q[i * h->hs + d] * h->k[j * h->hs + d];
    return exp(s * h->scale - lse[i]);
}

static double ref_dp(const struct head64 *h, int i, int j)
{
    double s = 0;
    for (int d = 0; d < h->hs; d++) s += h->dO[i * h->hs + d] * h->v[j * h->hs + d];
    return s;
}

static void test_attention_at_2048_tokens_matches_double_precision_rows(void)
{
    OPEN_OR_SKIP(p);
    const struct kernels *kg = backend_kernels(p.gpu);
    const int B = 1, NH = 2, T = 2048, hs = 64, Cq = NH * hs;
    float *qkv_h = rand_vals((int64_t)T * 3 * Cq, 2.0f), *dout_h = rand_vals((int64_t)T * Cq, 1.0f);
    struct twin qkv = twin_new(&p, KDT_F32, T, 3 * Cq, qkv_h);
    struct twin dout = twin_new(&p, KDT_F32, T, Cq, dout_h);
    struct tensor out = tensor_2d(backend_alloc(p.gpu, sizeof(float) * T * Cq), KDT_F32, T, Cq);
    struct tensor dqkv = tensor_2d(backend_alloc(p.gpu, sizeof(float) * T * 3 * Cq), KDT_F32, T,
                                   3 * Cq);
    const int64_t ac = kernels_attention_saved_cols(p.gdev, T, KDT_F32);
    const int64_t sc = kernels_attention_scratch_cols(p.gdev, T);
    struct tensor att = tensor_2d(backend_alloc(p.gpu, sizeof(float) * NH * T * ac), KDT_F32,
                                  (int64_t)NH * T, ac);
    struct tensor scr = tensor_2d(backend_alloc(p.gpu, sizeof(float) * NH * T * sc), KDT_F32,
                                  (int64_t)NH * T, sc);
    kg->attention_fwd(p.gpu, out, att, qkv.g, B, NH);
    kg->attention_bwd(p.gpu, dqkv, scr, dout.g, qkv.g, att, B, NH);
    float *out_h = fetch(p.gpu, out), *dq_h = fetch(p.gpu, dqkv), *lse_h = fetch(p.gpu, att);

    const int probe[] = {0, 1, 15, 16, 31, 32, 1000, 2046, 2047};
    const int n_probe = (int)(sizeof probe / sizeof probe[0]);
    double *q = malloc(sizeof(double) * T * hs), *k = malloc(sizeof(double) * T * hs);
    double *v = malloc(sizeof(double) * T * hs), *dO = malloc(sizeof(double) * T * hs);
    double *lse = malloc(sizeof(double) * T), *D = malloc(sizeof(double) * T);
    for (int h = 0; h < NH; h++) {
        for (int t = 0; t < T; t++)
            for (int d = 0; d < hs; d++) {
                q[t * hs + d] = qkv_h[(int64_t)t * 3 * Cq + h * hs + d];
                k[t * hs + d] = qkv_h[(int64_t)t * 3 * Cq + Cq + h * hs + d];
                v[t * hs + d] = qkv_h[(int64_t)t * 3 * Cq + 2 * Cq + h * hs + d];
                dO[t * hs + d] = dout_h[(int64_t)t * Cq + h * hs + d];
            }
        struct head64 hd = {T, hs, q, k, v, dO, 1.0 / sqrt((double)hs)};
        /* every row's lse and D (the key rows' gradients need all queries below them) */
        for (int i = 0; i < T; i++) {
            lse[i] = ref_lse(&hd, i);
            double s = 0;
            for (int j = 0; j <= i; j++) s += ref_p(&hd, lse, i, j) * ref_dp(&hd, i, j);
            D[i] = s;
        }
        /* fp32 against double over up to 2048 keys: the CPU backend's fp32 attention is
         * within 3e-7 of this reference here (TRIDENT_CUDATEST_SELF=1), values are 1e-5..1;
         * the limits leave the GPU's other summation order (online rescaling) an order of
         * magnitude more, and still catch a gradient 0.1 % off */
        for (int pi = 0; pi < n_probe; pi++) {
            const int i = probe[pi];
            if (!p.self) CHECK_CLOSE(lse_h[h * T + i], lse[i], 1e-5, 1e-5);  /* CUDA's own form */
            double o[128] = {0}, dq[128] = {0}, dk[128] = {0}, dv[128] = {0};
            for (int j = 0; j <= i; j++) {
                const double pij = ref_p(&hd, lse, i, j);
                const double ds = pij * (ref_dp(&hd, i, j) - D[i]) * hd.scale;
                for (int d = 0; d < hs; d++) {
                    o[d] += pij * v[j * hs + d];
                    dq[d] += ds * k[j * hs + d];
                }
            }
            const int j = i;  /* the same row as a key: every query at or after it */
            for (int ii = j; ii < T; ii++) {
                const double pij = ref_p(&hd, lse, ii, j);
                const double ds = pij * (ref_dp(&hd, ii, j) - D[ii]) * hd.scale;
                for (int d = 0; d < hs; d++) {
                    dv[d] += pij * dO[ii * hs + d];
                    dk[d] += ds * q[ii * hs + d];
                }
            }
            for (int d = 0; d < hs; d++) {
                const int64_t r = (int64_t)i * 3 * Cq + h * hs + d;
                CHECK_CLOSE(out_h[(int64_t)i * Cq + h * hs + d], o[d], 1e-4, 5e-6);
                CHECK_CLOSE(dq_h[r], dq[d], 2e-4, 2e-5);
                CHECK_CLOSE(dq_h[r + Cq], dk[d], 2e-4, 2e-5);
                CHECK_CLOSE(dq_h[r + 2 * Cq], dv[d], 2e-4, 2e-5);
            }
        }
    }
    free(q), free(k), free(v), free(dO), free(lse), free(D);
    free(out_h), free(dq_h), free(lse_h), free(qkv_h), free(dout_h);
    twin_free(&p, &qkv), twin_free(&p, &dout);
    backend_free_mem(p.gpu, out.data), backend_free_mem(p.gpu, dqkv.data);
    backend_free_mem(p.gpu, att.data), backend_free_mem(p.gpu, scr.data);
    pair_close(&p);
}

static void test_attention_backward_is_bitwise_reproducible(void)
{
    OPEN_OR_SKIP(p);
    if (p.self) {
        pair_close(&p);
        SKIP("TRIDENT_CUDATEST_SELF=1: the CUDA attention's own state is what this checks");
    }
    const struct kernels *kg = backend_kernels(p.gpu);
    const int B = 2, NH = 3, T = 77, hs = 32, Cq = NH * hs;
    struct twin qkv = twin_rand(&p, KDT_BF16, B * T, 3 * Cq, 1.0f);
    struct twin dout = twin_rand(&p, KDT_BF16, B * T, Cq, 1.0f);
    struct tensor out = tensor_2d(backend_alloc(p.gpu, 2 * B * T * Cq), KDT_BF16, B * T, Cq);
    struct tensor dqkv = tensor_2d(backend_alloc(p.gpu, 2 * B * T * 3 * Cq), KDT_BF16, B * T,
                                   3 * Cq);
    struct tensor att = tensor_2d(backend_alloc(p.gpu, 4 * B * NH * T), KDT_BF16, B * NH * T, 2);
    struct tensor scr = tensor_2d(backend_alloc(p.gpu, 4 * B * NH * T), KDT_F32, B * NH * T, 1);
    kg->attention_fwd(p.gpu, out, att, qkv.g, B, NH);
    kg->attention_bwd(p.gpu, dqkv, scr, dout.g, qkv.g, att, B, NH);
    float *first = fetch(p.gpu, dqkv);
    kg->attention_bwd(p.gpu, dqkv, scr, dout.g, qkv.g, att, B, NH);
    CHECK(same_bits(p.gpu, dqkv, first));
    free(first);
    twin_free(&p, &qkv), twin_free(&p, &dout);
    backend_free_mem(p.gpu, out.data), backend_free_mem(p.gpu, dqkv.data);
    backend_free_mem(p.gpu, att.data), backend_free_mem(p.gpu, scr.data);
    pair_close(&p);
}

/* ---------------------------------------------------------------------------------- */
/* embedding                                                                            */

static void test_embedding_matches_cpu_on_a_vocabulary_shard(void)
{
    OPEN_OR_SKIP(p);
    const struct kernels *kc = backend_kernels(p.cpu), *kg = backend_kernels(p.gpu);
    const int B = 3, T = 37, C = 50, Vl = 13, v0 = 10, Tp = 40;
    float tok[3 * 37];
    for (int i = 0; i < B * T; i++) tok[i] = (float)((i * 7 + i / 5) % 40);  /* repeats */
    tok[5] = tok[6] = tok[40] = 12;  /* one token many times, across sequences */
    for (int d = 0; d < 3; d++) {
        const enum kdtype dt = dts[d];
        struct twin tokens = twin_new(&p, KDT_I32, B, T, tok);
        struct twin wte = twin_rand(&p, dt, Vl, C, 1.0f), wpe = twin_rand(&p, dt, Tp, C, 1.0f);
        struct twin out = twin_new(&p, dt, B * T, C, NULL);
        for (int with_wpe = 0; with_wpe < 2; with_wpe++) {
            struct tensor wc = with_wpe ? wpe.c : TENSOR_NONE, wg = with_wpe ? wpe.g : TENSOR_NONE;
            kc->embedding_fwd(p.cpu, out.c, tokens.c, wte.c, wc, v0);
            kg->embedding_fwd(p.gpu, out.g, tokens.g, wte.g, wg, v0);
            /* one fp32 addition and one rounding on both sides: exactly equal */
            compare("embedding_fwd", &p, out, (struct tol){0, 0});
        }
        struct twin dout = twin_rand(&p, dt, B * T, C, 1.0f);
        struct twin dwte = twin_rand(&p, KDT_F32, Vl, C, 1.0f);
        struct twin dwpe = twin_rand(&p, KDT_F32, Tp, C, 1.0f);
        float *dwte0 = fetch(p.gpu, dwte.g);
        kc->embedding_bwd(p.cpu, dwte.c, dwpe.c, dout.c, tokens.c, v0);
        kg->embedding_bwd(p.gpu, dwte.g, dwpe.g, dout.g, tokens.g, v0);
        /* sums of <= 111 rows, (init + sum) vs ((init + g1) + g2 ...): a few ulps */
        compare("embedding_bwd dwte", &p, dwte, tol_of(KDT_F32, 1e-5, 1e-6));
        compare("embedding_bwd dwpe", &p, dwpe, tol_of(KDT_F32, 1e-5, 1e-6));
        /* reproducible, and dwpe absent is skipped */
        float *dwte1 = fetch(p.gpu, dwte.g), *dwpe1 = fetch(p.gpu, dwpe.g);
        backend_copy_h2d(p.gpu, dwte.g.data, dwte0, sizeof(float) * Vl * C);
        kg->embedding_bwd(p.gpu, dwte.g, TENSOR_NONE, dout.g, tokens.g, v0);
        CHECK_MSG(same_bits(p.gpu, dwte.g, dwte1), "embedding_bwd dwte differs between runs");
        CHECK_MSG(same_bits(p.gpu, dwpe.g, dwpe1), "embedding_bwd wrote an absent dwpe");
        free(dwte0), free(dwte1), free(dwpe1);
        struct twin *all[] = {&tokens, &wte, &wpe, &out, &dout, &dwte, &dwpe};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) twin_free(&p, all[i]);
    }
    pair_close(&p);
}

/* ---------------------------------------------------------------------------------- */
/* cross-entropy                                                                        */

static void xent_case(struct pair *p, enum kdtype dt, int N, int Vl, int v0, int V)
{
    const struct kernels *kc = backend_kernels(p->cpu), *kg = backend_kernels(p->gpu);
    float *tg = malloc(sizeof(float) * N);
    for (int n = 0; n < N; n++) tg[n] = (float)((n * 131 + 7) % V);  /* in and out of shard */
    tg[0] = (float)v0;                                 /* the shard's first column */
    if (N > 1) tg[1] = (float)(v0 + Vl - 1 < V ? v0 + Vl - 1 : V - 1);
    struct twin targets = twin_new(p, KDT_I32, 1, N, tg);
    struct twin logits = twin_rand(p, dt, N, Vl, 8.0f);
    struct twin mx = twin_new(p, KDT_F32, 1, N, NULL), se = twin_new(p, KDT_F32, 1, N, NULL);
    struct twin tl = twin_new(p, KDT_F32, 1, N, NULL);
    kc->xent_max(p->cpu, mx.c, logits.c, v0, V);
    kg->xent_max(p->gpu, mx.g, logits.g, v0, V);
    compare("xent_max", p, mx, (struct tol){0, 0});  /* a max is exact */
    kc->xent_sumexp(p->cpu, se.c, logits.c, mx.c, v0, V);
    kg->xent_sumexp(p->gpu, se.g, logits.g, mx.g, v0, V);
    /* up to 12576 terms in another order, expf vs the CPU's exp */
    compare("xent_sumexp", p, se, tol_of(KDT_F32, 2e-5, 0));
    kc->xent_target(p->cpu, tl.c, logits.c, targets.c, v0);
    kg->xent_target(p->gpu, tl.g, logits.g, targets.g, v0);
    compare("xent_target", p, tl, (struct tol){0, 0});
    /* the loss, each side from its own values; padded (real-less) shards give inf rows */
    if (V > v0) {
        const double lc = kc->xent_loss(p->cpu, mx.c, se.c, tl.c);
        const double lg = kg->xent_loss(p->gpu, mx.g, se.g, tl.g);
        CHECK_CLOSE(lg, lc, 1e-5, 1e-6);
    }
    kc->xent_bwd(p->cpu, logits.c, mx.c, se.c, targets.c, 0.25f, v0, V);
    kg->xent_bwd(p->gpu, logits.g, mx.g, se.g, targets.g, 0.25f, v0, V);
    compare("xent_bwd", p, logits, tol_of(dt, 2e-5, 1e-7));
    /* padded columns take no mass: exactly 0 on the GPU */
    float *g = fetch(p->gpu, logits.g);
    const int nr = V - v0 < 0 ? 0 : V - v0 > Vl ? Vl : V - v0;
    for (int n = 0; n < N; n++)
        for (int j = nr; j < Vl; j++)
            CHECK_MSG(g[(int64_t)n * Vl + j] == 0.0f, "xent_bwd: padded column %d of row %d is %g",
                      j, n, g[(int64_t)n * Vl + j]);
    free(g);
    free(tg);
    struct twin *all[] = {&targets, &logits, &mx, &se, &tl};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) twin_free(p, all[i]);
}

static void test_cross_entropy_matches_cpu_with_padded_shards(void)
{
    OPEN_OR_SKIP(p);
    for (int d = 0; d < 3; d++) {
        xent_case(&p, dts[d], 9, 37, 30, 60);             /* 7 padded columns */
        xent_case(&p, dts[d], 3, 12576, 37728, 50257);     /* GPT-2's last shard of 4 */
        xent_case(&p, dts[d], 5, 16, 64, 60);              /* a shard of padding only */
        xent_case(&p, dts[d], 1, 300, 0, 1000);            /* no padding */
    }
    pair_close(&p);
}

static void test_cross_entropy_loss_is_reproducible(void)
{
    OPEN_OR_SKIP(p);
    const struct kernels *kg = backend_kernels(p.gpu);
    const int N = 5000;
    struct twin mx = twin_rand(&p, KDT_F32, 1, N, 3.0f);
    float *sev = rand_vals(N, 1.0f);
    for (int i = 0; i < N; i++) sev[i] = 1.5f + sev[i];  /* > 0 */
    struct twin se = twin_new(&p, KDT_F32, 1, N, sev), tl = twin_rand(&p, KDT_F32, 1, N, 3.0f);
    const double a = kg->xent_loss(p.gpu, mx.g, se.g, tl.g);
    const double b = kg->xent_loss(p.gpu, mx.g, se.g, tl.g);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    /* against the host's double sum of the same fp32 values */
    float *m = fetch(p.gpu, mx.g), *s = fetch(p.gpu, se.g), *t = fetch(p.gpu, tl.g);
    double ref = 0;
    for (int i = 0; i < N; i++) ref += log((double)s[i]) + (double)m[i] - (double)t[i];
    CHECK_CLOSE(a, ref, 1e-12, 1e-9);
    free(m), free(s), free(t), free(sev);
    twin_free(&p, &mx), twin_free(&p, &se), twin_free(&p, &tl);
    pair_close(&p);
}

int main(void)
{
    RUN(test_layernorm_matches_cpu_in_every_dtype);
    RUN(test_gelu_matches_cpu_and_runs_in_place);
    RUN(test_attention_matches_cpu_for_every_head_size_and_ragged_tiles);
    RUN(test_attention_at_2048_tokens_matches_double_precision_rows);
    RUN(test_attention_backward_is_bitwise_reproducible);
    RUN(test_embedding_matches_cpu_on_a_vocabulary_shard);
    RUN(test_cross_entropy_matches_cpu_with_padded_shards);
    RUN(test_cross_entropy_loss_is_reproducible);
    return test_summary();
}

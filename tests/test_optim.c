/* test_optim.c — the optimizers and their state against independent references.
 *
 * LAMB, LARS and SGD with momentum: three optim_step calls on a tiny model (one rank),
 * every tensor checked against a double-precision reference written here from the papers'
 * formulas and the parameter table's decay flags. The model's biases start at zero and
 * wpe is zeroed, so zero tensors (LAMB's trust ratio 1, LARS' local lr 1) are covered.
 * AdamW with bf16 state: every stored moment is the fp32 update rounded to nearest even
 * (a rounding written here, not convert.h's). int8 state: the block-wise codes round-trip
 * within the companding's bound in every block, the largest element of a block exactly,
 * and decoding + encoding again gives the same bits. Every update kernel (AdamW, LAMB's
 * two calls, LARS, SGD) and the conversions on fp32, bf16 and int8 state give the same
 * bits as a scalar reference written here from kernels.h, on random blocks with a NaN
 * block, an inf block, a zero block and a short tail. lr_scaling's factors. The memory
 * plan's bytes of state for each optimizer and form.
 */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "grid.h"
#include "kernels.h"
#include "model.h"
#include "optim.h"
#include "test.h"

static struct backend *cpu_backend(void) {
    static struct backend *be;
    if (!be) be = backend_init(KDEV_CPU, 0, NULL, 0);
    return be;
}

static void *host(struct tensor t) {
    void *p = backend_host_view(cpu_backend(), t.data);
    if (!p) { fprintf(stderr, "test_optim: the backend's memory is not the host's\n"); abort(); }
    return p;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double uniform(void) {  /* [0, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_rng >> 11) * 0x1p-53;
}
static double normal(void) {
    double u = uniform() + 1e-12, v = uniform();
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

static struct config tiny_config(const char *optimizer) {
    struct config c;
    config_defaults(&c);
    c.n_layer = 2; c.n_head = 2; c.n_embd = 16; c.seq_len = 8; c.block_size = 8;
    c.vocab_size = 257; c.micro_batch = 2; c.dp = 1; c.tp = 1; c.pp = 1;
    snprintf(c.optimizer, sizeof c.optimizer, "%s", optimizer);
    c.weight_decay = 0.1f;
    c.momentum = 0.9f;
    return c;
}

/* ------------------------------------------------------------------------------------ */
/* LAMB, LARS, SGD through optim_step against double references                           */

enum { STEPS = 3 };

static void check_optimizer(const char *name) {
    struct config cfg = tiny_config(name);
    struct grid g;
    grid_init(&g, &cfg);
    struct model m;
    model_init(&m, &cfg, &g, cpu_backend(), 1);
    model_init_weights(&m, 1234);
    float *w = host(m.params), *gr = host(m.grads);
    int zeroed = params_find_name(&m.pt, "wpe");
    CHECK(zeroed >= 0);
    const struct param *zp = &m.pt.p[zeroed];
    for (int64_t j = 0; j < zp->n_local; j++) w[zp->offset + j] = 0.0f;
    model_refresh_weights(&m);
    const int64_t n = m.n_local;
    double *rw = calloc((size_t)n, sizeof(double)), *rm = calloc((size_t)n, sizeof(double)),
           *rv = calloc((size_t)n, sizeof(double)), *r = calloc((size_t)n, sizeof(double));
    double *start = malloc(sizeof(double) * (size_t)n);
    for (int64_t j = 0; j < n; j++) rw[j] = start[j] = w[j];
    struct optim o;
    optim_init(&o, &m);
    const double b1 = cfg.beta1, b2 = cfg.beta2, eps = cfg.adam_eps, mu = cfg.momentum;
    const float lr = 0.05f, gs = 0.7f;
    int n_zero_tensors = 0;
    for (int t = 1; t <= STEPS; t++) {
        for (int64_t j = 0; j < n; j++) gr[j] = (float)(0.01 * normal());
        for (int i = 0; i < m.pt.n; i++) {
            const struct param *p = &m.pt.p[i];
            const double wd = p->decay ? cfg.weight_decay : 0.0;
            double *W = rw + p->offset, *M = rm + p->offset, *V = rv + p->offset,
                   *R = r + p->offset;
            const float *G = gr + p->offset;
            double wn = 0, rn = 0, gn = 0;
            for (int64_t j = 0; j < p->n_local; j++) {
                wn += W[j] * W[j];
                gn += (double)G[j] * gs * G[j] * gs;
            }
            wn = sqrt(wn);
            gn = sqrt(gn);
            if (t == 1 && wn == 0) n_zero_tensors++;
            if (!strcmp(name, "lamb")) {
                for (int64_t j = 0; j < p->n_local; j++) {
                    double gj = (double)G[j] * gs;
                    M[j] = b1 * M[j] + (1 - b1) * gj;
                    V[j] = b2 * V[j] + (1 - b2) * gj * gj;
                    R[j] = (M[j] / (1 - pow(b1, t))) / (sqrt(V[j] / (1 - pow(b2, t))) + eps) +
                           wd * W[j];
                    rn += R[j] * R[j];
                }
                rn = sqrt(rn);
                double phi = wn > 0 && rn > 0 ? wn / rn : 1.0;
                for (int64_t j = 0; j < p->n_local; j++) W[j] -= lr * phi * R[j];
            } else if (!strcmp(name, "lars")) {
                double llr = 1.0;
                if (p->decay && wn > 0 && gn > 0) llr = 0.001 * wn / (gn + wd * wn);
                for (int64_t j = 0; j < p->n_local; j++) {
                    M[j] = mu * M[j] + llr * ((double)G[j] * gs + wd * W[j]);
                    W[j] -= lr * M[j];
                }
            } else {
                for (int64_t j = 0; j < p->n_local; j++) {
                    M[j] = mu * M[j] + (double)G[j] * gs + wd * W[j];
                    W[j] -= lr * M[j];
                }
            }
        }
        optim_step(&o, &m, lr, gs);
    }
    CHECK(n_zero_tensors >= 2);  /* wpe and the biases */
    int bad = 0;
    for (int i = 0; i < m.pt.n; i++) {
        const struct param *p = &m.pt.p[i];
        for (int64_t j = 0; j < p->n_local; j++) {
            int64_t k = p->offset + j;
            double want = rw[k] - start[k], got = (double)w[k] - start[k];
            /* 1e-4 of the move, and a few float roundings of the weight itself */
            double err = fabs(got - want) / (1e-4 * fabs(want) + 4e-7 * (fabs(start[k]) + 0.25));
            if (err > 1 && bad++ < 5)
                fprintf(stderr, "  %s: %s[%lld] moved %.9g, reference %.9g\n", name, p->name,
                        (long long)j, got, want);
        }
    }
    CHECK_MSG(bad == 0, "%s: %d weights off the double reference", name, bad);
    free(start);
    free(rw); free(rm); free(rv); free(r);
    optim_free(&o);
    model_free(&m);
    grid_free(&g);
}

static void test_lamb_matches_double_reference(void) { check_optimizer("lamb"); }
static void test_lars_matches_double_reference(void) { check_optimizer("lars"); }
static void test_sgd_matches_double_reference(void) { check_optimizer("sgd"); }

/* ------------------------------------------------------------------------------------ */
/* state forms                                                                             */

/* round to nearest even, the bf16 of x (written here: not convert.h's) */
static float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    float y;
    memcpy(&y, &u, 4);
    return y;
}

static void test_bf16_state_is_the_fp32_update_rounded(void) {
    struct backend *be = cpu_backend();
    const struct kernels *k = backend_kernels(be);
    enum { N = 1000 };
    float *p = backend_alloc(be, 4 * N), *g = backend_alloc(be, 4 * N);
    uint16_t *mq = backend_alloc(be, 2 * N), *vq = backend_alloc(be, 2 * N);
    float m0[N], v0[N], pw[N];
    for (int j = 0; j < N; j++) {
        p[j] = pw[j] = (float)normal();
        g[j] = (float)(0.01 * normal());
        m0[j] = bf16_round((float)(0.001 * normal()));
        v0[j] = bf16_round((float)(1e-5 * uniform()));
        uint32_t a, b;
        memcpy(&a, &m0[j], 4);
        memcpy(&b, &v0[j], 4);
        mq[j] = (uint16_t)(a >> 16);
        vq[j] = (uint16_t)(b >> 16);
    }
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    const int t = 5;
    struct kstate m = {tensor_1d(mq, KDT_BF16, N), TENSOR_NONE};
    struct kstate v = {tensor_1d(vq, KDT_BF16, N), TENSOR_NONE};
    k->adamw_state(be, tensor_1d(p, KDT_F32, N), tensor_1d(g, KDT_F32, N), m, v, lr, b1, b2,
                   eps, wd, gs, t);
    int bad_m = 0, bad_p = 0;
    float c1 = (float)(1.0 / (1.0 - pow(b1, t))), c2 = (float)(1.0 / (1.0 - pow(b2, t)));
    for (int j = 0; j < N; j++) {
        float gj = g[j] * gs;
        float mi = b1 * m0[j] + (1.0f - b1) * gj, vi = b2 * v0[j] + (1.0f - b2) * gj * gj;
        uint32_t a = (uint32_t)mq[j] << 16, b = (uint32_t)vq[j] << 16;
        float ms, vs;
        memcpy(&ms, &a, 4);
        memcpy(&vs, &b, 4);
        bad_m += ms != bf16_round(mi) || vs != bf16_round(vi);
        /* the step itself uses the fp32 moments */
        float want = pw[j] - lr * ((mi * c1) / (sqrtf(vi * c2) + eps) + wd * pw[j]);
        bad_p += fabsf(p[j] - want) > 1e-6f * fabsf(want) + 1e-9f;
    }
    CHECK_MSG(bad_m == 0, "%d stored moments are not the update rounded to nearest even", bad_m);
    CHECK_MSG(bad_p == 0, "%d weights differ from the fp32 step", bad_p);
    /* and through the conversion pair: bf16 -> fp32 -> bf16 keeps every bit */
    float *f = backend_alloc(be, 4 * N);
    uint16_t *back = backend_alloc(be, 2 * N);
    k->state_to_f32(be, tensor_1d(f, KDT_F32, N), m, 0);
    k->state_from_f32(be, (struct kstate){tensor_1d(back, KDT_BF16, N), TENSOR_NONE},
                      tensor_1d(f, KDT_F32, N), 0);
    CHECK(memcmp(back, mq, 2 * N) == 0);
    backend_free_mem(be, p); backend_free_mem(be, g); backend_free_mem(be, mq);
    backend_free_mem(be, vq); backend_free_mem(be, f); backend_free_mem(be, back);
}

/* int8: every element of every block within the companding's rounding bound */
static void check_int8_round_trip(int role) {
    struct backend *be = cpu_backend();
    const struct kernels *k = backend_kernels(be);
    enum { N = 5 * KSTATE_BLOCK + 77, NB = (N + KSTATE_BLOCK - 1) / KSTATE_BLOCK };
    float *x = backend_alloc(be, 4 * N), *y = backend_alloc(be, 4 * N),
          *sc = backend_alloc(be, 4 * NB), *sc2 = backend_alloc(be, 4 * NB);
    int32_t *q = backend_alloc(be, N), *q2 = backend_alloc(be, N);
    for (int j = 0; j < N; j++) {
        /* magnitudes over eight decades, a different largest one in each block */
        double mag = pow(10.0, -8.0 * uniform()) * (1 + j / KSTATE_BLOCK);
        x[j] = (float)(role ? mag * mag : (uniform() < 0.5 ? -mag : mag));
    }
    for (int j = 2 * KSTATE_BLOCK; j < 3 * KSTATE_BLOCK; j++) x[j] = 0.0f;  /* a zero block */
    struct kstate s = {tensor_1d(q, KDT_I32, (N + 3) / 4), tensor_1d(sc, KDT_F32, NB)};
    k->state_from_f32(be, s, tensor_1d(x, KDT_F32, N), role);
    k->state_to_f32(be, tensor_1d(y, KDT_F32, N), s, role);
    int bad = 0, exact_max = 0;
    for (int b = 0; b < NB; b++) {
        int j0 = b * KSTATE_BLOCK, j1 = j0 + KSTATE_BLOCK < N ? j0 + KSTATE_BLOCK : N;
        double A = 0;
        for (int j = j0; j < j1; j++) A = fmax(A, fabs(x[j]));
        CHECK_CLOSE(sc[b], A, 0, 0);
        for (int j = j0; j < j1; j++) {
            double e = fabs((double)y[j] - x[j]), bound;
            if (A == 0) bound = 0;
            else if (role == 0) {
                double u = sqrt(fabs(x[j]) / A);  /* code step 1/127 in u: half is the error */
                bound = A * (pow(u + 0.5 / 127, 2) - u * u) * 1.0001 + 1e-7 * fabs(x[j]);
            } else {
                double u = pow(x[j] / A, 0.25);
                bound = A * (pow(u + 0.5 / 255, 4) - pow(u, 4)) * 1.0001 + 1e-7 * x[j];
            }
            if (e > bound && bad++ < 5)
                fprintf(stderr, "  role %d block %d: %.9g became %.9g (bound %.3g)\n", role, b,
                        x[j], y[j], bound);
            if (A > 0 && fabs(x[j]) == A) exact_max += y[j] == x[j];
        }
    }
    CHECK_MSG(bad == 0, "role %d: %d elements beyond the rounding bound", role, bad);
    CHECK(exact_max == NB - 1);  /* every non-zero block keeps its largest element exactly */
    /* decoding and encoding again: the same codes and scales (a checkpoint's round trip) */
    struct kstate s2 = {tensor_1d(q2, KDT_I32, (N + 3) / 4), tensor_1d(sc2, KDT_F32, NB)};
    k->state_from_f32(be, s2, tensor_1d(y, KDT_F32, N), role);
    CHECK(memcmp(q, q2, N) == 0 && memcmp(sc, sc2, 4 * NB) == 0);
    /* a NaN shows in its block's scale */
    x[3] = NAN;
    k->state_from_f32(be, s, tensor_1d(x, KDT_F32, N), role);
    CHECK(isnan(sc[0]) && !isnan(sc[1]));
    backend_free_mem(be, x); backend_free_mem(be, y); backend_free_mem(be, sc);
    backend_free_mem(be, sc2); backend_free_mem(be, q); backend_free_mem(be, q2);
}

static void test_int8_first_moment_round_trip_within_bound(void) { check_int8_round_trip(0); }
static void test_int8_second_moment_round_trip_within_bound(void) { check_int8_round_trip(1); }

/* ------------------------------------------------------------------------------------ */
/* the update kernels on int8 and bf16 state against a straightforward reference            */

/* The reference: kernels.h's definition of the state forms written out one element at a
 * time (lrintf, the sign as a factor, isfinite), and the updates of kernels.h on the
 * decoded block. The kernels are vectorized and parallel over blocks; they must give the
 * same bits. */
struct ref_state {
    int form;         /* 0 fp32, 1 bf16, 2 int8 */
    int role;
    float *f;         /* fp32 */
    uint16_t *h;      /* bf16 */
    int8_t *q;        /* int8 codes */
    float *scale;     /* int8 scales */
};

static void ref_load(const struct ref_state *s, int b0, int len, float *x) {
    for (int j = 0; j < len; j++) {
        int i = b0 + j;
        if (s->form == 0) x[j] = s->f[i];
        else if (s->form == 1) {
            uint32_t u = (uint32_t)s->h[i] << 16;
            memcpy(&x[j], &u, 4);
        } else {
            float A = s->scale[b0 / KSTATE_BLOCK];
            if (s->role == 0) {
                float t = (float)s->q[i] / 127.0f;
                x[j] = t * t * A * (s->q[i] < 0 ? -1.0f : 1.0f);
            } else {
                float t = (float)(uint8_t)s->q[i] / 255.0f;
                float t2 = t * t;
                x[j] = t2 * t2 * A;
            }
        }
    }
}

/* store x; x becomes the values stored */
static void ref_store(struct ref_state *s, int b0, int len, float *x) {
    if (s->form == 0) {
        for (int j = 0; j < len; j++) s->f[b0 + j] = x[j];
        return;
    }
    if (s->form == 1) {
        for (int j = 0; j < len; j++) {
            uint32_t u;
            memcpy(&u, &x[j], 4);
            if ((u & 0x7fffffffu) > 0x7f800000u) s->h[b0 + j] = (uint16_t)((u >> 16) | 0x40u);
            else s->h[b0 + j] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        }
        ref_load(s, b0, len, x);
        return;
    }
    float A = 0.0f;
    int bad = 0;
    for (int j = 0; j < len; j++) {
        bad |= !isfinite(x[j]);
        if (fabsf(x[j]) > A) A = fabsf(x[j]);
    }
    const int blk = b0 / KSTATE_BLOCK;
    if (bad || A == 0.0f) {
        s->scale[blk] = bad ? NAN : 0.0f;
        for (int j = 0; j < len; j++) s->q[b0 + j] = 0;
    } else {
        s->scale[blk] = A;
        for (int j = 0; j < len; j++) {
            long c;
            if (s->role == 0) {
                c = lrintf(127.0f * sqrtf(fabsf(x[j]) / A));
                if (c > 127) c = 127;
                s->q[b0 + j] = (int8_t)(x[j] < 0 ? -c : c);
            } else {
                c = lrintf(255.0f * sqrtf(sqrtf(x[j] > 0 ? x[j] / A : 0.0f)));
                if (c > 255) c = 255;
                s->q[b0 + j] = (int8_t)(uint8_t)c;
            }
        }
    }
    ref_load(s, b0, len, x);
}

enum { RN = 9 * KSTATE_BLOCK + 77, RNB = (RN + KSTATE_BLOCK - 1) / KSTATE_BLOCK };

/* a kernel-side state buffer and its reference copy, holding the same random values;
 * block 1 holds a NaN, block 2 an inf, block 3 is zero, the last block is a short tail */
struct both { struct kstate k; struct ref_state r; };

static struct both make_both(int form, int role) {
    struct backend *be = cpu_backend();
    const struct kernels *k = backend_kernels(be);
    struct both b;
    memset(&b, 0, sizeof b);
    b.r.form = form;
    b.r.role = role;
    float *x = backend_alloc(be, 4 * RN);
    for (int j = 0; j < RN; j++) {
        double mag = pow(10.0, -6.0 * uniform()) * 1e-2;
        x[j] = (float)(role ? mag * mag : (uniform() < 0.5 ? -mag : mag));
    }
    x[1 * KSTATE_BLOCK + 5] = NAN;
    x[2 * KSTATE_BLOCK + 9] = role ? INFINITY : -INFINITY;
    for (int j = 3 * KSTATE_BLOCK; j < 4 * KSTATE_BLOCK; j++) x[j] = 0.0f;
    if (form == 0) {
        b.k.q = tensor_1d(backend_alloc(be, 4 * RN), KDT_F32, RN);
        b.r.f = malloc(4 * RN);
    } else if (form == 1) {
        b.k.q = tensor_1d(backend_alloc(be, 2 * RN), KDT_BF16, RN);
        b.r.h = malloc(2 * RN);
    } else {
        b.k.q = tensor_1d(backend_alloc(be, 4 * ((RN + 3) / 4)), KDT_I32, (RN + 3) / 4);
        b.k.scale = tensor_1d(backend_alloc(be, 4 * RNB), KDT_F32, RNB);
        b.r.q = malloc(RN);
        b.r.scale = malloc(4 * RNB);
    }
    /* the kernel encodes, the reference encodes: the first comparison */
    k->state_from_f32(be, b.k, tensor_1d(x, KDT_F32, RN), role);
    for (int b0 = 0; b0 < RN; b0 += KSTATE_BLOCK) {
        float blk[KSTATE_BLOCK];
        int len = RN - b0 < KSTATE_BLOCK ? RN - b0 : KSTATE_BLOCK;
        memcpy(blk, x + b0, 4 * (size_t)len);
        ref_store(&b.r, b0, len, blk);
    }
    backend_free_mem(be, x);
    return b;
}

/* the number of elements (codes, and int8 scales) whose bits differ */
static int both_differ(const struct both *b) {
    int d = 0;
    if (b->r.form == 0) d += memcmp(b->k.q.data, b->r.f, 4 * RN) != 0;
    else if (b->r.form == 1) {
        const uint16_t *h = b->k.q.data;
        for (int j = 0; j < RN; j++) d += h[j] != b->r.h[j];
    } else {
        const int8_t *q = b->k.q.data;
        const float *sc = b->k.scale.data;
        for (int j = 0; j < RN; j++) d += q[j] != b->r.q[j];
        for (int j = 0; j < RNB; j++) d += memcmp(&sc[j], &b->r.scale[j], 4) != 0;
    }
    return d;
}

static void free_both(struct both *b) {
    struct backend *be = cpu_backend();
    backend_free_mem(be, b->k.q.data);
    if (b->k.scale.data) backend_free_mem(be, b->k.scale.data);
    free(b->r.f); free(b->r.h); free(b->r.q); free(b->r.scale);
}

/* the bits of two fp32 arrays, NaNs equal when their bits are */
static int floats_differ(const float *a, const float *b, int n) {
    int d = 0;
    for (int j = 0; j < n; j++) d += memcmp(&a[j], &b[j], 4) != 0;
    return d;
}

/* the reference Adam moments of block [b0, b0 + len) after gradient g * gs, in fp32 into m
 * and v, loaded from the reference copies of bm and bv (the caller stores them: AdamW
 * steps with the fp32 values, LAMB with the stored ones) */
static void ref_adam_moments(const struct both *bm, const struct both *bv, int b0, int len,
                             const float *g, float gs, float b1, float b2, float *m, float *v) {
    ref_load(&bm->r, b0, len, m);
    ref_load(&bv->r, b0, len, v);
    for (int j = 0; j < len; j++) {
        float gj = g[b0 + j] * gs;
        m[j] = b1 * m[j] + (1.0f - b1) * gj;
        v[j] = b2 * v[j] + (1.0f - b2) * gj * gj;
    }
}

static void check_updates_match_reference(int form) {
    struct backend *be = cpu_backend();
    const struct kernels *k = backend_kernels(be);
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f, mu = 0.9f;
    const int t = 7;
    const float c1 = (float)(1.0 / (1.0 - pow(b1, t))), c2 = (float)(1.0 / (1.0 - pow(b2, t)));
    float *p = backend_alloc(be, 4 * RN), *g = backend_alloc(be, 4 * RN);
    float *rp = malloc(4 * RN);
    for (int j = 0; j < RN; j++) {
        p[j] = rp[j] = (float)(0.02 * normal());
        g[j] = (float)(1e-3 * normal());
    }
    struct tensor P = tensor_1d(p, KDT_F32, RN), G = tensor_1d(g, KDT_F32, RN);
    float m[KSTATE_BLOCK], v[KSTATE_BLOCK];

    /* the state as encoded */
    struct both bm = make_both(form, 0), bv = make_both(form, 1);
    CHECK_MSG(both_differ(&bm) == 0 && both_differ(&bv) == 0,
              "form %d: state_from_f32 differs from the reference encoding", form);
    /* and decoded */
    float *dk = backend_alloc(be, 4 * RN), *dr = malloc(4 * RN);
    k->state_to_f32(be, tensor_1d(dk, KDT_F32, RN), bv.k, 1);
    for (int b0 = 0; b0 < RN; b0 += KSTATE_BLOCK)
        ref_load(&bv.r, b0, RN - b0 < KSTATE_BLOCK ? RN - b0 : KSTATE_BLOCK, dr + b0);
    CHECK_MSG(floats_differ(dk, dr, RN) == 0, "form %d: state_to_f32 differs", form);

    /* AdamW */
    k->adamw_state(be, P, G, bm.k, bv.k, lr, b1, b2, eps, wd, gs, t);
    for (int b0 = 0; b0 < RN; b0 += KSTATE_BLOCK) {
        int len = RN - b0 < KSTATE_BLOCK ? RN - b0 : KSTATE_BLOCK;
        ref_adam_moments(&bm, &bv, b0, len, g, gs, b1, b2, m, v);
        for (int j = 0; j < len; j++)
            rp[b0 + j] -= lr * ((m[j] * c1) / (sqrtf(v[j] * c2) + eps) + wd * rp[b0 + j]);
        ref_store(&bm.r, b0, len, m);
        ref_store(&bv.r, b0, len, v);
    }
    CHECK_MSG(floats_differ(p, rp, RN) == 0, "form %d adamw: %d weights differ", form,
              floats_differ(p, rp, RN));
    CHECK_MSG(both_differ(&bm) == 0 && both_differ(&bv) == 0, "form %d adamw: %d + %d state "
              "elements differ", form, both_differ(&bm), both_differ(&bv));

    /* LAMB: the sum of squares over an owned range that cuts blocks (and leaves out the
     * NaN and inf blocks, whose NaN would hide every other difference), then the step */
    const int own0 = 4 * KSTATE_BLOCK + KSTATE_BLOCK / 2 + 3, own_n = RN - own0 - 11;
    double sk = k->lamb_moments(be, P, G, bm.k, bv.k, b1, b2, eps, wd, gs, t, own0, own_n);
    double sr = 0.0;
    for (int b0 = 0; b0 < RN; b0 += KSTATE_BLOCK) {
        int len = RN - b0 < KSTATE_BLOCK ? RN - b0 : KSTATE_BLOCK;
        ref_adam_moments(&bm, &bv, b0, len, g, gs, b1, b2, m, v);
        ref_store(&bm.r, b0, len, m);
        ref_store(&bv.r, b0, len, v);
        double s = 0.0;
        for (int j = 0; j < len; j++) {
            int i = b0 + j;
            if (i < own0 || i >= own0 + own_n) continue;
            float r = (m[j] * c1) / (sqrtf(v[j] * c2) + eps) + wd * rp[i];
            s += (double)r * r;
        }
        sr += s;
    }
    CHECK_MSG(memcmp(&sk, &sr, sizeof sk) == 0, "form %d lamb: sum of squares %.17g, the "
              "reference %.17g", form, sk, sr);
    k->lamb_apply(be, P, bm.k, bv.k, lr, b1, b2, eps, wd, t);
    for (int b0 = 0; b0 < RN; b0 += KSTATE_BLOCK) {
        int len = RN - b0 < KSTATE_BLOCK ? RN - b0 : KSTATE_BLOCK;
        ref_load(&bm.r, b0, len, m);
        ref_load(&bv.r, b0, len, v);
        for (int j = 0; j < len; j++)
            rp[b0 + j] -= lr * ((m[j] * c1) / (sqrtf(v[j] * c2) + eps) + wd * rp[b0 + j]);
    }
    CHECK_MSG(floats_differ(p, rp, RN) == 0, "form %d lamb: %d weights differ", form,
              floats_differ(p, rp, RN));
    CHECK_MSG(both_differ(&bm) == 0 && both_differ(&bv) == 0, "form %d lamb: state differs", form);

    /* LARS (local lr) and SGD (local lr 1) on the first moment as momentum */
    for (int lars = 1; lars >= 0; lars--) {
        const float llr = lars ? 0.37f : 1.0f;
        if (lars) k->lars_update(be, P, G, bm.k, lr, llr, mu, wd, gs);
        else k->sgd_update(be, P, G, bm.k, lr, mu, wd, gs);
        for (int b0 = 0; b0 < RN; b0 += KSTATE_BLOCK) {
            int len = RN - b0 < KSTATE_BLOCK ? RN - b0 : KSTATE_BLOCK;
            ref_load(&bm.r, b0, len, m);
            for (int j = 0; j < len; j++) {
                float gj = g[b0 + j] * gs;
                m[j] = mu * m[j] + llr * (gj + wd * rp[b0 + j]);
                rp[b0 + j] -= lr * m[j];
            }
            ref_store(&bm.r, b0, len, m);
        }
        CHECK_MSG(floats_differ(p, rp, RN) == 0, "form %d %s: %d weights differ", form,
                  lars ? "lars" : "sgd", floats_differ(p, rp, RN));
        CHECK_MSG(both_differ(&bm) == 0, "form %d %s: %d state elements differ", form,
                  lars ? "lars" : "sgd", both_differ(&bm));
    }
    /* the NaN and inf blocks stayed visible, the others did not become NaN */
    if (form == 2) {
        const float *sc = bm.k.scale.data;
        CHECK(isnan(sc[1]) && isnan(sc[2]) && !isnan(sc[0]) && !isnan(sc[RNB - 1]));
    }
    free_both(&bm);
    free_both(&bv);
    backend_free_mem(be, p); backend_free_mem(be, g); backend_free_mem(be, dk);
    free(rp); free(dr);
}

static void test_int8_updates_equal_the_scalar_reference(void) { check_updates_match_reference(2); }
static void test_bf16_updates_equal_the_scalar_reference(void) { check_updates_match_reference(1); }
static void test_fp32_updates_equal_the_scalar_reference(void) { check_updates_match_reference(0); }

/* ------------------------------------------------------------------------------------ */
/* lr_scaling and the memory plan                                                          */

static void test_lr_scaling_factors(void) {
    struct config c;
    config_defaults(&c);
    c.lr = 1e-3f; c.min_lr = 1e-4f; c.warmup = 10; c.steps = 110;
    snprintf(c.lr_scaling, sizeof c.lr_scaling, "none");
    c.ref_batch = 16;
    CHECK_CLOSE(optim_lr_factor(&c, 64), 1.0, 0, 0);
    snprintf(c.lr_scaling, sizeof c.lr_scaling, "linear");
    CHECK_CLOSE(optim_lr_factor(&c, 64), 4.0, 1e-12, 0);
    CHECK_CLOSE(optim_lr_factor(&c, 8), 0.5, 1e-12, 0);
    snprintf(c.lr_scaling, sizeof c.lr_scaling, "sqrt");
    CHECK_CLOSE(optim_lr_factor(&c, 64), 2.0, 1e-12, 0);
    CHECK_CLOSE(optim_lr_factor(&c, 8), sqrt(0.5), 1e-12, 0);
    c.ref_batch = 0;  /* no reference batch: no scaling */
    CHECK_CLOSE(optim_lr_factor(&c, 64), 1.0, 0, 0);
    /* the schedule applies to the scaled lr: warmup, peak and floor all x4 */
    struct optim o;
    memset(&o, 0, sizeof o);
    o.lr_factor = 4.0;
    CHECK_CLOSE(optim_step_lr(&o, &c, 0), 4e-4, 1e-6, 0);
    CHECK_CLOSE(optim_step_lr(&o, &c, 9), 4e-3, 1e-6, 0);
    CHECK_CLOSE(optim_step_lr(&o, &c, 109), 4e-4, 1e-6, 0);
}

static void test_state_bytes_per_optimizer_and_form(void) {
    const char *opts[4] = {"adamw", "lamb", "lars", "sgd"}, *forms[3] = {"fp32", "bf16", "int8"};
    for (int a = 0; a < 4; a++)
        for (int f = 0; f < 3; f++) {
            struct config cfg = tiny_config(opts[a]);
            snprintf(cfg.optim_state, sizeof cfg.optim_state, "%s", forms[f]);
            struct grid g;
            grid_init(&g, &cfg);
            struct model m;
            model_init(&m, &cfg, &g, cpu_backend(), 1);
            struct optim o;
            optim_init(&o, &m);  /* aborts if what it allocates is not the plan's count */
            const int64_t n = m.n_local, nbuf = a < 2 ? 2 : 1;
#define R64(b) (((b) + 63) / 64 * 64)
            int64_t want = f == 0 ? nbuf * R64(4 * n) : f == 1 ? nbuf * R64(2 * n)
                         : nbuf * (R64(4 * ((n + 3) / 4)) + R64(4 * (n / KSTATE_BLOCK + m.pt.n)));
            CHECK_MSG(optim_state_bytes(&cfg, n) == want, "%s %s: %lld bytes, expected %lld",
                      opts[a], forms[f], (long long)optim_state_bytes(&cfg, n), (long long)want);
            CHECK((o.v.data != NULL) == (nbuf == 2));
            optim_free(&o);
            model_free(&m);
            grid_free(&g);
        }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    RUN(test_lamb_matches_double_reference);
    RUN(test_lars_matches_double_reference);
    RUN(test_sgd_matches_double_reference);
    RUN(test_bf16_state_is_the_fp32_update_rounded);
    RUN(test_int8_first_moment_round_trip_within_bound);
    RUN(test_int8_second_moment_round_trip_within_bound);
    RUN(test_int8_updates_equal_the_scalar_reference);
    RUN(test_bf16_updates_equal_the_scalar_reference);
    RUN(test_fp32_updates_equal_the_scalar_reference);
    RUN(test_lr_scaling_factors);
    RUN(test_state_bytes_per_optimizer_and_form);
    int rc = test_summary();
    MPI_Finalize();
    return rc;
}

/* test_model.c — the whole GPT-2 forward and backward pass against an independent
 * double-precision reference, by finite differences; plus the parameter table,
 * initialisation, stage balancing, learning-rate schedule, the global gradient norm and
 * which parameters weight decay touches; one block (block_forward / block_backward) against
 * the reference's block. One rank. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "grid.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "test.h"

/* one CPU backend for the whole test program (it holds the models' buffers) */
static struct backend *cpu_backend(void) {
    static struct backend *be;
    if (!be) be = backend_init(KDEV_CPU, 0, NULL, 0);
    return be;
}

/* ------------------------------------------------------------------------------------ */
/* A straightforward double-precision GPT-2, written from the equations, sharing nothing
 * with the kernels: parameters come in as the model's table (full tensors, one rank). */

struct ref {
    int B, T, C, NH, L, V, Vp;
    const struct model *m;
    double *p; /* all parameters, same offsets as model.params */
};

static const double *P(const struct ref *r, const char *name) {
    int i = params_find_name(&r->m->pt, name);
    return r->p + r->m->pt.p[i].offset;
}

static void ref_layernorm(double *out, const double *x, const double *w, const double *b, int C) {
    double mean = 0, var = 0;
    for (int c = 0; c < C; c++) mean += x[c];
    mean /= C;
    for (int c = 0; c < C; c++) var += (x[c] - mean) * (x[c] - mean);
    var /= C;
    double rstd = 1.0 / sqrt(var + 1e-5);
    for (int c = 0; c < C; c++) out[c] = (x[c] - mean) * rstd * w[c] + b[c];
}

static double ref_gelu(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* One block (layer l) of one sequence of T tokens: x [T][C] is updated in place. */
static void ref_block(const struct ref *r, int l, double *x, int T) {
    int C = r->C, NH = r->NH, hs = C / NH;
    double *h = calloc((size_t)T * C, sizeof(double));
    double *qkv = calloc((size_t)T * 3 * C, sizeof(double)), *y = calloc((size_t)T * C, 8);
    double *fc = calloc((size_t)T * 4 * C, sizeof(double));
    char name[64];
#define W(s) (snprintf(name, sizeof name, "h.%d.%s", l, s), P(r, name))
    const double *ln1w = W("ln_1.w"), *ln1b = W("ln_1.b"), *wq = W("attn.qkv.w");
    const double *bq = W("attn.qkv.b"), *wp = W("attn.proj.w"), *bp = W("attn.proj.b");
    const double *ln2w = W("ln_2.w"), *ln2b = W("ln_2.b"), *wf = W("mlp.fc.w");
    const double *bf = W("mlp.fc.b"), *wm = W("mlp.proj.w"), *bm = W("mlp.proj.b");
#undef W
    for (int t = 0; t < T; t++) ref_layernorm(h + t * C, x + t * C, ln1w, ln1b, C);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < 3 * C; j++) {
            double s = bq[j];
            for (int c = 0; c < C; c++) s += h[t * C + c] * wq[j * C + c];
            qkv[t * 3 * C + j] = s;
        }
    for (int hd = 0; hd < NH; hd++)
        for (int t = 0; t < T; t++) {
            double sc[64], mx = -1e300, z = 0;
            for (int u = 0; u <= t; u++) {
                double s = 0;
                for (int d = 0; d < hs; d++)
                    s += qkv[t * 3 * C + hd * hs + d] * qkv[u * 3 * C + C + hd * hs + d];
                sc[u] = s / sqrt((double)hs);
                if (sc[u] > mx) mx = sc[u];
            }
            for (int u = 0; u <= t; u++) z += (sc[u] = exp(sc[u] - mx));
            for (int d = 0; d < hs; d++) {
                double s = 0;
                for (int u = 0; u <= t; u++)
                    s += sc[u] / z * qkv[u * 3 * C + 2 * C + hd * hs + d];
                y[t * C + hd * hs + d] = s;
            }
        }
    for (int t = 0; t < T; t++)
        for (int o = 0; o < C; o++) {
            double s = bp[o];
            for (int c = 0; c < C; c++) s += y[t * C + c] * wp[o * C + c];
            x[t * C + o] += s;
        }
    for (int t = 0; t < T; t++) ref_layernorm(h + t * C, x + t * C, ln2w, ln2b, C);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < 4 * C; j++) {
            double s = bf[j];
            for (int c = 0; c < C; c++) s += h[t * C + c] * wf[j * C + c];
            fc[t * 4 * C + j] = ref_gelu(s);
        }
    for (int t = 0; t < T; t++)
        for (int o = 0; o < C; o++) {
            double s = bm[o];
            for (int j = 0; j < 4 * C; j++) s += fc[t * 4 * C + j] * wm[o * 4 * C + j];
            x[t * C + o] += s;
        }
    free(h); free(qkv); free(y); free(fc);
}

static double ref_loss(const struct ref *r, const int32_t *tok, const int32_t *tgt) {
    int B = r->B, T = r->T, C = r->C;
    double *x = calloc((size_t)T * C, sizeof(double)), *h = calloc((size_t)T * C, sizeof(double));
    double total = 0;
    for (int b = 0; b < B; b++) {
        const double *wte = P(r, "wte"), *wpe = P(r, "wpe");
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                x[t * C + c] = wte[tok[b * T + t] * C + c] + wpe[t * C + c];
        for (int l = 0; l < r->L; l++) ref_block(r, l, x, T);
        for (int t = 0; t < T; t++)
            ref_layernorm(h + t * C, x + t * C, P(r, "ln_f.w"), P(r, "ln_f.b"), C);
        for (int t = 0; t < T; t++) {
            /* tied head over the real vocabulary only: padded rows never get mass */
            double mx = -1e300, z = 0, target = 0;
            double *lg = malloc(sizeof(double) * (size_t)r->V);
            for (int v = 0; v < r->V; v++) {
                double s = 0;
                for (int c = 0; c < C; c++) s += h[t * C + c] * wte[v * C + c];
                lg[v] = s;
                if (s > mx) mx = s;
            }
            for (int v = 0; v < r->V; v++) z += exp(lg[v] - mx);
            target = lg[tgt[b * T + t]];
            total += log(z) + mx - target;
            free(lg);
        }
    }
    free(x); free(h);
    return total / (B * T);
}

/* sum over the micro-batch of <block l (in), R>: a scalar whose gradient with respect to
 * the block's output is R, so d(in) and d(weights) of the block follow from it */
static double ref_block_dot(const struct ref *r, int l, const double *in, const double *R) {
    int T = r->T, C = r->C;
    double *x = malloc(sizeof(double) * (size_t)T * C), total = 0;
    for (int b = 0; b < r->B; b++) {
        memcpy(x, in + (size_t)b * T * C, sizeof(double) * (size_t)T * C);
        ref_block(r, l, x, T);
        for (int j = 0; j < T * C; j++) total += x[j] * R[(size_t)b * T * C + j];
    }
    free(x);
    return total;
}

/* ------------------------------------------------------------------------------------ */

static struct config tiny_config(void) {
    struct config c;
    config_defaults(&c);
    c.n_layer = 2; c.n_head = 2; c.n_embd = 16; c.seq_len = 8; c.block_size = 8;
    c.vocab_size = 257; c.micro_batch = 2; c.dp = 1; c.tp = 1; c.pp = 1;
    return c;
}

/* random weights everywhere (LayerNorm gains around 1, biases non-zero) so that every
 * parameter's gradient is exercised */
static void random_weights(struct model *m) {
    for (int i = 0; i < m->pt.n; i++) {
        const struct param *p = &m->pt.p[i];
        int is_gain = strstr(p->name, "ln_") && p->name[strlen(p->name) - 1] == 'w';
        for (int64_t j = 0; j < p->n_local; j++)
            m->params[p->offset + j] = (float)((is_gain ? 1.0 : 0.0) +
                                               0.15 * rng_normal(rng_key3(3, (uint64_t)i, (uint64_t)j)));
    }
}

static void test_whole_model_gradient_matches_finite_differences(void) {
    struct config cfg = tiny_config();
    struct grid g;
    grid_init(&g, &cfg);
    struct model m;
    model_init(&m, &cfg, &g, cpu_backend(), 1);
    random_weights(&m);
    const int B = cfg.micro_batch, T = cfg.seq_len, BT = B * T;
    struct acts *a = &m.slots[0];
    for (int i = 0; i < BT; i++) {
        a->tokens[i] = (int32_t)rng_below(rng_key3(4, 0, (uint64_t)i), 257);
        a->targets[i] = (int32_t)rng_below(rng_key3(5, 0, (uint64_t)i), 257);
    }
    model_zero_grads(&m);
    double loss = model_forward(&m, 0, B, T, 1.0f / BT) / BT;
    model_backward(&m, 0, B, T);

    struct ref r = {B, T, cfg.n_embd, cfg.n_head, cfg.n_layer, 257, m.Vp, &m, NULL};
    r.p = malloc(sizeof(double) * (size_t)m.n_local);
    for (int64_t i = 0; i < m.n_local; i++) r.p[i] = m.params[i];
    double ref = ref_loss(&r, a->tokens, a->targets);
    CHECK_CLOSE(loss, ref, 1e-5, 0);

    /* central differences in double on a sample of every tensor's elements */
    const double eps = 1e-5;
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < m.pt.n; i++) {
        const struct param *p = &m.pt.p[i];
        double gmax = 0;
        for (int64_t j = 0; j < p->n_local; j++) gmax = fmax(gmax, fabs(m.grads[p->offset + j]));
        for (int s = 0; s < 6; s++) {
            int64_t j = (int64_t)rng_below(rng_key3(6, (uint64_t)i, (uint64_t)s),
                                           (uint64_t)p->n_local);
            if (strcmp(p->name, "wte") == 0 && s < 3) j = a->tokens[s] * cfg.n_embd + s;
            double *w = &r.p[p->offset + j], keep = *w;
            *w = keep + eps;
            double lp = ref_loss(&r, a->tokens, a->targets);
            *w = keep - eps;
            double lm = ref_loss(&r, a->tokens, a->targets);
            *w = keep;
            double fd = (lp - lm) / (2 * eps), an = m.grads[p->offset + j];
            double err = fabs(fd - an) / (gmax + 1e-6);
            if (err > worst) { worst = err; worst_name = p->name; }
            CHECK_MSG(fabs(fd - an) <= 2e-3 * gmax + 1e-6,
                      "%s[%lld]: analytic %.6g vs finite difference %.6g (tensor max %.3g)",
                      p->name, (long long)j, an, fd, gmax);
        }
    }
    printf("       whole model: loss %.8f vs reference %.8f; worst gradient error %.2e "
           "of the tensor's largest (%s)\n", loss, ref, worst, worst_name);
    /* the reported global gradient norm is the L2 norm of the whole gradient (just checked
     * against the reference above), summed here in double over every element of the
     * table: not its square, not a partial sum */
    double sq = 0;
    for (int i = 0; i < m.pt.n; i++)
        for (int64_t j = 0; j < m.pt.p[i].n_local; j++) {
            double gj = m.grads[m.pt.p[i].offset + j];
            sq += gj * gj;
        }
    CHECK(sq > 0 && fabs(sqrt(sq) - 1.0) > 1e-3);  /* so that the square would differ */
    CHECK_CLOSE(optim_grad_norm(&m), sqrt(sq), 1e-6, 0);
    /* padded vocabulary rows never get a gradient through the head */
    const struct param *wte = &m.pt.p[params_find_name(&m.pt, "wte")];
    double pad = 0;
    for (int64_t j = 257 * cfg.n_embd; j < wte->n_local; j++) pad += fabs(m.grads[wte->offset + j]);
    CHECK(pad == 0.0);
    free(r.p);
    model_free(&m);
    grid_free(&g);
}

/* One block on its own: block_forward's output matches the double-precision reference
 * block, and block_backward's d(in) and weight gradients match its finite differences,
 * through the same views (block_acts_view, layer_w_view) that model_forward and
 * model_backward use. The second layer, so that the views' offsets are exercised. */
static void test_block_forward_backward_match_reference_block(void) {
    struct config cfg = tiny_config();
    struct grid g;
    grid_init(&g, &cfg);
    struct model m;
    model_init(&m, &cfg, &g, cpu_backend(), 1);
    random_weights(&m);
    const int B = cfg.micro_batch, T = cfg.seq_len, C = cfg.n_embd, l = 1;
    const size_t BTC = (size_t)B * T * C;
    struct layer_w w, dw;
    struct block_acts ba;
    layer_w_view(&m, m.params, l, &w);
    layer_w_view(&m, m.grads, l, &dw);
    block_acts_view(&m, &m.slots[0], l, B, T, &ba);
    CHECK(ba.in == m.slots[0].x + BTC && ba.out == m.slots[0].x + 2 * BTC);

    double *in = malloc(sizeof(double) * BTC), *R = malloc(sizeof(double) * BTC);
    for (size_t j = 0; j < BTC; j++) {
        ba.in[j] = (float)rng_normal(rng_key3(8, 0, j));
        in[j] = ba.in[j];
        R[j] = (float)rng_normal(rng_key3(9, 0, j));
    }
    model_zero_grads(&m);
    block_forward(&m, &w, &ba);

    struct ref r = {B, T, C, cfg.n_head, cfg.n_layer, 257, m.Vp, &m, NULL};
    r.p = malloc(sizeof(double) * (size_t)m.n_local);
    for (int64_t i = 0; i < m.n_local; i++) r.p[i] = m.params[i];
    double *out = malloc(sizeof(double) * BTC), fwd_err = 0;
    for (int b = 0; b < B; b++) {
        memcpy(out + (size_t)b * T * C, in + (size_t)b * T * C, sizeof(double) * (size_t)T * C);
        ref_block(&r, l, out + (size_t)b * T * C, T);
    }
    for (size_t j = 0; j < BTC; j++) fwd_err = fmax(fwd_err, fabs(ba.out[j] - out[j]));
    CHECK_MSG(fwd_err < 1e-4, "block output differs from the reference by %.3g", fwd_err);

    for (size_t j = 0; j < BTC; j++) m.dres[j] = (float)R[j];
    block_backward(&m, &w, &dw, &ba);

    /* central differences: the block's input (against m->dres), then 6 elements of each of
     * the layer's tensors (against m->grads); nothing else gets a gradient */
    const double eps = 1e-5;
    double worst = 0, gmax = 0;
    for (size_t j = 0; j < BTC; j++) gmax = fmax(gmax, fabs(m.dres[j]));
    for (int s = 0; s < 8; s++) {
        size_t j = (size_t)rng_below(rng_key3(10, 0, (uint64_t)s), BTC);
        double keep = in[j];
        in[j] = keep + eps;
        double lp = ref_block_dot(&r, l, in, R);
        in[j] = keep - eps;
        double lm = ref_block_dot(&r, l, in, R);
        in[j] = keep;
        double fd = (lp - lm) / (2 * eps), an = m.dres[j];
        worst = fmax(worst, fabs(fd - an) / (gmax + 1e-6));
        CHECK_MSG(fabs(fd - an) <= 2e-3 * gmax + 1e-6,
                  "d(in)[%zu]: analytic %.6g vs finite difference %.6g (max %.3g)", j, an, fd,
                  gmax);
    }
    int first, n;
    params_layer_span(&m.pt, l, &first, &n);
    CHECK(n == 12 && dw.ln1w == m.grads + m.pt.p[first].offset);
    for (int i = 0; i < m.pt.n; i++) {
        const struct param *p = &m.pt.p[i];
        double tmax = 0;
        for (int64_t j = 0; j < p->n_local; j++) tmax = fmax(tmax, fabs(m.grads[p->offset + j]));
        if (i < first || i >= first + n) {
            CHECK_MSG(tmax == 0.0, "%s has a gradient from another layer's block", p->name);
            continue;
        }
        for (int s = 0; s < 6; s++) {
            int64_t j = (int64_t)rng_below(rng_key3(11, (uint64_t)i, (uint64_t)s),
                                           (uint64_t)p->n_local);
            double *pw = &r.p[p->offset + j], keep = *pw;
            *pw = keep + eps;
            double lp = ref_block_dot(&r, l, in, R);
            *pw = keep - eps;
            double lm = ref_block_dot(&r, l, in, R);
            *pw = keep;
            double fd = (lp - lm) / (2 * eps), an = m.grads[p->offset + j];
            worst = fmax(worst, fabs(fd - an) / (tmax + 1e-6));
            CHECK_MSG(fabs(fd - an) <= 2e-3 * tmax + 1e-6,
                      "%s[%lld]: analytic %.6g vs finite difference %.6g (tensor max %.3g)",
                      p->name, (long long)j, an, fd, tmax);
        }
    }
    printf("       block %d: output within %.2e of the reference; worst gradient error %.2e "
           "of the tensor's largest\n", l, fwd_err, worst);
    free(in); free(R); free(out); free(r.p);
    model_free(&m);
    grid_free(&g);
}

static void test_parameter_count_matches_gpt2_124m(void) {
    struct config cfg;
    config_defaults(&cfg);
    cfg.n_layer = 12; cfg.n_head = 12; cfg.n_embd = 768; cfg.block_size = 1024;
    cfg.vocab_size = 50257; cfg.seq_len = 8; cfg.micro_batch = 1; cfg.dp = cfg.tp = cfg.pp = 1;
    struct grid g;
    grid_init(&g, &cfg);
    struct model m;
    model_init(&m, &cfg, &g, cpu_backend(), 1);
    /* GPT-2 small has 124,439,808 parameters with vocab 50257; padding to 50304 adds
     * 47 rows of 768 */
    CHECK(m.n_logical == 124439808LL + 47LL * 768);
    model_free(&m);
    grid_free(&g);
}

static void test_init_is_gpt2_and_counter_based(void) {
    struct config cfg = tiny_config();
    cfg.n_layer = 4; cfg.n_embd = 64; cfg.n_head = 4; cfg.seq_len = 64; cfg.block_size = 64;
    struct grid g;
    grid_init(&g, &cfg);
    struct model m, m2;
    model_init(&m, &cfg, &g, cpu_backend(), 1);
    model_init(&m2, &cfg, &g, cpu_backend(), 1);
    model_init_weights(&m, 42);
    model_init_weights(&m2, 42);
    CHECK(memcmp(m.params, m2.params, sizeof(float) * (size_t)m.n_local) == 0);
    model_init_weights(&m2, 43);
    CHECK(memcmp(m.params, m2.params, sizeof(float) * (size_t)m.n_local) != 0);
    /* std 0.02, residual projections 0.02/sqrt(2L); LayerNorm 1/0, biases 0 */
    const char *names[] = {"h.1.mlp.fc.w", "h.1.mlp.proj.w", "h.0.ln_1.w", "h.0.attn.qkv.b"};
    double want[] = {0.02, 0.02 / sqrt(2.0 * cfg.n_layer), -1, -2};
    for (int k = 0; k < 4; k++) {
        const struct param *p = &m.pt.p[params_find_name(&m.pt, names[k])];
        const float *w = m.params + p->offset;
        double s = 0, s2 = 0;
        for (int64_t j = 0; j < p->n_local; j++) { s += w[j]; s2 += (double)w[j] * w[j]; }
        double mean = s / p->n_local, sd = sqrt(s2 / p->n_local - mean * mean);
        if (want[k] > 0) {
            CHECK_CLOSE(sd, want[k], 0.05, 0);
            CHECK(fabs(mean) < 3 * want[k] / sqrt((double)p->n_local) + 1e-4);
        } else if (want[k] == -1) {
            CHECK(mean == 1.0 && sd == 0.0);
        } else {
            CHECK(mean == 0.0 && sd == 0.0);
        }
    }
    model_free(&m);
    model_free(&m2);
    grid_free(&g);
}

static void test_stage_bounds_balance_and_override(void) {
    struct config cfg;
    config_defaults(&cfg);
    cfg.n_layer = 12;
    cfg.n_embd = 768;
    cfg.vocab_size = 257;
    int b[5];
    model_stage_bounds(&cfg, 4, b);
    CHECK(b[0] == 0 && b[4] == 12);
    for (int s = 0; s < 4; s++) CHECK(b[s + 1] - b[s] >= 1 && b[s + 1] - b[s] <= 4);
    /* a huge vocabulary makes the head heavy: the last stage gets fewer blocks */
    cfg.vocab_size = 200000;
    model_stage_bounds(&cfg, 4, b);
    CHECK(b[4] - b[3] < b[1] - b[0]);
    snprintf(cfg.stages, sizeof cfg.stages, "2,3,4,3");
    model_stage_bounds(&cfg, 4, b);
    CHECK(b[1] == 2 && b[2] == 5 && b[3] == 9 && b[4] == 12);
}

static void test_lr_schedule_warmup_then_cosine_to_floor(void) {
    struct config cfg;
    config_defaults(&cfg);
    cfg.lr = 1e-3f; cfg.min_lr = 1e-4f; cfg.warmup = 10; cfg.steps = 110;
    CHECK_CLOSE(optim_lr(&cfg, 0), 1e-4, 1e-5, 0);
    CHECK_CLOSE(optim_lr(&cfg, 9), 1e-3, 1e-5, 0);
    CHECK_CLOSE(optim_lr(&cfg, 10), 1e-3, 1e-5, 0);
    CHECK_CLOSE(optim_lr(&cfg, 109), 1e-4, 1e-5, 0);
    /* halfway through the decay: the midpoint of lr and min_lr */
    CHECK_CLOSE(optim_lr(&cfg, 10 + 99 / 2), 0.5 * (1e-3 + 1e-4), 2e-2, 0);
    for (int s = 11; s < 110; s++) CHECK(optim_lr(&cfg, s) <= optim_lr(&cfg, s - 1));
}

/* weight decay: with a zero gradient one AdamW step multiplies every matrix (wte, wpe,
 * the attention and MLP weights) by exactly 1 - lr*wd, and leaves every bias and every
 * LayerNorm gain and bias as it was */
static int decays(const char *name) {
    if (strcmp(name, "wte") == 0 || strcmp(name, "wpe") == 0) return 1;
    size_t n = strlen(name);
    return !strstr(name, "ln_") && n > 2 && strcmp(name + n - 2, ".w") == 0;
}

static void test_weight_decay_shrinks_matrices_only(void) {
    struct config cfg = tiny_config();
    cfg.weight_decay = 0.1f;
    const float lr = 0.01f;
    struct grid g;
    grid_init(&g, &cfg);
    struct model m;
    model_init(&m, &cfg, &g, cpu_backend(), 1);
    /* non-zero values everywhere, biases included, so that a decay would show */
    for (int i = 0; i < m.pt.n; i++)
        for (int64_t j = 0; j < m.pt.p[i].n_local; j++)
            m.params[m.pt.p[i].offset + j] =
                (float)(0.5 + 0.2 * rng_normal(rng_key3(7, (uint64_t)i, (uint64_t)j)));
    float *before = malloc(sizeof(float) * (size_t)m.n_local);
    memcpy(before, m.params, sizeof(float) * (size_t)m.n_local);
    model_zero_grads(&m);
    struct optim o;
    optim_init(&o, &m);
    optim_step(&o, &m, lr, 1.0f);
    int n_decayed = 0, n_kept = 0;
    for (int i = 0; i < m.pt.n; i++) {
        const struct param *p = &m.pt.p[i];
        int want = decays(p->name), bad = 0;
        for (int64_t j = 0; j < p->n_local && !bad; j++) {
            double b = before[p->offset + j], a = m.params[p->offset + j];
            double expect = want ? b * (1.0 - (double)lr * cfg.weight_decay) : b;
            if (want ? !(fabs(a - expect) <= 1e-6 * fabs(expect)) : a != b) {
                CHECK_MSG(0, "%s[%lld]: %.9g -> %.9g, expected %.9g (%s)", p->name,
                          (long long)j, b, a, expect, want ? "decays" : "no decay");
                bad = 1;
            }
        }
        if (want) n_decayed++; else n_kept++;
    }
    /* wte, wpe + 4 matrices per layer; 8 biases and gains per layer + ln_f */
    CHECK(n_decayed == 2 + 4 * cfg.n_layer && n_kept == 8 * cfg.n_layer + 2);
    optim_free(&o);
    free(before);
    model_free(&m);
    grid_free(&g);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    RUN(test_whole_model_gradient_matches_finite_differences);
    RUN(test_block_forward_backward_match_reference_block);
    RUN(test_parameter_count_matches_gpt2_124m);
    RUN(test_init_is_gpt2_and_counter_based);
    RUN(test_stage_bounds_balance_and_override);
    RUN(test_lr_schedule_warmup_then_cosine_to_floor);
    RUN(test_weight_decay_shrinks_matrices_only);
    int rc = test_summary();
    MPI_Finalize();
    return rc;
}

/* test_model.c — the whole GPT-2 forward and backward pass against an independent
 * double-precision reference, by finite differences; plus the parameter table,
 * initialisation, stage balancing, learning-rate schedule, the global gradient norm and
 * which parameters weight decay touches; one block (block_forward / block_backward) against
 * the reference's block; mixed precision (bf16, fp16): the 16-bit compute copy of the
 * weights, the loss and gradients against fp32's, and the memory plan; the recompute
 * modes against recompute = none, bit for bit. One rank.
 *
 * The model's buffers are typed tensors on the CPU backend, whose memory is the host's:
 * the test reads and writes them directly (F32, I32, U16 below), as only tests may. */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/convert.h"
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

/* The host address of a tensor's elements, of the expected dtype (the CPU backend's
 * memory is host memory). A wrong dtype is a broken test: stop before reading past it. */
static void *host(struct tensor t, enum kdtype want) {
    if (!t.data || t.dt != want) {
        fprintf(stderr, "test_model: tensor %p of %s, expected %s\n", t.data,
                t.data ? kdtype_name(t.dt) : "(absent)", kdtype_name(want));
        abort();
    }
    void *p = backend_host_view(cpu_backend(), t.data);
    if (!p) { fprintf(stderr, "test_model: the backend's memory is not the host's\n"); abort(); }
    return p;
}
static float *F32(struct tensor t) { return host(t, KDT_F32); }
static int32_t *I32(struct tensor t) { return host(t, KDT_I32); }
static uint16_t *U16(struct tensor t) {
    if (!kdtype_is_16bit(t.dt)) host(t, KDT_BF16); /* aborts with the dtypes */
    return host(t, t.dt);
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
 * parameter's gradient is exercised; written into the fp32 masters, then refreshed into
 * the compute copy */
static void random_weights(struct model *m) {
    float *w = F32(m->params);
    for (int i = 0; i < m->pt.n; i++) {
        const struct param *p = &m->pt.p[i];
        int is_gain = strstr(p->name, "ln_") && p->name[strlen(p->name) - 1] == 'w';
        for (int64_t j = 0; j < p->n_local; j++)
            w[p->offset + j] = (float)((is_gain ? 1.0 : 0.0) +
                                       0.15 * rng_normal(rng_key3(3, (uint64_t)i, (uint64_t)j)));
    }
    model_refresh_weights(m);
}

/* random tokens and targets (vocabulary 257) for the largest micro-batch, in slot 0 */
static void random_batch(struct model *m) {
    int32_t *tok = I32(m->slots[0].tokens), *tgt = I32(m->slots[0].targets);
    for (int i = 0; i < m->B * m->T; i++) {
        tok[i] = (int32_t)rng_below(rng_key3(4, 0, (uint64_t)i), 257);
        tgt[i] = (int32_t)rng_below(rng_key3(5, 0, (uint64_t)i), 257);
    }
}

/* zeroed gradients, forward (dloss = 1/BT) and backward of slot 0: the mean loss */
static double forward_backward(struct model *m) {
    const int B = m->B, T = m->T, BT = B * T;
    model_zero_grads(m);
    double loss = model_forward(m, 0, B, T, 1.0f / BT) / BT;
    model_backward(m, 0, B, T);
    return loss;
}

static void test_whole_model_gradient_matches_finite_differences(void) {
    struct config cfg = tiny_config();
    struct grid g;
    grid_init(&g, &cfg);
    struct model m;
    model_init(&m, &cfg, &g, cpu_backend(), 1);
    /* fp32: the passes compute with the masters themselves */
    CHECK(m.dt == KDT_F32 && m.w.data == m.params.data && m.w.dt == KDT_F32);
    random_weights(&m);
    const int B = cfg.micro_batch, T = cfg.seq_len;
    random_batch(&m);
    const int32_t *tokens = I32(m.slots[0].tokens), *targets = I32(m.slots[0].targets);
    double loss = forward_backward(&m);
    const float *params = F32(m.params), *grads = F32(m.grads);

    struct ref r = {B, T, cfg.n_embd, cfg.n_head, cfg.n_layer, 257, m.Vp, &m, NULL};
    r.p = malloc(sizeof(double) * (size_t)m.n_local);
    for (int64_t i = 0; i < m.n_local; i++) r.p[i] = params[i];
    double ref = ref_loss(&r, tokens, targets);
    CHECK_CLOSE(loss, ref, 1e-5, 0);

    /* central differences in double on a sample of every tensor's elements */
    const double eps = 1e-5;
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < m.pt.n; i++) {
        const struct param *p = &m.pt.p[i];
        double gmax = 0;
        for (int64_t j = 0; j < p->n_local; j++) gmax = fmax(gmax, fabs(grads[p->offset + j]));
        for (int s = 0; s < 6; s++) {
            int64_t j = (int64_t)rng_below(rng_key3(6, (uint64_t)i, (uint64_t)s),
                                           (uint64_t)p->n_local);
            if (strcmp(p->name, "wte") == 0 && s < 3) j = tokens[s] * cfg.n_embd + s;
            double *w = &r.p[p->offset + j], keep = *w;
            *w = keep + eps;
            double lp = ref_loss(&r, tokens, targets);
            *w = keep - eps;
            double lm = ref_loss(&r, tokens, targets);
            *w = keep;
            double fd = (lp - lm) / (2 * eps), an = grads[p->offset + j];
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
            double gj = grads[m.pt.p[i].offset + j];
            sq += gj * gj;
        }
    CHECK(sq > 0 && fabs(sqrt(sq) - 1.0) > 1e-3);  /* so that the square would differ */
    CHECK_CLOSE(optim_grad_norm(&m), sqrt(sq), 1e-6, 0);
    /* padded vocabulary rows never get a gradient through the head */
    const struct param *wte = &m.pt.p[params_find_name(&m.pt, "wte")];
    double pad = 0;
    for (int64_t j = 257 * cfg.n_embd; j < wte->n_local; j++) pad += fabs(grads[wte->offset + j]);
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
    layer_w_view(&m, m.w, l, &w);
    layer_w_view(&m, m.grads, l, &dw);
    block_acts_view(&m, &m.slots[0], l, B, T, &ba);
    const float *x = F32(m.slots[0].x);
    CHECK(ba.in.data == x + BTC && ba.out.data == x + 2 * BTC);
    CHECK(ba.in.dt == KDT_F32 && ba.in.rows == B * T && ba.in.cols == C);
    CHECK(ba.out.dt == KDT_F32 && ba.out.rows == B * T && ba.out.cols == C);
    /* the stage's input and output are the first and the last layer boundary (2 layers) */
    struct tensor sin = model_stage_input(&m, 0, B, T), sout = model_stage_output(&m, 0, B, T);
    CHECK(sin.data == x && sin.rows == B * T && sin.cols == C);
    CHECK(sout.data == ba.out.data && sout.rows == B * T && sout.cols == C);
    struct tensor dres = model_dres(&m, B, T);
    CHECK(dres.data == m.dres.data && dres.dt == KDT_F32 && dres.rows == B * T && dres.cols == C);
    float *bin = F32(ba.in), *bout = F32(ba.out), *dr = F32(m.dres);
    const float *grads = F32(m.grads);

    double *in = malloc(sizeof(double) * BTC), *R = malloc(sizeof(double) * BTC);
    for (size_t j = 0; j < BTC; j++) {
        bin[j] = (float)rng_normal(rng_key3(8, 0, j));
        in[j] = bin[j];
        R[j] = (float)rng_normal(rng_key3(9, 0, j));
    }
    model_zero_grads(&m);
    block_forward(&m, &w, &ba);

    struct ref r = {B, T, C, cfg.n_head, cfg.n_layer, 257, m.Vp, &m, NULL};
    r.p = malloc(sizeof(double) * (size_t)m.n_local);
    const float *params = F32(m.params);
    for (int64_t i = 0; i < m.n_local; i++) r.p[i] = params[i];
    double *out = malloc(sizeof(double) * BTC), fwd_err = 0;
    for (int b = 0; b < B; b++) {
        memcpy(out + (size_t)b * T * C, in + (size_t)b * T * C, sizeof(double) * (size_t)T * C);
        ref_block(&r, l, out + (size_t)b * T * C, T);
    }
    for (size_t j = 0; j < BTC; j++) fwd_err = fmax(fwd_err, fabs(bout[j] - out[j]));
    CHECK_MSG(fwd_err < 1e-4, "block output differs from the reference by %.3g", fwd_err);

    for (size_t j = 0; j < BTC; j++) dr[j] = (float)R[j];
    block_backward(&m, &w, &dw, &ba);

    /* central differences: the block's input (against m->dres), then 6 elements of each of
     * the layer's tensors (against m->grads); nothing else gets a gradient */
    const double eps = 1e-5;
    double worst = 0, gmax = 0;
    for (size_t j = 0; j < BTC; j++) gmax = fmax(gmax, fabs(dr[j]));
    for (int s = 0; s < 8; s++) {
        size_t j = (size_t)rng_below(rng_key3(10, 0, (uint64_t)s), BTC);
        double keep = in[j];
        in[j] = keep + eps;
        double lp = ref_block_dot(&r, l, in, R);
        in[j] = keep - eps;
        double lm = ref_block_dot(&r, l, in, R);
        in[j] = keep;
        double fd = (lp - lm) / (2 * eps), an = dr[j];
        worst = fmax(worst, fabs(fd - an) / (gmax + 1e-6));
        CHECK_MSG(fabs(fd - an) <= 2e-3 * gmax + 1e-6,
                  "d(in)[%zu]: analytic %.6g vs finite difference %.6g (max %.3g)", j, an, fd,
                  gmax);
    }
    int first, n;
    params_layer_span(&m.pt, l, &first, &n);
    CHECK(n == 12 && dw.ln1w.data == grads + m.pt.p[first].offset);
    for (int i = 0; i < m.pt.n; i++) {
        const struct param *p = &m.pt.p[i];
        double tmax = 0;
        for (int64_t j = 0; j < p->n_local; j++) tmax = fmax(tmax, fabs(grads[p->offset + j]));
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
            double fd = (lp - lm) / (2 * eps), an = grads[p->offset + j];
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
    CHECK(tensor_numel(m.params) == m.n_local && tensor_numel(m.grads) == m.n_local);
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
    const size_t bytes = tensor_bytes(m.params);
    CHECK(bytes == sizeof(float) * (size_t)m.n_local);
    CHECK(memcmp(F32(m.params), F32(m2.params), bytes) == 0);
    model_init_weights(&m2, 43);
    CHECK(memcmp(F32(m.params), F32(m2.params), bytes) != 0);
    /* std 0.02, residual projections 0.02/sqrt(2L); LayerNorm 1/0, biases 0 */
    const char *names[] = {"h.1.mlp.fc.w", "h.1.mlp.proj.w", "h.0.ln_1.w", "h.0.attn.qkv.b"};
    double want[] = {0.02, 0.02 / sqrt(2.0 * cfg.n_layer), -1, -2};
    for (int k = 0; k < 4; k++) {
        const struct param *p = &m.pt.p[params_find_name(&m.pt, names[k])];
        const float *w = F32(m.params) + p->offset;
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
    float *params = F32(m.params);
    for (int i = 0; i < m.pt.n; i++)
        for (int64_t j = 0; j < m.pt.p[i].n_local; j++)
            params[m.pt.p[i].offset + j] =
                (float)(0.5 + 0.2 * rng_normal(rng_key3(7, (uint64_t)i, (uint64_t)j)));
    model_refresh_weights(&m);
    float *before = malloc(sizeof(float) * (size_t)m.n_local);
    memcpy(before, params, sizeof(float) * (size_t)m.n_local);
    model_zero_grads(&m);
    struct optim o;
    optim_init(&o, &m);
    CHECK(o.m.dt == KDT_F32 && o.v.dt == KDT_F32 && tensor_numel(o.m) == m.n_local &&
          tensor_numel(o.v) == m.n_local);
    optim_step(&o, &m, lr, 1.0f);
    int n_decayed = 0, n_kept = 0;
    for (int i = 0; i < m.pt.n; i++) {
        const struct param *p = &m.pt.p[i];
        int want = decays(p->name), bad = 0;
        for (int64_t j = 0; j < p->n_local && !bad; j++) {
            double b = before[p->offset + j], a = params[p->offset + j];
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

/* ------------------------------------------------------------------------------------ */
/* mixed precision: fp32 masters, a 16-bit compute copy, 16-bit activations             */

static const char *const PREC16[2] = {"bf16", "fp16"};
static const enum kdtype DT16[2] = {KDT_BF16, KDT_F16};

static struct config tiny_config_in(const char *precision) {
    struct config c = tiny_config();
    config_set(&c, "precision", precision, "test");
    return c;
}

/* the reference rounding of one master weight (kernels/cpu/convert.h) */
static uint16_t round16(enum kdtype dt, float x) {
    return dt == KDT_BF16 ? cvt_f32_to_bf16_1(x) : cvt_f32_to_f16_1(x);
}

/* elements of m->w that are not the reference rounding of their master; the first in *at */
static int64_t count_unrounded(const struct model *m, int64_t *at) {
    const float *p = F32(m->params);
    const uint16_t *w = U16(m->w);
    int64_t bad = 0;
    *at = -1;
    for (int64_t j = 0; j < m->n_local; j++)
        if (w[j] != round16(m->dt, p[j])) {
            if (!bad) *at = j;
            bad++;
        }
    return bad;
}

static float f32_of_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* Precision bf16 / fp16: m.w is a 16-bit buffer of its own, and model_init,
 * model_init_weights, optim_step and model_refresh_weights leave in it each fp32 master
 * rounded to nearest even (the scalar reference of kernels/cpu/convert.h, and literal
 * bit patterns for ties, overflow, subnormals, signed zero, inf and NaN); the views of
 * m.w, the activations and the scratch have the compute dtype, with the same offsets as
 * fp32, and the statistics, token ids and cross-entropy rows stay fp32 / int32. */
static void test_16bit_weights_are_a_separate_copy_rounded_to_nearest_even(void) {
    /* value, bf16, fp16 */
    static const struct { uint32_t f32; uint16_t bf16, f16; } special[] = {
        {0x3f808000u, 0x3f80, 0x3c04}, /* 1 + 2^-8: bf16 tie, even stays */
        {0x3f818000u, 0x3f82, 0x3c0c}, /* 1 + 3 2^-8: bf16 tie, odd rounds up */
        {0x3f808001u, 0x3f81, 0x3c04}, /* just above the bf16 tie */
        {0xbf818000u, 0xbf82, 0xbc0c}, /* negative tie */
        {0x3f801000u, 0x3f80, 0x3c00}, /* 1 + 2^-11: fp16 tie, even stays */
        {0x3f803000u, 0x3f80, 0x3c02}, /* 1 + 3 2^-11: fp16 tie, odd rounds up */
        {0x477fef00u, 0x4780, 0x7bff}, /* 65519: fp16's largest, 65504 */
        {0x477ff000u, 0x4780, 0x7c00}, /* 65520: fp16 overflows to inf */
        {0x7f7fffffu, 0x7f80, 0x7c00}, /* FLT_MAX: inf in both */
        {0x33400000u, 0x3340, 0x0001}, /* 3 2^-26: fp16's smallest subnormal */
        {0x33000000u, 0x3300, 0x0000}, /* 2^-25: fp16 tie with 0, even */
        {0x00010000u, 0x0001, 0x0000}, /* an fp32 subnormal: bf16 keeps its top bits */
        {0x80000000u, 0x8000, 0x8000}, /* -0 */
        {0xff800000u, 0xff80, 0xfc00}, /* -inf */
        {0x7fc00000u, 0x7fc0, 0x7e00}, /* NaN stays a quiet NaN */
    };
    const int n_special = (int)(sizeof special / sizeof special[0]);
    for (int k = 0; k < 2; k++) {
        const enum kdtype dt = DT16[k];
        struct config cfg = tiny_config_in(PREC16[k]);
        cfg.weight_decay = 0.1f;
        struct grid g;
        grid_init(&g, &cfg);
        struct model m;
        model_init(&m, &cfg, &g, cpu_backend(), 1);
        const int B = cfg.micro_batch, T = cfg.seq_len, BT = B * T, C = cfg.n_embd;
        CHECK(model_dtype(&cfg) == dt && m.dt == dt);
        /* the masters and their gradients stay fp32; the compute copy is a buffer of its own */
        CHECK(m.params.dt == KDT_F32 && m.grads.dt == KDT_F32 && m.w.dt == dt);
        CHECK(tensor_numel(m.params) == m.n_local && tensor_numel(m.grads) == m.n_local &&
              tensor_numel(m.w) == m.n_local);
        CHECK(tensor_bytes(m.w) == 2 * (size_t)m.n_local);
        const char *wb = m.w.data, *pb = m.params.data, *gb = m.grads.data;
        CHECK(wb && wb != pb && wb != gb);
        CHECK(wb + tensor_bytes(m.w) <= pb || pb + tensor_bytes(m.params) <= wb);
        CHECK(wb + tensor_bytes(m.w) <= gb || gb + tensor_bytes(m.grads) <= wb);

        /* the views: of m.w in the compute dtype, at the masters' offsets and shapes */
        const float *params = F32(m.params);
        const uint16_t *w16 = U16(m.w);
        int bad_views = 0;
        for (int i = 0; i < m.pt.n; i++) {
            const struct param *p = &m.pt.p[i];
            struct tensor vp = model_param(&m, m.params, p->layer, p->kind);
            struct tensor vw = model_param(&m, m.w, p->layer, p->kind);
            struct tensor vg = model_param(&m, m.grads, p->layer, p->kind);
            if (vw.dt != dt || vw.rows != vp.rows || vw.cols != vp.cols ||
                tensor_numel(vw) != p->n_local || vw.data != w16 + p->offset ||
                vp.data != params + p->offset || vg.dt != KDT_F32 ||
                vg.data != F32(m.grads) + p->offset) {
                CHECK_MSG(0, "%s: the %s view is not at the master's offset and shape",
                          p->name, PREC16[k]);
                bad_views++;
            }
        }
        CHECK(bad_views == 0);
        struct layer_w lw;
        layer_w_view(&m, m.w, 1, &lw);
        const struct param *fcp = &m.pt.p[params_find_name(&m.pt, "h.1.mlp.proj.w")];
        CHECK(lw.fcpw.dt == dt && lw.fcpw.data == w16 + fcp->offset && lw.ln1w.dt == dt);
        struct block_acts ba;
        block_acts_view(&m, &m.slots[0], 1, B, T, &ba);
        const struct acts *a = &m.slots[0];
        CHECK(a->x.dt == dt && ba.in.dt == dt && ba.out.dt == dt && ba.qkv.dt == dt &&
              ba.att.dt == dt && ba.fch_gelu.dt == dt);
        CHECK(ba.in.data == U16(a->x) + (size_t)BT * C &&
              ba.out.data == U16(a->x) + (size_t)2 * BT * C);
        CHECK(ba.ln1_mean.dt == KDT_F32 && ba.ln1_mean.data == F32(a->ln1_mean) + BT &&
              ba.ln2_rstd.dt == KDT_F32 && ba.ln2_rstd.data == F32(a->ln2_rstd) + BT);
        CHECK(a->logits.dt == dt && a->lnf_mean.dt == KDT_F32 && a->rowmax.dt == KDT_F32 &&
              a->sumexp.dt == KDT_F32 && a->tlogit.dt == KDT_F32);
        CHECK(a->tokens.dt == KDT_I32 && a->targets.dt == KDT_I32);
        CHECK(m.dres.dt == dt && model_dres(&m, B, T).dt == dt &&
              model_stage_input(&m, 0, B, T).dt == dt && model_stage_output(&m, 0, B, T).dt == dt);

        /* model_init refreshed the zeroed masters: +0 everywhere */
        int64_t nonzero = 0, at, bad;
        for (int64_t j = 0; j < m.n_local; j++) nonzero += w16[j] != 0;
        CHECK(nonzero == 0);
        /* initialisation refreshes */
        model_init_weights(&m, 42);
        bad = count_unrounded(&m, &at);
        CHECK_MSG(bad == 0, "%s after model_init_weights: %lld of %lld weights not rounded "
                  "(first [%lld]: %.9g -> 0x%04x)", PREC16[k], (long long)bad,
                  (long long)m.n_local, (long long)at, at >= 0 ? params[at] : 0.0,
                  at >= 0 ? w16[at] : 0);
        /* so does an optimizer step (weight decay changes the matrices here) */
        uint16_t *w_before = malloc(tensor_bytes(m.w));
        memcpy(w_before, w16, tensor_bytes(m.w));
        struct optim o;
        optim_init(&o, &m);
        model_zero_grads(&m);
        optim_step(&o, &m, 0.05f, 1.0f);
        optim_free(&o);
        CHECK(memcmp(w_before, w16, tensor_bytes(m.w)) != 0);
        bad = count_unrounded(&m, &at);
        CHECK_MSG(bad == 0, "%s after optim_step: %lld weights not rounded", PREC16[k],
                  (long long)bad);

        /* masters written directly, over a wide range of magnitudes (fp16's subnormals and
         * overflow included) and the special values: m.w keeps the old values until
         * model_refresh_weights, then holds them rounded */
        float *pw = F32(m.params);
        for (int64_t j = 0; j < m.n_local; j++) {
            int e = (int)rng_below(rng_key3(12, 0, (uint64_t)j), 50) - 30; /* 2^-30 .. 2^19 */
            pw[j] = (float)ldexp(rng_normal(rng_key3(12, 1, (uint64_t)j)), e);
        }
        for (int s = 0; s < n_special; s++) pw[s] = f32_of_bits(special[s].f32);
        memcpy(w_before, w16, tensor_bytes(m.w));
        CHECK(count_unrounded(&m, &at) > m.n_local / 2);  /* not refreshed yet */
        CHECK(memcmp(w_before, w16, tensor_bytes(m.w)) == 0);
        model_refresh_weights(&m);
        bad = count_unrounded(&m, &at);
        CHECK_MSG(bad == 0, "%s after model_refresh_weights: %lld of %lld weights not rounded "
                  "(first [%lld]: %a -> 0x%04x, expected 0x%04x)", PREC16[k], (long long)bad,
                  (long long)m.n_local, (long long)at, at >= 0 ? pw[at] : 0.0,
                  at >= 0 ? w16[at] : 0, at >= 0 ? round16(dt, pw[at]) : 0);
        for (int s = 0; s < n_special; s++) {
            uint16_t want = dt == KDT_BF16 ? special[s].bf16 : special[s].f16;
            CHECK_MSG(w16[s] == want, "%s: 0x%08x -> 0x%04x, expected 0x%04x", PREC16[k],
                      special[s].f32, w16[s], want);
        }
        free(w_before);
        model_free(&m);
        grid_free(&g);
    }
}

/* One micro-batch in bf16 and fp16 against fp32, same weights and tokens: the loss within
 * a relative tolerance, the parameter gradients (fp32, accumulated from 16-bit
 * activation gradients) pointing the same way, as a whole and tensor by tensor.
 * Measured on this model (random weights of std 0.15, LayerNorm gains around 1; CPU
 * backend, 1 or 2 threads): loss relative error 2.8e-4 (bf16), 3.4e-5 (fp16); gradient
 * cosine 0.99994 / 0.999999 overall, 0.99986 / 0.999998 for the worst tensor. The
 * tolerances keep a margin of 30x and more for other BLAS summation orders. */
static void test_16bit_loss_and_gradients_track_fp32(void) {
    const char *prec[3] = {"fp32", "bf16", "fp16"};
    /* bf16 keeps 8 significant bits, fp16 11: a relative rounding of 2^-9 and 2^-12 */
    const double loss_rtol[3] = {0, 1e-2, 2e-3}, min_cos[3] = {0, 0.99, 0.999};
    double loss[3];
    float *grad[3];
    int64_t n = 0;
    for (int k = 0; k < 3; k++) {
        struct config cfg = tiny_config_in(prec[k]);
        struct grid g;
        grid_init(&g, &cfg);
        struct model m;
        model_init(&m, &cfg, &g, cpu_backend(), 1);
        CHECK(m.dt == model_dtype(&cfg));
        random_weights(&m);
        random_batch(&m);
        loss[k] = forward_backward(&m);
        n = m.n_local;
        grad[k] = malloc(sizeof(float) * (size_t)n);
        memcpy(grad[k], F32(m.grads), sizeof(float) * (size_t)n);
        int64_t nonfinite = 0;
        for (int64_t j = 0; j < n; j++) nonfinite += !isfinite(grad[k][j]);
        CHECK_MSG(isfinite(loss[k]) && nonfinite == 0, "%s: loss %g, %lld non-finite gradients",
                  prec[k], loss[k], (long long)nonfinite);
        /* per tensor, the lowest cosine similarity with fp32 (reported) */
        if (k > 0) {
            double worst_cos = 1;
            const char *worst_name = "";
            for (int i = 0; i < m.pt.n; i++) {
                const struct param *p = &m.pt.p[i];
                double d = 0, a2 = 0, b2 = 0;
                for (int64_t j = p->offset; j < p->offset + p->n_local; j++) {
                    d += (double)grad[k][j] * grad[0][j];
                    a2 += (double)grad[k][j] * grad[k][j];
                    b2 += (double)grad[0][j] * grad[0][j];
                }
                double c = a2 > 0 && b2 > 0 ? d / sqrt(a2 * b2) : (a2 == b2 ? 1 : 0);
                if (!(c >= worst_cos)) { worst_cos = c; worst_name = p->name; } /* NaN too */
            }
            printf("       %s: lowest per-tensor gradient cosine %.6f (%s)\n", prec[k],
                   worst_cos, worst_name);
            /* every tensor, not just the whole (a wrong small tensor would hide in it) */
            CHECK_MSG(worst_cos > min_cos[k] && !isnan(worst_cos), "%s: %s's gradient has cosine %.6f <= %g with "
                      "fp32's", prec[k], worst_name, worst_cos, min_cos[k]);
        }
        model_free(&m);
        grid_free(&g);
    }
    for (int k = 1; k < 3; k++) {
        double d = 0, a2 = 0, b2 = 0, e2 = 0;
        int64_t differ = 0;
        for (int64_t j = 0; j < n; j++) {
            double a = grad[k][j], b = grad[0][j];
            d += a * b; a2 += a * a; b2 += b * b; e2 += (a - b) * (a - b);
            differ += grad[k][j] != grad[0][j];
        }
        double cos = d / sqrt(a2 * b2), rel = fabs(loss[k] - loss[0]) / fabs(loss[0]);
        printf("       %s: loss %.6f vs fp32 %.6f (relative %.2e, tolerance %.0e); gradient "
               "cosine %.6f (> %g), relative L2 error %.2e\n", prec[k], loss[k], loss[0],
               rel, loss_rtol[k], cos, min_cos[k], sqrt(e2 / b2));
        CHECK_MSG(rel <= loss_rtol[k], "%s: loss %.8f vs fp32 %.8f: relative %.3g > %.3g",
                  prec[k], loss[k], loss[0], rel, loss_rtol[k]);
        CHECK_MSG(cos > min_cos[k], "%s: gradient cosine with fp32 %.6f <= %g", prec[k], cos,
                  min_cos[k]);
        /* ... and the 16-bit path did run: not fp32's gradients bit for bit */
        CHECK_MSG(differ > 0, "%s: gradients identical to fp32's", prec[k]);
        CHECK(loss[k] != loss[0]);
    }
    for (int k = 0; k < 3; k++) free(grad[k]);
}

/* backend_alloc reserves whole 64-byte blocks, and the plan counts them alike */
static int64_t blocks64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

/* The memory plan of a 16-bit model: the same fp32 masters (and gradients), plus a
 * 16-bit copy of half their size; an activation slot and the backward scratch (but for the
 * fp32 attention scratch) about half of fp32's, all but the fp32 statistics, cross-entropy rows and int32 token ids being
 * 16-bit. And model_init allocates on the backend exactly what the plan says. */
static void test_16bit_memory_plan_halves_activations_and_weights(void) {
    const char *prec[3] = {"fp32", "bf16", "fp16"};
    struct config cfg = tiny_config();
    cfg.n_embd = 64; cfg.n_head = 4; cfg.seq_len = 64; cfg.block_size = 64; cfg.micro_batch = 4;
    struct grid g;
    grid_init(&g, &cfg);
    const int64_t BT = (int64_t)cfg.micro_batch * cfg.seq_len, nl = cfg.n_layer;
    struct model_mem mm[3];
    for (int k = 0; k < 3; k++) {
        config_set(&cfg, "precision", prec[k], "test");
        model_mem_plan(&cfg, &g, &mm[k]);
    }
    const int64_t n = mm[0].n_local;
    CHECK(mm[0].weights16 == 0 && mm[0].tp_staging == 0);
    /* what stays 32-bit in a slot: LayerNorm mean and rstd of 2 LayerNorms per layer, of
     * ln_f, rowmax, sumexp, tlogit, and the int32 tokens and targets */
    const int64_t fixed = 4 * (4 * nl * BT + 5 * BT + 2 * BT);
    for (int k = 1; k < 3; k++) {
        CHECK(mm[k].n_local == n && mm[k].params == mm[0].params && mm[k].table == mm[0].table);
        CHECK(mm[k].params == blocks64(4 * n));
        CHECK(mm[k].weights16 == blocks64(2 * n));
        CHECK(llabs(2 * mm[k].weights16 - mm[k].params) < 128);  /* half the masters */
        CHECK(mm[k].tp_staging == 0);                            /* tp = 1: no staging */
        double want_slot = (double)(mm[0].slot - fixed) / 2 + fixed;
        double ratio = (double)mm[k].slot / mm[0].slot;
        CHECK_MSG(fabs(mm[k].slot - want_slot) <= 64.0 * 22,
                  "%s: slot %lld bytes, expected about %.0f", prec[k], (long long)mm[k].slot,
                  want_slot);
        CHECK_MSG(ratio >= 0.5 && ratio < 0.52, "%s: slot %lld vs fp32 %lld (ratio %.4f)",
                  prec[k], (long long)mm[k].slot, (long long)mm[0].slot, ratio);
        /* the scratch halves but for the attention backward's, fp32 in every precision */
        const int64_t att_scratch = 4 * (int64_t)cfg.micro_batch * cfg.n_head * cfg.seq_len *
                                    cfg.seq_len;
        CHECK(llabs(2 * (mm[k].scratch - att_scratch) - (mm[0].scratch - att_scratch)) <=
              64 * 2 * 6);
        if (k == 1)
            printf("       memory plan, bf16 vs fp32: slot %lld vs %lld bytes (%.4f), scratch "
                   "%lld vs %lld, weights16 %lld = params %lld / 2\n", (long long)mm[k].slot,
                   (long long)mm[0].slot, ratio, (long long)mm[k].scratch,
                   (long long)mm[0].scratch, (long long)mm[k].weights16,
                   (long long)mm[k].params);
    }
    CHECK(mm[1].slot == mm[2].slot && mm[1].scratch == mm[2].scratch &&
          mm[1].weights16 == mm[2].weights16);
    /* activations dominate this configuration: fp32's slot is larger than the weights */
    CHECK(mm[0].slot > mm[0].params);

    /* what model_init allocates on the backend, 2 slots: masters, gradients, the 16-bit
     * copy, the slots, the scratch, the staging; and model_free gives it all back */
    for (int k = 0; k < 3; k++) {
        config_set(&cfg, "precision", prec[k], "test");
        struct backend_mem s0, s1, s2;
        backend_mem_stats(cpu_backend(), &s0);
        struct model m;
        model_init(&m, &cfg, &g, cpu_backend(), 2);
        backend_mem_stats(cpu_backend(), &s1);
        model_free(&m);
        backend_mem_stats(cpu_backend(), &s2);
        int64_t want = 2 * mm[k].params + mm[k].weights16 + 2 * mm[k].slot + mm[k].scratch +
                       mm[k].tp_staging;
        CHECK_MSG(s1.current - s0.current == want, "%s: model_init allocated %lld bytes, the "
                  "plan says %lld", prec[k], (long long)(s1.current - s0.current),
                  (long long)want);
        CHECK(s2.current == s0.current && s2.n_allocs == s0.n_allocs);
    }
    grid_free(&g);
}

/* recompute = selective and full: one micro-batch's loss and every parameter gradient are
 * recompute = none's bit for bit (fp32 and bf16; the largest micro-batch and a smaller
 * one, B' x T' = 1 x 5, whose arrays are packed differently), two micro-batches in flight
 * so that the shared recompute layer serves two slots. The slots keep what the mode says,
 * and model_init allocates what the plan counts, less for selective, less still for full. */
static void test_recompute_modes_are_bit_identical_to_none(void) {
    const char *mode[3] = {"none", "selective", "full"}, *prec[2] = {"fp32", "bf16"};
    for (int p = 0; p < 2; p++) {
        double loss[3][2];
        float *grad[3] = {NULL, NULL, NULL};
        int64_t n = 0;
        struct model_mem mm[3];
        for (int k = 0; k < 3; k++) {
            struct config cfg = tiny_config_in(prec[p]);
            cfg.n_layer = 3;
            config_set(&cfg, "recompute", mode[k], "test");
            struct grid g;
            grid_init(&g, &cfg);
            model_mem_plan(&cfg, &g, &mm[k]);
            struct backend_mem s0, s1;
            backend_mem_stats(cpu_backend(), &s0);
            struct model m;
            model_init(&m, &cfg, &g, cpu_backend(), 2);
            backend_mem_stats(cpu_backend(), &s1);
            int64_t want = 2 * mm[k].params + mm[k].weights16 + 2 * mm[k].slot +
                           mm[k].scratch + mm[k].tp_staging;
            CHECK_MSG(s1.current - s0.current == want, "%s %s: model_init allocated %lld "
                      "bytes, the plan says %lld", prec[p], mode[k],
                      (long long)(s1.current - s0.current), (long long)want);
            CHECK(m.recompute == (enum recompute)k);
            const struct acts *a = &m.slots[1];
            CHECK(tensor_present(a->x) && tensor_present(a->logits));
            CHECK(tensor_present(a->att) == (k == 0) && tensor_present(a->fch_gelu) == (k == 0));
            CHECK(tensor_present(a->qkv) == (k < 2) && tensor_present(a->fch) == (k < 2) &&
                  tensor_present(a->atty) == (k < 2) && tensor_present(a->ln1_mean) == (k < 2));
            CHECK(tensor_present(m.rc.att) == (k > 0) && tensor_present(m.rc.qkv) == (k == 2));
            CHECK((mm[k].recompute > 0) == (k > 0));
            random_weights(&m);
            random_batch(&m);
            memcpy(I32(m.slots[1].tokens), I32(m.slots[0].tokens), tensor_bytes(a->tokens));
            memcpy(I32(m.slots[1].targets), I32(m.slots[0].targets), tensor_bytes(a->targets));
            /* both slots forward, then both backward (1F1B's warm-up shape): slot 1's
             * forward overwrote the shared layer after slot 0's */
            const int size[2][2] = {{m.B, m.T}, {1, m.T - 3}};
            n = m.n_local;
            grad[k] = malloc(sizeof(float) * (size_t)n * 2);
            for (int z = 0; z < 2; z++) {
                const int B = size[z][0], T = size[z][1], BT = B * T;
                model_zero_grads(&m);
                double l0 = model_forward(&m, 0, B, T, 1.0f / BT);
                double l1 = model_forward(&m, 1, B, T, 1.0f / BT);
                model_backward(&m, 0, B, T);
                model_backward(&m, 1, B, T);
                CHECK(l0 == l1);
                loss[k][z] = l0;
                memcpy(grad[k] + z * n, F32(m.grads), sizeof(float) * (size_t)n);
            }
            model_free(&m);
            grid_free(&g);
        }
        for (int k = 1; k < 3; k++) {
            int64_t differ = 0, at = -1;
            for (int64_t j = 0; j < 2 * n; j++)
                if (memcmp(&grad[k][j], &grad[0][j], sizeof(float)) != 0) {
                    if (at < 0) at = j;
                    differ++;
                }
            CHECK_MSG(differ == 0, "%s %s: %lld of %lld gradients differ from none's (first "
                      "[%lld]: %.9g vs %.9g)", prec[p], mode[k], (long long)differ,
                      (long long)(2 * n), (long long)at, at >= 0 ? grad[k][at] : 0.0,
                      at >= 0 ? grad[0][at] : 0.0);
            for (int z = 0; z < 2; z++)
                CHECK_MSG(loss[k][z] == loss[0][z], "%s %s: loss %.17g vs none's %.17g",
                          prec[p], mode[k], loss[k][z], loss[0][z]);
        }
        CHECK(mm[1].slot < mm[0].slot && mm[2].slot < mm[1].slot);
        CHECK(2 * mm[1].slot + mm[1].scratch < 2 * mm[0].slot + mm[0].scratch &&
              2 * mm[2].slot + mm[2].scratch < 2 * mm[1].slot + mm[1].scratch);
        printf("       %s: slot %lld / %lld / %lld bytes, recompute layer 0 / %lld / %lld "
               "(none / selective / full)\n", prec[p], (long long)mm[0].slot,
               (long long)mm[1].slot, (long long)mm[2].slot, (long long)mm[1].recompute,
               (long long)mm[2].recompute);
        for (int k = 0; k < 3; k++) free(grad[k]);
    }
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
    RUN(test_16bit_weights_are_a_separate_copy_rounded_to_nearest_even);
    RUN(test_16bit_loss_and_gradients_track_fp32);
    RUN(test_16bit_memory_plan_halves_activations_and_weights);
    RUN(test_recompute_modes_are_bit_identical_to_none);
    int rc = test_summary();
    MPI_Finalize();
    return rc;
}

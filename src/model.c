/* model.c — the GPT-2 parameter table, initialisation, and the forward and backward
 * pass of one micro-batch through this rank's pipeline stage and tensor shard. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "rng.h"
#include "tp.h"

const char *const KTIMER_NAMES[KT_COUNT] = {
    "matmul fwd", "matmul bwd", "attention fwd", "attention bwd", "layernorm fwd",
    "layernorm bwd", "gelu fwd", "gelu bwd", "embedding", "cross-entropy", "residual"};

/* ------------------------------------------------------------------------------------ */
/* stage balancing                                                                      */

void model_stage_bounds(const struct config *cfg, int pp, int *bounds) {
    int L = cfg->n_layer;
    if (cfg->stages[0]) {
        /* explicit "a,b,c": layers per stage */
        const char *s = cfg->stages;
        bounds[0] = 0;
        for (int i = 0; i < pp; i++) {
            char *end;
            long n = strtol(s, &end, 10);
            if (end == s || n < 1)
                tr_fail(TR_EXIT_USAGE, "write the layers of each stage, e.g. stages = \"3,5\"",
                        "stages = \"%s\": expected %d positive numbers", cfg->stages, pp);
            bounds[i + 1] = bounds[i] + (int)n;
            s = end;
            if (*s == ',') s++;
        }
        if (*s || bounds[pp] != L)
            tr_fail(TR_EXIT_USAGE, "the layers of all stages must add up to n_layer",
                    "stages = \"%s\" gives %d layers over %d stages; the model has %d layers "
                    "and pp = %d", cfg->stages, bounds[pp], pp, L, pp);
        return;
    }
    /* Balance by cost: a block costs 1; the last stage also runs the LM head and loss,
     * which cost about V/(12 C) blocks (2·C·V vs 24·C² FLOPs per token). Minimise the
     * largest stage cost over contiguous splits (dynamic programming, O(pp·L²)). */
    double head = (double)config_padded_vocab(cfg) / (12.0 * cfg->n_embd);
    double *best = malloc(sizeof(double) * (size_t)(pp + 1) * (L + 1));
    int *cut = malloc(sizeof(int) * (size_t)(pp + 1) * (L + 1));
#define BEST(s, l) best[(s) * (L + 1) + (l)]
#define CUT(s, l) cut[(s) * (L + 1) + (l)]
    for (int s = 0; s <= pp; s++)
        for (int l = 0; l <= L; l++) BEST(s, l) = INFINITY;
    BEST(0, 0) = 0;
    for (int s = 1; s <= pp; s++)
        for (int l = s; l <= L; l++)
            for (int k = s - 1; k < l; k++) {
                double c = (double)(l - k) + (s == pp ? head : 0.0);
                double v = fmax(BEST(s - 1, k), c);
                if (v < BEST(s, l) - 1e-12) { BEST(s, l) = v; CUT(s, l) = k; }
            }
    bounds[pp] = L;
    for (int s = pp; s >= 1; s--) bounds[s - 1] = CUT(s, bounds[s]);
#undef BEST
#undef CUT
    free(best);
    free(cut);
}

/* ------------------------------------------------------------------------------------ */
/* the parameter table                                                                  */

static void build_table(struct model *m) {
    const struct grid *g = m->grid;
    struct params_layout lay = {
        .C = m->C, .Vp = m->Vp, .P = m->cfg.block_size, .L = m->L,
        .dp = g->dp, .dp_rank = g->dp_rank, .tp = g->tp, .tp_rank = g->tp_rank,
        .l0 = m->l0, .l1 = m->l1, .first = m->first, .last = m->last};
    params_build(&m->pt, &lay);
    m->n_local = m->pt.n_local;
    m->n_logical = m->pt.n_logical;
}

/* ------------------------------------------------------------------------------------ */
/* allocation                                                                           */

/* The arrays of one activation slot and their sizes in bytes (0: not on this stage), in
 * one list that alloc_slot allocates and model_mem_plan counts: the memory plan cannot
 * drift from the allocation. Returns the number of arrays. */
#define SLOT_ARRAYS 22
static int slot_arrays(const struct model *m, struct acts *a, void **ptr[], size_t bytes[]) {
    size_t BT = (size_t)m->B * m->T, nl = (size_t)m->nl;
    size_t C = (size_t)m->C, Cl = (size_t)m->Cl, Fl = (size_t)m->Fl, f = sizeof(float);
    size_t att = (size_t)m->B * m->NHl * m->T * m->T, first = m->first, last = m->last;
    int n = 0;
#define ARR(field, n_bytes) (ptr[n] = (void **)&a->field, bytes[n++] = (n_bytes))
    ARR(x, f * (nl + 1) * BT * C);
    ARR(ln1, f * nl * BT * C);
    ARR(ln1_mean, f * nl * BT);
    ARR(ln1_rstd, f * nl * BT);
    ARR(qkv, f * nl * BT * 3 * Cl);
    ARR(att, f * nl * att);
    ARR(atty, f * nl * BT * Cl);
    ARR(xmid, f * nl * BT * C);
    ARR(ln2, f * nl * BT * C);
    ARR(ln2_mean, f * nl * BT);
    ARR(ln2_rstd, f * nl * BT);
    ARR(fch, f * nl * BT * Fl);
    ARR(fch_gelu, f * nl * BT * Fl);
    ARR(tokens, first * sizeof(int32_t) * BT);
    ARR(lnf, last * f * BT * C);
    ARR(lnf_mean, last * f * BT);
    ARR(lnf_rstd, last * f * BT);
    ARR(logits, last * f * BT * (size_t)m->Vl);
    ARR(rowmax, last * f * BT);
    ARR(sumexp, last * f * BT);
    ARR(tlogit, last * f * BT);
    ARR(targets, last * sizeof(int32_t) * BT);
#undef ARR
    return n;
}

static void alloc_slot(struct model *m, struct acts *a) {
    void **ptr[SLOT_ARRAYS];
    size_t bytes[SLOT_ARRAYS];
    memset(a, 0, sizeof *a);
    int n = slot_arrays(m, a, ptr, bytes);
    for (int i = 0; i < n; i++)
        if (bytes[i]) *ptr[i] = backend_alloc(m->be, bytes[i]);
}

/* The backward scratch, shared by all slots: the same kind of list. */
#define SCRATCH_ARRAYS 6
static int scratch_arrays(struct model *m, float **ptr[], size_t bytes[]) {
    size_t BT = (size_t)m->B * m->T, f = sizeof(float);
    int n = 0;
#define ARR(field, n_bytes) (ptr[n] = &m->field, bytes[n++] = (n_bytes))
    ARR(dres, f * BT * m->C);
    ARR(dln, f * BT * m->C);
    ARR(dqkv, f * BT * 3 * m->Cl);
    ARR(datty, f * BT * m->Cl);
    ARR(dfch, f * BT * m->Fl);
    ARR(att_scratch, f * (size_t)m->B * m->NHl * m->T * m->T);
#undef ARR
    return n;
}

static void free_slot(struct backend *be, struct acts *a) {
    void *ptrs[] = {a->x, a->ln1, a->ln1_mean, a->ln1_rstd, a->qkv, a->att, a->atty, a->xmid,
                    a->ln2, a->ln2_mean, a->ln2_rstd, a->fch, a->fch_gelu, a->lnf, a->lnf_mean,
                    a->lnf_rstd, a->logits, a->rowmax, a->sumexp, a->tlogit, a->tokens,
                    a->targets};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) backend_free_mem(be, ptrs[i]);
}

/* Everything model_init decides before it allocates: sizes, stage, parameter table. */
static void model_layout(struct model *m, const struct config *cfg, const struct grid *g,
                         struct backend *be) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->grid = g;
    m->be = be;
    m->k = be ? backend_kernels(be, KDT_F32) : NULL;
    m->C = cfg->n_embd;
    m->NH = cfg->n_head;
    m->V = cfg->vocab_size;
    m->Vp = config_padded_vocab(cfg);
    m->L = cfg->n_layer;
    m->T = cfg->seq_len;
    m->B = cfg->micro_batch;
    m->Cl = m->C / g->tp;
    m->NHl = m->NH / g->tp;
    m->Vl = m->Vp / g->tp;
    m->v0 = m->Vl * g->tp_rank;
    m->Fl = 4 * m->C / g->tp;
    int *bounds = malloc(sizeof(int) * (size_t)(g->pp + 1));
    model_stage_bounds(cfg, g->pp, bounds);
    m->l0 = bounds[g->pp_rank];
    m->l1 = bounds[g->pp_rank + 1];
    free(bounds);
    m->nl = m->l1 - m->l0;
    m->first = grid_is_first_stage(g);
    m->last = grid_is_last_stage(g);
    build_table(m);
}

void model_init(struct model *m, const struct config *cfg, const struct grid *g,
                struct backend *be, int n_slots) {
    model_layout(m, cfg, g, be);
    size_t n_bytes = sizeof(float) * (size_t)m->n_local;
    m->params = backend_alloc(be, n_bytes);
    m->grads = backend_alloc(be, n_bytes);
    backend_memset(be, m->params, 0, n_bytes);
    backend_memset(be, m->grads, 0, n_bytes);
    m->n_slots = n_slots;
    m->slots = tr_calloc((size_t)n_slots, sizeof(struct acts));
    for (int s = 0; s < n_slots; s++) alloc_slot(m, &m->slots[s]);
    float **ptr[SCRATCH_ARRAYS];
    size_t bytes[SCRATCH_ARRAYS];
    int n = scratch_arrays(m, ptr, bytes);
    for (int i = 0; i < n; i++) *ptr[i] = backend_alloc(be, bytes[i]);
}

/* backend_alloc counts every block in whole 64-byte units */
static int64_t alloc_bytes(size_t n_bytes) { return (int64_t)((n_bytes + 63) & ~(size_t)63); }

void model_mem_plan(const struct config *cfg, const struct grid *g, struct model_mem *mm) {
    struct model m;
    model_layout(&m, cfg, g, NULL);
    memset(mm, 0, sizeof *mm);
    mm->n_local = m.n_local;
    mm->params = alloc_bytes(sizeof(float) * (size_t)m.n_local);
    mm->table = alloc_bytes((size_t)params_table_bytes(m.L));
    struct acts a;
    void **sp[SLOT_ARRAYS];
    size_t sb[SLOT_ARRAYS];
    int n = slot_arrays(&m, &a, sp, sb);
    for (int i = 0; i < n; i++)
        if (sb[i]) mm->slot += alloc_bytes(sb[i]);
    float **wp[SCRATCH_ARRAYS];
    size_t wb[SCRATCH_ARRAYS];
    n = scratch_arrays(&m, wp, wb);
    for (int i = 0; i < n; i++) mm->scratch += alloc_bytes(wb[i]);
    mm->first = m.first;
    mm->last = m.last;
    params_free(&m.pt);
}

void model_free(struct model *m) {
    for (int s = 0; s < m->n_slots; s++) free_slot(m->be, &m->slots[s]);
    tr_free(m->slots);
    params_free(&m->pt);
    backend_free_mem(m->be, m->params);
    backend_free_mem(m->be, m->grads);
    void *ptrs[] = {m->dres, m->dln, m->dqkv, m->datty, m->dfch, m->att_scratch};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) backend_free_mem(m->be, ptrs[i]);
    memset(m, 0, sizeof *m);
}

void model_zero_grads(struct model *m) {
    backend_memset(m->be, m->grads, 0, sizeof(float) * (size_t)m->n_local);
}

void model_timers_reset(struct model *m) {
    memset(m->t_kernel, 0, sizeof m->t_kernel);
    m->t_tp_comm = 0;
}

/* ------------------------------------------------------------------------------------ */
/* initialisation                                                                       */

void model_init_weights(struct model *m, uint64_t seed) {
    double resid_scale = 1.0 / sqrt(2.0 * m->L);
    for (int i = 0; i < m->pt.n; i++) {
        const struct param *p = &m->pt.p[i];
        if (!p->n_local) continue;
        float *w = m->params + p->offset;
        uint64_t tensor_key = tr_hash_str(p->name);
        double std = p->init == PI_NORMAL_RESID ? 0.02 * resid_scale : 0.02;
        const int64_t *ls = p->local_shape, *st = p->local_start, *fs = p->shape;
#pragma omp parallel for collapse(2) schedule(static)
        for (int64_t a = 0; a < ls[0]; a++)
            for (int64_t b = 0; b < ls[1]; b++)
                for (int64_t c = 0; c < ls[2]; c++) {
                    int64_t local = (a * ls[1] + b) * ls[2] + c;
                    int64_t logical = ((a + st[0]) * fs[1] + (b + st[1])) * fs[2] + c + st[2];
                    float v = 0.0f;
                    switch (p->init) {
                    case PI_ZEROS: v = 0.0f; break;
                    case PI_ONES: v = 1.0f; break;
                    case PI_NORMAL:
                    case PI_NORMAL_RESID:
                        v = (float)(std * rng_normal(rng_key3(seed, tensor_key,
                                                              (uint64_t)logical)));
                        break;
                    }
                    w[local] = v;
                }
    }
}

/* ------------------------------------------------------------------------------------ */
/* forward and backward                                                                 */

/* base + the offset of (layer, kind) in this rank's buffers */
static float *at(const struct model *m, float *base, int layer, enum param_kind kind) {
    return base + params_get(&m->pt, layer, kind)->offset;
}

static void check_stage_layer(const struct model *m, int layer) {
    if (layer < m->l0 || layer >= m->l1)
        TR_ABORT("layer %d is not on this stage (layers %d to %d)", layer, m->l0, m->l1 - 1);
}

void layer_w_view(const struct model *m, float *base, int layer, struct layer_w *w) {
    check_stage_layer(m, layer);
    w->ln1w = at(m, base, layer, PK_LN1_W);
    w->ln1b = at(m, base, layer, PK_LN1_B);
    w->qkvw = at(m, base, layer, PK_QKV_W);
    w->qkvb = at(m, base, layer, PK_QKV_B);
    w->projw = at(m, base, layer, PK_ATTN_PROJ_W);
    w->projb = at(m, base, layer, PK_ATTN_PROJ_B);
    w->ln2w = at(m, base, layer, PK_LN2_W);
    w->ln2b = at(m, base, layer, PK_LN2_B);
    w->fcw = at(m, base, layer, PK_FC_W);
    w->fcb = at(m, base, layer, PK_FC_B);
    w->fcpw = at(m, base, layer, PK_MLP_PROJ_W);
    w->fcpb = at(m, base, layer, PK_MLP_PROJ_B);
}

/* The slot's per-layer arrays are stacked over the stage's layers, each sized for the
 * largest micro-batch (m->B × m->T) whatever the B × T of this one. */
void block_acts_view(const struct model *m, struct acts *a, int layer, int B, int T,
                     struct block_acts *ba) {
    check_stage_layer(m, layer);
    const long i = layer - m->l0, BTmax = (long)m->B * m->T;
    const long C = m->C, Cl = m->Cl, Fl = m->Fl;
    ba->B = B;
    ba->T = T;
    ba->in = a->x + i * BTmax * C;
    ba->out = a->x + (i + 1) * BTmax * C;
    ba->ln1 = a->ln1 + i * BTmax * C;
    ba->ln1_mean = a->ln1_mean + i * BTmax;
    ba->ln1_rstd = a->ln1_rstd + i * BTmax;
    ba->qkv = a->qkv + i * BTmax * 3 * Cl;
    ba->att = a->att + i * m->B * m->NHl * m->T * m->T;
    ba->atty = a->atty + i * BTmax * Cl;
    ba->xmid = a->xmid + i * BTmax * C;
    ba->ln2 = a->ln2 + i * BTmax * C;
    ba->ln2_mean = a->ln2_mean + i * BTmax;
    ba->ln2_rstd = a->ln2_rstd + i * BTmax;
    ba->fch = a->fch + i * BTmax * Fl;
    ba->fch_gelu = a->fch_gelu + i * BTmax * Fl;
}

/* tell the hook that the gradient of one model-level tensor is complete */
static void grads_ready(struct model *m, enum param_kind kind) {
    if (m->on_grads) m->on_grads(m->hook_ctx, params_find(&m->pt, -1, kind), 1);
}

/* ... and that the gradients of every tensor of one block are */
static void layer_grads_ready(struct model *m, int layer) {
    if (m->on_grads) {
        int first, n;
        params_layer_span(&m->pt, layer, &first, &n);
        m->on_grads(m->hook_ctx, first, n);
    }
}

#define TIMED(m, id, call)                                                           \
    do {                                                                             \
        double t0_ = tr_now();                                                       \
        call;                                                                        \
        (m)->t_kernel[id] += tr_now() - t0_;                                         \
    } while (0)

void block_forward(struct model *m, const struct layer_w *w, const struct block_acts *ba) {
    const struct kernels *k = m->k;
    const struct grid *g = m->grid;
    const int B = ba->B, T = ba->T, C = m->C, Cl = m->Cl, Fl = m->Fl, NHl = m->NHl;
    const long BT = (long)B * T;
    const int tp0 = g->tp_rank == 0;

    TIMED(m, KT_LN_F, k->layernorm_fwd(ba->ln1, ba->ln1_mean, ba->ln1_rstd, ba->in, w->ln1w,
                                       w->ln1b, (int)BT, C));
    m->t_tp_comm += tp_copy_fwd(g, ba->ln1, BT * C);
    TIMED(m, KT_MATMUL_F, k->matmul_fwd(ba->qkv, ba->ln1, w->qkvw, w->qkvb, (int)BT, C, 3 * Cl));
    TIMED(m, KT_ATTN_F, k->attention_fwd(ba->atty, ba->att, ba->qkv, B, T, Cl, NHl));
    /* row-parallel: partial sums; the replicated bias is added once, by tp rank 0 */
    TIMED(m, KT_MATMUL_F, k->matmul_fwd(ba->xmid, ba->atty, w->projw, tp0 ? w->projb : NULL,
                                        (int)BT, Cl, C));
    m->t_tp_comm += tp_reduce_fwd(g, ba->xmid, BT * C);
    TIMED(m, KT_RESID, k->residual_fwd(ba->xmid, ba->xmid, ba->in, BT * C));

    TIMED(m, KT_LN_F, k->layernorm_fwd(ba->ln2, ba->ln2_mean, ba->ln2_rstd, ba->xmid, w->ln2w,
                                       w->ln2b, (int)BT, C));
    m->t_tp_comm += tp_copy_fwd(g, ba->ln2, BT * C);
    TIMED(m, KT_MATMUL_F, k->matmul_fwd(ba->fch, ba->ln2, w->fcw, w->fcb, (int)BT, C, Fl));
    TIMED(m, KT_GELU_F, k->gelu_fwd(ba->fch_gelu, ba->fch, BT * Fl));
    TIMED(m, KT_MATMUL_F, k->matmul_fwd(ba->out, ba->fch_gelu, w->fcpw, tp0 ? w->fcpb : NULL,
                                        (int)BT, Fl, C));
    m->t_tp_comm += tp_reduce_fwd(g, ba->out, BT * C);
    TIMED(m, KT_RESID, k->residual_fwd(ba->out, ba->out, ba->xmid, BT * C));
}

/* m->dres is the gradient of the residual stream; LayerNorm backward adds each branch's
 * contribution into it, which is how the skip connections sum up: d(out) becomes
 * d(xmid) after the MLP, then d(in) after attention. */
void block_backward(struct model *m, const struct layer_w *w, const struct layer_w *dw,
                    const struct block_acts *ba) {
    const struct kernels *k = m->k;
    const struct grid *g = m->grid;
    const int B = ba->B, T = ba->T, C = m->C, Cl = m->Cl, Fl = m->Fl, NHl = m->NHl;
    const long BT = (long)B * T;

    m->t_tp_comm += tp_reduce_bwd(g, m->dres, BT * C);
    TIMED(m, KT_MATMUL_B, k->matmul_bwd(m->dfch, dw->fcpw, dw->fcpb, m->dres, ba->fch_gelu,
                                        w->fcpw, (int)BT, Fl, C));
    TIMED(m, KT_GELU_B, k->gelu_bwd(m->dfch, ba->fch, m->dfch, BT * Fl));
    TIMED(m, KT_MATMUL_B, k->matmul_bwd(m->dln, dw->fcw, dw->fcb, m->dfch, ba->ln2, w->fcw,
                                        (int)BT, C, Fl));
    m->t_tp_comm += tp_copy_bwd(g, m->dln, BT * C);
    TIMED(m, KT_LN_B, k->layernorm_bwd(m->dres, dw->ln2w, dw->ln2b, m->dln, ba->xmid, w->ln2w,
                                       ba->ln2_mean, ba->ln2_rstd, (int)BT, C));

    m->t_tp_comm += tp_reduce_bwd(g, m->dres, BT * C);
    TIMED(m, KT_MATMUL_B, k->matmul_bwd(m->datty, dw->projw, dw->projb, m->dres, ba->atty,
                                        w->projw, (int)BT, Cl, C));
    TIMED(m, KT_ATTN_B, k->attention_bwd(m->dqkv, m->att_scratch, m->datty, ba->qkv, ba->att,
                                         B, T, Cl, NHl));
    TIMED(m, KT_MATMUL_B, k->matmul_bwd(m->dln, dw->qkvw, dw->qkvb, m->dqkv, ba->ln1, w->qkvw,
                                        (int)BT, C, 3 * Cl));
    m->t_tp_comm += tp_copy_bwd(g, m->dln, BT * C);
    TIMED(m, KT_LN_B, k->layernorm_bwd(m->dres, dw->ln1w, dw->ln1b, m->dln, ba->in, w->ln1w,
                                       ba->ln1_mean, ba->ln1_rstd, (int)BT, C));
}

double model_forward(struct model *m, int slot, int B, int T, float dloss) {
    const struct kernels *k = m->k;
    const struct grid *g = m->grid;
    struct acts *a = &m->slots[slot];
    const long BT = (long)B * T, BTmax = (long)m->B * m->T;
    const int C = m->C;
    const int tp0 = g->tp_rank == 0;

    if (m->first) {
        const float *wte = at(m, m->params, -1, PK_WTE);
        const float *wpe = at(m, m->params, -1, PK_WPE);
        /* vocabulary-parallel lookup: each rank adds its rows, the sum completes it;
         * the position embedding is added once (by tensor rank 0) before the sum. */
        TIMED(m, KT_EMB, k->embedding_fwd(a->x, a->tokens, wte, tp0 ? wpe : NULL, B, T, C,
                                          m->v0, m->Vl));
        m->t_tp_comm += tp_reduce_fwd(g, a->x, BT * C);
    }
    for (int l = m->l0; l < m->l1; l++) {
        struct layer_w w;
        struct block_acts ba;
        layer_w_view(m, m->params, l, &w);
        block_acts_view(m, a, l, B, T, &ba);
        block_forward(m, &w, &ba);
    }
    if (!m->last) return 0.0;

    /* final LayerNorm, tied LM head (vocabulary-parallel), cross-entropy that combines
     * the shards' max, sum of exponentials and target logit, never the logits */
    const float *wte = at(m, m->params, -1, PK_WTE);
    float *xl = a->x + (long)m->nl * BTmax * C;
    TIMED(m, KT_LN_F, k->layernorm_fwd(a->lnf, a->lnf_mean, a->lnf_rstd, xl,
                                       at(m, m->params, -1, PK_LNF_W),
                                       at(m, m->params, -1, PK_LNF_B), (int)BT, C));
    m->t_tp_comm += tp_copy_fwd(g, a->lnf, BT * C);
    TIMED(m, KT_MATMUL_F, k->matmul_fwd(a->logits, a->lnf, wte, NULL, (int)BT, C, m->Vl));
    double t0 = tr_now(), comm = 0.0;
    k->xent_max(a->rowmax, a->logits, (int)BT, m->Vl, m->v0, m->V);
    comm += tp_allreduce(g, a->rowmax, BT, COMM_MAX);
    k->xent_sumexp(a->sumexp, a->logits, a->rowmax, (int)BT, m->Vl, m->v0, m->V);
    comm += tp_allreduce(g, a->sumexp, BT, COMM_SUM);
    k->xent_target(a->tlogit, a->logits, a->targets, (int)BT, m->Vl, m->v0);
    comm += tp_allreduce(g, a->tlogit, BT, COMM_SUM);
    m->t_tp_comm += comm;
    double loss = 0.0;
    for (long n = 0; n < BT; n++)
        loss += log((double)a->sumexp[n]) + (double)a->rowmax[n] - (double)a->tlogit[n];
    /* the logits are not needed again: turn them into their gradient right away */
    if (dloss != 0.0f)
        k->xent_bwd(a->logits, a->rowmax, a->sumexp, a->targets, dloss, (int)BT, m->Vl, m->v0,
                    m->V);
    m->t_kernel[KT_XENT] += tr_now() - t0 - comm; /* the all-reduces count as TP comm */
    return loss;
}

void model_backward(struct model *m, int slot, int B, int T) {
    const struct kernels *k = m->k;
    const struct grid *g = m->grid;
    struct acts *a = &m->slots[slot];
    const long BT = (long)B * T, BTmax = (long)m->B * m->T;
    const int C = m->C;

    if (m->last) {
        float *xl = a->x + (long)m->nl * BTmax * C;
        TIMED(m, KT_MATMUL_B, k->matmul_bwd(m->dln, at(m, m->grads, -1, PK_WTE), NULL,
                                            a->logits, a->lnf, at(m, m->params, -1, PK_WTE),
                                            (int)BT, C, m->Vl));
        m->t_tp_comm += tp_copy_bwd(g, m->dln, BT * C);
        memset(m->dres, 0, sizeof(float) * (size_t)(BT * C));
        TIMED(m, KT_LN_B, k->layernorm_bwd(m->dres, at(m, m->grads, -1, PK_LNF_W),
                                           at(m, m->grads, -1, PK_LNF_B), m->dln, xl,
                                           at(m, m->params, -1, PK_LNF_W), a->lnf_mean,
                                           a->lnf_rstd, (int)BT, C));
        grads_ready(m, PK_LNF_W);
        grads_ready(m, PK_LNF_B);
    }
    for (int l = m->l1 - 1; l >= m->l0; l--) {
        struct layer_w w, dw;
        struct block_acts ba;
        layer_w_view(m, m->params, l, &w);
        layer_w_view(m, m->grads, l, &dw);
        block_acts_view(m, a, l, B, T, &ba);
        block_backward(m, &w, &dw, &ba);
        layer_grads_ready(m, l);
    }
    if (m->first) {
        /* the lookup's all-reduce has an identity backward: dres is already complete */
        TIMED(m, KT_EMB, k->embedding_bwd(at(m, m->grads, -1, PK_WTE),
                                          at(m, m->grads, -1, PK_WPE), m->dres, a->tokens, B,
                                          T, C, m->v0, m->Vl));
        grads_ready(m, PK_WTE);
        grads_ready(m, PK_WPE);
    }
}

/* ------------------------------------------------------------------------------------ */

double model_flops_per_token(const struct config *cfg) {
    /* 6 FLOPs per parameter per token in the matmuls (2 forward, 4 backward), with the
     * tied LM head counted once as a matmul (with its padded columns, which are
     * computed); plus attention scores and mixing, counted causally: query t meets
     * t + 1 keys, (T+1)/2 on average, so QKᵀ and PV cost 2·2·C·(T+1)/2 per token per
     * layer forward, times 3 for forward + backward = 6·L·C·(T+1). (PaLM's 12·L·C·T
     * counts the masked upper triangle too. The kernel computes the lower triangle in
     * blocks of 64 rows: 5/8 of the square at T = 256, 17/32 at T = 1024; the masked
     * part of the diagonal blocks is not counted, like any other wasted work.) */
    double C = cfg->n_embd, L = cfg->n_layer, T = cfg->seq_len;
    double Vp = config_padded_vocab(cfg);
    double matmul_params = L * 12.0 * C * C + Vp * C;
    return 6.0 * matmul_params + 6.0 * L * C * (T + 1.0);
}

struct model_eff model_efficiency(double flops_per_step, double step_s, int ranks,
                                  double peak_gflops, double sgemm_gflops) {
    struct model_eff e;
    e.gflops = step_s > 0 && ranks > 0 ? flops_per_step / step_s / ranks / 1e9 : 0.0;
    e.mfu = peak_gflops > 0 ? e.gflops / peak_gflops : NAN;
    e.blas_eff = sgemm_gflops > 0 ? e.gflops / sgemm_gflops : NAN;
    return e;
}

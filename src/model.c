/* model.c — the GPT-2 parameter table, initialisation, and the forward and backward
 * pass of one micro-batch through this rank's pipeline stage and tensor shard. */
#include "model.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dp.h"
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

enum kdtype model_dtype(const struct config *cfg) {
    if (strcmp(cfg->precision, "bf16") == 0) return KDT_BF16;
    if (strcmp(cfg->precision, "fp16") == 0) return KDT_F16;
    return KDT_F32;
}

/* One buffer of a list: the tensor it fills, its dtype and shape (rows 0: not here). */
struct buf {
    struct tensor *t;
    enum kdtype dt;
    int64_t rows, cols;
};

static size_t buf_bytes(const struct buf *b) {
    return (size_t)(b->rows * b->cols) * kdtype_size(b->dt);
}

/* The per-layer arrays of a slot, in the order of layer_arrays' list. */
enum { LA_LN1, LA_LN1_MEAN, LA_LN1_RSTD, LA_QKV, LA_ATT, LA_ATTY, LA_XMID, LA_LN2,
       LA_LN2_MEAN, LA_LN2_RSTD, LA_FCH, LA_FCH_GELU, LA_COUNT };

/* Whether a slot keeps per-layer array j (LA_*) under the model's recompute mode; what it
 * does not keep, m->rc holds for one layer. */
static int slot_keeps(const struct model *m, int j) {
    switch (m->recompute) {
    case RC_NONE: return 1;
    case RC_SELECTIVE: return j != LA_ATT && j != LA_FCH_GELU;
    case RC_FULL: return 0;
    }
    return 1;
}

/* The per-layer arrays of a, stacked over nl layers: one list for the slots (nl = the
 * stage's layers, the arrays the mode keeps) and for m->rc (nl = 1, the others). An
 * array left out has 0 rows. */
static int layer_arrays(const struct model *m, struct acts *a, int64_t nl, int keep,
                        struct buf out[]) {
    const int64_t BT = (int64_t)m->B * m->T, C = m->C, Cl = m->Cl, Fl = m->Fl;
    const int64_t NT = (int64_t)m->B * m->NHl * m->T;
    const enum kdtype dt = m->dt, f = KDT_F32;
    int n = 0;
    /* layers of array j in this list */
#define NL(j) (slot_keeps(m, j) == keep ? nl : 0)
#define ARR(field, type, r, c) (out[n++] = (struct buf){&a->field, type, r, c})
    ARR(ln1, dt, NL(LA_LN1) * BT, C);
    ARR(ln1_mean, f, 1, NL(LA_LN1_MEAN) * BT);
    ARR(ln1_rstd, f, 1, NL(LA_LN1_RSTD) * BT);
    ARR(qkv, dt, NL(LA_QKV) * BT, 3 * Cl);
    ARR(att, dt, NL(LA_ATT) * NT, kernels_attention_saved_cols(m->dev, m->T, dt));
    ARR(atty, dt, NL(LA_ATTY) * BT, Cl);
    ARR(xmid, dt, NL(LA_XMID) * BT, C);
    ARR(ln2, dt, NL(LA_LN2) * BT, C);
    ARR(ln2_mean, f, 1, NL(LA_LN2_MEAN) * BT);
    ARR(ln2_rstd, f, 1, NL(LA_LN2_RSTD) * BT);
    ARR(fch, dt, NL(LA_FCH) * BT, Fl);
    ARR(fch_gelu, dt, NL(LA_FCH_GELU) * BT, Fl);
#undef ARR
#undef NL
    return n;
}

/* The arrays of one activation slot, in one list that alloc_slot allocates and
 * model_mem_plan counts: the memory plan cannot drift from the allocation. Returns the
 * number of arrays. */
#define SLOT_ARRAYS (10 + LA_COUNT)
static int slot_arrays(const struct model *m, struct acts *a, struct buf out[]) {
    const int64_t BT = (int64_t)m->B * m->T, nl = m->nl, C = m->C;
    const int64_t first = m->first, last = m->last;
    const enum kdtype dt = m->dt, f = KDT_F32;
    int n = 0;
#define ARR(field, type, r, c) (out[n++] = (struct buf){&a->field, type, r, c})
    ARR(x, dt, (nl + 1) * BT, C);
    n += layer_arrays(m, a, nl, 1, out + n);
    ARR(tokens, KDT_I32, first * m->B, m->T);
    ARR(lnf, dt, last * BT, C);
    ARR(lnf_mean, f, last, BT);
    ARR(lnf_rstd, f, last, BT);
    ARR(logits, dt, last * BT, m->Vl);
    ARR(rowmax, f, last, BT);
    ARR(sumexp, f, last, BT);
    ARR(tlogit, f, last, BT);
    ARR(targets, KDT_I32, last * m->B, m->T);
#undef ARR
    return n;
}

/* The backward scratch (shared by all slots; dt but for the attention scratch), one
 * layer of what the slots do not keep (m->rc) and the tensor-parallel staging: the same
 * kind of list. */
#define SCRATCH_ARRAYS (7 + LA_COUNT)
static int scratch_arrays(struct model *m, struct buf out[]) {
    const int64_t BT = (int64_t)m->B * m->T;
    const enum kdtype dt = m->dt;
    int n = 0;
#define ARR(field, type, r, c) (out[n++] = (struct buf){&m->field, type, r, c})
    ARR(dres, dt, BT, m->C);
    ARR(dln, dt, BT, m->C);
    ARR(dqkv, dt, BT, 3 * m->Cl);
    ARR(datty, dt, BT, m->Cl);
    ARR(dfch, dt, BT, m->Fl);
    /* the attention backward's scratch holds nothing between calls: fp32, which the CPU
     * backend computes in anyway (a 16-bit one would be widened into a workspace) */
    ARR(att_scratch, KDT_F32, (int64_t)m->B * m->NHl * m->T,
        kernels_attention_scratch_cols(m->dev, m->T));
    /* the arrays that the slots leave out, for one layer */
    n += layer_arrays(m, &m->rc, m->nl > 0, 0, out + n);
    /* 16-bit tensor-parallel sums go through fp32: the largest is a [BT][C] activation */
    ARR(tp.f32, KDT_F32, m->grid->tp > 1 && kdtype_is_16bit(dt), BT * m->C);
#undef ARR
    return n;
}

static void alloc_bufs(struct backend *be, struct buf *bufs, int n) {
    for (int i = 0; i < n; i++) {
        *bufs[i].t = TENSOR_NONE;
        if (bufs[i].rows > 0 && bufs[i].cols > 0)
            *bufs[i].t = tensor_2d(backend_alloc(be, buf_bytes(&bufs[i])), bufs[i].dt,
                                   bufs[i].rows, bufs[i].cols);
    }
}

static void free_bufs(struct backend *be, struct buf *bufs, int n) {
    for (int i = 0; i < n; i++) {
        backend_free_mem(be, bufs[i].t->data);
        *bufs[i].t = TENSOR_NONE;
    }
}

/* Everything model_init decides before it allocates: sizes, stage, parameter table. */
static void model_layout(struct model *m, const struct config *cfg, const struct grid *g,
                         struct backend *be) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->grid = g;
    m->be = be;
    m->k = be ? backend_kernels(be) : NULL;
    m->dt = model_dtype(cfg);
    m->dev = be ? backend_device(be) : (enum kdevice)TR_MAX(backend_parse(cfg->device), 0);
    m->recompute = strcmp(cfg->recompute, "full") == 0        ? RC_FULL
                   : strcmp(cfg->recompute, "selective") == 0 ? RC_SELECTIVE
                                                              : RC_NONE;
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

/* the slices of every dp rank and this rank's (zero = 1 and dp > 1), in m->z: laid out
 * by the data-parallel reduction (dpr_zero_layout) */
static void zero_layout(struct model *m, const struct config *cfg, const struct grid *g) {
    m->z.on = cfg->zero && g->dp > 1;
    m->z.lo = 0;
    m->z.n = m->n_local;
    m->z.counts = m->z.displs = NULL;
    if (!m->z.on) return;
    m->z.counts = tr_malloc(sizeof(int) * (size_t)g->dp);
    m->z.displs = tr_malloc(sizeof(int) * (size_t)g->dp);
    int64_t *counts = tr_malloc(sizeof(int64_t) * (size_t)g->dp);
    int64_t *displs = tr_malloc(sizeof(int64_t) * (size_t)g->dp);
    dpr_zero_layout(&m->pt, m->n_local, cfg, g, counts, displs);
    m->z.lo = displs[g->dp_rank];
    m->z.n = counts[g->dp_rank];
    /* the slices travel as MPI counts and offsets (int): a run refuses what does not fit;
     * the memory plan (no backend) sizes any layout, and uses only lo and n */
    for (int d = 0; d < g->dp; d++) {
        if (m->be && displs[d] + counts[d] > INT_MAX)
            tr_fail(TR_EXIT_USAGE, "use more data-parallel ranks, or tensor or pipeline "
                    "parallelism, for smaller slices", "a ZeRO slice ending at float %lld of "
                    "this stage's buffer is beyond what one MPI message can address",
                    (long long)(displs[d] + counts[d]));
        m->z.displs[d] = (int)TR_MIN(displs[d], INT_MAX);
        m->z.counts[d] = (int)TR_MIN(counts[d], INT_MAX);
    }
    tr_free(counts);
    tr_free(displs);
}

void model_init(struct model *m, const struct config *cfg, const struct grid *g,
                struct backend *be, int n_slots) {
    model_layout(m, cfg, g, be);
    zero_layout(m, cfg, g);
    size_t n_bytes = sizeof(float) * (size_t)m->n_local;
    /* 16-bit with zero = 1: the masters of this rank's slice only */
    int64_t n_masters = m->z.on && m->dt != KDT_F32 ? m->z.n : m->n_local;
    m->params = tensor_1d(backend_alloc(be, sizeof(float) * (size_t)n_masters), KDT_F32,
                          n_masters);
    m->grads = tensor_1d(backend_alloc(be, n_bytes), KDT_F32, m->n_local);
    backend_memset(be, m->params.data, 0, sizeof(float) * (size_t)n_masters);
    backend_memset(be, m->grads.data, 0, n_bytes);
    if (m->z.on) {
        size_t zb = sizeof(float) * (size_t)TR_MAX(m->z.n, 1);
        m->z.grads = tensor_1d(backend_alloc(be, zb), KDT_F32, m->z.n);
        backend_memset(be, m->z.grads.data, 0, zb);
    }
    m->w = m->params;
    if (m->dt != KDT_F32) {
        size_t wb = kdtype_size(m->dt) * (size_t)m->n_local;
        m->w = tensor_1d(backend_alloc(be, wb), m->dt, m->n_local);
        backend_memset(be, m->w.data, 0, wb);
        model_refresh_weights(m);
    }
    m->n_slots = n_slots;
    m->slots = tr_calloc((size_t)n_slots, sizeof(struct acts));
    struct buf bufs[SLOT_ARRAYS > SCRATCH_ARRAYS ? SLOT_ARRAYS : SCRATCH_ARRAYS];
    for (int s = 0; s < n_slots; s++) alloc_bufs(be, bufs, slot_arrays(m, &m->slots[s], bufs));
    alloc_bufs(be, bufs, scratch_arrays(m, bufs));
    m->tp.g = g;
    m->tp.be = be;
    m->tp.k = m->k;
}

/* backend_alloc counts every block in whole 64-byte units */
static int64_t alloc_bytes(size_t n_bytes) { return (int64_t)((n_bytes + 63) & ~(size_t)63); }

static int64_t max2(int64_t a, int64_t b) { return a > b ? a : b; }

/* The high-water mark of the CPU backend's widening workspaces for a 16-bit model: the
 * largest tensor each workspace slot of kernels/cpu/typed.c receives over one step of
 * this stage (slot A: a kernel's output or first input; B: the second input or the
 * attention probabilities; C: the weights or the third input; D: the weights of a
 * backward GEMM or the saved probabilities; the attention scratch is fp32 already), as
 * fp32. It follows typed.c's assignment of tensors to slots, and whether the backend has
 * a native GEMM for the dtype (then matmuls widen nothing). */
static int64_t widen_bytes(const struct model *m) {
    if (m->dt == KDT_F32 || m->dev != KDEV_CPU) return 0;  /* a GPU computes 16-bit natively */
    const int64_t BT = (int64_t)m->B * m->T, C = m->C, Cl = m->Cl, Fl = m->Fl;
    const int64_t att = m->nl ? (int64_t)m->B * m->NHl * m->T * m->T : 0;
    const int64_t head = m->last ? BT * m->Vl : 0, headw = m->last ? (int64_t)m->Vl * C : 0;
    const int64_t act = m->nl ? BT * max2(max2(3 * Cl, C), Fl) : BT * C;
    const int64_t wmax = m->nl ? max2(3 * Cl, Fl) * C : 0;
    int64_t a = max2(act, head), b = max2(max2(act, head), att);
    int64_t c = max2(max2(act, wmax), headw), d = max2(max2(wmax, headw), att);
    if (kernels_native_matmul(m->dt, NULL)) {
        /* matmuls read 16-bit operands in place: what is left is LayerNorm, attention,
         * GELU, residual and the cross-entropy */
        b = max2(BT * max2(C, Fl), att);
        c = act;
        d = att;
    }
    int64_t slots[4] = {a, b, c, d}, total = 0;
    for (int i = 0; i < 4; i++)
        if (slots[i]) total += alloc_bytes(sizeof(float) * (size_t)slots[i]);
    return total;
}

void model_mem_plan(const struct config *cfg, const struct grid *g, struct model_mem *mm) {
    struct model m;
    model_layout(&m, cfg, g, NULL);
    memset(mm, 0, sizeof *mm);
    mm->n_local = m.n_local;
    mm->params = alloc_bytes(sizeof(float) * (size_t)m.n_local);
    mm->masters = mm->params;
    zero_layout(&m, cfg, g);
    if (m.z.on) {
        mm->zero_n = m.z.n;
        mm->zero_grads = alloc_bytes(sizeof(float) * (size_t)TR_MAX(m.z.n, 1));
        if (m.dt != KDT_F32) mm->masters = alloc_bytes(sizeof(float) * (size_t)m.z.n);
    }
    tr_free(m.z.counts);
    tr_free(m.z.displs);
    if (m.dt != KDT_F32) mm->weights16 = alloc_bytes(kdtype_size(m.dt) * (size_t)m.n_local);
    mm->table = alloc_bytes((size_t)params_table_bytes(m.L));
    struct acts a;
    struct buf bufs[SLOT_ARRAYS > SCRATCH_ARRAYS ? SLOT_ARRAYS : SCRATCH_ARRAYS];
    int n = slot_arrays(&m, &a, bufs);
    for (int i = 0; i < n; i++)
        if (bufs[i].rows > 0 && bufs[i].cols > 0) mm->slot += alloc_bytes(buf_bytes(&bufs[i]));
    n = scratch_arrays(&m, bufs);
    for (int i = 0; i < n; i++) {
        if (bufs[i].rows <= 0 || bufs[i].cols <= 0) continue;
        if (bufs[i].t == &m.tp.f32) {
            mm->tp_staging = alloc_bytes(buf_bytes(&bufs[i]));
            continue;
        }
        mm->scratch += alloc_bytes(buf_bytes(&bufs[i]));
        if ((char *)bufs[i].t >= (char *)&m.rc && (char *)bufs[i].t < (char *)(&m.rc + 1))
            mm->recompute += alloc_bytes(buf_bytes(&bufs[i]));
    }
    mm->widen = widen_bytes(&m);
    mm->first = m.first;
    mm->last = m.last;
    params_free(&m.pt);
}

void model_free(struct model *m) {
    struct buf bufs[SLOT_ARRAYS > SCRATCH_ARRAYS ? SLOT_ARRAYS : SCRATCH_ARRAYS];
    for (int s = 0; s < m->n_slots; s++)
        free_bufs(m->be, bufs, slot_arrays(m, &m->slots[s], bufs));
    free_bufs(m->be, bufs, scratch_arrays(m, bufs));
    tr_free(m->slots);
    params_free(&m->pt);
    if (m->w.data != m->params.data) backend_free_mem(m->be, m->w.data);
    backend_free_mem(m->be, m->params.data);
    backend_free_mem(m->be, m->grads.data);
    if (m->z.on) backend_free_mem(m->be, m->z.grads.data);
    tr_free(m->z.counts);
    tr_free(m->z.displs);
    memset(m, 0, sizeof *m);
}

void model_zero_grads(struct model *m) {
    backend_memset(m->be, m->grads.data, 0, tensor_bytes(m->grads));
}

void model_refresh_weights(struct model *m) {
    if (m->w.data == m->params.data) return;
    if (m->z.on) {
        if (m->z.n) m->k->convert(m->be, tensor_view(m->w, m->z.lo, 1, m->z.n), m->params);
    } else {
        m->k->convert(m->be, m->w, m->params);
    }
}

/* 16-bit masters sliced (zero = 1): params holds floats [z.lo, z.lo + z.n) only */
static int masters_sliced(const struct model *m) { return m->z.on && m->dt != KDT_F32; }

struct tensor model_masters_full(const struct model *m) {
    size_t bytes = sizeof(float) * (size_t)TR_MAX(m->n_local, 1);
    struct tensor full = tensor_1d(backend_alloc(m->be, bytes), KDT_F32, m->n_local);
    if (!masters_sliced(m)) {
        backend_copy_d2d(m->be, full.data, m->params.data, tensor_bytes(m->params));
        return full;
    }
    comm_allgatherv(&m->grid->comm, COMM_DP, m->params.data, m->z.n, full.data, m->z.counts,
                    m->z.displs, COMM_F32);
    return full;
}

void model_masters_set_full(struct model *m, struct tensor full) {
    if (!masters_sliced(m)) {
        backend_copy_d2d(m->be, m->params.data, full.data, tensor_bytes(m->params));
        return;
    }
    if (m->z.n)
        backend_copy_d2d(m->be, m->params.data, tensor_view(full, m->z.lo, 1, 1).data,
                         tensor_bytes(m->params));
    m->k->convert(m->be, m->w, full);
}

void model_timers_reset(struct model *m) {
    memset(m->t_kernel, 0, sizeof m->t_kernel);
    m->t_tp_comm = 0;
}

/* ------------------------------------------------------------------------------------ */
/* initialisation                                                                       */

void model_init_weights(struct model *m, uint64_t seed) {
    double resid_scale = 1.0 / sqrt(2.0 * m->L);
    /* sliced masters: each tensor goes through a staging buffer of its own size, which
     * sets the compute weights and the slice's part of the masters */
    const int sliced = masters_sliced(m);
    for (int i = 0; i < m->pt.n; i++) {
        const struct param *p = &m->pt.p[i];
        if (!p->n_local) continue;
        /* computed on the host, then copied to the device */
        float *w = tr_malloc(sizeof(float) * (size_t)p->n_local);
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
        if (!sliced) {
            backend_copy_h2d(m->be, model_param(m, m->params, p->layer, p->kind).data, w,
                             sizeof(float) * (size_t)p->n_local);
        } else {
            size_t bytes = sizeof(float) * (size_t)p->n_local;
            struct tensor stage = tensor_1d(backend_alloc(m->be, bytes), KDT_F32, p->n_local);
            backend_copy_h2d(m->be, stage.data, w, bytes);
            m->k->convert(m->be, tensor_view(m->w, p->offset, 1, p->n_local), stage);
            int64_t lo = TR_MAX(m->z.lo, p->offset);
            int64_t hi = TR_MIN(m->z.lo + m->z.n, p->offset + p->n_local);
            if (hi > lo)
                backend_copy_d2d(m->be, tensor_view(m->params, lo - m->z.lo, 1, 1).data,
                                 tensor_view(stage, lo - p->offset, 1, 1).data,
                                 sizeof(float) * (size_t)(hi - lo));
            backend_free_mem(m->be, stage.data);
        }
        tr_free(w);
    }
    if (!sliced) model_refresh_weights(m);
}

/* ------------------------------------------------------------------------------------ */
/* forward and backward                                                                 */

struct tensor model_param(const struct model *m, struct tensor base, int layer,
                          enum param_kind kind) {
    const struct param *p = params_get(&m->pt, layer, kind);
    if (!p->n_local) return TENSOR_NONE;
    int64_t cols = p->local_shape[p->ndim - 1];
    return tensor_view(base, p->offset, p->n_local / cols, cols);
}

static void check_stage_layer(const struct model *m, int layer) {
    if (layer < m->l0 || layer >= m->l1)
        TR_ABORT("layer %d is not on this stage (layers %d to %d)", layer, m->l0, m->l1 - 1);
}

void layer_w_view(const struct model *m, struct tensor base, int layer, struct layer_w *w) {
    check_stage_layer(m, layer);
    w->ln1w = model_param(m, base, layer, PK_LN1_W);
    w->ln1b = model_param(m, base, layer, PK_LN1_B);
    w->qkvw = model_param(m, base, layer, PK_QKV_W);
    w->qkvb = model_param(m, base, layer, PK_QKV_B);
    w->projw = model_param(m, base, layer, PK_ATTN_PROJ_W);
    w->projb = model_param(m, base, layer, PK_ATTN_PROJ_B);
    w->ln2w = model_param(m, base, layer, PK_LN2_W);
    w->ln2b = model_param(m, base, layer, PK_LN2_B);
    w->fcw = model_param(m, base, layer, PK_FC_W);
    w->fcb = model_param(m, base, layer, PK_FC_B);
    w->fcpw = model_param(m, base, layer, PK_MLP_PROJ_W);
    w->fcpb = model_param(m, base, layer, PK_MLP_PROJ_B);
}

/* Rows [i*stride, i*stride + rows) of a stacked array: layer i's part, cut to the rows
 * this micro-batch uses. */
static struct tensor rows_at(struct tensor t, int64_t i, int64_t stride, int64_t rows) {
    return tensor_view(t, i * stride * t.cols, rows, t.cols);
}
/* ... and of a [1][n] array (per-row statistics) */
static struct tensor vec_at(struct tensor t, int64_t i, int64_t stride, int64_t n) {
    return tensor_view(t, i * stride, 1, n);
}

/* The per-layer arrays of a are stacked over layers, each sized for the largest
 * micro-batch (m->B × m->T) whatever the B × T of this one: layer i's views (absent where
 * a does not hold the array). */
static void layer_view(const struct model *m, const struct acts *a, int64_t i, int B, int T,
                       struct block_acts *ba) {
    const int64_t BTmax = (int64_t)m->B * m->T, BT = (int64_t)B * T;
    const int64_t NTmax = (int64_t)m->B * m->NHl * m->T;
    ba->B = B;
    ba->T = T;
    ba->in = rows_at(a->x, i, BTmax, BT);
    ba->out = rows_at(a->x, i + 1, BTmax, BT);
    ba->ln1 = rows_at(a->ln1, i, BTmax, BT);
    ba->ln1_mean = vec_at(a->ln1_mean, i, BTmax, BT);
    ba->ln1_rstd = vec_at(a->ln1_rstd, i, BTmax, BT);
    ba->qkv = rows_at(a->qkv, i, BTmax, BT);
    /* [B NHl T][cols(T)] (the CPU: cols(T) = T, the probabilities): for a smaller T the
     * rows are cols(T) long, packed from the layer's start */
    ba->att = tensor_view(a->att, i * NTmax * kernels_attention_saved_cols(m->dev, m->T, m->dt),
                          (int64_t)B * m->NHl * T, kernels_attention_saved_cols(m->dev, T, m->dt));
    ba->atty = rows_at(a->atty, i, BTmax, BT);
    ba->xmid = rows_at(a->xmid, i, BTmax, BT);
    ba->ln2 = rows_at(a->ln2, i, BTmax, BT);
    ba->ln2_mean = vec_at(a->ln2_mean, i, BTmax, BT);
    ba->ln2_rstd = vec_at(a->ln2_rstd, i, BTmax, BT);
    ba->fch = rows_at(a->fch, i, BTmax, BT);
    ba->fch_gelu = rows_at(a->fch_gelu, i, BTmax, BT);
}

void block_acts_view(const struct model *m, struct acts *a, int layer, int B, int T,
                     struct block_acts *ba) {
    check_stage_layer(m, layer);
    layer_view(m, a, layer - m->l0, B, T, ba);
    if (m->recompute == RC_NONE) return;
    /* what the slot does not keep: the one layer of m->rc (x is always the slot's) */
    struct block_acts r;
    layer_view(m, &m->rc, 0, B, T, &r);
    struct tensor *dst[LA_COUNT] = {&ba->ln1, &ba->ln1_mean, &ba->ln1_rstd, &ba->qkv,
                                    &ba->att, &ba->atty, &ba->xmid, &ba->ln2,
                                    &ba->ln2_mean, &ba->ln2_rstd, &ba->fch, &ba->fch_gelu};
    const struct tensor src[LA_COUNT] = {r.ln1, r.ln1_mean, r.ln1_rstd, r.qkv, r.att,
                                         r.atty, r.xmid, r.ln2, r.ln2_mean, r.ln2_rstd,
                                         r.fch, r.fch_gelu};
    for (int j = 0; j < LA_COUNT; j++)
        if (!slot_keeps(m, j)) *dst[j] = src[j];
}

struct tensor model_stage_input(const struct model *m, int slot, int B, int T) {
    return rows_at(m->slots[slot].x, 0, (int64_t)m->B * m->T, (int64_t)B * T);
}

struct tensor model_stage_output(const struct model *m, int slot, int B, int T) {
    return rows_at(m->slots[slot].x, m->nl, (int64_t)m->B * m->T, (int64_t)B * T);
}

struct tensor model_dres(const struct model *m, int B, int T) {
    return tensor_view(m->dres, 0, (int64_t)B * T, m->C);
}

/* the first BT rows of a scratch array */
static struct tensor first_rows(struct tensor t, int64_t BT) {
    return tensor_view(t, 0, BT, t.cols);
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
    struct backend *be = m->be;
    const struct tp_ctx *tp = &m->tp;
    const int tp0 = m->grid->tp_rank == 0;

    TIMED(m, KT_LN_F, k->layernorm_fwd(be, ba->ln1, ba->ln1_mean, ba->ln1_rstd, ba->in, w->ln1w,
                                       w->ln1b));
    m->t_tp_comm += tp_copy_fwd(tp, ba->ln1);
    TIMED(m, KT_MATMUL_F, k->matmul_fwd(be, ba->qkv, ba->ln1, w->qkvw, w->qkvb));
    TIMED(m, KT_ATTN_F, k->attention_fwd(be, ba->atty, ba->att, ba->qkv, ba->B, m->NHl));
    /* row-parallel: partial sums; the replicated bias is added once, by tp rank 0 */
    TIMED(m, KT_MATMUL_F, k->matmul_fwd(be, ba->xmid, ba->atty, w->projw,
                                        tp0 ? w->projb : TENSOR_NONE));
    m->t_tp_comm += tp_reduce_fwd(tp, ba->xmid);
    TIMED(m, KT_RESID, k->residual_fwd(be, ba->xmid, ba->xmid, ba->in));

    TIMED(m, KT_LN_F, k->layernorm_fwd(be, ba->ln2, ba->ln2_mean, ba->ln2_rstd, ba->xmid,
                                       w->ln2w, w->ln2b));
    m->t_tp_comm += tp_copy_fwd(tp, ba->ln2);
    TIMED(m, KT_MATMUL_F, k->matmul_fwd(be, ba->fch, ba->ln2, w->fcw, w->fcb));
    TIMED(m, KT_GELU_F, k->gelu_fwd(be, ba->fch_gelu, ba->fch));
    /* a recomputation: what the backward reads is there */
    if (!tensor_present(ba->out)) return;
    TIMED(m, KT_MATMUL_F, k->matmul_fwd(be, ba->out, ba->fch_gelu, w->fcpw,
                                        tp0 ? w->fcpb : TENSOR_NONE));
    m->t_tp_comm += tp_reduce_fwd(tp, ba->out);
    TIMED(m, KT_RESID, k->residual_fwd(be, ba->out, ba->out, ba->xmid));
}

void block_recompute(struct model *m, const struct layer_w *w, int slot, int layer, int B,
                     int T, struct block_acts *ba) {
    const struct kernels *k = m->k;
    struct backend *be = m->be;
    block_acts_view(m, &m->slots[slot], layer, B, T, ba);
    switch (m->recompute) {
    case RC_NONE:
        break;
    case RC_SELECTIVE:
        /* attention_fwd also writes the attention output, which the slot kept: this copy
         * (the same bits) goes to m->datty, which block_backward overwrites before it
         * reads it */
        TIMED(m, KT_ATTN_F, k->attention_fwd(be, first_rows(m->datty, (int64_t)B * T),
                                             ba->att, ba->qkv, B, m->NHl));
        TIMED(m, KT_GELU_F, k->gelu_fwd(be, ba->fch_gelu, ba->fch));
        break;
    case RC_FULL:
        /* the block's output is in the slot (the next layer's input): stop at the GELU,
         * which saves the MLP projection and its all-reduce; the attention projection's
         * all-reduce runs, in the same order on every tensor rank */
        ba->out = TENSOR_NONE;
        block_forward(m, w, ba);
        break;
    }
}

/* m->dres is the gradient of the residual stream; LayerNorm backward adds each branch's
 * contribution into it, which is how the skip connections sum up: d(out) becomes
 * d(xmid) after the MLP, then d(in) after attention. */
void block_backward(struct model *m, const struct layer_w *w, const struct layer_w *dw,
                    const struct block_acts *ba) {
    const struct kernels *k = m->k;
    struct backend *be = m->be;
    const struct tp_ctx *tp = &m->tp;
    const int64_t BT = (int64_t)ba->B * ba->T;
    struct tensor dres = first_rows(m->dres, BT), dln = first_rows(m->dln, BT);
    struct tensor dfch = first_rows(m->dfch, BT), datty = first_rows(m->datty, BT);
    struct tensor dqkv = first_rows(m->dqkv, BT);

    m->t_tp_comm += tp_reduce_bwd(tp, dres);
    TIMED(m, KT_MATMUL_B, k->matmul_bwd(be, dfch, dw->fcpw, dw->fcpb, dres, ba->fch_gelu,
                                        w->fcpw));
    TIMED(m, KT_GELU_B, k->gelu_bwd(be, dfch, ba->fch, dfch));
    TIMED(m, KT_MATMUL_B, k->matmul_bwd(be, dln, dw->fcw, dw->fcb, dfch, ba->ln2, w->fcw));
    m->t_tp_comm += tp_copy_bwd(tp, dln);
    TIMED(m, KT_LN_B, k->layernorm_bwd(be, dres, dw->ln2w, dw->ln2b, dln, ba->xmid, w->ln2w,
                                       ba->ln2_mean, ba->ln2_rstd));

    m->t_tp_comm += tp_reduce_bwd(tp, dres);
    TIMED(m, KT_MATMUL_B, k->matmul_bwd(be, datty, dw->projw, dw->projb, dres, ba->atty,
                                        w->projw));
    TIMED(m, KT_ATTN_B, k->attention_bwd(be, dqkv, m->att_scratch, datty, ba->qkv, ba->att,
                                         ba->B, m->NHl));
    TIMED(m, KT_MATMUL_B, k->matmul_bwd(be, dln, dw->qkvw, dw->qkvb, dqkv, ba->ln1, w->qkvw));
    m->t_tp_comm += tp_copy_bwd(tp, dln);
    TIMED(m, KT_LN_B, k->layernorm_bwd(be, dres, dw->ln1w, dw->ln1b, dln, ba->in, w->ln1w,
                                       ba->ln1_mean, ba->ln1_rstd));
}

double model_forward(struct model *m, int slot, int B, int T, float dloss) {
    const struct kernels *k = m->k;
    struct backend *be = m->be;
    const struct tp_ctx *tp = &m->tp;
    struct acts *a = &m->slots[slot];
    const int64_t BT = (int64_t)B * T;
    const int tp0 = m->grid->tp_rank == 0;
    struct tensor tokens = tensor_view(a->tokens, 0, B, T);
    struct tensor targets = tensor_view(a->targets, 0, 1, BT);

    if (m->first) {
        struct tensor x0 = model_stage_input(m, slot, B, T);
        /* vocabulary-parallel lookup: each rank adds its rows, the sum completes it;
         * the position embedding is added once (by tensor rank 0) before the sum. */
        TIMED(m, KT_EMB, k->embedding_fwd(be, x0, tokens, model_param(m, m->w, -1, PK_WTE),
                                          tp0 ? model_param(m, m->w, -1, PK_WPE) : TENSOR_NONE,
                                          m->v0));
        m->t_tp_comm += tp_reduce_fwd(tp, x0);
    }
    for (int l = m->l0; l < m->l1; l++) {
        struct layer_w w;
        struct block_acts ba;
        layer_w_view(m, m->w, l, &w);
        block_acts_view(m, a, l, B, T, &ba);
        block_forward(m, &w, &ba);
    }
    if (!m->last) return 0.0;

    /* final LayerNorm, tied LM head (vocabulary-parallel), cross-entropy that combines
     * the shards' max, sum of exponentials and target logit, never the logits */
    struct tensor xl = model_stage_output(m, slot, B, T);
    struct tensor lnf = first_rows(a->lnf, BT), logits = first_rows(a->logits, BT);
    struct tensor mean = tensor_view(a->lnf_mean, 0, 1, BT);
    struct tensor rstd = tensor_view(a->lnf_rstd, 0, 1, BT);
    struct tensor rowmax = tensor_view(a->rowmax, 0, 1, BT);
    struct tensor sumexp = tensor_view(a->sumexp, 0, 1, BT);
    struct tensor tlogit = tensor_view(a->tlogit, 0, 1, BT);
    TIMED(m, KT_LN_F, k->layernorm_fwd(be, lnf, mean, rstd, xl,
                                       model_param(m, m->w, -1, PK_LNF_W),
                                       model_param(m, m->w, -1, PK_LNF_B)));
    m->t_tp_comm += tp_copy_fwd(tp, lnf);
    TIMED(m, KT_MATMUL_F, k->matmul_fwd(be, logits, lnf, model_param(m, m->w, -1, PK_WTE),
                                        TENSOR_NONE));
    double t0 = tr_now(), comm = 0.0;
    k->xent_max(be, rowmax, logits, m->v0, m->V);
    comm += tp_allreduce(tp, rowmax, COMM_MAX);
    k->xent_sumexp(be, sumexp, logits, rowmax, m->v0, m->V);
    comm += tp_allreduce(tp, sumexp, COMM_SUM);
    k->xent_target(be, tlogit, logits, targets, m->v0);
    comm += tp_allreduce(tp, tlogit, COMM_SUM);
    m->t_tp_comm += comm;
    double loss = k->xent_loss(be, rowmax, sumexp, tlogit);
    /* the logits are not needed again: turn them into their gradient right away */
    if (dloss != 0.0f) k->xent_bwd(be, logits, rowmax, sumexp, targets, dloss, m->v0, m->V);
    m->t_kernel[KT_XENT] += tr_now() - t0 - comm; /* the all-reduces count as TP comm */
    return loss;
}

void model_backward(struct model *m, int slot, int B, int T) {
    const struct kernels *k = m->k;
    struct backend *be = m->be;
    const struct tp_ctx *tp = &m->tp;
    struct acts *a = &m->slots[slot];
    const int64_t BT = (int64_t)B * T;
    struct tensor dres = first_rows(m->dres, BT), dln = first_rows(m->dln, BT);

    if (m->last) {
        struct tensor xl = model_stage_output(m, slot, B, T);
        TIMED(m, KT_MATMUL_B, k->matmul_bwd(be, dln, model_param(m, m->grads, -1, PK_WTE),
                                            TENSOR_NONE, first_rows(a->logits, BT),
                                            first_rows(a->lnf, BT),
                                            model_param(m, m->w, -1, PK_WTE)));
        m->t_tp_comm += tp_copy_bwd(tp, dln);
        backend_memset(be, dres.data, 0, tensor_bytes(dres));
        TIMED(m, KT_LN_B, k->layernorm_bwd(be, dres, model_param(m, m->grads, -1, PK_LNF_W),
                                           model_param(m, m->grads, -1, PK_LNF_B), dln, xl,
                                           model_param(m, m->w, -1, PK_LNF_W),
                                           tensor_view(a->lnf_mean, 0, 1, BT),
                                           tensor_view(a->lnf_rstd, 0, 1, BT)));
        grads_ready(m, PK_LNF_W);
        grads_ready(m, PK_LNF_B);
    }
    for (int l = m->l1 - 1; l >= m->l0; l--) {
        struct layer_w w, dw;
        struct block_acts ba;
        layer_w_view(m, m->w, l, &w);
        layer_w_view(m, m->grads, l, &dw);
        block_recompute(m, &w, slot, l, B, T, &ba);
        block_backward(m, &w, &dw, &ba);
        layer_grads_ready(m, l);
    }
    if (m->first) {
        /* the lookup's all-reduce has an identity backward: dres is already complete */
        TIMED(m, KT_EMB, k->embedding_bwd(be, model_param(m, m->grads, -1, PK_WTE),
                                          model_param(m, m->grads, -1, PK_WPE), dres,
                                          tensor_view(a->tokens, 0, B, T), m->v0));
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

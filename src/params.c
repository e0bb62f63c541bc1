/* params.c — the parameter table: built from one list of specs, looked up by kind. */
#include "params.h"

#include <stdio.h>
#include <string.h>

#include "common.h"

/* A dimension, in the model's sizes. */
enum pdim { D1, DC, D4C, D3, DV, DP };

/* Where a tensor lives in the pipeline. */
enum place { IN_BLOCK, ON_FIRST, ON_LAST, TIED_FIRST_LAST /* owned by the first stage */ };

/* Every kind described once: name (a block's tensors get "h.<l>." in front), shape in
 * model sizes, tp shard axis, placement, init, weight decay. */
static const struct spec {
    const char *name;
    int ndim;
    enum pdim dims[3];
    int shard_axis;
    enum place place;
    enum pinit init;
    int decay;
} SPECS[PK_COUNT] = {
    [PK_WTE]         = {"wte",         2, {DV, DC},      0, TIED_FIRST_LAST, PI_NORMAL, 1},
    [PK_WPE]         = {"wpe",         2, {DP, DC},     -1, ON_FIRST, PI_NORMAL, 1},
    [PK_LNF_W]       = {"ln_f.w",      1, {DC},         -1, ON_LAST, PI_ONES, 0},
    [PK_LNF_B]       = {"ln_f.b",      1, {DC},         -1, ON_LAST, PI_ZEROS, 0},
    [PK_LN1_W]       = {"ln_1.w",      1, {DC},         -1, IN_BLOCK, PI_ONES, 0},
    [PK_LN1_B]       = {"ln_1.b",      1, {DC},         -1, IN_BLOCK, PI_ZEROS, 0},
    [PK_QKV_W]       = {"attn.qkv.w",  3, {D3, DC, DC},  1, IN_BLOCK, PI_NORMAL, 1},
    [PK_QKV_B]       = {"attn.qkv.b",  2, {D3, DC},      1, IN_BLOCK, PI_ZEROS, 0},
    [PK_ATTN_PROJ_W] = {"attn.proj.w", 2, {DC, DC},      1, IN_BLOCK, PI_NORMAL_RESID, 1},
    [PK_ATTN_PROJ_B] = {"attn.proj.b", 1, {DC},         -1, IN_BLOCK, PI_ZEROS, 0},
    [PK_LN2_W]       = {"ln_2.w",      1, {DC},         -1, IN_BLOCK, PI_ONES, 0},
    [PK_LN2_B]       = {"ln_2.b",      1, {DC},         -1, IN_BLOCK, PI_ZEROS, 0},
    [PK_FC_W]        = {"mlp.fc.w",    2, {D4C, DC},     0, IN_BLOCK, PI_NORMAL, 1},
    [PK_FC_B]        = {"mlp.fc.b",    1, {D4C},         0, IN_BLOCK, PI_ZEROS, 0},
    [PK_MLP_PROJ_W]  = {"mlp.proj.w",  2, {DC, D4C},     1, IN_BLOCK, PI_NORMAL_RESID, 1},
    [PK_MLP_PROJ_B]  = {"mlp.proj.b",  1, {DC},         -1, IN_BLOCK, PI_ZEROS, 0},
};

/* The table's order, which is the checkpoint's (its tensor list) and, reversed, the
 * order in which the backward pass completes gradients. */
static const enum param_kind HEAD[] = {PK_WTE, PK_WPE};
static const enum param_kind BLOCK[] = {PK_LN1_W, PK_LN1_B, PK_QKV_W, PK_QKV_B,
                                        PK_ATTN_PROJ_W, PK_ATTN_PROJ_B, PK_LN2_W, PK_LN2_B,
                                        PK_FC_W, PK_FC_B, PK_MLP_PROJ_W, PK_MLP_PROJ_B};
static const enum param_kind TAIL[] = {PK_LNF_W, PK_LNF_B};
#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
_Static_assert(N_OF(HEAD) + N_OF(TAIL) == PK_MODEL_COUNT, "every model tensor is placed once");
_Static_assert(N_OF(BLOCK) == PK_LAYER_COUNT, "every block tensor is placed once");

static int index_slot(int L, int layer, enum param_kind kind) {
    if (kind < 0 || kind >= PK_COUNT) return -1;
    if (layer < 0) return (layer == -1 && kind < PK_MODEL_COUNT) ? (int)kind : -1;
    if (kind < PK_MODEL_COUNT || layer >= L) return -1;
    return PK_MODEL_COUNT + layer * PK_LAYER_COUNT + (kind - PK_MODEL_COUNT);
}

int64_t params_table_bytes(int n_layer) {
    int n = PK_MODEL_COUNT + n_layer * PK_LAYER_COUNT;
    return (int64_t)sizeof(struct param) * n + (int64_t)sizeof(int) * n;
}

static int64_t dim_size(const struct params_layout *lay, enum pdim d) {
    switch (d) {
    case DC: return lay->C;
    case D4C: return 4 * (int64_t)lay->C;
    case D3: return 3;
    case DV: return lay->Vp;
    case DP: return lay->P;
    default: return 1;
    }
}

static int on_stage(const struct params_layout *lay, const struct param *p, enum place pl) {
    switch (pl) {
    case IN_BLOCK: return p->layer >= lay->l0 && p->layer < lay->l1;
    case ON_FIRST: return lay->first;
    case ON_LAST: return lay->last;
    default: return lay->first || lay->last;
    }
}

/* The ONE ownership map: the replicas of this rank's shard split its first axis. */
static void place_owned(const struct params_layout *lay, struct param *p, enum place pl) {
    int owner_stage = pl != TIED_FIRST_LAST || lay->first;
    int replica = lay->dp_rank, replicas = lay->dp;
    if (p->tp_replicated) {
        replica = lay->dp_rank * lay->tp + lay->tp_rank;
        replicas = lay->dp * lay->tp;
    }
    int64_t rows = p->local_shape[0], r0 = rows * replica / replicas,
            r1 = rows * (replica + 1) / replicas;
    if (!owner_stage) r0 = r1 = 0;
    for (int a = 0; a < 3; a++) {
        p->own_start[a] = p->local_start[a];
        p->own_count[a] = p->local_shape[a];
    }
    p->own_start[0] += r0;
    p->own_count[0] = r1 - r0;
    p->own_offset = r0 * p->local_shape[1] * p->local_shape[2];
    p->own_n = (r1 - r0) * p->local_shape[1] * p->local_shape[2];
}

static void add(struct params *t, const struct params_layout *lay, int layer,
                enum param_kind kind) {
    const struct spec *s = &SPECS[kind];
    int i = t->n++;
    struct param *p = &t->p[i];
    memset(p, 0, sizeof *p);
    if (layer >= 0) snprintf(p->name, sizeof p->name, "h.%d.%s", layer, s->name);
    else snprintf(p->name, sizeof p->name, "%s", s->name);
    p->kind = kind;
    p->dtype = PDT_F32;
    p->layer = layer;
    p->ndim = s->ndim;
    for (int a = 0; a < 3; a++) p->shape[a] = a < s->ndim ? dim_size(lay, s->dims[a]) : 1;
    p->shard_axis = s->shard_axis;
    p->tp_replicated = s->shard_axis < 0;
    p->init = s->init;
    p->decay = s->decay;
    t->index[index_slot(t->L, layer, kind)] = i;
    t->n_logical += p->shape[0] * p->shape[1] * p->shape[2];
    if (!on_stage(lay, p, s->place)) return;
    p->n_local = 1;
    for (int a = 0; a < 3; a++) {
        p->local_shape[a] = p->shape[a];
        p->local_start[a] = 0;
        if (a == p->shard_axis) {
            p->local_shape[a] = p->shape[a] / lay->tp;
            p->local_start[a] = p->local_shape[a] * lay->tp_rank;
        }
        p->n_local *= p->local_shape[a];
    }
    p->offset = t->n_local;
    /* keep every tensor 64-byte aligned for vector loads */
    t->n_local += (p->n_local + 15) / 16 * 16;
    place_owned(lay, p, s->place);
}

void params_build(struct params *t, const struct params_layout *lay) {
    memset(t, 0, sizeof *t);
    t->L = lay->L;
    int cap = PK_MODEL_COUNT + lay->L * PK_LAYER_COUNT;
    t->p = tr_calloc((size_t)cap, sizeof(struct param));
    t->index = tr_malloc(sizeof(int) * (size_t)cap);
    for (int i = 0; i < cap; i++) t->index[i] = -1;
    for (int k = 0; k < N_OF(HEAD); k++) add(t, lay, -1, HEAD[k]);
    for (int l = 0; l < lay->L; l++)
        for (int k = 0; k < N_OF(BLOCK); k++) add(t, lay, l, BLOCK[k]);
    for (int k = 0; k < N_OF(TAIL); k++) add(t, lay, -1, TAIL[k]);
    if (t->n != cap) TR_ABORT("parameter table: %d entries placed, %d expected", t->n, cap);
}

void params_free(struct params *t) {
    tr_free(t->p);
    tr_free(t->index);
    memset(t, 0, sizeof *t);
}

int params_find(const struct params *t, int layer, enum param_kind kind) {
    int s = index_slot(t->L, layer, kind);
    return s < 0 ? -1 : t->index[s];
}

const struct param *params_get(const struct params *t, int layer, enum param_kind kind) {
    int i = params_find(t, layer, kind);
    if (i < 0)
        TR_ABORT("no parameter of kind %d in layer %d (the model has %d layers)", (int)kind,
                 layer, t->L);
    return &t->p[i];
}

int params_find_name(const struct params *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->p[i].name, name) == 0) return i;
    return -1;
}

void params_layer_span(const struct params *t, int layer, int *first, int *n) {
    *first = params_find(t, layer, BLOCK[0]);
    *n = N_OF(BLOCK);
    if (*first < 0) TR_ABORT("no layer %d (the model has %d layers)", layer, t->L);
}

const char *params_dtype_name(enum param_dtype dt) {
    switch (dt) {
    case PDT_F32: return "f32";
    case PDT_BF16: return "bf16";
    case PDT_F16: return "f16";
    }
    return "?";
}

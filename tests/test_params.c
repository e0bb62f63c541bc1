/* test_params.c — the parameter table: lookups by kind and name, the checkpoint's order,
 * and the ownership map over every rank of a layout (computed in one process: the table
 * is built from plain numbers, no MPI). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "test.h"

static struct params_layout one_rank(int L) {
    struct params_layout lay = {.C = 8, .Vp = 24, .P = 6, .L = L, .dp = 1, .tp = 1,
                                .l0 = 0, .l1 = L, .first = 1, .last = 1};
    return lay;
}

static const char *const BLOCK_NAMES[] = {"ln_1.w", "ln_1.b", "attn.qkv.w", "attn.qkv.b",
                                          "attn.proj.w", "attn.proj.b", "ln_2.w", "ln_2.b",
                                          "mlp.fc.w", "mlp.fc.b", "mlp.proj.w", "mlp.proj.b"};

static int is_model_kind(int k) { return k < PK_MODEL_COUNT; }

static void test_lookup_by_kind_and_by_name_agree_for_every_layer(void) {
    const int L = 5;
    struct params_layout lay = one_rank(L);
    struct params t;
    params_build(&t, &lay);
    CHECK(t.n == PK_MODEL_COUNT + L * PK_LAYER_COUNT);
    int *hits = calloc((size_t)t.n, sizeof(int));
    for (int layer = -1; layer < L; layer++)
        for (int k = 0; k < PK_COUNT; k++) {
            int i = params_find(&t, layer, (enum param_kind)k);
            if ((layer < 0) != is_model_kind(k)) {
                CHECK_MSG(i == -1, "kind %d found in layer %d", k, layer);
                continue;
            }
            CHECK_MSG(i >= 0 && i < t.n, "kind %d of layer %d not found", k, layer);
            if (i < 0 || i >= t.n) continue;
            const struct param *p = &t.p[i];
            hits[i]++;
            CHECK(p->kind == (enum param_kind)k && p->layer == layer);
            CHECK(params_get(&t, layer, (enum param_kind)k) == p);
            CHECK(params_find_name(&t, p->name) == i);
            CHECK(p->dtype == PDT_F32 && strcmp(params_dtype_name(p->dtype), "f32") == 0);
            CHECK(p->tp_replicated == (p->shard_axis < 0));
        }
    for (int i = 0; i < t.n; i++) CHECK_MSG(hits[i] == 1, "entry %d reached %d times", i, hits[i]);
    /* out of range: no entry */
    CHECK(params_find(&t, L, PK_LN1_W) == -1 && params_find(&t, -2, PK_WTE) == -1);
    CHECK(params_find_name(&t, "h.5.ln_1.w") == -1);
    /* a block's span holds exactly that block's tensors */
    for (int layer = 0; layer < L; layer++) {
        int first, n;
        params_layer_span(&t, layer, &first, &n);
        CHECK(n == PK_LAYER_COUNT);
        for (int i = first; i < first + n; i++) CHECK(t.p[i].layer == layer);
    }
    free(hits);
    params_free(&t);
}

/* The table's order and shapes are the checkpoint's tensor list: they must not change. */
static void test_order_names_and_shapes_are_the_checkpoints(void) {
    const int L = 3;
    struct params_layout lay = one_rank(L);
    struct params t;
    params_build(&t, &lay);
    char want[64];
    int i = 0;
    CHECK(strcmp(t.p[i++].name, "wte") == 0);
    CHECK(strcmp(t.p[i++].name, "wpe") == 0);
    for (int l = 0; l < L; l++)
        for (int k = 0; k < PK_LAYER_COUNT; k++) {
            snprintf(want, sizeof want, "h.%d.%s", l, BLOCK_NAMES[k]);
            CHECK_MSG(strcmp(t.p[i].name, want) == 0, "entry %d is %s, expected %s", i,
                      t.p[i].name, want);
            i++;
        }
    CHECK(strcmp(t.p[i++].name, "ln_f.w") == 0);
    CHECK(strcmp(t.p[i++].name, "ln_f.b") == 0);
    CHECK(i == t.n);
    const int C = lay.C;
    struct { enum param_kind k; int layer, ndim; int64_t d0, d1, d2; int axis, decay; } s[] = {
        {PK_WTE, -1, 2, lay.Vp, C, 1, 0, 1},         {PK_WPE, -1, 2, lay.P, C, 1, -1, 1},
        {PK_LNF_W, -1, 1, C, 1, 1, -1, 0},           {PK_LNF_B, -1, 1, C, 1, 1, -1, 0},
        {PK_LN1_W, 1, 1, C, 1, 1, -1, 0},            {PK_QKV_W, 1, 3, 3, C, C, 1, 1},
        {PK_QKV_B, 1, 2, 3, C, 1, 1, 0},             {PK_ATTN_PROJ_W, 1, 2, C, C, 1, 1, 1},
        {PK_ATTN_PROJ_B, 1, 1, C, 1, 1, -1, 0},      {PK_FC_W, 2, 2, 4 * C, C, 1, 0, 1},
        {PK_FC_B, 2, 1, 4 * C, 1, 1, 0, 0},          {PK_MLP_PROJ_W, 2, 2, C, 4 * C, 1, 1, 1},
        {PK_MLP_PROJ_B, 0, 1, C, 1, 1, -1, 0},
    };
    for (size_t j = 0; j < sizeof s / sizeof s[0]; j++) {
        const struct param *p = params_get(&t, s[j].layer, s[j].k);
        CHECK_MSG(p->ndim == s[j].ndim && p->shape[0] == s[j].d0 && p->shape[1] == s[j].d1 &&
                      p->shape[2] == s[j].d2 && p->shard_axis == s[j].axis &&
                      p->decay == s[j].decay,
                  "%s: shape, shard axis or decay differ", p->name);
    }
    params_free(&t);
}

/* More layers add entries and move ln_f in the table, yet every lookup by kind or name
 * still finds the same tensor: nothing is found by position. */
static void test_adding_tensors_shifts_no_lookup(void) {
    struct params_layout a_lay = one_rank(2), b_lay = one_rank(4);
    struct params a, b;
    params_build(&a, &a_lay);
    params_build(&b, &b_lay);
    CHECK(b.n == a.n + 2 * PK_LAYER_COUNT);
    for (int layer = -1; layer < 2; layer++)
        for (int k = 0; k < PK_COUNT; k++) {
            if ((layer < 0) != is_model_kind(k)) continue;
            const struct param *pa = params_get(&a, layer, (enum param_kind)k);
            const struct param *pb = params_get(&b, layer, (enum param_kind)k);
            CHECK_MSG(strcmp(pa->name, pb->name) == 0 && pa->ndim == pb->ndim &&
                          memcmp(pa->shape, pb->shape, sizeof pa->shape) == 0,
                      "%s vs %s", pa->name, pb->name);
        }
    CHECK(params_find(&a, -1, PK_LNF_B) != params_find(&b, -1, PK_LNF_B));
    CHECK(strcmp(params_get(&b, -1, PK_LNF_B)->name, "ln_f.b") == 0);
    params_free(&a);
    params_free(&b);
}

static int64_t box_index(const struct param *p, int64_t a, int64_t b, int64_t c) {
    return (a * p->shape[1] + b) * p->shape[2] + c;
}

/* Every (dp, tp, pp) rank of a layout builds its table; over all of them, each logical
 * element of each tensor is owned exactly once, and the tp shards of the stage that owns
 * a tensor cover it (once when split, tp times when replicated over tp). */
static void check_layout(int dp, int tp, int pp, int L) {
    struct params_layout base = one_rank(L);
    struct params ref;
    params_build(&ref, &base);
    int64_t **own = calloc((size_t)ref.n, sizeof(int64_t *));
    int64_t **held = calloc((size_t)ref.n, sizeof(int64_t *));
    for (int i = 0; i < ref.n; i++) {
        const struct param *p = &ref.p[i];
        size_t n = (size_t)(p->shape[0] * p->shape[1] * p->shape[2]);
        own[i] = calloc(n, sizeof(int64_t));
        held[i] = calloc(n, sizeof(int64_t));
    }
    for (int s = 0; s < pp; s++)
        for (int d = 0; d < dp; d++)
            for (int r = 0; r < tp; r++) {
                struct params_layout lay = base;
                lay.dp = dp; lay.dp_rank = d; lay.tp = tp; lay.tp_rank = r;
                lay.l0 = L * s / pp; lay.l1 = L * (s + 1) / pp;
                lay.first = s == 0; lay.last = s == pp - 1;
                struct params t;
                params_build(&t, &lay);
                CHECK(t.n == ref.n && t.n_logical == ref.n_logical);
                for (int i = 0; i < t.n; i++) {
                    const struct param *p = &t.p[i];
                    if (!p->n_local) { CHECK(p->own_n == 0); continue; }
                    CHECK(p->offset % 16 == 0 && p->offset + p->n_local <= t.n_local);
                    /* the owned box lies in the shard, at own_offset into it */
                    for (int a = 0; a < 3; a++)
                        CHECK(p->own_start[a] >= p->local_start[a] &&
                              p->own_start[a] + p->own_count[a] <=
                                  p->local_start[a] + p->local_shape[a]);
                    if (p->own_n)
                        CHECK(p->own_offset == (p->own_start[0] - p->local_start[0]) *
                                                   p->local_shape[1] * p->local_shape[2] &&
                              p->own_n == p->own_count[0] * p->own_count[1] * p->own_count[2]);
                    for (int64_t a = 0; a < p->own_count[0]; a++)
                        for (int64_t b = 0; b < p->own_count[1]; b++)
                            for (int64_t c = 0; c < p->own_count[2]; c++)
                                own[i][box_index(p, a + p->own_start[0], b + p->own_start[1],
                                                 c + p->own_start[2])]++;
                    int owner_stage = p->kind != PK_WTE || lay.first;
                    if (d == 0 && owner_stage)
                        for (int64_t a = 0; a < p->local_shape[0]; a++)
                            for (int64_t b = 0; b < p->local_shape[1]; b++)
                                for (int64_t c = 0; c < p->local_shape[2]; c++)
                                    held[i][box_index(p, a + p->local_start[0],
                                                      b + p->local_start[1],
                                                      c + p->local_start[2])]++;
                }
                params_free(&t);
            }
    for (int i = 0; i < ref.n; i++) {
        const struct param *p = &ref.p[i];
        int64_t n = p->shape[0] * p->shape[1] * p->shape[2], bad_own = 0, bad_held = 0;
        int64_t want_held = p->tp_replicated ? tp : 1;
        for (int64_t e = 0; e < n; e++) {
            bad_own += own[i][e] != 1;
            bad_held += held[i][e] != want_held;
        }
        CHECK_MSG(bad_own == 0, "dp %d tp %d pp %d: %s has %lld elements not owned exactly once",
                  dp, tp, pp, p->name, (long long)bad_own);
        CHECK_MSG(bad_held == 0, "dp %d tp %d pp %d: %s has %lld elements its shards miss or "
                  "repeat", dp, tp, pp, p->name, (long long)bad_held);
        free(own[i]);
        free(held[i]);
    }
    free(own);
    free(held);
    params_free(&ref);
}

static void test_every_element_is_owned_once_on_every_layout(void) {
    /* tp divides C = 8 and Vp = 24; dp 3 and 5 leave uneven rows to split */
    const int layouts[][4] = {{1, 1, 1, 3}, {2, 1, 1, 3}, {1, 2, 1, 3}, {1, 1, 2, 3},
                              {2, 2, 2, 4}, {3, 2, 3, 5}, {5, 4, 1, 2}, {1, 8, 2, 2},
                              {3, 1, 4, 4}};
    for (size_t j = 0; j < sizeof layouts / sizeof layouts[0]; j++)
        check_layout(layouts[j][0], layouts[j][1], layouts[j][2], layouts[j][3]);
}

int main(void) {
    RUN(test_lookup_by_kind_and_by_name_agree_for_every_layer);
    RUN(test_order_names_and_shapes_are_the_checkpoints);
    RUN(test_adding_tensors_shifts_no_lookup);
    RUN(test_every_element_is_owned_once_on_every_layout);
    return test_summary();
}

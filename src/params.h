/* params.h — the parameter table: every logical tensor of the model, by name and kind.
 *
 * Below the model and io: it knows shapes, shards and ownership, never the contents.
 * The table is built once from plain numbers (struct params_layout), so any rank of any
 * layout can be computed in one process without MPI (tests/test_params.c does).
 *
 * Names and full shapes (C = n_embd, V = padded vocabulary, P = block_size, L layers):
 *   kind            name               shape       tp shard                 stage
 *   PK_WTE          wte                [V, C]      rows (vocabulary)        first (+ last)
 *   PK_WPE          wpe                [P, C]      replicated               first
 *   PK_LN1_W/_B     h.<l>.ln_1.w/.b    [C]         replicated
 *   PK_QKV_W        h.<l>.attn.qkv.w   [3, C, C]   axis 1 (heads)           column-parallel
 *   PK_QKV_B        h.<l>.attn.qkv.b   [3, C]      axis 1
 *   PK_ATTN_PROJ_W  h.<l>.attn.proj.w  [C, C]      axis 1 (input)           row-parallel
 *   PK_ATTN_PROJ_B  h.<l>.attn.proj.b  [C]         replicated
 *   PK_LN2_W/_B     h.<l>.ln_2.w/.b    [C]         replicated
 *   PK_FC_W         h.<l>.mlp.fc.w     [4C, C]     axis 0 (output)          column-parallel
 *   PK_FC_B         h.<l>.mlp.fc.b     [4C]        axis 0
 *   PK_MLP_PROJ_W   h.<l>.mlp.proj.w   [C, 4C]     axis 1 (input)           row-parallel
 *   PK_MLP_PROJ_B   h.<l>.mlp.proj.b   [C]         replicated
 *   PK_LNF_W/_B     ln_f.w/.b          [C]         replicated               last
 * The LM head is tied to wte: the last stage keeps its own copy when PP > 1; stage 0's
 * copy is the one that owns it.
 *
 * The table's order (wte, wpe, each layer's tensors, ln_f) is the checkpoint's order and
 * the backward pass's reverse order; nothing outside params.c depends on positions:
 * look tensors up with params_find / params_get.
 *
 * Ownership (one map, used by the gradient norm, the optimizer's future ZeRO slices and
 * the checkpoint): the replicas of a shard — dp replicas, and tp ranks too for a tensor
 * replicated over tp — split its first axis into contiguous rows, replica r of R taking
 * rows [n·r/R, n·(r+1)/R). Every logical element has exactly one owner. The tied wte is
 * owned by stage 0 only.
 */
#ifndef TRIDENT_PARAMS_H
#define TRIDENT_PARAMS_H

#include <stdint.h>

/* Tensors of the whole model (layer -1), then tensors of every block (layer >= 0). A new
 * kind goes at the end of its group: lookups are by kind, so nothing else moves. */
enum param_kind {
    PK_WTE, PK_WPE, PK_LNF_W, PK_LNF_B,
    PK_MODEL_COUNT,
    PK_LN1_W = PK_MODEL_COUNT, PK_LN1_B, PK_QKV_W, PK_QKV_B, PK_ATTN_PROJ_W, PK_ATTN_PROJ_B,
    PK_LN2_W, PK_LN2_B, PK_FC_W, PK_FC_B, PK_MLP_PROJ_W, PK_MLP_PROJ_B,
    PK_COUNT
};
#define PK_LAYER_COUNT (PK_COUNT - PK_MODEL_COUNT)

enum param_dtype { PDT_F32, PDT_BF16, PDT_F16 };  /* f32 for every tensor today */

enum pinit { PI_NORMAL, PI_NORMAL_RESID, PI_ZEROS, PI_ONES };

#define PARAM_NAME_MAX 48

/* One logical tensor, and where this rank's shard of it lives. */
struct param {
    char    name[PARAM_NAME_MAX];
    enum param_kind  kind;
    enum param_dtype dtype;
    int     layer;       /* -1: not in a block */
    int     ndim;
    int64_t shape[3];    /* full logical shape (1 past ndim) */
    int     shard_axis;  /* -1: replicated over tp */
    int     tp_replicated; /* every tp rank holds all of it (shard_axis < 0) */
    enum pinit init;
    int     decay;       /* weight decay applies (matrices and embeddings) */
    /* this rank's shard (n_local == 0 when the tensor is not on this stage) */
    int64_t local_shape[3], local_start[3];
    int64_t n_local;
    int64_t offset;      /* into model.params / model.grads (floats) */
    /* The part this rank owns: rows [own_start[0], +own_count[0]) of the full tensor, a
     * box within its shard. It counts them in the gradient norm and writes (and verifies)
     * them in a checkpoint. */
    int64_t own_start[3], own_count[3];  /* a box in the full tensor */
    int64_t own_offset, own_n;           /* floats into the shard, and how many */
};

/* What the table depends on: the model's sizes and this rank's place in the grid. */
struct params_layout {
    int C, Vp, P, L;             /* n_embd, padded vocabulary, block_size, n_layer */
    int dp, dp_rank, tp, tp_rank;
    int l0, l1;                  /* layers [l0, l1) on this rank's stage */
    int first, last;             /* this rank holds stage 0 / the last stage */
};

struct params {
    struct param *p;             /* entries in table order */
    int     n;                   /* entries */
    int     L;
    int     *index;              /* [PK_MODEL_COUNT + L * PK_LAYER_COUNT]: entry of each kind */
    int64_t n_local;             /* floats of this rank's shards (64-byte aligned each) */
    int64_t n_logical;           /* parameters of the whole model */
};

void params_build(struct params *t, const struct params_layout *lay);
void params_free(struct params *t);
/* bytes params_build allocates (for the memory plan) */
int64_t params_table_bytes(int n_layer);

/* Entry of (layer, kind), or -1 when the kind is of the other group (model vs layer) or
 * the layer is out of range. layer is -1 for the model's own tensors. */
int params_find(const struct params *t, int layer, enum param_kind kind);
/* The entry itself; aborts on a lookup that cannot exist (a programming error). */
const struct param *params_get(const struct params *t, int layer, enum param_kind kind);
/* Entry by name ("h.3.mlp.fc.w"), or -1. */
int params_find_name(const struct params *t, const char *name);
/* The entries of one block are consecutive: [*first, *first + *n). */
void params_layer_span(const struct params *t, int layer, int *first, int *n);

const char *params_dtype_name(enum param_dtype dt);

#endif

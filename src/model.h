/* model.h — GPT-2 with tensor- and pipeline-parallel shards.
 *
 * The parameter table (src/params.h) describes every logical tensor once: name, kind,
 * shape, shard and the one ownership map. It drives initialisation, the optimizer's
 * decay mask, the gradient norm, checkpoint reading and writing, and resharding.
 * The LM head is tied to wte: the last stage keeps its own copy of wte when PP > 1,
 * kept identical to stage 0's by summing their gradients.
 *
 * Mixed precision (cfg.precision): `params` are the fp32 master weights (what the
 * optimizer updates and a checkpoint stores), `grads` their fp32 gradients. The passes
 * compute with `w`, the weights in the compute dtype dt: the same buffer as params for
 * fp32, a 16-bit copy refreshed by model_refresh_weights otherwise. Activations, their
 * gradients and the logits are stored in dt; LayerNorm statistics and the per-row
 * cross-entropy values stay fp32. Every buffer is a typed tensor on the model's backend:
 * this file slices them, the kernels read and write them.
 */
#ifndef TRIDENT_MODEL_H
#define TRIDENT_MODEL_H

#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "grid.h"
#include "kernels.h"
#include "params.h"
#include "tp.h"

/* Activations of one micro-batch on this stage (one "slot"), each sized for the largest
 * micro-batch (B×T rows) and, per layer, stacked over the stage's layers. What the
 * recompute mode does not keep is absent from the slot (see enum recompute). */
struct acts {
    struct tensor x;     /* [(nl+1) BT][C] residual stream at each local layer boundary */
    struct tensor ln1, ln1_mean, ln1_rstd, qkv, att, atty, xmid;
    struct tensor ln2, ln2_mean, ln2_rstd, fch, fch_gelu;    /* per layer, stacked */
    struct tensor lnf, lnf_mean, lnf_rstd, logits;           /* last stage */
    struct tensor rowmax, sumexp, tlogit;                    /* [1][BT] fp32 */
    struct tensor tokens, targets;                           /* [B][T] int32 */
};

/* What the backward pass recomputes instead of keeping (cfg.recompute). The forward
 * pass writes what a slot does not keep into one layer's worth of shared buffers
 * (m->rc), overwritten layer after layer; the backward pass recomputes it there, one
 * layer at a time, just before block_backward reads it.
 *  RC_NONE:      every activation of every layer stays in the slot;
 *  RC_SELECTIVE: all but the attention probabilities (att, [B·NHl·T][T]) and the GELU
 *                output (fch_gelu), recomputed from the kept qkv and fch: large (att
 *                grows with T²) and cheap to recompute (no weight matmul, no collective);
 *  RC_FULL:      only the residual stream at the layer boundaries (x); the block is
 *                recomputed from its input, up to the GELU (its output is in the slot
 *                already), with the attention's tensor-parallel all-reduce.
 * The recomputed values are the stored ones bit for bit (the kernels and the sums are
 * deterministic), so losses and weights do not depend on the mode. */
enum recompute { RC_NONE = 0, RC_SELECTIVE = 1, RC_FULL = 2 };

struct model {
    struct config cfg;
    const struct grid *grid;
    struct backend *be;              /* owns every buffer below (not the model's: the caller's) */
    const struct kernels *k;         /* backend_kernels(be) */
    enum kdtype dt;                  /* compute dtype: cfg.precision */
    enum kdevice dev;                /* cfg.device: what the attention keeps (kernels.h) */
    int C, NH, V, Vp, L, T, B;       /* B, T: the largest micro-batch it was sized for */
    int Cl, NHl, Vl, v0, Fl;         /* local (tp shard) sizes: C/tp, heads, vocab, 4C/tp */
    int l0, l1, nl;                  /* layers [l0, l1) on this stage */
    int first, last;                 /* this rank holds stage 0 / the last stage */
    struct params pt;                /* the full table (every logical tensor) */
    int64_t n_local;                 /* floats of this rank's shards (= pt.n_local) */
    int64_t n_logical;               /* parameters of the whole model */
    struct tensor params, grads;     /* [1][n_local] fp32 master weights, their gradients */
    struct tensor w;                 /* [1][n_local] weights in dt (= params for fp32) */
    /* zero = 1 with dp > 1 (ZeRO-1): this rank's slice of the local buffers (laid out by
     * dpr_zero_layout in dp.h). params is then [1][z.n], the masters of the slice only, for
     * bf16/fp16; for fp32 params stays full (it is w). z.grads holds the slice's
     * gradients summed over the data-parallel group (the reduce-scatter's output). */
    struct zero_slice {
        int     on;
        int64_t lo, n;               /* floats [lo, lo + n) of the local buffers */
        int    *counts, *displs;     /* every dp rank's slice (all-gathers) */
        struct tensor grads;         /* [1][n] fp32 */
    } z;
    enum recompute recompute;        /* cfg.recompute */
    int n_slots;
    struct acts *slots;
    /* one layer's arrays that the slots do not keep (recompute != none), shared by all
     * slots and layers: only the per-layer arrays that the mode leaves out are present */
    struct acts rc;
    /* backward scratch (dt), shared by all slots */
    struct tensor dres, dqkv, datty, dfch, dln, att_scratch;
    struct tp_ctx tp;                /* tensor-parallel sums (fp32 staging for 16-bit) */
    /* per-kernel time (seconds, accumulated since the last model_timers_reset) */
    double t_kernel[16];
    double t_tp_comm;
    /* called by model_backward when the gradients of tensors [first, first+n) of the
     * table are complete for this micro-batch, so the data-parallel reduction of the
     * last micro-batch can start while earlier layers still compute */
    void (*on_grads)(void *ctx, int first, int n);
    void *hook_ctx;
};

enum ktimer { KT_MATMUL_F, KT_MATMUL_B, KT_ATTN_F, KT_ATTN_B, KT_LN_F, KT_LN_B, KT_GELU_F,
              KT_GELU_B, KT_EMB, KT_XENT, KT_RESID, KT_COUNT };
extern const char *const KTIMER_NAMES[KT_COUNT];

/* Build the table, place this rank's shards, allocate params/grads (zeroed) and n_slots
 * activation slots for micro-batches of B×T (cfg.micro_batch × cfg.seq_len) on backend
 * be, which must outlive the model (model_free gives the buffers back to it). */
/* The compute dtype a config asks for (cfg.precision). */
enum kdtype model_dtype(const struct config *cfg);

void model_init(struct model *m, const struct config *cfg, const struct grid *g,
                struct backend *be, int n_slots);
void model_free(struct model *m);

/* What model_init allocates on this rank, in bytes, computed from the same lists it
 * allocates from (nothing large is allocated here): for the memory plan. */
struct model_mem {
    int64_t n_local;     /* floats of this rank's shards */
    int64_t params;      /* the fp32 gradients (and masters without ZeRO slicing) */
    int64_t masters;     /* the fp32 master weights: params, or the ZeRO slice (16-bit) */
    int64_t zero_n;      /* zero = 1: floats of this rank's slice (0: not sliced) */
    int64_t zero_grads;  /* zero = 1: the slice's reduced gradients */
    int64_t weights16;   /* the 16-bit compute copy of the weights (0 for fp32) */
    int64_t tp_staging;  /* fp32 staging of 16-bit tensor-parallel sums (0 if none) */
    int64_t widen;       /* the CPU backend's fp32 workspaces for 16-bit kernels (0: fp32) */
    int64_t table;       /* the parameter table */
    int64_t slot;        /* the activations of one micro-batch in flight */
    int64_t scratch;     /* the backward scratch, shared by the slots */
    int64_t recompute;   /* one layer's recomputed activations, shared (0: recompute none) */
    int     first, last; /* this rank holds stage 0 / the last stage */
};
void model_mem_plan(const struct config *cfg, const struct grid *g, struct model_mem *mm);

/* zero = 1: the fp32 masters at full local size (a new backend buffer [1][n_local]; free
 * with backend_free_mem), gathered from every dp rank's slice (collective over COMM_DP);
 * for fp32 precision a copy of params. model_masters_set_full keeps this rank's slice of
 * such a buffer as its masters and sets the compute weights w from all of it. */
struct tensor model_masters_full(const struct model *m);
void model_masters_set_full(struct model *m, struct tensor full);

/* Initialise weights: each shard computes exactly its slice of the full tensor from a
 * counter-based RNG keyed by (seed, tensor name, element index). */
void model_init_weights(struct model *m, uint64_t seed);

/* Copy the fp32 master weights into the compute weights m->w (rounded to nearest even;
 * nothing to do for fp32; with zero = 1 only this rank's slice: the optimizer gathers
 * the rest). Whoever changes m->params calls it before the next pass: the
 * optimizer step, initialisation, a checkpoint load. */
void model_refresh_weights(struct model *m);

/* The view of tensor (layer, kind) in base (m->params, m->grads or m->w): this rank's
 * shard, shaped [rows][last dim] of its local shape; absent if not on this rank. */
struct tensor model_param(const struct model *m, struct tensor base, int layer,
                          enum param_kind kind);

/* The stage's input (x at layer boundary 0) and output (boundary nl) of a micro-batch
 * of B×T in slot s: what the pipeline receives and sends. */
struct tensor model_stage_input(const struct model *m, int slot, int B, int T);
struct tensor model_stage_output(const struct model *m, int slot, int B, int T);
/* The gradient of the stage's input or output for B×T tokens (a view of m->dres). */
struct tensor model_dres(const struct model *m, int B, int T);

/* Layers of each stage, balanced by cost (first/last stages carry the embedding and
 * the head) or given by cfg.stages "a,b,c". Writes pp+1 boundaries into bounds. */
void model_stage_bounds(const struct config *cfg, int pp, int *bounds);

/* Forward of one micro-batch (B' <= B sequences of T' <= T tokens) through this stage.
 *  first stage: reads s->tokens; otherwise s->x[0] must hold the input activation.
 *  last stage: computes the loss of every token, returns their sum, and (if dloss != 0)
 *  turns the logits into their gradient for model_backward (dloss: d(total loss)/d(loss
 *  of one token)). Other stages return 0 and leave the output in s->x[nl]. */
double model_forward(struct model *m, int slot, int B, int T, float dloss);

/* Backward of one micro-batch: last stage starts from the logits' gradient; other
 * stages need m->dres to hold d(output). Leaves d(input) in m->dres (stage > 0). */
void model_backward(struct model *m, int slot, int B, int T);

/* One transformer block (pre-LayerNorm GPT-2), the unit that model_forward and
 * model_backward loop over and that a schedule or recomputation can call on its own.
 *
 *   xmid = in + proj(attention(qkv(ln1(in))))     qkv column-, proj row-parallel
 *   out  = xmid + fcproj(gelu(fc(ln2(xmid))))     fc column-, fcproj row-parallel
 *
 * Both views take the model's layer index (0 <= layer < L), which must be on this stage
 * (l0 <= layer < l1). */

/* This rank's shards of one layer's weights, or of their gradients (base = m->w or
 * m->grads): the same views into either buffer. */
struct layer_w {
    struct tensor ln1w, ln1b, qkvw, qkvb, projw, projb, ln2w, ln2b, fcw, fcb, fcpw, fcpb;
};
void layer_w_view(const struct model *m, struct tensor base, int layer, struct layer_w *w);

/* One layer's activations in a slot, for a micro-batch of B×T (BT = B·T rows). The
 * forward pass writes them, the backward pass reads them: the one place that slices the
 * slot's stacked arrays. An array the recompute mode does not keep in the slot is a view
 * of m->rc instead, shared by every slot and layer: it holds this layer's values only
 * until the next block_forward or block_recompute (block_recompute restores them). */
struct block_acts {
    int B, T;
    struct tensor in, out;               /* [BT][C] residual stream into / out of the block */
    struct tensor ln1, ln1_mean, ln1_rstd; /* [BT][C], [1][BT], [1][BT] */
    struct tensor qkv;                   /* [BT][3 Cl] */
    struct tensor att;                   /* [B NHl T][T] attention probabilities */
    struct tensor atty;                  /* [BT][Cl] attention output, before proj */
    struct tensor xmid;                  /* [BT][C] residual stream after attention */
    struct tensor ln2, ln2_mean, ln2_rstd; /* [BT][C], [1][BT], [1][BT] */
    struct tensor fch, fch_gelu;         /* [BT][Fl] MLP before / after GELU */
};
void block_acts_view(const struct model *m, struct acts *a, int layer, int B, int T,
                     struct block_acts *ba);

/* Forward of one block: reads ba->in, writes every other array of the view (ba->out
 * last), with the tensor-parallel pairs of src/tp.h. An absent ba->out stops it after
 * the GELU: everything block_backward reads is written, without the MLP projection and
 * its all-reduce (the recomputation). */
void block_forward(struct model *m, const struct layer_w *w, const struct block_acts *ba);

/* The view block_backward needs for layer `layer` of the micro-batch in slot `slot`:
 * block_acts_view of the slot, with what the recompute mode did not keep recomputed into
 * m->rc (from the kept qkv and fch, or the whole block from its input). With tp > 1 it
 * runs the tensor-parallel sums of the block's forward (recompute = full): every rank of
 * the tensor-parallel group must call it for the same layers in the same order. ba->out
 * is absent for recompute = full (the backward never reads it). */
void block_recompute(struct model *m, const struct layer_w *w, int slot, int layer, int B,
                     int T, struct block_acts *ba);

/* Backward of one block: m->dres holds d(out) on entry and d(in) on return; adds the
 * layer's weight gradients into dw (+=: they accumulate over micro-batches). Uses the
 * model's backward scratch. Does not call the gradient hook (model_backward does). */
void block_backward(struct model *m, const struct layer_w *w, const struct layer_w *dw,
                    const struct block_acts *ba);

void model_zero_grads(struct model *m);
void model_timers_reset(struct model *m);

/* Model FLOPs of one training token (the usual count, forward + backward): 6 per matmul
 * parameter (12·L·C² + Vp·C, the tied LM head once, padded vocabulary) plus causal
 * attention as the model needs it: 6·L·C·(T+1) (QKᵀ and PV over the T(T+1)/2 query–key
 * pairs of the lower triangle, not the full T² square). */
double model_flops_per_token(const struct config *cfg);

/* The efficiency figures of one step, from its FLOPs and time on `ranks` ranks:
 * gflops = model GFLOP/s per rank; mfu = gflops / peak_gflops (the hardware's FMA peak
 * per rank); blas_eff = gflops / sgemm_gflops (the BLAS's own rate on the model's GEMM
 * shapes). A slow BLAS lowers mfu, while blas_eff (both sides slowed) barely moves. */
struct model_eff { double gflops, mfu, blas_eff; };
struct model_eff model_efficiency(double flops_per_step, double step_s, int ranks,
                                  double peak_gflops, double sgemm_gflops);

#endif

/* optim.h — learning-rate schedule and scaling, global gradient norm and clipping, and the
 * optimizers (AdamW, LAMB, LARS, SGD with momentum) with their state in fp32, bf16 or
 * block-wise int8. */
#ifndef TRIDENT_OPTIM_H
#define TRIDENT_OPTIM_H

#include <stdint.h>

#include "config.h"
#include "model.h"

enum optim_kind { OPT_ADAMW, OPT_LAMB, OPT_LARS, OPT_SGD };
enum optim_form { OSF_F32, OSF_BF16, OSF_I8 };  /* config key optim_state */

/* LARS' trust coefficient (You et al. 2017) */
#define OPTIM_LARS_TRUST 0.001

struct optim {
    struct backend *be; /* the model's: where the state lives */
    enum optim_kind kind;
    enum optim_form form;
    int     n_buf;  /* state buffers: 2 (AdamW, LAMB: m, v), 1 (LARS, SGD: momentum in m) */
    /* fp32, bf16: [1][n] the first moment (or momentum) and second moment, laid out as
     * model.params; int8: the fp32 scales of their blocks (every tensor's shard starts a
     * block; the scales of table entry i start at offset / KSTATE_BLOCK + i). v is absent
     * with one buffer. These are the buffers whose finiteness the trainer checks. */
    struct tensor m, v;
    struct tensor mq, vq; /* int8: the codes, one byte an element packed in int32 words */
    int64_t n;
    int     t;          /* optimizer steps taken (bias correction) */
    double  lr_factor;  /* lr_scaling's factor for this run's global batch */
    double *norms;      /* per table entry: two sums of squares (LAMB, LARS) */
    /* zero = 1 (m->z.on): the state covers this rank's slice only (n = m->z.n floats,
     * state float j is local float m->z.lo + j; int8: the slice laid out as the local
     * buffer is, its scales from float / KSTATE_BLOCK + entry), and optim_step ends by
     * starting the all-gather of the updated weights over COMM_DP, finished by
     * optim_gather_wait */
    struct comm_req gather;
    int gathering;
    /* zero = 1 with the hierarchical reduction: the all-gather in two phases, across
     * nodes then inside the node (see gather_plan_hier in optim.c); hier_m: the model
     * whose weights the second phase completes */
    int hier;
    int *xcounts, *xdispls, *ncounts, *ndispls;
    const struct model *hier_m;
};

/* Learning rate at 0-based step: linear warmup to lr over `warmup` steps, then cosine
 * decay to min_lr at the last step (unscaled: optim_step_lr applies lr_scaling). */
float optim_lr(const struct config *cfg, int step);
/* lr_scaling's factor: (global_batch / ref_batch) for linear, its square root for sqrt,
 * 1 for none or ref_batch = 0. global_batch: micro_batch x grad_accum x dp sequences. */
double optim_lr_factor(const struct config *cfg, long global_batch);
/* the learning rate the optimizer applies at 0-based step: optim_lr times o->lr_factor */
float optim_step_lr(const struct optim *o, const struct config *cfg, int step);

enum optim_kind optim_kind_of(const char *name);  /* "adamw", ...; aborts on another */
enum optim_form optim_form_of(const char *name);  /* "fp32", "bf16", "int8" */
/* Bytes optim_init allocates on the backend for a rank with n_local parameter floats
 * (each allocation rounded up to 64 bytes, as backend_alloc does): the memory plan's
 * MEM_OPTIM. */
int64_t optim_state_bytes(const struct config *cfg, int64_t n_local);

/* Zeroed state for m's parameters, on m's backend, of the kind and form m->cfg names. */
void optim_init(struct optim *o, const struct model *m);
void optim_free(struct optim *o);
/* zero the state (a fresh start) */
void optim_zero(const struct optim *o);

/* The state buffer `which` (0: m or momentum, 1: v) of table entry i as the kernels take
 * it. */
struct kstate optim_kstate(const struct optim *o, const struct param *p, int i, int which);
/* Checkpoints hold the state in fp32 at its logical shape. With zero = 1 both take the
 * full local size (optim_state_f32 gathers the slices over COMM_DP: collective;
 * optim_state_set_f32 keeps this rank's slice). optim_state_f32 returns a new
 * backend buffer (free with backend_free_mem) holding buffer `which` in fp32 ([1][n];
 * zeros for a buffer this optimizer does not have); optim_state_set_f32 stores such a
 * buffer into the state in its form (nothing for a buffer it does not have). */
struct tensor optim_state_f32(const struct optim *o, const struct model *m, int which);
void optim_state_set_f32(const struct optim *o, const struct model *m, int which,
                         struct tensor src);

/* Global L2 norm of the (fully reduced) gradient: every logical parameter counted once,
 * whatever the layout. Collective over MPI_COMM_WORLD. With zero = 1 each rank sums its
 * slice (m->z.grads): a tensor replicated over tp counted by tp rank 0 only, the tied
 * wte by stage 0 only. */
double optim_grad_norm(const struct model *m);
/* The part of table entry i's gradient that this rank's norm counts, so that the job
 * counts every logical element once: zero = 0 the part it owns; zero = 1 its slice's part
 * of the entry (a tensor replicated over tp on tp rank 0, the tied wte on stage 0).
 * Absent when there is none. */
struct tensor optim_norm_part(const struct model *m, int i);

/* zero = 1: finish the all-gather of the weights optim_step started (nothing to do
 * otherwise; hierarchical: it runs the second, node-local phase, collective over the
 * node's dp members). Before anything reads m->w (or fp32's m->params) again: the next
 * forward, evaluation, the finiteness check, a checkpoint; and before m->grads is
 * written again (the hierarchical gather stages its chunk there). */
void optim_gather_wait(struct optim *o);

/* One step of the configured optimizer over this rank's shards (zero = 1: its slice)
 * with the given learning rate; gradients are multiplied by grad_scale first (clipping,
 * fp16's loss scale). Weight decay only where the table says. LAMB and LARS take their
 * trust ratios from norms of the logical tensors: one all-reduce over MPI_COMM_WORLD of
 * the per-tensor sums (collective; zero = 1: each rank sums the parts in its slice). */
void optim_step(struct optim *o, struct model *m, float lr, float grad_scale);

#endif

/* optim.h — learning-rate schedule, global gradient norm and clipping, AdamW. */
#ifndef TRIDENT_OPTIM_H
#define TRIDENT_OPTIM_H

#include <stdint.h>

#include "config.h"
#include "model.h"

struct optim {
    struct backend *be; /* the model's: where m and v live */
    struct tensor m, v; /* [1][n] fp32 first and second moments, laid out as model.params */
    int64_t n;
    int     t;      /* optimizer steps taken (AdamW bias correction) */
};

/* Learning rate at 0-based step: linear warmup to lr over `warmup` steps, then cosine
 * decay to min_lr at the last step. */
float optim_lr(const struct config *cfg, int step);

/* Zeroed moments for m's parameters, on m's backend. */
void optim_init(struct optim *o, const struct model *m);
void optim_free(struct optim *o);

/* Global L2 norm of the (fully reduced) gradient: every logical parameter counted once,
 * whatever the layout. Collective over MPI_COMM_WORLD. */
double optim_grad_norm(const struct model *m);

/* One AdamW step over this rank's shards with the given learning rate; gradients are
 * multiplied by grad_scale first (clipping). Weight decay only where the table says. */
void optim_step(struct optim *o, struct model *m, float lr, float grad_scale);

#endif

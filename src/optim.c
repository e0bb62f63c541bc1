/* optim.c — learning-rate schedule, gradient norm, AdamW over the parameter table. */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "common.h"

float optim_lr(const struct config *cfg, int step) {
    if (step < cfg->warmup) return cfg->lr * (float)(step + 1) / (float)cfg->warmup;
    int decay_steps = cfg->steps - cfg->warmup;
    if (decay_steps <= 1) return cfg->lr;
    double progress = (double)(step - cfg->warmup) / (double)(decay_steps - 1);
    if (progress > 1.0) progress = 1.0;
    double coeff = 0.5 * (1.0 + cos(M_PI * progress));
    return (float)(cfg->min_lr + coeff * (cfg->lr - cfg->min_lr));
}

void optim_init(struct optim *o, const struct model *m) {
    memset(o, 0, sizeof *o);
    o->be = m->be;
    o->n = m->n_local;
    size_t n_bytes = sizeof(float) * (size_t)o->n;
    o->m = tensor_1d(backend_alloc(o->be, n_bytes), KDT_F32, o->n);
    o->v = tensor_1d(backend_alloc(o->be, n_bytes), KDT_F32, o->n);
    backend_memset(o->be, o->m.data, 0, n_bytes);
    backend_memset(o->be, o->v.data, 0, n_bytes);
}

void optim_free(struct optim *o) {
    if (o->be) {
        backend_free_mem(o->be, o->m.data);
        backend_free_mem(o->be, o->v.data);
    }
    memset(o, 0, sizeof *o);
}

double optim_grad_norm(const struct model *m) {
    double local = 0.0;
    /* each rank sums the part it owns: every logical element exactly once */
    for (int i = 0; i < m->pt.n; i++) {
        const struct param *p = &m->pt.p[i];
        if (p->own_n)
            local += m->k->sumsq(m->be, tensor_view(m->grads, p->offset + p->own_offset, 1,
                                                    p->own_n));
    }
    comm_allreduce(&m->grid->comm, COMM_WORLD, &local, 1, COMM_F64, COMM_SUM);
    return sqrt(local);
}

void optim_step(struct optim *o, struct model *m, float lr, float grad_scale) {
    const struct config *c = &m->cfg;
    o->t++;
    for (int i = 0; i < m->pt.n; i++) {
        const struct param *p = &m->pt.p[i];
        if (!p->n_local) continue;
        m->k->adamw(m->be, tensor_view(m->params, p->offset, 1, p->n_local),
                    tensor_view(m->grads, p->offset, 1, p->n_local),
                    tensor_view(o->m, p->offset, 1, p->n_local),
                    tensor_view(o->v, p->offset, 1, p->n_local), lr, c->beta1, c->beta2,
                    c->adam_eps, p->decay ? c->weight_decay : 0.0f, grad_scale, o->t);
    }
    model_refresh_weights(m);
}

/* optim.c — learning-rate schedule and scaling, gradient norm, and the optimizers over the
 * parameter table (the update arithmetic is the kernels': kernels/cpu/optimizers.c). */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "common.h"
#include "dp.h"

float optim_lr(const struct config *cfg, int step) {
    if (step < cfg->warmup) return cfg->lr * (float)(step + 1) / (float)cfg->warmup;
    int decay_steps = cfg->steps - cfg->warmup;
    if (decay_steps <= 1) return cfg->lr;
    double progress = (double)(step - cfg->warmup) / (double)(decay_steps - 1);
    if (progress > 1.0) progress = 1.0;
    double coeff = 0.5 * (1.0 + cos(M_PI * progress));
    return (float)(cfg->min_lr + coeff * (cfg->lr - cfg->min_lr));
}

double optim_lr_factor(const struct config *cfg, long global_batch) {
    if (cfg->ref_batch <= 0 || strcmp(cfg->lr_scaling, "none") == 0) return 1.0;
    double r = (double)global_batch / (double)cfg->ref_batch;
    return strcmp(cfg->lr_scaling, "sqrt") == 0 ? sqrt(r) : r;
}

float optim_step_lr(const struct optim *o, const struct config *cfg, int step) {
    /* warmup and cosine are linear in (lr, min_lr): scaling both scales the schedule */
    float lr = optim_lr(cfg, step);
    return o->lr_factor == 1.0 ? lr : (float)(lr * o->lr_factor);
}

enum optim_kind optim_kind_of(const char *name) {
    if (strcmp(name, "adamw") == 0) return OPT_ADAMW;
    if (strcmp(name, "lamb") == 0) return OPT_LAMB;
    if (strcmp(name, "lars") == 0) return OPT_LARS;
    if (strcmp(name, "sgd") == 0) return OPT_SGD;
    TR_ABORT("unknown optimizer '%s'", name);
}

enum optim_form optim_form_of(const char *name) {
    if (strcmp(name, "fp32") == 0) return OSF_F32;
    if (strcmp(name, "bf16") == 0) return OSF_BF16;
    if (strcmp(name, "int8") == 0) return OSF_I8;
    TR_ABORT("unknown optim_state '%s'", name);
}

/* the comm dtype of a compute dtype (the weights' all-gather) */
static enum comm_dtype comm_dtype_of(enum kdtype dt) {
    return dt == KDT_F32 ? COMM_F32 : dt == KDT_BF16 ? COMM_BF16 : COMM_F16;
}

static int64_t round64(int64_t b) { return (b + 63) / 64 * 64; }

static int n_buffers(enum optim_kind k) { return k == OPT_ADAMW || k == OPT_LAMB ? 2 : 1; }

/* int8: scale floats of a buffer (see struct optim) and code words */
static int64_t n_scales(int64_t n_local, int n_entries) { return n_local / KSTATE_BLOCK + n_entries; }
static int64_t n_code_words(int64_t n_local) { return (n_local + 3) / 4; }

/* the parameter table's length for n_layer blocks (a count, not a position: optim_init
 * checks it against the table it is given) */
static int table_entries(int n_layer) {
    int n = PK_MODEL_COUNT;
    for (int l = 0; l < n_layer; l++) n += PK_LAYER_COUNT;
    return n;
}

int64_t optim_state_bytes(const struct config *cfg, int64_t n_local) {
    const int64_t nb = n_buffers(optim_kind_of(cfg->optimizer));
    const int n_entries = table_entries(cfg->n_layer);
    switch (optim_form_of(cfg->optim_state)) {
    case OSF_F32:  return nb * round64(4 * n_local);
    case OSF_BF16: return nb * round64(2 * n_local);
    case OSF_I8:
        return nb * (round64(4 * n_code_words(n_local)) +
                     round64(4 * n_scales(n_local, n_entries)));
    }
    return 0;
}

static struct tensor zeroed(struct backend *be, enum kdtype dt, int64_t n) {
    size_t bytes = kdtype_size(dt) * (size_t)n;
    struct tensor t = tensor_1d(backend_alloc(be, bytes), dt, n);
    backend_memset(be, t.data, 0, bytes);
    return t;
}

/* zero = 1 with the hierarchical reduction: the weights' all-gather runs its two
 * phases in reverse. Across nodes (COMM_DP_CROSS) the members with this rank's local
 * index gather their slices into this rank's chunk (contiguous: dpr_zero_layout puts
 * them side by side); then inside the node (COMM_DP_NODE) every member's chunk goes to
 * every member. xcounts/xdispls: the slices by cross rank, from the chunk's start;
 * ncounts/ndispls: the chunks by local rank, in the local buffer. */
static void gather_plan_hier(struct optim *o, const struct model *m) {
    const struct grid *g = m->grid;
    const int L = comm_size(&g->comm, COMM_DP_NODE), N = g->dp / L, l = g->dp_rank % L;
    o->hier = 1;
    o->xcounts = tr_malloc(sizeof(int) * (size_t)N);
    o->xdispls = tr_malloc(sizeof(int) * (size_t)N);
    o->ncounts = tr_calloc((size_t)L, sizeof(int));
    o->ndispls = tr_malloc(sizeof(int) * (size_t)L);
    for (int k = 0; k < L; k++) {
        o->ndispls[k] = m->z.displs[k];  /* node 0's slice starts the chunk */
        for (int c = 0; c < N; c++) o->ncounts[k] += m->z.counts[c * L + k];
    }
    for (int c = 0; c < N; c++) {
        o->xcounts[c] = m->z.counts[c * L + l];
        o->xdispls[c] = m->z.displs[c * L + l] - o->ndispls[l];
    }
}

void optim_init(struct optim *o, const struct model *m) {
    memset(o, 0, sizeof *o);
    const struct config *c = &m->cfg;
    o->be = m->be;
    o->n = m->z.on ? m->z.n : m->n_local;
    o->gather = COMM_REQ_NULL;
    o->kind = optim_kind_of(c->optimizer);
    o->form = optim_form_of(c->optim_state);
    o->n_buf = n_buffers(o->kind);
    if (m->z.on && dpr_choose(c, m->grid, 0) == DP_ZERO_HIER) gather_plan_hier(o, m);
    o->lr_factor = optim_lr_factor(c, (long)c->micro_batch * c->grad_accum * m->grid->dp);
    o->norms = tr_calloc(2 * (size_t)TR_MAX(m->pt.n, 1), sizeof(double));
    struct tensor *st[2] = {&o->m, &o->v}, *code[2] = {&o->mq, &o->vq};
    for (int b = 0; b < o->n_buf; b++) {
        if (o->form == OSF_F32) *st[b] = zeroed(o->be, KDT_F32, o->n);
        else if (o->form == OSF_BF16) *st[b] = zeroed(o->be, KDT_BF16, o->n);
        else {
            *st[b] = zeroed(o->be, KDT_F32, n_scales(o->n, m->pt.n));
            *code[b] = zeroed(o->be, KDT_I32, n_code_words(o->n));
        }
    }
    int64_t bytes = 0;
    const struct tensor all[4] = {o->m, o->v, o->mq, o->vq};
    for (int b = 0; b < 4; b++) bytes += round64((int64_t)tensor_bytes(all[b]));
    if (m->pt.n != table_entries(c->n_layer) || bytes != optim_state_bytes(c, o->n))
        TR_ABORT("optim: %lld bytes of state for %d tensors, the plan says %lld for %d",
                 (long long)bytes, m->pt.n, (long long)optim_state_bytes(c, o->n),
                 table_entries(c->n_layer));
    if (o->form == OSF_I8) {
        for (int i = 0; i < m->pt.n; i++)
            if (m->pt.p[i].n_local && m->pt.p[i].offset % 4)
                TR_ABORT("optim: tensor %s starts at float %lld, not a multiple of 4",
                         m->pt.p[i].name, (long long)m->pt.p[i].offset);
        /* zero = 1: a slice cut inside a tensor must fall on one of its blocks */
        for (int i = 0; i < m->pt.n && m->z.on; i++) {
            const struct param *p = &m->pt.p[i];
            int64_t cut = m->z.lo - p->offset;
            if (cut > 0 && cut < p->n_local && cut % KSTATE_BLOCK)
                TR_ABORT("optim: this rank's ZeRO slice starts %lld floats into tensor %s, "
                         "not on a %d-float block", (long long)cut, p->name, KSTATE_BLOCK);
        }
    }
}

void optim_free(struct optim *o) {
    optim_gather_wait(o);
    tr_free(o->xcounts);
    tr_free(o->xdispls);
    tr_free(o->ncounts);
    tr_free(o->ndispls);
    if (o->be) {
        struct tensor *all[4] = {&o->m, &o->v, &o->mq, &o->vq};
        for (int b = 0; b < 4; b++)
            if (all[b]->data) backend_free_mem(o->be, all[b]->data);
    }
    tr_free(o->norms);
    memset(o, 0, sizeof *o);
}

void optim_zero(const struct optim *o) {
    const struct tensor all[4] = {o->m, o->v, o->mq, o->vq};
    for (int b = 0; b < 4; b++)
        if (all[b].data) backend_memset(o->be, all[b].data, 0, tensor_bytes(all[b]));
}

struct kstate optim_kstate(const struct optim *o, const struct param *p, int i, int which) {
    struct kstate s = {TENSOR_NONE, TENSOR_NONE};
    if (which >= o->n_buf || !p->n_local) return s;
    const struct tensor st = which ? o->v : o->m, code = which ? o->vq : o->mq;
    if (o->form != OSF_I8) {
        s.q = tensor_view(st, p->offset, 1, p->n_local);
    } else {
        s.q = tensor_view(code, p->offset / 4, 1, (p->n_local + 3) / 4);
        s.scale = tensor_view(st, p->offset / KSTATE_BLOCK + i, 1,
                              (p->n_local + KSTATE_BLOCK - 1) / KSTATE_BLOCK);
    }
    return s;
}

/* zero = 1: the part of table entry p in this rank's slice, [*a, *a + *len) in local
 * floats; 0 when there is none */
static int slice_part(const struct model *m, const struct param *p, int64_t *a, int64_t *len) {
    int64_t lo = TR_MAX(m->z.lo, p->offset);
    int64_t hi = TR_MIN(m->z.lo + m->z.n, p->offset + p->n_local);
    *a = lo;
    *len = hi - lo;
    return p->n_local && hi > lo;
}

/* zero = 1: state buffer `which` of local floats [a, a + len), the part of table entry i
 * in this rank's slice. int8 lays the slice out as zero = 0 lays the local buffer: codes
 * at the part's float in the slice (a multiple of 4: slices and tensors start on code
 * words), scales of entry i from (its float in the slice) / KSTATE_BLOCK + i. A part
 * starts a tensor or a block of it (dpr_zero_layout's cuts), so its blocks are zero = 0's
 * blocks. */
static struct kstate slice_kstate(const struct optim *o, const struct model *m, int64_t a,
                                  int64_t len, int i, int which) {
    struct kstate s = {TENSOR_NONE, TENSOR_NONE};
    if (which >= o->n_buf) return s;
    const struct tensor st = which ? o->v : o->m, code = which ? o->vq : o->mq;
    const int64_t at = a - m->z.lo;
    if (o->form != OSF_I8) {
        s.q = tensor_view(st, at, 1, len);
    } else {
        s.q = tensor_view(code, at / 4, 1, (len + 3) / 4);
        s.scale = tensor_view(st, at / KSTATE_BLOCK + i, 1,
                              (len + KSTATE_BLOCK - 1) / KSTATE_BLOCK);
    }
    return s;
}

static struct tensor state_f32_sliced(const struct optim *o, const struct model *m, int which) {
    struct tensor full = zeroed(o->be, KDT_F32, m->n_local);
    if (which >= o->n_buf) return full;
    struct tensor mine = zeroed(o->be, KDT_F32, TR_MAX(o->n, 1));
    for (int i = 0; i < m->pt.n; i++) {
        int64_t a, len;
        if (slice_part(m, &m->pt.p[i], &a, &len))
            m->k->state_to_f32(o->be, tensor_view(mine, a - m->z.lo, 1, len),
                               slice_kstate(o, m, a, len, i, which), which);
    }
    comm_allgatherv(&m->grid->comm, COMM_DP, mine.data, o->n, full.data, m->z.counts,
                    m->z.displs, COMM_F32);
    backend_free_mem(o->be, mine.data);
    return full;
}

struct tensor optim_state_f32(const struct optim *o, const struct model *m, int which) {
    if (m->z.on) return state_f32_sliced(o, m, which);
    struct tensor t = zeroed(o->be, KDT_F32, o->n);
    if (which >= o->n_buf) return t;
    for (int i = 0; i < m->pt.n; i++) {
        const struct param *p = &m->pt.p[i];
        if (p->n_local)
            m->k->state_to_f32(o->be, tensor_view(t, p->offset, 1, p->n_local),
                               optim_kstate(o, p, i, which), which);
    }
    return t;
}

void optim_state_set_f32(const struct optim *o, const struct model *m, int which,
                         struct tensor src) {
    if (which >= o->n_buf) return;
    if (m->z.on) {
        for (int i = 0; i < m->pt.n; i++) {
            int64_t a, len;
            if (slice_part(m, &m->pt.p[i], &a, &len))
                m->k->state_from_f32(o->be, slice_kstate(o, m, a, len, i, which),
                                     tensor_view(src, a, 1, len), which);
        }
        return;
    }
    for (int i = 0; i < m->pt.n; i++) {
        const struct param *p = &m->pt.p[i];
        if (p->n_local)
            m->k->state_from_f32(o->be, optim_kstate(o, p, i, which),
                                 tensor_view(src, p->offset, 1, p->n_local), which);
    }
}

/* zero = 1: does this rank count its slice's part of entry p in norms? Tensors
 * replicated over tp: tp rank 0 only; the tied wte: stage 0 only (the last stage's copy
 * holds the same sum) */
static int slice_counts(const struct model *m, const struct param *p) {
    if (p->tp_replicated && m->grid->tp_rank != 0) return 0;
    return !(p->kind == PK_WTE && !m->first);
}

struct tensor optim_norm_part(const struct model *m, int i) {
    const struct param *p = &m->pt.p[i];
    if (m->z.on) {
        int64_t a, len;
        if (!slice_counts(m, p) || !slice_part(m, p, &a, &len)) return TENSOR_NONE;
        return tensor_view(m->z.grads, a - m->z.lo, 1, len);
    }
    if (!p->own_n) return TENSOR_NONE;
    return tensor_view(m->grads, p->offset + p->own_offset, 1, p->own_n);
}

double optim_grad_norm(const struct model *m) {
    double local = 0.0;
    for (int i = 0; i < m->pt.n; i++) {
        struct tensor part = optim_norm_part(m, i);
        if (tensor_present(part)) local += m->k->sumsq(m->be, part);
    }
    comm_allreduce(&m->grid->comm, COMM_WORLD, &local, 1, COMM_F64, COMM_SUM);
    return sqrt(local);
}

/* sum of squares of the part of tensor p of `base` this rank owns (0 if none) */
static double owned_sumsq(const struct model *m, struct tensor base, const struct param *p) {
    if (!p->own_n) return 0.0;
    return m->k->sumsq(m->be, tensor_view(base, p->offset + p->own_offset, 1, p->own_n));
}

void optim_gather_wait(struct optim *o) {
    if (!o->gathering) return;
    comm_wait(&o->gather);
    o->gathering = 0;
    if (!o->hier) return;
    /* hierarchical, second phase: the chunks inside the node, from the staging buffer
     * the first phase filled into the compute weights */
    const struct model *m = o->hier_m;
    const int l = m->grid->dp_rank % comm_size(&m->grid->comm, COMM_DP_NODE);
    comm_allgatherv(&m->grid->comm, COMM_DP_NODE, m->grads.data, o->ncounts[l], m->w.data,
                    o->ncounts, o->ndispls, comm_dtype_of(m->dt));
}

/* zero = 1, LAMB and LARS: the two sums of squares of every table entry (LAMB: of the
 * masters and of the update; LARS: of the masters and of the gradient) over the parts
 * in this rank's slice that it counts (slice_counts), all-reduced over MPI_COMM_WORLD in
 * one call of 2 values a tensor in table order: every rank gets the norms of the whole
 * logical tensors, the same as zero = 0's, and so the same trust ratios. LAMB's moments
 * are updated here (lamb_moments), its weights by the caller. */
static void slice_norms(struct optim *o, struct model *m, float grad_scale, int64_t base) {
    const struct config *c = &m->cfg;
    const struct kernels *k = m->k;
    double *nrm = o->norms;
    for (int i = 0; i < m->pt.n; i++) {
        const struct param *p = &m->pt.p[i];
        int64_t a, len;
        nrm[2 * i] = nrm[2 * i + 1] = 0.0;
        if (!slice_part(m, p, &a, &len)) continue;
        const int counts = slice_counts(m, p);
        struct tensor w = tensor_view(m->params, a - base, 1, len);
        struct tensor g = tensor_view(m->z.grads, a - m->z.lo, 1, len);
        if (counts) nrm[2 * i] = k->sumsq(m->be, w);
        if (o->kind == OPT_LAMB)
            nrm[2 * i + 1] = k->lamb_moments(
                m->be, w, g, slice_kstate(o, m, a, len, i, 0), slice_kstate(o, m, a, len, i, 1),
                c->beta1, c->beta2, c->adam_eps, p->decay ? c->weight_decay : 0.0f, grad_scale,
                o->t, 0, counts ? len : 0);
        else if (counts)
            nrm[2 * i + 1] = k->sumsq(m->be, g);
    }
    comm_allreduce(&m->grid->comm, COMM_WORLD, nrm, 2 * m->pt.n, COMM_F64, COMM_SUM);
}

/* LAMB's trust ratio ||w|| / ||update|| from the two summed squares (1 if either is 0) */
static double lamb_trust(const double *nrm) {
    double wn = sqrt(nrm[0]), rn = sqrt(nrm[1]);
    return wn > 0 && rn > 0 ? wn / rn : 1.0;
}

/* LARS' local learning rate from the two summed squares and the table entry's decay;
 * *wd: the decay it applies (biases and LayerNorm skip the adaptation and the decay) */
static double lars_local_lr(const double *nrm, const struct param *p, const struct config *c,
                            float grad_scale, double *wd) {
    double local_lr = 1.0;
    *wd = 0.0;
    if (p->decay) {
        double wn = sqrt(nrm[0]), gn = sqrt(nrm[1]) * fabs(grad_scale);
        *wd = c->weight_decay;
        if (wn > 0 && gn > 0) local_lr = OPTIM_LARS_TRUST * wn / (gn + *wd * wn);
    }
    return local_lr;
}

/* zero = 1: the configured optimizer over this rank's slice (a slice may cut a tensor:
 * each part is updated with its tensor's decay and, for LAMB and LARS, its whole
 * tensor's norms), then the all-gather of the updated weights starts: in the compute
 * dtype, from the slice's gradient buffer (free until the next backward pass) reused as
 * the send buffer. Hierarchical: the first phase (across nodes) into the full gradient
 * buffer m->grads (free after the reduction until the next step zeroes it) as staging;
 * optim_gather_wait runs the second. */
static void step_sliced(struct optim *o, struct model *m, float lr, float grad_scale) {
    const struct config *c = &m->cfg;
    const struct kernels *k = m->k;
    const int64_t base = m->dt == KDT_F32 ? 0 : m->z.lo;  /* params' first local float */
    if (o->kind == OPT_LAMB || o->kind == OPT_LARS) slice_norms(o, m, grad_scale, base);
    for (int i = 0; i < m->pt.n; i++) {
        const struct param *p = &m->pt.p[i];
        int64_t a, len;
        if (!slice_part(m, p, &a, &len)) continue;
        struct tensor w = tensor_view(m->params, a - base, 1, len);
        struct tensor g = tensor_view(m->z.grads, a - m->z.lo, 1, len);
        struct kstate s0 = slice_kstate(o, m, a, len, i, 0);
        struct kstate s1 = slice_kstate(o, m, a, len, i, 1);
        float wd = p->decay ? c->weight_decay : 0.0f;
        if (o->kind == OPT_LAMB) {
            k->lamb_apply(m->be, w, s0, s1, (float)(lr * lamb_trust(&o->norms[2 * i])),
                          c->beta1, c->beta2, c->adam_eps, wd, o->t);
        } else if (o->kind == OPT_LARS) {
            double lwd;
            double local_lr = lars_local_lr(&o->norms[2 * i], p, c, grad_scale, &lwd);
            k->lars_update(m->be, w, g, s0, lr, (float)local_lr, c->momentum, (float)lwd,
                           grad_scale);
        } else if (o->kind == OPT_SGD) {
            k->sgd_update(m->be, w, g, s0, lr, c->momentum, wd, grad_scale);
        } else if (o->form == OSF_F32) {
            k->adamw(m->be, w, g, s0.q, s1.q, lr, c->beta1, c->beta2, c->adam_eps, wd,
                     grad_scale, o->t);
        } else {
            k->adamw_state(m->be, w, g, s0, s1, lr, c->beta1, c->beta2, c->adam_eps, wd,
                           grad_scale, o->t);
        }
    }
    struct tensor send = tensor_1d(m->z.grads.data, m->dt, m->z.n);
    if (m->dt == KDT_F32) {
        if (m->z.n)
            backend_copy_d2d(m->be, send.data, tensor_view(m->params, m->z.lo, 1, 1).data,
                             tensor_bytes(send));
    } else if (m->z.n) {
        k->convert(m->be, send, m->params);
    }
    if (o->hier) {
        o->hier_m = m;
        comm_allgatherv_start(&m->grid->comm, COMM_DP_CROSS, send.data, m->z.n, m->grads.data,
                              o->xcounts, o->xdispls, comm_dtype_of(m->dt), &o->gather);
    } else {
        comm_allgatherv_start(&m->grid->comm, COMM_DP, send.data, m->z.n, m->w.data,
                              m->z.counts, m->z.displs, comm_dtype_of(m->dt), &o->gather);
    }
    o->gathering = 1;
}

void optim_step(struct optim *o, struct model *m, float lr, float grad_scale) {
    const struct config *c = &m->cfg;
    const struct kernels *k = m->k;
    const int n = m->pt.n;
    o->t++;
    if (m->z.on) {
        optim_gather_wait(o);
        step_sliced(o, m, lr, grad_scale);
        return;
    }
    double *nrm = o->norms;
    /* LAMB and LARS: per-tensor norms of the logical tensors, summed over the parts each
     * rank owns, in one all-reduce of 2 values a tensor: the same on every layout */
    if (o->kind == OPT_LAMB) {
        for (int i = 0; i < n; i++) {
            const struct param *p = &m->pt.p[i];
            nrm[2 * i] = nrm[2 * i + 1] = 0.0;
            if (!p->n_local) continue;
            nrm[2 * i] = owned_sumsq(m, m->params, p);
            nrm[2 * i + 1] = k->lamb_moments(
                m->be, tensor_view(m->params, p->offset, 1, p->n_local),
                tensor_view(m->grads, p->offset, 1, p->n_local), optim_kstate(o, p, i, 0),
                optim_kstate(o, p, i, 1), c->beta1, c->beta2, c->adam_eps,
                p->decay ? c->weight_decay : 0.0f, grad_scale, o->t, p->own_offset, p->own_n);
        }
        comm_allreduce(&m->grid->comm, COMM_WORLD, nrm, 2 * n, COMM_F64, COMM_SUM);
        for (int i = 0; i < n; i++) {
            const struct param *p = &m->pt.p[i];
            if (!p->n_local) continue;
            double phi = lamb_trust(&nrm[2 * i]);
            k->lamb_apply(m->be, tensor_view(m->params, p->offset, 1, p->n_local),
                          optim_kstate(o, p, i, 0), optim_kstate(o, p, i, 1),
                          (float)(lr * phi), c->beta1, c->beta2, c->adam_eps,
                          p->decay ? c->weight_decay : 0.0f, o->t);
        }
    } else if (o->kind == OPT_LARS) {
        for (int i = 0; i < n; i++) {
            const struct param *p = &m->pt.p[i];
            nrm[2 * i] = owned_sumsq(m, m->params, p);
            nrm[2 * i + 1] = owned_sumsq(m, m->grads, p);
        }
        comm_allreduce(&m->grid->comm, COMM_WORLD, nrm, 2 * n, COMM_F64, COMM_SUM);
        for (int i = 0; i < n; i++) {
            const struct param *p = &m->pt.p[i];
            if (!p->n_local) continue;
            double wd, local_lr = lars_local_lr(&nrm[2 * i], p, c, grad_scale, &wd);
            k->lars_update(m->be, tensor_view(m->params, p->offset, 1, p->n_local),
                           tensor_view(m->grads, p->offset, 1, p->n_local),
                           optim_kstate(o, p, i, 0), lr, (float)local_lr, c->momentum,
                           (float)wd, grad_scale);
        }
    } else {
        for (int i = 0; i < n; i++) {
            const struct param *p = &m->pt.p[i];
            if (!p->n_local) continue;
            struct tensor w = tensor_view(m->params, p->offset, 1, p->n_local);
            struct tensor g = tensor_view(m->grads, p->offset, 1, p->n_local);
            float wd = p->decay ? c->weight_decay : 0.0f;
            if (o->kind == OPT_SGD)
                k->sgd_update(m->be, w, g, optim_kstate(o, p, i, 0), lr, c->momentum, wd,
                              grad_scale);
            else if (o->form == OSF_F32)  /* the fp32 path of every earlier version */
                k->adamw(m->be, w, g, optim_kstate(o, p, i, 0).q, optim_kstate(o, p, i, 1).q,
                         lr, c->beta1, c->beta2, c->adam_eps, wd, grad_scale, o->t);
            else
                k->adamw_state(m->be, w, g, optim_kstate(o, p, i, 0), optim_kstate(o, p, i, 1),
                               lr, c->beta1, c->beta2, c->adam_eps, wd, grad_scale, o->t);
        }
    }
    model_refresh_weights(m);
}

/* dp.c — bucketed, overlapped, flat or hierarchical gradient reduction; or with bf16 on
 * the wire (grad_reduce = bf16):
 *
 *   each rank rounds its bucket to bf16 and sends member j its j-th slice (all-to-all);
 *   each member sums the slices it received in fp32, in rank order, rounds the sum to
 *   bf16 once, and every member gathers every slice (all-gather), widened back to fp32.
 *
 * That moves the bytes of a bf16 reduce-scatter + all-gather (half of fp32's) while the
 * sum itself is fp32, and every rank ends with the same bits. With zero = 1 each member
 * keeps its own slice's rounded sum (widened into m->z.grads) and nothing is gathered:
 * the same bits as zero = 0 for that slice. */
#include "dp.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"

/* A bucket's reduction: in flight (FLAT, SCATTER, CROSS, GATHER) or waiting for its turn
 * to start the next phase (SCATTERED, CROSSED). */
enum bucket_state { B_IDLE, B_FLAT, B_SCATTER, B_SCATTERED, B_CROSS, B_CROSSED, B_GATHER, B_DONE,
                    B_EXCHANGE, B_EXCHANGED };

struct dp_bucket {
    long  off, n;          /* range of model.grads */
    int   n_tensors;       /* tensors in the bucket */
    int   pending;         /* of those, not yet final in this backward pass */
    enum bucket_state state;
    struct comm_req req;
    /* hierarchical: this rank's chunk after the node-local reduce-scatter (device memory:
     * the collectives move it beside the gradients) */
    void  *chunk;
    int   *counts, *displs;
    /* bf16: the bucket rounded to bf16 (sent, then the gathered result), the slices
     * received from every member, their fp32 sum and its bf16 rounding */
    struct tensor wire, recv, sum, mine;
    int   *rcounts, *rdispls;
    struct tensor dst;     /* the bucket's fp32 gradients */
    const struct model *m; /* bf16: whose kernels sum, round and widen (NULL otherwise) */
    /* zero = 1: reduced into m->z.grads from float zoff of it; hierarchical: what each
     * node's member receives of this rank's chunk across nodes (by cross rank) */
    int   zero;
    long  zoff;
    int  *xcounts;
};

const char *dpr_algo_name(enum dp_algo a) {
    switch (a) {
    case DP_HIER:      return "hierarchical";
    case DP_BF16:      return "flat, bf16 on the wire";
    case DP_ZERO:      return "flat reduce-scatter (zero = 1)";
    case DP_ZERO_HIER: return "hierarchical reduce-scatter (zero = 1)";
    case DP_ZERO_BF16: return "flat reduce-scatter, bf16 on the wire (zero = 1)";
    default:           return "flat";
    }
}

/* the address of element off of the fp32 gradients (what the collectives move) */
static void *grad_at(struct tensor grads, long off) { return tensor_view(grads, off, 1, 1).data; }

static struct tensor dev_tensor(struct backend *be, enum kdtype dt, long n) {
    return tensor_1d(backend_alloc(be, kdtype_size(dt) * (size_t)(n > 0 ? n : 1)), dt, n);
}

static int node_size(const struct grid *g) { return comm_size(&g->comm, COMM_DP_NODE); }

enum dp_algo dpr_choose(const struct config *cfg, const struct grid *g, int warn) {
    const int zero = cfg->zero && g->dp > 1;
    /* config_validate refuses allreduce = hier with grad_reduce = bf16 */
    if (strcmp(cfg->grad_reduce, "bf16") == 0) return zero ? DP_ZERO_BF16 : DP_BF16;
    if (strcmp(cfg->allreduce, "hier") == 0 ||
        (strcmp(cfg->allreduce, "auto") == 0 && g->dp_nodes > 1)) {
        if (g->hier_ok) return zero ? DP_ZERO_HIER : DP_HIER;
        if (warn)
            tr_warn("hierarchical all-reduce needs the same number of data-parallel peers "
                    "on every node; nodes differ here, so the flat all-reduce is used");
    }
    return zero ? DP_ZERO : DP_FLAT;
}

/* a cut of the local buffer at float c moved onto a block boundary of the tensor it
 * falls in, or to the next tensor's start when it falls between tensors */
static int64_t align_cut(const struct params *pt, int64_t n, int64_t c) {
    int64_t next = n;
    for (int i = 0; i < pt->n; i++) {
        const struct param *p = &pt->p[i];
        if (!p->n_local) continue;
        if (p->offset <= c && c < p->offset + p->n_local)
            return p->offset + (c - p->offset) / KSTATE_BLOCK * KSTATE_BLOCK;
        if (p->offset > c) next = TR_MIN(next, p->offset);
    }
    return TR_MIN(next, n);
}

void dpr_zero_layout(const struct params *pt, int64_t n, const struct config *cfg,
                     const struct grid *g, int64_t *counts, int64_t *displs) {
    const int p = g->dp;
    const int hier = dpr_choose(cfg, g, 0) == DP_ZERO_HIER;
    const int nodes = hier ? g->dp_nodes : 1, per_node = p / nodes;
    int64_t *cut = tr_malloc(sizeof(int64_t) * (size_t)(p + 1));
    /* cut k of p even parts (the first n % p one float longer), aligned; aligning is
     * monotonic, so the cuts stay in order (a slice may be empty) */
    for (int k = 0; k <= p; k++) {
        int64_t c = n / p * k + TR_MIN((int64_t)k, n % p);
        cut[k] = k == 0 || k == p ? c : align_cut(pt, n, c);
    }
    for (int d = 0; d < p; d++) {
        int q = hier ? (d % per_node) * nodes + d / per_node : d;  /* its position */
        displs[d] = cut[q];
        counts[d] = cut[q + 1] - cut[q];
    }
    tr_free(cut);
}

/* zero = 1: the part of the bucket in each dp rank's slice. Flat: counts[r] (rank order,
 * the order of the slices) and displs[r], where it starts in slice r (only this rank's is
 * used, in m->z.grads). bf16: counts[r] and displs[r] from the bucket's start (what the
 * all-to-all sends to r); this rank receives its part from every member. Hierarchical:
 * counts[l] is local rank l's chunk (the parts of the slices of every rank with local
 * index l, contiguous by the layout), xcounts[c] the part of node c's member of it. */
static void bucket_plan_zero(struct dp_bucket *b, const struct model *m, const struct grid *g,
                             enum dp_algo algo) {
    const int p = g->dp, me = g->dp_rank;
    int *cnt = tr_malloc(sizeof(int) * (size_t)p), *dsp = tr_malloc(sizeof(int) * (size_t)p);
    for (int r = 0; r < p; r++) {
        long lo = m->z.displs[r], hi = lo + m->z.counts[r];
        long a = TR_MAX(lo, b->off), e = TR_MIN(hi, b->off + b->n);
        cnt[r] = (int)(e > a ? e - a : 0);
        dsp[r] = (int)(e > a ? a - b->off : 0);
        if (r == me) b->zoff = e > a ? a - lo : 0;
    }
    b->zero = 1;
    b->counts = cnt;
    b->displs = dsp;
    if (algo == DP_ZERO_BF16) {
        b->rcounts = tr_malloc(sizeof(int) * (size_t)p);
        b->rdispls = tr_malloc(sizeof(int) * (size_t)p);
        for (int i = 0; i < p; i++) {
            b->rcounts[i] = cnt[me];
            b->rdispls[i] = i * cnt[me];
        }
        b->m = m;
        b->wire = dev_tensor(m->be, KDT_BF16, b->n);
        b->recv = dev_tensor(m->be, KDT_BF16, (long)p * cnt[me]);
        b->mine = dev_tensor(m->be, KDT_BF16, cnt[me]);
    } else if (algo == DP_ZERO_HIER) {
        const int L = node_size(g), N = p / L, l = me % L;
        b->counts = tr_calloc((size_t)L, sizeof(int));
        b->xcounts = tr_malloc(sizeof(int) * (size_t)N);
        for (int c = 0; c < N; c++) {
            b->xcounts[c] = cnt[c * L + l];
            for (int k = 0; k < L; k++) b->counts[k] += cnt[c * L + k];
        }
        b->chunk = backend_alloc(m->be, sizeof(float) * (size_t)TR_MAX(b->counts[l], 1));
        tr_free(cnt);
    }
}

/* The bucket in p contiguous slices, the first n % p one element longer: counts and
 * displacements (elements) of each. */
static void split_evenly(struct dp_bucket *b, int p) {
    b->counts = tr_malloc(sizeof(int) * (size_t)p);
    b->displs = tr_malloc(sizeof(int) * (size_t)p);
    long base = b->n / p, extra = b->n % p, off = 0;
    for (int i = 0; i < p; i++) {
        b->counts[i] = (int)(base + (i < extra));
        b->displs[i] = (int)off;
        off += b->counts[i];
    }
}

/* bf16: slice j of the bucket goes to DP member j; this rank receives its own slice from
 * every member */
static void bucket_plan_bf16(struct dp_bucket *b, const struct grid *g, const struct model *m) {
    struct backend *be = m->be;
    int p = comm_size(&g->comm, COMM_DP), me = comm_rank(&g->comm, COMM_DP);
    split_evenly(b, p);
    b->rcounts = tr_malloc(sizeof(int) * (size_t)p);
    b->rdispls = tr_malloc(sizeof(int) * (size_t)p);
    for (int i = 0; i < p; i++) {
        b->rcounts[i] = b->counts[me];
        b->rdispls[i] = i * b->counts[me];
    }
    b->m = m;
    b->wire = dev_tensor(be, KDT_BF16, b->n);
    b->recv = dev_tensor(be, KDT_BF16, (long)p * b->counts[me]);
    b->sum = dev_tensor(be, KDT_F32, b->counts[me]);
    b->mine = dev_tensor(be, KDT_BF16, b->counts[me]);
}

static void bucket_free(struct dp_bucket *b, struct backend *be) {
    if (be) backend_free_mem(be, b->chunk);
    tr_free(b->counts);
    tr_free(b->displs);
    tr_free(b->rcounts);
    tr_free(b->rdispls);
    tr_free(b->xcounts);
    if (be) {
        backend_free_mem(be, b->wire.data);
        backend_free_mem(be, b->recv.data);
        backend_free_mem(be, b->sum.data);
        backend_free_mem(be, b->mine.data);
    }
}

static void bucket_plan_hier(struct dp_bucket *b, const struct grid *g, struct backend *be) {
    int ls = node_size(g);
    split_evenly(b, ls);
    b->chunk = backend_alloc(be, sizeof(float) * (size_t)(b->n / ls + 1));
}

static void bucket_unpack(struct dp_bucket *b, const struct model *m);
static void bucket_sum_slice(struct dp_bucket *b);

/* Has the bucket's request completed (block = 1: wait for it)? Moves an in-flight
 * bucket to the state after its phase; returns 1 when it did. */
static int bucket_poll(struct dp_bucket *b, int block) {
    if (b->state != B_FLAT && b->state != B_SCATTER && b->state != B_CROSS &&
        b->state != B_GATHER && b->state != B_EXCHANGE)
        return 0;
    int done = 0;
    if (block) {
        comm_wait(&b->req);
        done = 1;
    } else {
        done = comm_test(&b->req);
    }
    if (!done) return 0;
    switch (b->state) {
    case B_FLAT:    b->state = B_DONE; break;
    case B_SCATTER: b->state = B_SCATTERED; break;
    case B_CROSS:   b->state = b->zero ? B_DONE : B_CROSSED; break;
    case B_EXCHANGE:
        /* zero = 1: nothing to gather; the sum is local and can happen at once */
        if (b->zero) bucket_sum_slice(b);
        b->state = b->zero ? B_DONE : B_EXCHANGED;
        break;
    default:
        b->state = B_DONE;
        if (b->m) bucket_unpack(b, b->m);
        break;
    }
    return 1;
}

/* bf16, second phase: sum the received slices in fp32 (rank order), round once, and
 * start gathering every member's rounded slice into the wire buffer. */
static void bucket_sum_gather(struct dp_bucket *b, const struct grid *g, const struct comm *gather,
                              const struct model *m) {
    const struct kernels *k = m->k;
    int p = comm_size(&g->comm, COMM_DP), me = comm_rank(&g->comm, COMM_DP);
    long cnt = b->counts[me];
    if (cnt > 0) {
        k->convert(m->be, b->sum, tensor_view(b->recv, 0, 1, cnt));
        for (int j = 1; j < p; j++)
            k->accumulate(m->be, b->sum, tensor_view(b->recv, (int64_t)j * cnt, 1, cnt));
        k->convert(m->be, b->mine, b->sum);
    }
    comm_allgatherv_start(gather, COMM_DP, b->mine.data, cnt, b->wire.data, b->counts,
                          b->displs, COMM_BF16, &b->req);
    b->state = B_GATHER;
}

/* bf16 with zero = 1, once the all-to-all is done: this rank's part of the bucket summed
 * in fp32 in rank order straight into m->z.grads, rounded to bf16 once and widened back
 * (the bits zero = 0 gathers) */
static void bucket_sum_slice(struct dp_bucket *b) {
    const struct model *m = b->m;
    const struct kernels *k = m->k;
    int p = m->grid->dp;
    long cnt = b->counts[m->grid->dp_rank];
    if (cnt <= 0) return;
    struct tensor sum = tensor_view(m->z.grads, b->zoff, 1, cnt);
    k->convert(m->be, sum, tensor_view(b->recv, 0, 1, cnt));
    for (int j = 1; j < p; j++)
        k->accumulate(m->be, sum, tensor_view(b->recv, (int64_t)j * cnt, 1, cnt));
    k->convert(m->be, b->mine, sum);
    k->convert(m->be, sum, b->mine);
}

/* bf16, last step once the gather is done: the result, widened, into the gradients */
static void bucket_unpack(struct dp_bucket *b, const struct model *m) {
    if (b->n > 0) m->k->convert(m->be, b->dst, b->wire);
}

static int node_rank(const struct grid *g) { return comm_rank(&g->comm, COMM_DP_NODE); }

/* hierarchical, second phase: across nodes, of this rank's chunk; with zero = 1 a
 * reduce-scatter that leaves each member its slice's part in m->z.grads */
static void bucket_cross(struct dp_bucket *b, const struct grid *g, const struct model *m) {
    if (b->zero) {
        comm_reduce_scatter_start(&g->comm, COMM_DP_CROSS, b->chunk,
                                  grad_at(m->z.grads, b->zoff), b->xcounts, COMM_F32, COMM_SUM,
                                  &b->req);
        b->state = B_CROSS;
        return;
    }
    comm_allreduce_start(&g->comm, COMM_DP_CROSS, b->chunk, b->counts[node_rank(g)], COMM_F32,
                         COMM_SUM, &b->req);
    b->state = B_CROSS;
}

/* on `gather`'s COMM_DP_NODE: the grid's, or the reducer's own duplicate */
static void bucket_gather(struct dp_bucket *b, const struct grid *g, const struct comm *gather,
                          struct tensor grads) {
    comm_allgatherv_start(gather, COMM_DP_NODE, b->chunk, b->counts[node_rank(g)],
                          grad_at(grads, b->off), b->counts, b->displs, COMM_F32, &b->req);
    b->state = B_GATHER;
}

static void bucket_start(struct dp_bucket *b, const struct grid *g, enum dp_algo algo,
                         struct tensor grads, const struct model *m) {
    if (algo == DP_ZERO) {
        comm_reduce_scatter_start(&g->comm, COMM_DP, grad_at(grads, b->off),
                                  grad_at(m->z.grads, b->zoff), b->counts, COMM_F32,
                                  COMM_SUM, &b->req);
        b->state = B_FLAT;
    } else if (algo == DP_BF16 || algo == DP_ZERO_BF16) {
        b->dst = tensor_view(grads, b->off, 1, b->n);
        if (b->n > 0) m->k->convert(m->be, b->wire, b->dst);
        comm_alltoallv_start(&g->comm, COMM_DP, b->wire.data, b->counts, b->displs,
                             b->recv.data, b->rcounts, b->rdispls, COMM_BF16, &b->req);
        b->state = B_EXCHANGE;
    } else if (algo == DP_FLAT) {
        comm_allreduce_start(&g->comm, COMM_DP, grad_at(grads, b->off), b->n, COMM_F32, COMM_SUM,
                             &b->req);
        b->state = B_FLAT;
    } else {
        comm_reduce_scatter_start(&g->comm, COMM_DP_NODE, grad_at(grads, b->off), b->chunk, b->counts,
                                  COMM_F32, COMM_SUM, &b->req);
        b->state = B_SCATTER;
    }
}

void dpr_allreduce(const struct grid *g, const struct model *m, enum dp_algo algo,
                   struct tensor x) {
    const long n = (long)tensor_numel(x);
    if (g->dp == 1) return;
    const long max_chunk = 1L << 28;
    for (long off = 0; off < n; off += max_chunk) {
        struct dp_bucket b = {.off = off, .n = TR_MIN(max_chunk, n - off)};
        if (algo == DP_HIER) bucket_plan_hier(&b, g, m->be);
        if (algo == DP_BF16) bucket_plan_bf16(&b, g, m);
        bucket_start(&b, g, algo, x, m);
        bucket_poll(&b, 1);
        if (b.state == B_SCATTERED) {
            bucket_cross(&b, g, m);
            bucket_poll(&b, 1);
            bucket_gather(&b, g, &g->comm, x);
            bucket_poll(&b, 1);
        } else if (b.state == B_EXCHANGED) {
            bucket_sum_gather(&b, g, &g->comm, m);
            bucket_poll(&b, 1);
        }
        bucket_free(&b, m->be);
    }
}

/* MPI requires every rank to start the collectives of one communicator in the same
 * order. Buckets start (reduce-scatter or flat all-reduce) in the order the backward
 * pass completes them, the same on every rank; but which bucket's reduce-scatter
 * finishes first differs between ranks. So the cross-node all-reduces and the
 * all-gathers are started strictly in that same start order (a bucket waits for the
 * ones before it), and the all-gathers use a communicator of their own, so they never
 * interleave with the reduce-scatters of later buckets on the node communicator. */
static void issue_in_order(struct dp_reducer *r) {
    while (r->next_cross < r->n_started &&
           r->b[r->order[r->next_cross]].state == B_SCATTERED)
        bucket_cross(&r->b[r->order[r->next_cross++]], r->g, r->m);
    while (r->next_gather < r->n_started &&
           r->b[r->order[r->next_gather]].state == B_CROSSED)
        bucket_gather(&r->b[r->order[r->next_gather++]], r->g, &r->gather, r->m->grads);
    /* bf16: the all-to-alls start in bucket order on COMM_DP; the all-gathers follow in
     * the same order, on the reducer's duplicate of COMM_DP */
    while (r->next_gather < r->n_started &&
           r->b[r->order[r->next_gather]].state == B_EXCHANGED)
        bucket_sum_gather(&r->b[r->order[r->next_gather++]], r->g, &r->gather, r->m);
}

static int reduced_by_buckets(const struct model *m, const struct grid *g, int i) {
    if (!m->pt.p[i].n_local) return 0;
    /* the tied embedding on a split pipeline is summed across stages first */
    return !(m->pt.p[i].kind == PK_WTE && g->pp > 1);
}

void dpr_init(struct dp_reducer *r, struct model *m, const struct grid *g,
              const struct config *cfg) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->g = g;
    r->algo = dpr_choose(cfg, g, 1);
    if ((r->algo >= DP_ZERO) != m->z.on)
        TR_ABORT("dp: the model is %ssliced for zero = 1 but the reduction is %s",
                 m->z.on ? "" : "not ", dpr_algo_name(r->algo));
    if (r->algo == DP_ZERO_HIER) {
        /* dpr_zero_layout's numbering: dp rank = node * L + local index */
        const int L = node_size(g);
        if (g->dp % L || g->dp / L != g->dp_nodes ||
            comm_rank(&g->comm, COMM_DP_NODE) != g->dp_rank % L ||
            comm_rank(&g->comm, COMM_DP_CROSS) != g->dp_rank / L)
            TR_ABORT("dp: dp rank %d is local rank %d of %d on its node and rank %d across "
                     "%d nodes, not the numbering dpr_zero_layout assumes", g->dp_rank,
                     comm_rank(&g->comm, COMM_DP_NODE), L, comm_rank(&g->comm, COMM_DP_CROSS),
                     g->dp_nodes);
    }
    r->bucket_of = tr_malloc(sizeof(int) * (size_t)m->pt.n);
    r->b = tr_calloc((size_t)m->pt.n, sizeof(struct dp_bucket));
    long cap = (long)(cfg->bucket_mb * 1024.0 * 1024.0 / sizeof(float));
    if (cap < 1) cap = 1;
    /* Buckets follow the backward order: from the end of the table to its start.
     * Tensors are contiguous in model.grads, so a bucket is one range. */
    int cur = -1;
    for (int i = m->pt.n - 1; i >= 0; i--) {
        r->bucket_of[i] = -1;
        if (!reduced_by_buckets(m, g, i)) continue;
        const struct param *p = &m->pt.p[i];
        long end = (long)p->offset + (long)p->n_local;
        if (cur >= 0) {
            struct dp_bucket *b = &r->b[cur];
            long new_n = b->off + b->n - (long)p->offset;
            if (new_n <= cap) {
                b->n = new_n;
                b->off = (long)p->offset;
                r->bucket_of[i] = cur;
                b->n_tensors++;
                continue;
            }
        }
        cur = r->n_buckets++;
        r->b[cur].off = (long)p->offset;
        r->b[cur].n = end - (long)p->offset;
        r->bucket_of[i] = cur;
        r->b[cur].n_tensors = 1;
    }
    r->order = tr_calloc((size_t)r->n_buckets + 1, sizeof(int));
    if (r->algo >= DP_ZERO)
        for (int i = 0; i < r->n_buckets; i++) bucket_plan_zero(&r->b[i], m, g, r->algo);
    if (r->algo == DP_HIER) {
        for (int i = 0; i < r->n_buckets; i++) bucket_plan_hier(&r->b[i], g, m->be);
        comm_dup(&r->gather, &g->comm, COMM_DP_NODE);
    }
    if (r->algo == DP_BF16 && g->dp > 1) {
        for (int i = 0; i < r->n_buckets; i++) bucket_plan_bf16(&r->b[i], g, m);
        comm_dup(&r->gather, &g->comm, COMM_DP);
    }
}

void dpr_free(struct dp_reducer *r) {
    for (int i = 0; i < r->n_buckets; i++) bucket_free(&r->b[i], r->m->be);
    tr_free(r->b);
    tr_free(r->bucket_of);
    tr_free(r->order);
    if (r->algo == DP_HIER || (r->algo == DP_BF16 && r->g->dp > 1)) comm_free(&r->gather);
    memset(r, 0, sizeof *r);
}

void dpr_arm(struct dp_reducer *r) {
    if (r->g->dp == 1) return;
    r->armed = 1;
    r->n_started = r->next_cross = r->next_gather = 0;
    for (int i = 0; i < r->n_buckets; i++) {
        r->b[i].state = B_IDLE;
        r->b[i].pending = r->b[i].n_tensors;
    }
}

void dpr_ready(struct dp_reducer *r, int first, int n) {
    if (!r->armed) return;
    for (int i = first; i < first + n; i++) {
        int b = r->bucket_of[i];
        if (b < 0) continue;
        if (--r->b[b].pending == 0) {
            bucket_start(&r->b[b], r->g, r->algo, r->m->grads, r->m);
            r->order[r->n_started++] = b;
        }
    }
    dpr_progress(r);
}

void dpr_progress(struct dp_reducer *r) {
    if (!r->armed) return;
    for (int k = 0; k < r->n_started; k++) bucket_poll(&r->b[r->order[k]], 0);
    issue_in_order(r);
}

void dpr_finish(struct dp_reducer *r) {
    double t0 = tr_now();
    struct model *m = r->m;
    const struct grid *g = r->g;
    if (r->armed) {
        if (r->n_started != r->n_buckets)
            TR_ABORT("%d of %d gradient buckets were never completed by the backward pass",
                     r->n_buckets - r->n_started, r->n_buckets);
        for (int k = 0; k < r->n_started; k++) {
            struct dp_bucket *b = &r->b[r->order[k]];
            while (b->state != B_DONE) {
                /* every earlier bucket is done, so this one's next phase can start */
                bucket_poll(b, 1);
                issue_in_order(r);
                if (b->state == B_SCATTERED || b->state == B_CROSSED || b->state == B_EXCHANGED)
                    TR_ABORT("gradient bucket %d could not start its next phase", r->order[k]);
            }
        }
        r->armed = 0;
    }
    /* after the buckets: its collectives must not interleave with theirs */
    const struct param *wte = params_get(&m->pt, -1, PK_WTE);
    if (g->pp > 1 && wte->n_local) {
        /* tied embedding: stage 0's lookup gradient + the last stage's head gradient */
        struct tensor dwte = model_param(m, m->grads, -1, PK_WTE);
        comm_allreduce(&g->comm, COMM_EMB, dwte.data, (long)tensor_numel(dwte), COMM_F32,
                       COMM_SUM);
        /* in the form zero = 0 would use, so both sum the same way */
        enum dp_algo whole = r->algo == DP_ZERO ? DP_FLAT : r->algo == DP_ZERO_HIER ? DP_HIER
                             : r->algo == DP_ZERO_BF16 ? DP_BF16 : r->algo;
        dpr_allreduce(g, m, whole, tensor_reshape(dwte, 1, tensor_numel(dwte)));
        if (m->z.on) {
            /* its part in this rank's slice */
            long lo = TR_MAX((long)m->z.lo, (long)wte->offset);
            long hi = TR_MIN((long)(m->z.lo + m->z.n), (long)(wte->offset + wte->n_local));
            if (hi > lo)
                backend_copy_d2d(m->be, grad_at(m->z.grads, lo - (long)m->z.lo),
                                 grad_at(m->grads, lo), sizeof(float) * (size_t)(hi - lo));
        }
    }
    r->t_exposed = tr_now() - t0;
}

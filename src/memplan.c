/* memplan.c — plan this rank's memory, read what the node may use, agree on a verdict. */
#include "memplan.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dataset.h"
#include "model.h"
#include "optim.h"
#include "plan.h"

const char *const MEM_ITEM_NAMES[MEM_COUNT] = {
    "runtime (MPI, BLAS, HDF5)", "weights", "gradients", "optimizer state (AdamW m, v)",
    "activations", "workspace (backward, probe)", "pipeline send buffers",
    "gradient reduction buffers", "data buffers"};

/* What the runtime adds after the plan is made, which is measured once the data file is
 * open (MPI, HDF5 and the program are resident by then): OpenBLAS's GEMM buffers, MPI's
 * shared-memory segments once peers talk, the reader thread's stack. Measured on the tiny
 * model, where the model is negligible: peak resident memory minus resident memory at the
 * plan minus the planned items is 0-4 MB with 1 or 2 threads. */
#define RUNTIME_GROWTH_BYTES (2LL << 20)

static int64_t align64(int64_t n) { return (n + 63) & ~(int64_t)63; }

/* Resident memory of this process now (bytes), from /proc/self/status. */
static int64_t resident_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lld kB", &kb) == 1) break;
    fclose(f);
    return (int64_t)kb * 1024;
}

void memplan_rank(const struct config *cfg, const struct grid *g, int n_slots,
                  struct mem_breakdown *b) {
    memset(b, 0, sizeof *b);
    b->n_slots = n_slots;
    struct model_mem mm;
    model_mem_plan(cfg, g, &mm);
    const int64_t B = cfg->micro_batch, T = cfg->seq_len, C = cfg->n_embd;

    b->bytes[MEM_RUNTIME] = resident_bytes() + RUNTIME_GROWTH_BYTES;
    /* fp32 masters (zero = 1, 16-bit: the slice's) + 16-bit copy */
    b->bytes[MEM_WEIGHTS] = mm.masters + mm.weights16;
    b->bytes[MEM_GRADS] = mm.params;
    /* optim_init: 1 or 2 buffers (optimizer) in fp32, bf16, or int8 codes + block scales;
     * zero = 1: of the slice only */
    b->bytes[MEM_OPTIM] = optim_state_bytes(cfg, mm.zero_n ? mm.zero_n : mm.n_local);
    b->bytes[MEM_ACTS] = (int64_t)n_slots * mm.slot;
    /* cmd_train.c's matmul-rate probe runs once the model is allocated: a [M,K] input,
     * a [N,K] weight and a [M,N] output of the model's MLP shape */
    const int64_t e = (int64_t)kdtype_size(model_dtype(cfg));  /* bytes of an activation */
    int64_t pm = TR_MIN(B * T, 1024), pk = C, pn = 4 * C / g->tp;
    b->bytes[MEM_WORKSPACE] = mm.scratch + mm.table + mm.tp_staging + mm.widen +
                              align64(e * pm * pk) + align64(e * pn * pk) + align64(e * pm * pn);
    if (!mm.first) b->bytes[MEM_PIPE] = (int64_t)n_slots * align64(e * B * T * C);
    if (g->dp > 1) {
        /* MPI's non-blocking all-reduces keep temporaries as large as the buckets in
         * flight, up to all of them; measured (Open MPI 4, dp 2, 25M parameters): 0.5x the
         * gradients with 8 MB buckets, 0.9x with one bucket, so 3/4 is planned.
         * Hierarchical reduction also keeps each bucket's node-local chunk. */
        b->bytes[MEM_REDUCE] = mm.params * 3 / 4;
        if (strcmp(cfg->allreduce, "flat") != 0 && g->ranks_per_node < g->world_size)
            b->bytes[MEM_REDUCE] += mm.params / TR_MAX(g->ranks_per_node, 1);
        /* bf16 on the wire (dp.c): per bucket, the bucket and the slices received in
         * bf16 (2 + 2 bytes a gradient) and this rank's slice in fp32 and bf16; no MPI
         * reduction temporaries (an all-to-all and an all-gather) */
        if (strcmp(cfg->grad_reduce, "bf16") == 0)
            b->bytes[MEM_REDUCE] = mm.params + mm.params * 3 / 2 / TR_MAX(g->dp, 1);
        /* zero = 1 (dp.c, optim.c): the slice's reduced gradients (also the all-gather's
         * send buffer) and MPI's reduce-scatter temporaries; a two-level reduce-scatter
         * (allreduce = hier across nodes) also keeps the node's partial sums of its share,
         * as the hierarchical all-reduce does */
        if (mm.zero_n) {
            b->bytes[MEM_REDUCE] = mm.zero_grads + mm.params * 3 / 4;
            if (strcmp(cfg->allreduce, "flat") != 0 && g->ranks_per_node < g->world_size)
                b->bytes[MEM_REDUCE] += mm.params / TR_MAX(g->ranks_per_node, 1);
            /* bf16 on the wire into the slice (dp.c, DP_ZERO_BF16): per bucket the bucket
             * and the parts received in bf16, and this rank's part rounded to bf16; no MPI
             * reduction temporaries and no all-gather of gradients */
            if (strcmp(cfg->grad_reduce, "bf16") == 0)
                b->bytes[MEM_REDUCE] = mm.zero_grads + mm.params / 2 + mm.params / 2 +
                                       mm.params / 2 / TR_MAX(g->dp, 1);
        }
    }
    int64_t n_win = (int64_t)TR_MAX(cfg->grad_accum, 1) * B;
    b->bytes[MEM_DATA] = align64(sizeof(int32_t) * n_win * (T + 1)) +
                         align64(sizeof(int64_t) * n_win);
    if ((mm.first || mm.last) && g->tp_rank == 0)
        b->bytes[MEM_DATA] += (int64_t)dataset_buffer_bytes((int)n_win, (int)T + 1);
    for (int i = 0; i < MEM_COUNT; i++) b->total += b->bytes[i];
}

/* ------------------------------------------------------------------------------------ */
/* the limit                                                                            */

int64_t memplan_parse_size(const char *text) {
    char *end;
    double v = strtod(text, &end);
    if (end == text || !isfinite(v) || v < 0) return -1;
    double unit = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': unit = 1024.0; end++; break;
    case 'M': unit = 1024.0 * 1024; end++; break;
    case 'G': unit = 1024.0 * 1024 * 1024; end++; break;
    case 'T': unit = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (unit > 1 && (*end == 'i' || *end == 'I')) end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    double bytes = v * unit;
    if (bytes >= 9.2e18) return -1;
    return (int64_t)bytes;
}

/* A cgroup limit file's number; "max" and the v1 "unlimited" (about 2^63) give -1. */
static int64_t read_limit_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char buf[64] = "";
    int ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok || strncmp(buf, "max", 3) == 0) return -1;
    long long v = strtoll(buf, NULL, 10);
    return v > 0 && v < (1LL << 60) ? (int64_t)v : -1;
}

/* The smallest memory limit of this process's cgroup and its ancestors (v2 memory.max,
 * v1 memory.limit_in_bytes); -1 when none is set. Under Slurm this is the job's cgroup. */
static int64_t cgroup_limit(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return -1;
    int64_t best = -1;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = '\0';
        const char *ctrl = c1 + 1, *path = c2 + 1, *fmt;
        if (strncmp(line, "0", 2) == 0 && !*ctrl) {
            fmt = "/sys/fs/cgroup%s/memory.max";                 /* v2 */
        } else {
            char list[256];
            snprintf(list, sizeof list, ",%s,", ctrl);
            if (!strstr(list, ",memory,")) continue;
            fmt = "/sys/fs/cgroup/memory%s/memory.limit_in_bytes"; /* v1 */
        }
        /* walk from the process's cgroup up to the root (inside a container the root
         * may be the container's own cgroup, so the root is read too) */
        char dir[768];
        snprintf(dir, sizeof dir, "%s", path);
        for (;;) {
            char file[1024];
            snprintf(file, sizeof file, fmt, strcmp(dir, "/") == 0 ? "" : dir);
            int64_t v = read_limit_file(file);
            if (v > 0 && (best < 0 || v < best)) best = v;
            char *slash = strrchr(dir, '/');
            if (!slash || strcmp(dir, "/") == 0) break;
            if (slash == dir) slash[1] = '\0';
            else *slash = '\0';
        }
    }
    fclose(f);
    return best;
}

static int64_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : (int64_t)kb * 1024;
}

int64_t memplan_limit(const char *mem_limit, int64_t held_bytes, char *source, size_t n) {
    if (strcmp(mem_limit, "off") == 0) {
        snprintf(source, n, "off");
        return 0;
    }
    if (strcmp(mem_limit, "auto") != 0) {
        int64_t v = memplan_parse_size(mem_limit);
        if (v <= 0)
            tr_fail(TR_EXIT_USAGE, "write mem_limit = auto, off, or a size such as 16G or 512M",
                    "mem_limit = \"%s\" is not a size", mem_limit);
        snprintf(source, n, "mem_limit = %s", mem_limit);
        return v;
    }
    int64_t cg = cgroup_limit(), avail = mem_available();
    if (avail >= 0) avail += held_bytes;
    if (cg > 0 && (avail < 0 || cg <= avail)) {
        snprintf(source, n, "cgroup limit");
        return cg;
    }
    if (avail >= 0) {
        snprintf(source, n, "MemAvailable");
        return avail;
    }
    snprintf(source, n, "no limit found");
    return INT64_MAX;
}

/* ------------------------------------------------------------------------------------ */
/* the verdict                                                                          */

static double mb(int64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

/* The node's table: item, MB on its largest rank, MB summed over its ranks. */
static void print_table(const int64_t *rank_max, const int64_t *node_sum, int ranks,
                        int node_id, int64_t limit, const char *source, int n_slots) {
    if (tr_rank() != 0) return;
    fprintf(stderr, "trident: memory plan of node %d (%d rank%s):\n", node_id, ranks,
            ranks == 1 ? "" : "s");
    fprintf(stderr, "  %-34s %14s %14s\n", "item", "MB per rank", "MB on node");
    for (int i = 0; i < MEM_COUNT; i++) {
        char name[64];
        if (i == MEM_ACTS)
            snprintf(name, sizeof name, "activations (%d micro-batch%s)", n_slots,
                     n_slots == 1 ? "" : "es");
        else
            snprintf(name, sizeof name, "%s", MEM_ITEM_NAMES[i]);
        fprintf(stderr, "  %-34s %14.1f %14.1f\n", name, mb(rank_max[i]), mb(node_sum[i]));
    }
    fprintf(stderr, "  %-34s %14.1f %14.1f\n", "total", mb(rank_max[MEM_COUNT]),
            mb(node_sum[MEM_COUNT]));
    fprintf(stderr, "  %-34s %14s %14.1f  (%s)\n", "the node may use", "", mb(limit), source);
    fflush(stderr);
}

void memplan_check(const struct config *cfg, const struct grid *g, int n_slots,
                   struct mem_plan *plan) {
    memset(plan, 0, sizeof *plan);
    memplan_rank(cfg, g, n_slots, &plan->rank);

    /* per node: each item summed and at its largest, the resident memory already held */
    const struct comm *c = &g->comm;
    int64_t sum[MEM_COUNT + 1], mx[MEM_COUNT + 1];
    memcpy(sum, plan->rank.bytes, sizeof(int64_t) * MEM_COUNT);
    sum[MEM_COUNT] = plan->rank.total;
    memcpy(mx, sum, sizeof mx);
    comm_allreduce(c, COMM_NODE, sum, MEM_COUNT + 1, COMM_I64, COMM_SUM);
    comm_allreduce(c, COMM_NODE, mx, MEM_COUNT + 1, COMM_I64, COMM_MAX);
    int64_t held = sum[MEM_RUNTIME] - RUNTIME_GROWTH_BYTES * g->ranks_per_node;
    char source[64];
    int64_t limit = memplan_limit(cfg->mem_limit, held, source, sizeof source);
    comm_allreduce(c, COMM_NODE, &limit, 1, COMM_I64, COMM_MIN);

    /* the worst node by share of its limit; every rank learns it, and its numbers */
    double worst = limit > 0 ? (double)sum[MEM_COUNT] / (double)limit : 0.0;
    int worst_rank = 0;
    comm_allreduce_maxloc(c, COMM_WORLD, &worst, &worst_rank);
    int64_t info[2 * (MEM_COUNT + 1) + 3];
    memcpy(info, sum, sizeof sum);
    memcpy(info + MEM_COUNT + 1, mx, sizeof mx);
    info[2 * (MEM_COUNT + 1)] = limit;
    info[2 * (MEM_COUNT + 1) + 1] = g->ranks_per_node;
    info[2 * (MEM_COUNT + 1) + 2] = g->node_id;
    comm_bcast(c, COMM_WORLD, info, 2 * (MEM_COUNT + 1) + 3, COMM_I64, worst_rank);
    comm_bcast(c, COMM_WORLD, source, sizeof source, COMM_U8, worst_rank);
    plan->rank_max = plan->rank.total;
    comm_allreduce(c, COMM_WORLD, &plan->rank_max, 1, COMM_I64, COMM_MAX);
    plan->node_total = info[MEM_COUNT];
    plan->node_limit = info[2 * (MEM_COUNT + 1)];
    plan->node_ranks = (int)info[2 * (MEM_COUNT + 1) + 1];
    snprintf(plan->limit_source, sizeof plan->limit_source, "%s", source);
    if (worst <= 1.0) return;

    print_table(info + MEM_COUNT + 1, info, plan->node_ranks, (int)info[2 * (MEM_COUNT + 1) + 2],
                plan->node_limit, source, n_slots);
    /* what would make it fit: the largest items name the knobs */
    const int64_t *s = info;
    double state = (double)(s[MEM_WEIGHTS] + s[MEM_GRADS] + s[MEM_OPTIM] + s[MEM_REDUCE]);
    double acts = (double)(s[MEM_ACTS] + s[MEM_PIPE] + s[MEM_WORKSPACE]);
    char hint[640];
    snprintf(hint, sizeof hint,
             "the job needs %.3gx what the node may use. Weights, gradients and optimizer "
             "state are %.0f%% of it: use fewer layers (n_layer) or a smaller n_embd, or "
             "spread them over more ranks and nodes with more pipeline stages (pp) or tensor "
             "parallelism (tp). Activations are %.0f%%: use a smaller micro_batch or "
             "seq_len%s. If the node has more memory than %s says, raise mem_limit (or set "
             "mem_limit = off)",
             worst, 100.0 * state / (double)s[MEM_COUNT], 100.0 * acts / (double)s[MEM_COUNT],
             g->pp > 1 && strcmp(cfg->schedule, "gpipe") == 0 ? " or schedule = 1f1b" : "",
             source);
    plan_print_fit_hint(cfg, g, plan->node_limit / TR_MAX(plan->node_ranks, 1));
    tr_fail(TR_EXIT_USAGE, hint,
            "not enough memory: node %d's %d rank%s would use %.0f MB, more than the %.0f MB "
            "it may use (%s)", (int)info[2 * (MEM_COUNT + 1) + 2], plan->node_ranks,
            plan->node_ranks == 1 ? "" : "s", mb(plan->node_total), mb(plan->node_limit),
            source);
}

void memplan_print(const struct mem_plan *p) {
    if (p->node_limit > 0 && p->node_limit < INT64_MAX)
        tr_info("memory: %.0f MB per rank predicted (largest rank), %.0f MB on the fullest "
                "node of %.0f MB it may use (%s)", mb(p->rank_max), mb(p->node_total),
                mb(p->node_limit), p->limit_source);
    else
        tr_info("memory: %.0f MB per rank predicted (largest rank), %.0f MB on the fullest "
                "node (no check: %s)", mb(p->rank_max), mb(p->node_total), p->limit_source);
}

/* ------------------------------------------------------------------------------------ */
/* planning without MPI                                                                 */

void memplan_grid(struct grid *g, int dp, int tp, int pp, int ranks_per_node, int dp_rank,
                  int tp_rank, int pp_rank) {
    memset(g, 0, sizeof *g);
    g->dp = dp;
    g->tp = tp;
    g->pp = pp;
    g->world_size = dp * tp * pp;
    g->dp_rank = dp_rank;
    g->tp_rank = tp_rank;
    g->pp_rank = pp_rank;
    g->world_rank = grid_rank_of(g, dp_rank, tp_rank, pp_rank);
    g->ranks_per_node = TR_MIN(TR_MAX(ranks_per_node, 1), g->world_size);
    g->node_id = g->world_rank / g->ranks_per_node;
    g->n_nodes = (g->world_size + g->ranks_per_node - 1) / g->ranks_per_node;
    g->tp_comm = g->dp_comm = g->pp_comm = g->emb_comm = MPI_COMM_NULL;
    g->node_comm = g->dp_node_comm = g->dp_cross_comm = MPI_COMM_NULL;
    /* dp peers of this cell are tp apart: the group spans nodes when it covers more
     * ranks than a node holds */
    int span = tp * (dp - 1) + 1;
    g->dp_nodes = TR_MAX(1, (span + g->ranks_per_node - 1) / g->ranks_per_node);
    g->hier_ok = g->dp_nodes > 1 && (g->ranks_per_node % tp == 0) &&
                 dp % TR_MAX(1, g->ranks_per_node / tp) == 0;
    g->tp_spans_nodes = (g->world_rank - tp_rank) / g->ranks_per_node !=
                        (g->world_rank - tp_rank + tp - 1) / g->ranks_per_node;
}

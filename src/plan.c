/* plan.c — the planner (`trident plan`), hardware files, and the pre-flight's fit hint.
 *
 * Memory: memplan_rank on a planning grid (memplan_grid), for every pipeline stage, so the
 * planner's numbers are the pre-flight's. For a switch memplan does not model (its numbers
 * do not change with it: plan_switch_built; zero = 1 at the time of writing, recompute and
 * optim_state were built since), this file models it with the standard formulas
 * (stage_memory) and says so in its output:
 *   zero = 1           ZeRO stage 1 (Rajbhandari et al. 2020): the optimizer moments, and
 *                      the fp32 masters when a 16-bit copy computes, are split over the dp
 *                      ranks: each rank keeps 1/dp of them. Gradients stay whole.
 *   recompute = full   each layer keeps only its input (the residual stream, which the
 *                      slot stores anyway) and the backward pass rebuilds one layer's
 *                      activations at a time in a shared buffer: one layer of activations
 *                      instead of one per layer, plus that layer's forward again.
 *   recompute = selective  (Korthikanti et al. 2022) the attention probabilities and the
 *                      GELU output are not kept but recomputed: each slot drops them, one
 *                      layer's worth is rebuilt in a shared buffer.
 *   optim_state bf16   2 bytes per moment; int8: 1 byte per moment plus one fp32 scale per
 *                      block of 2048 (block-wise 8-bit state, Dettmers et al. 2022).
 *
 * Step time (plan_time): per micro-batch and stage, the matmul FLOPs over the calibrated
 * GEMM rate of the dtype (forward and backward GEMMs, as `trident calibrate` times them),
 * the other kernels' bytes over their measured rate in the dtype (kernels_bw_*: the CPU
 * backend's widening of 16-bit operands into fp32 copies is in it) or, not measured, over
 * the memory bandwidth (widened 16-bit kernels then move (8 + e)/e times their bytes), the
 * tensor-parallel all-reduces (ring, 2 per layer forward and 2 backward, not overlapped:
 * the next matmul needs their result); the slowest stage sets the pace of the pipeline,
 * (m + p − 1) micro-batch times per step for 1F1B and GPipe alike (the bubble is (p−1) of
 * them); each stage boundary's send is on the critical path once per micro-batch each way.
 * The data-parallel reduction runs under the last micro-batch's backward pass (dp.c starts
 * each bucket when its gradients are complete): only what is longer than that backward is
 * exposed. The optimizer step (its measured AdamW rate per state form, optim_*, or its
 * bytes over the bandwidth) and ZeRO's all-gather of the new weights come after it and
 * overlap nothing. ZeRO-1 is planned with every optimizer, state form, allreduce and
 * grad_reduce: the reduce-scatter (flat or through the node, fp32 or bf16 on the wire)
 * under the backward pass, the all-gather after the step. The planner weighs them all
 * whatever `train` accepts today (src/config.c says what is built); it applies no
 * refusal list of its own.
 *
 * GPU hardware files describe trident's CUDA backend: 16-bit kernels are native
 * (kernels_16bit = native: no widening, no fp32 workspaces) and attention is flash-style
 * (attention = flash: a log-sum-exp per row kept, not the probabilities; backend_memory).
 */
#include "plan.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "model.h"

#define MB (1024.0 * 1024.0)
#define GB (1024.0 * 1024.0 * 1024.0)

static const char *const PD_NAMES[PD_COUNT] = {"fp32", "bf16", "fp16"};
static int pd_of(const char *precision) {
    for (int i = 0; i < PD_COUNT; i++)
        if (strcmp(precision, PD_NAMES[i]) == 0) return i;
    return PD_FP32;
}

/* ------------------------------------------------------------------------------------ */
/* hardware files                                                                       */

enum hw_type { HW_STR, HW_INT, HW_NUM, HW_SIZE, HW_RUNTIME, HW_CHOICE };
struct hw_key {
    const char *name;
    enum hw_type type;
    size_t offset;
    int required;
    double min, max;
    const char *meaning;
    const char *choices;   /* HW_CHOICE: "a|b", stored as the index of the word given */
};
#define HO(f) offsetof(struct hardware, f)
static const struct hw_key HW_KEYS[] = {
    {"name", HW_STR, HO(name), 0, 0, 0, "what the file describes", NULL},
    {"devices_per_node", HW_INT, HO(devices_per_node), 1, 1, 4096, "GPUs (or cores) per node", NULL},
    {"peak_fp32", HW_NUM, HO(peak[PD_FP32]), 1, 1e6, 1e18, "dense FLOP/s per device, fp32", NULL},
    {"peak_bf16", HW_NUM, HO(peak[PD_BF16]), 0, 0, 1e18, "dense FLOP/s per device, bf16 (0: none)", NULL},
    {"peak_fp16", HW_NUM, HO(peak[PD_FP16]), 0, 0, 1e18, "dense FLOP/s per device, fp16 (0: none)", NULL},
    {"gemm_fp32", HW_NUM, HO(gemm[PD_FP32]), 0, 0, 1e18, "measured GEMM FLOP/s per device", NULL},
    {"gemm_bf16", HW_NUM, HO(gemm[PD_BF16]), 0, 0, 1e18, "measured GEMM FLOP/s per device", NULL},
    {"gemm_fp16", HW_NUM, HO(gemm[PD_FP16]), 0, 0, 1e18, "measured GEMM FLOP/s per device", NULL},
    {"gemm_efficiency", HW_NUM, HO(gemm_efficiency), 0, 0.01, 1, "GEMM rate / peak where none is measured", NULL},
    {"mem_per_device", HW_SIZE, HO(mem_per_device), 1, 0, 0, "bytes per device (80G)", NULL},
    {"mem_bandwidth", HW_NUM, HO(mem_bandwidth), 1, 1e6, 1e15, "bytes/s per device", NULL},
    {"runtime", HW_RUNTIME, HO(runtime_bytes), 0, 0, 0, "memory per rank outside the model: measured | SIZE", NULL},
    {"intra_latency", HW_NUM, HO(intra_latency), 1, 0, 1, "s, one message inside a node", NULL},
    {"intra_bandwidth", HW_NUM, HO(intra_bandwidth), 1, 1e3, 1e15, "bytes/s per rank inside a node", NULL},
    {"inter_latency", HW_NUM, HO(inter_latency), 1, 0, 1, "s, one message between nodes", NULL},
    {"inter_bandwidth", HW_NUM, HO(inter_bandwidth), 1, 1e3, 1e16, "bytes/s per node between nodes", NULL},
    {"kernels_bw_fp32", HW_NUM, HO(kernels_bw[PD_FP32]), 0, 0, 1e16, "measured non-matmul kernel bytes/s per device, fp32", NULL},
    {"kernels_bw_bf16", HW_NUM, HO(kernels_bw[PD_BF16]), 0, 0, 1e16, "measured non-matmul kernel bytes/s per device, bf16", NULL},
    {"kernels_bw_fp16", HW_NUM, HO(kernels_bw[PD_FP16]), 0, 0, 1e16, "measured non-matmul kernel bytes/s per device, fp16", NULL},
    {"optim_fp32", HW_NUM, HO(optim_rate[0]), 0, 0, 1e16, "measured AdamW parameters/s per device, fp32 state", NULL},
    {"optim_bf16", HW_NUM, HO(optim_rate[1]), 0, 0, 1e16, "measured AdamW parameters/s per device, bf16 state", NULL},
    {"optim_int8", HW_NUM, HO(optim_rate[2]), 0, 0, 1e16, "measured AdamW parameters/s per device, int8 state", NULL},
    {"kernels_16bit", HW_CHOICE, HO(widened16), 0, 0, 0, "native | widened (to fp32 copies)", "native|widened"},
    {"attention", HW_CHOICE, HO(flash_attention), 0, 0, 0, "probs (T x T kept) | flash (a log-sum-exp per row)", "probs|flash"},
};
#define N_HW_KEYS ((int)(sizeof HW_KEYS / sizeof HW_KEYS[0]))

void plan_hardware_load(struct hardware *hw, const char *path) {
    memset(hw, 0, sizeof *hw);
    hw->gemm_efficiency = 1.0;
    hw->runtime_bytes = -1;
    hw->widened16 = 1;   /* trident's CPU backend, the one every machine has */
    FILE *f = fopen(path, "r");
    if (!f)
        tr_fail(TR_EXIT_USAGE, "give --hardware FILE (inputs/hardware/*.hw), or write this "
                "machine's with `trident calibrate`", "cannot read hardware file '%s': %s",
                path, strerror(errno));
    int seen[N_HW_KEYS] = {0};
    char line[1024];
    int ln = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        char where[600];
        snprintf(where, sizeof where, "%s:%d", path, ln);
        if (!strchr(line, '\n') && !feof(f))
            tr_fail(TR_EXIT_USAGE, "keep lines under 1000 characters", "%s: line too long", where);
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        char *e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq)
            tr_fail(TR_EXIT_USAGE, "write key = value", "%s: '%s' is not a key = value line",
                    where, s);
        char *ke = eq;
        while (ke > s && isspace((unsigned char)ke[-1])) ke--;
        *ke = '\0';
        char *v = eq + 1;
        while (isspace((unsigned char)*v)) v++;
        int k = -1;
        for (int i = 0; i < N_HW_KEYS; i++)
            if (strcmp(s, HW_KEYS[i].name) == 0) k = i;
        if (k < 0) {
            char keys[1024] = "";
            for (int i = 0; i < N_HW_KEYS; i++) {
                strncat(keys, HW_KEYS[i].name, sizeof keys - strlen(keys) - 1);
                if (i + 1 < N_HW_KEYS) strncat(keys, ", ", sizeof keys - strlen(keys) - 1);
            }
            char hint[1100];
            snprintf(hint, sizeof hint, "the keys are %s", keys);
            tr_fail(TR_EXIT_USAGE, hint, "%s: unknown hardware key '%s'", where, s);
        }
        if (seen[k])
            tr_fail(TR_EXIT_USAGE, "give each key once", "%s: '%s' is given twice (first on "
                    "line %d)", where, s, seen[k]);
        seen[k] = ln;
        const struct hw_key *hk = &HW_KEYS[k];
        char *dst = (char *)hw + hk->offset;
        switch (hk->type) {
        case HW_STR:
            snprintf(dst, sizeof hw->name, "%s", v);
            break;
        case HW_INT:
            *(int *)dst = (int)config_parse_int(where, hk->name, v, (long)hk->min, (long)hk->max);
            break;
        case HW_NUM:
            *(double *)dst = config_parse_float(where, hk->name, v, hk->min, hk->max);
            break;
        case HW_CHOICE: {
            /* the words of "a|b|..." in order; the index of the one given */
            int idx = -1, i = 0;
            for (const char *w = hk->choices; *w; i++) {
                size_t len = strcspn(w, "|");
                if (strlen(v) == len && strncmp(v, w, len) == 0) idx = i;
                w += len + (w[len] == '|');
            }
            if (idx < 0) {
                char hint[160];
                snprintf(hint, sizeof hint, "write %s = one of %s", hk->name, hk->choices);
                tr_fail(TR_EXIT_USAGE, hint, "%s: %s = '%s' is not one of %s", where, hk->name,
                        v, hk->choices);
            }
            *(int *)dst = idx;
            break;
        }
        case HW_SIZE:
        case HW_RUNTIME: {
            if (hk->type == HW_RUNTIME && strcmp(v, "measured") == 0) {
                *(double *)dst = -1;
                break;
            }
            int64_t b = memplan_parse_size(v);
            if (b < 0 || (hk->type == HW_SIZE && b == 0))
                tr_fail(TR_EXIT_USAGE, hk->type == HW_RUNTIME ? "write runtime = measured or "
                        "a size such as 512M" : "write a size such as 80G or 512M",
                        "%s: %s = '%s' is not a size", where, hk->name, v);
            *(double *)dst = (double)b;
            break;
        }
        }
    }
    fclose(f);
    for (int i = 0; i < N_HW_KEYS; i++)
        if (HW_KEYS[i].required && !seen[i])
            tr_fail(TR_EXIT_USAGE, "add it (trident calibrate writes every key)",
                    "%s: hardware key '%s' (%s) is missing", path, HW_KEYS[i].name,
                    HW_KEYS[i].meaning);
    if (!hw->name[0]) snprintf(hw->name, sizeof hw->name, "%s", path);
}

/* GEMM FLOP/s of one device in dtype d (0: the hardware has no such arithmetic) */
static double hw_gemm(const struct hardware *hw, int d) {
    if (hw->peak[d] <= 0) return 0;
    return hw->gemm[d] > 0 ? hw->gemm[d] : hw->peak[d] * hw->gemm_efficiency;
}

/* ------------------------------------------------------------------------------------ */
/* memory                                                                               */

static int dtype_bytes(const struct config *cfg) { return pd_of(cfg->precision) == PD_FP32 ? 4 : 2; }

/* Activation bytes of one layer in one slot (model.c's slot_arrays, per layer), and the
 * part selective recomputation drops (attention probabilities, GELU output). */
static void layer_act_bytes(const struct config *cfg, int tp, int64_t *all, int64_t *sel) {
    const int64_t B = cfg->micro_batch, T = cfg->seq_len, C = cfg->n_embd, BT = B * T;
    const int64_t Cl = C / tp, Fl = 4 * C / tp, NT = B * (cfg->n_head / tp) * T;
    const int64_t e = dtype_bytes(cfg);
    int64_t ln_stats = 4 * 4 * BT;                      /* ln1/ln2 mean and rstd, fp32 */
    int64_t rest = e * (BT * C * 3 + BT * 3 * Cl + BT * Cl + BT * Fl);  /* ln1 xmid ln2 qkv atty fch */
    *sel = e * (NT * T + BT * Fl);                      /* att, fch_gelu */
    *all = ln_stats + rest + *sel;
}

struct mem_key {
    struct config cfg;
    int dp, tp, pp, rpn, stage, tp_rank, n_slots;
};
#define MEM_CACHE 4096
static struct mem_cache {
    int used;
    struct mem_key key;
    struct model_mem mm;
    struct mem_breakdown b;
    int nl;
} mem_cache[MEM_CACHE];

/* One stage's (and tensor rank's) plan under the wanted switches. */
struct stage_mem {
    struct mem_breakdown b;
    int64_t n_local, weights16;
    int nl;
};

/* What a backend other than the CPU one keeps, from memplan's CPU plan (x, by item) of a
 * stage with nl layers and n_slots micro-batches in flight:
 *  - flash attention (attention = flash: the CUDA backend) keeps one fp32 log-sum-exp per
 *    row of each head, [B·NH/tp·T], for the backward pass instead of the [B·NH/tp·T][T]
 *    probabilities, and needs no fp32 [B·NH/tp·T][T] scratch for their gradient. Where
 *    recomputation already drops the probabilities from the slots (selective, full), the
 *    one layer rebuilt at a time in the shared buffer no longer holds them either;
 *  - native 16-bit kernels (kernels_16bit = native) need none of the CPU backend's fp32
 *    widening workspaces (mm.widen, model.c). */
static void backend_memory(const struct config *cfg, const struct hardware *hw, int tp,
                           int n_slots, int nl, int64_t widen, int64_t *x) {
    const int64_t B = cfg->micro_batch, T = cfg->seq_len, NHl = cfg->n_head / tp;
    const int64_t rows = B * NHl * T, e = dtype_bytes(cfg);
    if (hw->flash_attention) {
        const int64_t probs = e * rows * T, lse = 4 * rows;
        x[MEM_WORKSPACE] -= 4 * rows * T;                      /* the gradient's scratch */
        if (strcmp(cfg->recompute, "none") == 0) {
            x[MEM_ACTS] -= (int64_t)n_slots * nl * (probs - lse);
        } else {
            x[MEM_WORKSPACE] -= probs;                         /* the rebuilt layer's */
            if (strcmp(cfg->recompute, "selective") == 0) x[MEM_ACTS] += (int64_t)n_slots * nl * lse;
            else x[MEM_WORKSPACE] += lse;
        }
    }
    if (!hw->widened16) x[MEM_WORKSPACE] -= widen;
}

static void stage_memory(const struct config *want, const struct hardware *hw, int built,
                         int dp, int tp, int pp,
                         int rpn, int stage, int tp_rank, double runtime_bytes,
                         struct stage_mem *sm, int *analytic) {
    /* what memplan is asked: the wanted config with the switches it does not model at
     * their defaults (model_mem_plan knows nothing of them, and must not be handed a
     * value it would refuse) */
    struct config c = *want;
    if (!(built & PLAN_SW_RECOMPUTE)) snprintf(c.recompute, sizeof c.recompute, "none");
    if (!(built & PLAN_SW_ZERO)) c.zero = 0;
    if (!(built & PLAN_SW_OPTIM_STATE)) snprintf(c.optim_state, sizeof c.optim_state, "fp32");
    struct grid g;
    memplan_grid(&g, dp, tp, pp, rpn, 0, tp_rank, stage);
    int M = TR_MAX(c.grad_accum, 1);
    int n_slots = strcmp(c.schedule, "gpipe") == 0 ? M : TR_MIN(M, pp - stage);
    struct model_mem mm;
    /* a search asks for the same (layout, batch, precision, stage) once per switch
     * setting: memplan's part is remembered (the last 4096, by everything it reads) */
    struct mem_key key;
    memset(&key, 0, sizeof key);
    key.cfg = c;
    key.dp = dp; key.tp = tp; key.pp = pp; key.rpn = rpn; key.stage = stage;
    key.tp_rank = tp_rank; key.n_slots = n_slots;
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *kb = (const unsigned char *)&key;
    for (size_t i = 0; i < sizeof key; i++) h = (h ^ kb[i]) * 1099511628211ULL;
    struct mem_cache *e = &mem_cache[h % MEM_CACHE];
    if (e->used && memcmp(&e->key, &key, sizeof key) == 0) {
        mm = e->mm;
        sm->b = e->b;
        sm->nl = e->nl;
    } else {
        model_mem_plan(&c, &g, &mm);
        memplan_rank(&c, &g, n_slots, &sm->b);
        int *bounds = tr_malloc(sizeof(int) * (size_t)(pp + 1));
        model_stage_bounds(&c, pp, bounds);
        sm->nl = bounds[stage + 1] - bounds[stage];
        tr_free(bounds);
        e->used = 1;
        e->key = key;
        e->mm = mm;
        e->b = sm->b;
        e->nl = sm->nl;
    }
    if (runtime_bytes >= 0) {
        sm->b.total -= sm->b.bytes[MEM_RUNTIME];
        sm->b.bytes[MEM_RUNTIME] = (int64_t)runtime_bytes;
        sm->b.total += sm->b.bytes[MEM_RUNTIME];
    }
    sm->n_local = mm.n_local;
    sm->weights16 = mm.weights16;

    int64_t *x = sm->b.bytes;
    if (!(built & PLAN_SW_RECOMPUTE) && strcmp(want->recompute, "none") != 0 && sm->nl > 0) {
        int64_t all, sel;
        layer_act_bytes(want, tp, &all, &sel);
        int64_t drop = strcmp(want->recompute, "full") == 0 ? all : sel;
        x[MEM_ACTS] -= (int64_t)n_slots * sm->nl * drop;   /* no longer kept per layer */
        x[MEM_WORKSPACE] += drop;                          /* one layer rebuilt at a time */
        *analytic |= PLAN_SW_RECOMPUTE;
    }
    if (!(built & PLAN_SW_OPTIM_STATE) && strcmp(want->optim_state, "fp32") != 0) {
        int64_t n = mm.n_local;
        x[MEM_OPTIM] = strcmp(want->optim_state, "bf16") == 0
                           ? 2 * 2 * n
                           : 2 * (n + 4 * ((n + KSTATE_BLOCK - 1) / KSTATE_BLOCK));
        *analytic |= PLAN_SW_OPTIM_STATE;
    }
    if (!(built & PLAN_SW_ZERO) && want->zero && dp > 1) {
        x[MEM_OPTIM] = (x[MEM_OPTIM] + dp - 1) / dp;
        if (mm.weights16) {   /* the fp32 masters are optimizer state then */
            x[MEM_WEIGHTS] -= mm.params - (mm.params + dp - 1) / dp;
        }
        *analytic |= PLAN_SW_ZERO;
    }
    if (hw && sm->nl > 0) backend_memory(want, hw, tp, n_slots, sm->nl, mm.widen, x);
    sm->b.total = 0;
    for (int i = 0; i < MEM_COUNT; i++) sm->b.total += x[i];
}

int plan_switch_built(const struct config *cfg, int sw) {
    /* the same config with the switch on and off, on a layout where it matters (dp 2 for
     * ZeRO): memplan models the switch when its plan changes */
    struct config a = *cfg, b = *cfg;
    a.stages[0] = b.stages[0] = '\0';
    snprintf(a.recompute, sizeof a.recompute, "none");
    a.zero = 0;
    snprintf(a.optim_state, sizeof a.optim_state, "fp32");
    b = a;
    if (sw == PLAN_SW_RECOMPUTE) snprintf(b.recompute, sizeof b.recompute, "full");
    if (sw == PLAN_SW_ZERO) b.zero = 1;
    if (sw == PLAN_SW_OPTIM_STATE) snprintf(b.optim_state, sizeof b.optim_state, "int8");
    struct grid g;
    memplan_grid(&g, 2, 1, 1, 2, 0, 0, 0);
    struct mem_breakdown ma, mb;
    memplan_rank(&a, &g, 1, &ma);
    memplan_rank(&b, &g, 1, &mb);
    for (int i = 0; i < MEM_COUNT; i++)
        if (i != MEM_RUNTIME && ma.bytes[i] != mb.bytes[i]) return 1;
    return 0;
}

static int switches_built(const struct config *cfg) {
    static int cached = -1;
    if (cached < 0)
        cached = (plan_switch_built(cfg, PLAN_SW_RECOMPUTE) ? PLAN_SW_RECOMPUTE : 0) |
                 (plan_switch_built(cfg, PLAN_SW_ZERO) ? PLAN_SW_ZERO : 0) |
                 (plan_switch_built(cfg, PLAN_SW_OPTIM_STATE) ? PLAN_SW_OPTIM_STATE : 0);
    return cached;
}

void plan_memory(const struct config *cfg, const struct hardware *hw, int dp, int tp, int pp,
                 int ranks_per_node, double runtime_bytes, struct plan_mem *pm,
                 int64_t *stage_total) {
    memset(pm, 0, sizeof *pm);
    int built = switches_built(cfg);
    /* Which ranks to plan. Tensor rank 0 is the largest of its stage (the others differ
     * only by not holding the data buffers). Middle stages with the same number of layers
     * differ only in their micro-batches in flight, which fall with the stage (1F1B:
     * pp - s), so the first of them is the largest and every item of it too; the search
     * (stage_total NULL) plans only the first and last stage and the first middle stage
     * of each size: the same peak and item maxima as planning every stage. */
    struct config c = *cfg;
    int *bounds = tr_malloc(sizeof(int) * (size_t)(pp + 1));
    model_stage_bounds(&c, pp, bounds);
    int seen_nl[4] = {-1, -1, -1, -1};
    for (int s = 0; s < pp; s++) {
        int nl = bounds[s + 1] - bounds[s];
        if (!stage_total && s > 0 && s < pp - 1) {
            int dup = 0;
            for (int k = 0; k < 4; k++) dup |= seen_nl[k] == nl;
            if (dup) continue;
            for (int k = 0; k < 4; k++)
                if (seen_nl[k] < 0) { seen_nl[k] = nl; break; }
        }
        struct stage_mem sm;
        stage_memory(cfg, hw, built, dp, tp, pp, ranks_per_node, s, 0, runtime_bytes, &sm,
                     &pm->analytic);
        for (int i = 0; i < MEM_COUNT; i++)
            pm->item_max[i] = TR_MAX(pm->item_max[i], sm.b.bytes[i]);
        if (sm.b.total > pm->peak.total) {
            pm->peak = sm.b;
            pm->peak_stage = s;
        }
        if (stage_total) stage_total[s] = sm.b.total;
    }
    tr_free(bounds);
}

/* ------------------------------------------------------------------------------------ */
/* step time                                                                            */

double plan_layer_kernel_bytes(double C, double NH, double T, int tp, double e, int flash) {
    /* two LayerNorms (read + write C), two residual adds (read 2C, write C), GELU (4C/tp
     * in and out), and the attention's softmax over the causal scores (read + write
     * (T+1)/2 per local head) or, flash, its q, k, v in and output out (4C/tp) */
    return e * (10.0 * C + 2.0 * 4.0 * C / tp + (flash ? 4.0 * C / tp : (NH / tp) * (T + 1)));
}

struct plan_time {
    double matmul, other, tp_comm, p2p;     /* per step on the slowest stage (critical path) */
    double bubble;                          /* (p−1) micro-batch times of that stage */
    double dp_comm, dp_exposed, bwd_last;   /* reduction, its exposed part, the backward it hides under */
    double optimizer, zero_gather;
    double step;
};

/* ring all-reduce of `bytes` over n ranks: 2(n−1) steps, each moving bytes/n */
static double t_allreduce(int n, double bytes, double lat, double bw) {
    return n <= 1 ? 0 : 2.0 * (n - 1) * lat + 2.0 * (n - 1) / n * bytes / bw;
}
/* reduce-scatter or all-gather: half of it */
static double t_half(int n, double bytes, double lat, double bw) {
    return n <= 1 ? 0 : (n - 1) * lat + (double)(n - 1) / n * bytes / bw;
}

struct cand {
    int dp, tp, pp, mb, ga;
    int prec, zero;
    char recompute[12], optim_state[8];
    struct plan_mem mem;
    int64_t stage_total[512];
    int fits;
    struct plan_time t;
    double tok_s, flops_dev, hw_flops_dev, mfu;
    int intrusive;           /* how far the switches stray from plain fp32 training */
};

/* The optimizer step of n_local parameters (overlaps nothing): the update over the
 * rank's share (1/dp of it with zero = 1) at the measured AdamW rate of the state form
 * (optim_*), else its bytes over the memory bandwidth (AdamW: p, g, m, v read; p, m, v
 * written, m and v at 4, 2 or 1 byte), scaled to the optimizer by its passes over the
 * data (LAMB: moments, then the step, and two norms; LARS: one buffer and two norms;
 * SGD: one buffer); then, over all n_local parameters, zeroing the gradients and their
 * norm (4 + 4 bytes), and with 16-bit precision the fresh 16-bit copy of the weights
 * (read 4, write e). */
static double optimizer_time(const struct config *cfg, const struct hardware *hw,
                             double n_local, int dp, double e, double bw, double share) {
    const int form = strcmp(cfg->optim_state, "int8") == 0 ? 2
                     : strcmp(cfg->optim_state, "bf16") == 0 ? 1 : 0;
    const double sb = form == 2 ? 1.0 + 4.0 / KSTATE_BLOCK : form == 1 ? 2.0 : 4.0;
    const double adamw_bytes = 4 + 4 + 2 * sb + 4 + 2 * sb;      /* per parameter */
    double kind = 1.0;   /* the optimizer's bytes / AdamW's */
    if (strcmp(cfg->optimizer, "lamb") == 0)
        kind = (4 + 4 + 2 * sb + 2 * sb + 4 + 2 * sb + 4 + 4 + 4) / adamw_bytes;
    else if (strcmp(cfg->optimizer, "lars") == 0)
        kind = (4 + 4 + sb + 4 + sb + 4 + 4) / adamw_bytes;
    else if (strcmp(cfg->optimizer, "sgd") == 0)
        kind = (4 + 4 + sb + 4 + sb) / adamw_bytes;
    const double n_upd = n_local / (cfg->zero && dp > 1 ? dp : 1);
    double t = hw->optim_rate[form] > 0 ? kind * n_upd / (hw->optim_rate[form] * share)
                                        : kind * n_upd * adamw_bytes / bw;
    t += n_local * (4.0 + 4.0 + (e < 4 ? 4.0 + e : 0.0)) / bw;
    return t;
}

/* cfg carries the candidate's batch and switches */
static void plan_time(const struct config *cfg, const struct hardware *hw, int dp, int tp,
                      int pp, int rpn, struct plan_time *pt) {
    memset(pt, 0, sizeof *pt);
    const double B = cfg->micro_batch, T = cfg->seq_len, C = cfg->n_embd;
    const double Vp = config_padded_vocab(cfg), NH = cfg->n_head;
    const int M = TR_MAX(cfg->grad_accum, 1), d = pd_of(cfg->precision);
    const double e = dtype_bytes(cfg), share = (double)hw->devices_per_node / rpn;
    const double rate = hw_gemm(hw, d) * share, bw = hw->mem_bandwidth * share;
    const double tok = B * T;
    /* links: a node's NICs are shared by its ranks talking across at once */
    const double inter_bw = hw->inter_bandwidth / rpn;
    const int tp_intra = rpn % tp == 0;
    const double tp_lat = tp_intra ? hw->intra_latency : hw->inter_latency;
    const double tp_bw = tp_intra ? hw->intra_bandwidth : inter_bw;
    int full = strcmp(cfg->recompute, "full") == 0, sel = strcmp(cfg->recompute, "selective") == 0;

    int *bounds = tr_malloc(sizeof(int) * (size_t)(pp + 1));
    model_stage_bounds(cfg, pp, bounds);
    /* The non-matmul kernels: measured (kernels_bw: trident calibrate times one layer's
     * LayerNorms, attention, GELU and residuals in this dtype, and divides the bytes counted
     * here by that time: conversions, the softmax's exp, the attention's small per-head
     * GEMMs are in it), else bytes / memory bandwidth. A backend that widens 16-bit
     * operands (the CPU one: kernels/cpu/typed.c) runs each such kernel on fp32 copies:
     * it moves the fp32 bytes (4/e times the 16-bit ones) and converts every element
     * twice, in and out (e + 4 bytes each), so 16-bit kernels move (8 + e)/e times the
     * bytes counted at e: 5x for bf16, 2.5x what fp32 moves. */
    const int measured_kernels = hw->kernels_bw[d] > 0;
    const double kbw = measured_kernels ? hw->kernels_bw[d] * share
                       : hw->widened16 && e < 4 ? bw * e / (8.0 + e) : bw;
    /* matmul FLOPs per token of one layer, forward (backward is twice), as
     * model_flops_per_token counts them; the attention core part separately (inside the
     * measured attention kernel when kernels_bw is measured: not counted twice) */
    const double f_attn = measured_kernels ? 0.0 : 2.0 * C * (T + 1);
    const double f_layer = 24.0 * C * C + f_attn;
    const double f_head = 2.0 * Vp * C;
    const int flash = hw->flash_attention;
    const double b_layer = plan_layer_kernel_bytes(C, NH, T, tp, e, flash);
    /* what selective recomputation runs again: the attention core */
    const double b_attn = flash ? e * 4.0 * C / tp : e * (NH / tp) * (T + 1);
    const double b_head = e * 3.0 * Vp / tp + e * 4.0 * C;   /* logits: write, read, gradient; final LN */
    const double act_bytes = tok * C;                         /* one [BT][C] activation */
    double worst = 0, worst_mm = 0, worst_other = 0, worst_tp = 0, worst_p2p = 0, bwd = 0;
    double n_local_max = 0;
    for (int s = 0; s < pp; s++) {
        double nl = bounds[s + 1] - bounds[s];
        int first = s == 0, last = s == pp - 1;
        double mm_f = tok * (nl * f_layer + last * f_head) / tp;
        double mm_b = 2.0 * mm_f + tok * nl * (full ? f_layer : sel ? f_attn : 0) / tp;
        double by_f = tok * (nl * b_layer + last * b_head + first * 2.0 * e * C);
        double by_b = 2.0 * by_f + tok * nl * (full ? b_layer : sel ? b_attn : 0);
        /* tensor-parallel sums go through fp32 (tp.c stages 16-bit ones): 4 bytes */
        double ar = t_allreduce(tp, 4.0 * act_bytes, tp_lat, tp_bw);
        double tp_f = (2.0 * nl + first) * ar, tp_b = (2.0 * nl + last + (full ? 2.0 * nl : 0)) * ar;
        double p2p = 0;
        if (pp > 1) {
            /* a boundary crosses nodes when the stage's block of tp·dp ranks does not sit
             * in whole nodes with its neighbour */
            /* stage s holds ranks [s·b, (s+1)·b) (b = tp·dp) and sends rank r's
             * activations to r + b: a boundary crosses nodes when some r and r + b sit on
             * different nodes, i.e. a node boundary lies in (s·b, (s+2)·b − 1]; the
             * boundary to the previous stage likewise */
            long block = (long)tp * dp, lo = last ? s - 1 : s;
            int cross = block >= rpn || ((lo + 2) * block - 1) / rpn > (lo * block) / rpn ||
                        (!first && !last && ((long)(s + 1) * block - 1) / rpn > ((long)(s - 1) * block) / rpn);
            double lat = cross ? hw->inter_latency : hw->intra_latency;
            double lbw = cross ? hw->inter_bandwidth / (double)TR_MIN(rpn, block) : hw->intra_bandwidth;
            double one = lat + e * act_bytes / lbw;
            p2p = (first || last ? 1.0 : 2.0) * one;   /* fwd out + bwd out (ends: one way each) */
        }
        double mb_t = (mm_f + mm_b) / rate + (by_f + by_b) / kbw + tp_f + tp_b + p2p;
        if (mb_t > worst) {
            worst = mb_t;
            worst_mm = (mm_f + mm_b) / rate;
            worst_other = (by_f + by_b) / kbw;
            worst_tp = tp_f + tp_b;
            worst_p2p = p2p;
        }
        if (first) bwd = mm_b / rate + by_b / kbw + tp_b;   /* stage 0 finishes last */
        /* parameters of this stage's shard (params.c's table) */
        double n = nl * (12.0 * C * C + 13.0 * C) / tp +
                   (first ? Vp * C / tp + cfg->block_size * C : 0) +
                   (last ? (pp > 1 ? Vp * C / tp : 0) + 2.0 * C : 0);
        n_local_max = fmax(n_local_max, n);
    }
    tr_free(bounds);
    double steps_mb = M + pp - 1;
    pt->matmul = worst_mm * M;
    pt->other = worst_other * M;
    pt->tp_comm = worst_tp * M;
    pt->p2p = worst_p2p * M;
    pt->bubble = worst * (pp - 1);
    pt->bwd_last = bwd;
    (void)steps_mb;

    /* The data-parallel reduction of the gradients: in fp32, or bf16 on the wire
     * (grad_reduce = bf16: an all-to-all and an all-gather, the bytes of an all-reduce at
     * 2 bytes a gradient). Hierarchical (allreduce = hier, or auto) where
     * the group spans nodes and the node's ranks of it divide it evenly: inside the node
     * a reduce-scatter, across nodes the node's share, inside the node an all-gather.
     * With zero = 1 only the reduce-scatter half runs under the backward pass, and the
     * new weights (the computing copy: fp32 or 16-bit) are all-gathered after the
     * optimizer, through the same two levels. */
    if (dp > 1) {
        const int bf16_wire = strcmp(cfg->grad_reduce, "bf16") == 0;
        double bytes = n_local_max * (bf16_wire ? 2.0 : 4.0);
        int span = tp * (dp - 1) + 1 > rpn;
        int per_node = TR_MAX(1, rpn / tp), nodes = dp / TR_MAX(per_node, 1);
        /* auto is hierarchical across nodes, with zero = 1 too (dpr_choose, src/dp.c) */
        int asked = strcmp(cfg->allreduce, "flat") != 0;
        int hier = span && asked && !bf16_wire && rpn % tp == 0 && dp % per_node == 0 &&
                   per_node > 1;
        double lat = span ? hw->inter_latency : hw->intra_latency;
        double lbw = span ? inter_bw : hw->intra_bandwidth;
        if (!cfg->zero) {
            if (hier)
                pt->dp_comm = 2.0 * t_half(per_node, bytes, hw->intra_latency, hw->intra_bandwidth) +
                              t_allreduce(nodes, bytes / per_node, hw->inter_latency, inter_bw);
            else pt->dp_comm = t_allreduce(dp, bytes, lat, lbw);
            pt->dp_exposed = fmax(0.0, pt->dp_comm - bwd);
        } else {
            double wbytes = n_local_max * e;
            if (hier) {
                pt->dp_comm = t_half(per_node, bytes, hw->intra_latency, hw->intra_bandwidth) +
                              t_half(nodes, bytes / per_node, hw->inter_latency, inter_bw);
                pt->zero_gather = t_half(nodes, wbytes / per_node, hw->inter_latency, inter_bw) +
                                  t_half(per_node, wbytes, hw->intra_latency, hw->intra_bandwidth);
            } else {
                pt->dp_comm = t_half(dp, bytes, lat, lbw);
                pt->zero_gather = t_half(dp, wbytes, lat, lbw);
            }
            pt->dp_exposed = fmax(0.0, pt->dp_comm - bwd);
        }
    }
    pt->optimizer = optimizer_time(cfg, hw, n_local_max, dp, e, bw, share);
    pt->step = worst * (M + pp - 1) + pt->dp_exposed + pt->optimizer + pt->zero_gather;
}

/* ------------------------------------------------------------------------------------ */
/* the search                                                                           */

struct plan_req {
    struct config cfg;
    struct hardware hw;
    int nodes, rpn, world;
    int64_t mem_limit;                 /* per rank */
    int fix_layout, ldp, ltp, lpp;
    int fix_batch;                     /* micro_batch and grad_accum given */
    int fix_prec, fix_recompute, fix_zero, fix_optim;
    int64_t global;                    /* sequences per step */
    int json;
    int top;
};

static int intrusiveness(const struct cand *c) {
    return (c->prec == PD_BF16 ? 1 : c->prec == PD_FP16 ? 2 : 0) +
           (strcmp(c->recompute, "selective") == 0 ? 1 : strcmp(c->recompute, "full") == 0 ? 2 : 0) +
           c->zero + (strcmp(c->optim_state, "bf16") == 0 ? 2 : strcmp(c->optim_state, "int8") == 0 ? 3 : 0);
}

static void cand_config(const struct plan_req *r, const struct cand *c, struct config *out) {
    *out = r->cfg;
    out->dp = c->dp;
    out->tp = c->tp;
    out->pp = c->pp;
    out->micro_batch = c->mb;
    out->grad_accum = c->ga;
    snprintf(out->precision, sizeof out->precision, "%s", PD_NAMES[c->prec]);
    snprintf(out->recompute, sizeof out->recompute, "%s", c->recompute);
    snprintf(out->optim_state, sizeof out->optim_state, "%s", c->optim_state);
    out->zero = c->zero;
}

static void evaluate(const struct plan_req *r, struct cand *c, int all_stages) {
    struct config cfg;
    cand_config(r, c, &cfg);
    plan_memory(&cfg, &r->hw, c->dp, c->tp, c->pp, r->rpn, r->hw.runtime_bytes, &c->mem,
                all_stages ? c->stage_total : NULL);
    c->fits = r->mem_limit <= 0 || c->mem.peak.total <= r->mem_limit;
    plan_time(&cfg, &r->hw, c->dp, c->tp, c->pp, r->rpn, &c->t);
    double tokens = (double)c->mb * c->ga * c->dp * cfg.seq_len;
    c->tok_s = tokens / c->t.step;
    c->flops_dev = model_flops_per_token(&cfg) * c->tok_s / r->world;
    c->mfu = c->flops_dev / (r->hw.peak[c->prec] * r->hw.devices_per_node / r->rpn);
    /* what the hardware computes, recomputation included (Megatron-LM's count): full
     * recomputes each layer's forward, selective the attention core's */
    double C = cfg.n_embd, L = cfg.n_layer, T = cfg.seq_len;
    double extra = strcmp(c->recompute, "full") == 0 ? L * (24.0 * C * C + 2.0 * C * (T + 1))
                   : strcmp(c->recompute, "selective") == 0 ? L * 2.0 * C * (T + 1) : 0.0;
    c->hw_flops_dev = (model_flops_per_token(&cfg) + extra) * c->tok_s / r->world;
    c->intrusive = intrusiveness(c);
}

/* best first: tokens/s, and among candidates within 1 % of each other the plainer one */
static int cand_cmp(const void *pa, const void *pb) {
    const struct cand *a = pa, *b = pb;
    if (a->fits != b->fits) return b->fits - a->fits;
    if (!a->fits) return a->mem.peak.total < b->mem.peak.total ? -1 : 1;
    double hi = fmax(a->tok_s, b->tok_s);
    if (fabs(a->tok_s - b->tok_s) > 0.01 * hi) return a->tok_s > b->tok_s ? -1 : 1;
    if (a->intrusive != b->intrusive) return a->intrusive - b->intrusive;
    return a->tok_s > b->tok_s ? -1 : a->tok_s < b->tok_s ? 1 : 0;
}

static const char *const RECOMPUTES[] = {"none", "selective", "full"};
static const char *const OPTIMS[] = {"fp32", "bf16", "int8"};

/* Of one (layout, micro-batch, precision), the switch setting to list. The switches trade
 * compute or numerics for memory, so they are tried plainest first (intrusiveness) and a
 * plainer setting that fits is kept unless a later one is more than 5 % faster (ZeRO-1
 * also shards the optimizer's work; int8 state moves fewer bytes: real but small gains
 * that do not pay for the change alone). When none fits, the smallest is kept, to say
 * how far off it is. Returns 1 when one was produced. */
static int best_switches(const struct plan_req *r, struct cand *base, struct cand *out) {
    struct cand all[18];
    int n = 0;
    for (int ri = 0; ri < 3; ri++) {
        if (r->fix_recompute && strcmp(RECOMPUTES[ri], r->cfg.recompute) != 0) continue;
        for (int z = 0; z <= 1; z++) {
            if (r->fix_zero ? z != r->cfg.zero : (z && base->dp < 2)) continue;
            for (int oi = 0; oi < 3; oi++) {
                if (r->fix_optim && strcmp(OPTIMS[oi], r->cfg.optim_state) != 0) continue;
                struct cand *c = &all[n++];
                *c = *base;
                snprintf(c->recompute, sizeof c->recompute, "%s", RECOMPUTES[ri]);
                snprintf(c->optim_state, sizeof c->optim_state, "%s", OPTIMS[oi]);
                c->zero = z;
                c->intrusive = intrusiveness(c);
            }
        }
    }
    int have = 0;
    for (int level = 0; level <= 12; level++)
        for (int i = 0; i < n; i++) {
            if (all[i].intrusive != level) continue;
            struct cand *c = &all[i];
            evaluate(r, c, 0);
            int better = !have ||
                         (c->fits && !out->fits) ||
                         (c->fits && out->fits && c->tok_s > 1.05 * out->tok_s) ||
                         (!c->fits && !out->fits && c->mem.peak.total < out->mem.peak.total);
            if (better) *out = *c;
            have = 1;
        }
    return have;
}

struct reject { int dp, tp, pp; char why[320]; };

struct plan_result {
    struct cand *c;
    int n, cap;
    struct reject *rej;
    int n_rej;
    int n_layouts;
};

static void push(struct plan_result *res, const struct cand *c) {
    if (res->n == res->cap) {
        res->cap = res->cap ? 2 * res->cap : 64;
        struct cand *n = tr_malloc(sizeof *n * (size_t)res->cap);
        if (res->n) memcpy(n, res->c, sizeof *n * (size_t)res->n);
        tr_free(res->c);
        res->c = n;
    }
    res->c[res->n++] = *c;
}

static void reject(struct plan_result *res, int dp, int tp, int pp, const char *why) {
    if (res->n_rej >= 256) return;
    struct reject *x = &res->rej[res->n_rej++];
    x->dp = dp; x->tp = tp; x->pp = pp;
    snprintf(x->why, sizeof x->why, "%s", why);
}

static void search_layout(const struct plan_req *r, int dp, int tp, int pp,
                          struct plan_result *res) {
    char msg[300], hint[300];
    if (grid_check_layout(&r->cfg, r->world, dp, tp, pp, msg, sizeof msg, hint, sizeof hint)) {
        reject(res, dp, tp, pp, msg);
        return;
    }
    if (r->rpn % tp != 0 && tp > 1) {
        snprintf(msg, sizeof msg, "tp=%d does not fit in a node of %d ranks (tensor groups "
                 "talk every layer: keep them inside a node)", tp, r->rpn);
        reject(res, dp, tp, pp, msg);
        return;
    }
    if (pp > 512) { reject(res, dp, tp, pp, "more than 512 stages"); return; }
    int mbs[64], gas[64], n_mb = 0;
    if (r->fix_batch) {
        mbs[0] = r->cfg.micro_batch;
        gas[0] = r->cfg.grad_accum;
        n_mb = 1;
    } else {
        if (r->global % dp) {
            snprintf(msg, sizeof msg, "dp=%d does not divide the global batch of %lld "
                     "sequences", dp, (long long)r->global);
            reject(res, dp, tp, pp, msg);
            return;
        }
        int64_t per = r->global / dp;
        for (int64_t m = 1; m <= per && m <= 1024 && n_mb < 64; m++)
            if (per % m == 0) {
                mbs[n_mb] = (int)m;
                gas[n_mb++] = (int)(per / m);
            }
    }
    res->n_layouts++;
    for (int i = 0; i < n_mb; i++)
        for (int p = 0; p < PD_COUNT; p++) {
            if (r->fix_prec ? p != pd_of(r->cfg.precision) : r->hw.peak[p] <= 0) continue;
            struct cand base, best;
            memset(&base, 0, sizeof base);
            base.dp = dp; base.tp = tp; base.pp = pp;
            base.mb = mbs[i]; base.ga = gas[i]; base.prec = p;
            if (best_switches(r, &base, &best)) push(res, &best);
        }
}

static void search(const struct plan_req *r, struct plan_result *res) {
    memset(res, 0, sizeof *res);
    res->rej = tr_malloc(sizeof(struct reject) * 256);
    if (r->fix_layout) {
        search_layout(r, r->ldp, r->ltp, r->lpp, res);
    } else {
        for (int tp = 1; tp <= r->world; tp++) {
            if (r->world % tp) continue;
            for (int pp = 1; pp <= r->world / tp; pp++) {
                if ((r->world / tp) % pp) continue;
                int dp = r->world / tp / pp;
                /* quietly skip what can never be a layout here: tp beyond a node, more
                 * stages than layers (listed as rejected when nothing else is) */
                if (tp > r->rpn || pp > r->cfg.n_layer) {
                    if (res->n_rej < 16) {
                        char why[160];
                        snprintf(why, sizeof why, tp > r->rpn ? "tp=%d exceeds the %d ranks of a node"
                                 : "pp=%d exceeds n_layer", tp > r->rpn ? tp : pp, r->rpn);
                        reject(res, dp, tp, pp, why);
                    }
                    continue;
                }
                search_layout(r, dp, tp, pp, res);
            }
        }
    }
    qsort(res->c, (size_t)res->n, sizeof *res->c, cand_cmp);
    /* what is shown gets every stage planned */
    for (int i = 0; i < res->n && i < r->top; i++) evaluate(r, &res->c[i], 1);
}

/* ------------------------------------------------------------------------------------ */
/* output                                                                               */

static const char *const JSON_ITEMS[MEM_COUNT] = {
    "runtime", "weights", "gradients", "optimizer", "activations", "workspace", "pipeline",
    "reduction", "data"};

/* a JSON string: quotes, backslashes and control characters escaped */
static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

static void print_json(const struct plan_req *r, const struct plan_result *res, const char *why) {
    printf("{\"hardware\":");
    json_str(r->hw.name);
    printf(",\"nodes\":%d,\"ranks_per_node\":%d,\"world\":%d,"
           "\"mem_per_rank\":%lld,\"global_batch\":%lld,\"seq_len\":%d,"
           "\"model_flops_per_token\":%.6g,\"analytic_switches\":\"%s\",\"candidates\":[",
           r->nodes, r->rpn, r->world, (long long)r->mem_limit,
           r->fix_batch ? -1LL : (long long)r->global, r->cfg.seq_len,
           model_flops_per_token(&r->cfg),
           "a candidate's memory is the train pre-flight's plan, except for the switches in "
           "its analytic list, which follow the standard formulas");
    int shown = 0;
    for (int i = 0; i < res->n && shown < r->top; i++) {
        const struct cand *c = &res->c[i];
        if (!c->fits && res->n && res->c[0].fits) break;
        printf("%s\n{\"layout\":{\"dp\":%d,\"tp\":%d,\"pp\":%d},\"micro_batch\":%d,"
               "\"grad_accum\":%d,\"switches\":{\"precision\":\"%s\",\"recompute\":\"%s\","
               "\"zero\":%d,\"optim_state\":\"%s\",\"grad_reduce\":\"%s\"},\"memory\":{",
               shown ? "," : "", c->dp, c->tp, c->pp, c->mb, c->ga, PD_NAMES[c->prec],
               c->recompute, c->zero, c->optim_state, r->cfg.grad_reduce);
        for (int k = 0; k < MEM_COUNT; k++) printf("\"%s\":%lld,", JSON_ITEMS[k], (long long)c->mem.peak.bytes[k]);
        printf("\"total\":%lld,\"peak_stage\":%d,\"slots\":%d,\"item_max\":{", (long long)c->mem.peak.total,
               c->mem.peak_stage, c->mem.peak.n_slots);
        for (int k = 0; k < MEM_COUNT; k++)
            printf("%s\"%s\":%lld", k ? "," : "", JSON_ITEMS[k], (long long)c->mem.item_max[k]);
        printf("},\"stages\":[");
        for (int s = 0; s < c->pp; s++) printf("%s%lld", s ? "," : "", (long long)c->stage_total[s]);
        /* the switches whose memory comes from this file's formulas */
        printf("],\"analytic\":[");
        const char *sep = "";
        static const char *const SW[3] = {"recompute", "zero", "optim_state"};
        for (int k = 0; k < 3; k++)
            if (c->mem.analytic & (1 << k)) { printf("%s\"%s\"", sep, SW[k]); sep = ","; }
        printf("]},");
        printf("\"fits\":%s,\"step_s\":%.6g,\"tokens_per_s\":%.6g,\"model_flops_per_device\":%.6g,"
               "\"hw_flops_per_device\":%.6g,"
               "\"mfu\":%.4f,\"time\":{\"matmul\":%.6g,\"other_kernels\":%.6g,\"tp_comm\":%.6g,"
               "\"pp_p2p\":%.6g,\"bubble\":%.6g,\"dp_comm\":%.6g,\"dp_exposed\":%.6g,"
               "\"optimizer\":%.6g,\"zero_gather\":%.6g}}",
               c->fits ? "true" : "false", c->t.step, c->tok_s, c->flops_dev, c->hw_flops_dev, c->mfu,
               c->t.matmul,
               c->t.other, c->t.tp_comm, c->t.p2p, c->t.bubble, c->t.dp_comm, c->t.dp_exposed,
               c->t.optimizer, c->t.zero_gather);
        shown++;
    }
    printf("],\"layouts\":[");
    /* each layout's best candidate, in order: its rank among layouts */
    int nl = 0;
    for (int i = 0; i < res->n; i++) {
        int dup = 0;
        for (int j = 0; j < i && !dup; j++)
            dup = res->c[j].dp == res->c[i].dp && res->c[j].tp == res->c[i].tp &&
                  res->c[j].pp == res->c[i].pp;
        if (dup) continue;
        const struct cand *c = &res->c[i];
        printf("%s{\"dp\":%d,\"tp\":%d,\"pp\":%d,\"fits\":%s,\"tokens_per_s\":%.6g,"
               "\"model_flops_per_device\":%.6g,\"hw_flops_per_device\":%.6g,\"memory\":%lld}",
               nl++ ? "," : "", c->dp, c->tp, c->pp, c->fits ? "true" : "false", c->tok_s,
               c->flops_dev, c->hw_flops_dev,
               (long long)c->mem.peak.total);
    }
    printf("],\"rejected\":[");
    for (int i = 0; i < res->n_rej; i++) {
        printf("%s{\"dp\":%d,\"tp\":%d,\"pp\":%d,\"why\":", i ? "," : "", res->rej[i].dp,
               res->rej[i].tp, res->rej[i].pp);
        json_str(res->rej[i].why);
        printf("}");
    }
    printf("],\"why_none\":");
    if (why) json_str(why); else printf("null");
    printf("}\n");
}

static void print_text(const struct plan_req *r, const struct plan_result *res, const char *why) {
    printf("trident plan: %d node%s × %d rank%s = %d ranks on %s; ", r->nodes,
           r->nodes == 1 ? "" : "s", r->rpn, r->rpn == 1 ? "" : "s", r->world, r->hw.name);
    if (r->fix_batch) printf("micro_batch %d × grad_accum %d × dp", r->cfg.micro_batch, r->cfg.grad_accum);
    else printf("global batch %lld sequences", (long long)r->global);
    printf(" of %d tokens; %.0f MB per rank\n", r->cfg.seq_len, (double)r->mem_limit / MB);
    if (why) {
        printf("\nno candidate fits: %s\n", why);
    }
    if (!res->n) return;
    printf("\n %3s  %-12s %4s %4s  %-5s %-9s %4s %-5s  %9s %9s %10s %9s %6s\n", "#", "dp×tp×pp",
           "mb", "acc", "prec", "recompute", "zero", "optim", "MB/rank", "step s", "tokens/s",
           "TFLOP/s", "MFU");
    int shown = 0;
    for (int i = 0; i < res->n && shown < r->top; i++) {
        const struct cand *c = &res->c[i];
        if (!c->fits && res->c[0].fits) break;
        char lay[32];
        snprintf(lay, sizeof lay, "%d×%d×%d", c->dp, c->tp, c->pp);
        printf(" %3d  %-12s %4d %4d  %-5s %-9s %4d %-5s  %9.0f %9.4g %10.4g %9.4g %5.1f%%%s%s\n",
               i + 1, lay, c->mb, c->ga, PD_NAMES[c->prec], c->recompute, c->zero, c->optim_state,
               (double)c->mem.peak.total / MB, c->t.step, c->tok_s, c->flops_dev / 1e12,
               100.0 * c->mfu, c->fits ? "" : "  (does not fit)", c->mem.analytic ? "  *" : "");
        shown++;
    }
    const struct cand *b = &res->c[0];
    printf("\nwhy #1 (%d×%d×%d, micro_batch %d, grad_accum %d): step time, slowest stage\n",
           b->dp, b->tp, b->pp, b->mb, b->ga);
    const struct plan_time *t = &b->t;
    printf("  %-58s %10.4g s\n", "matmuls (model FLOPs / calibrated GEMM rate)", t->matmul);
    printf("  %-58s %10.4g s\n", r->hw.kernels_bw[b->prec] > 0 ? "other kernels (bytes moved / their measured rate)"
           : r->hw.widened16 && b->prec != PD_FP32 ? "other kernels (bytes, widened to fp32 / bandwidth)"
           : "other kernels (bytes moved / memory bandwidth)", t->other);
    printf("  %-58s %10.4g s\n", "tensor-parallel all-reduces (4 per layer, not overlapped)", t->tp_comm);
    printf("  %-58s %10.4g s\n", "pipeline sends (on the critical path)", t->p2p);
    printf("  %-58s %10.4g s\n", "pipeline bubble ((p-1) micro-batch times)", t->bubble);
    printf("  %-58s %10.4g s\n", "data-parallel reduction, total", t->dp_comm);
    printf("  %-58s %10.4g s\n", "  hidden under the last micro-batch's backward (up to)", t->bwd_last);
    printf("  %-58s %10.4g s\n", "  exposed", t->dp_exposed);
    printf("  %-58s %10.4g s\n", "optimizer step (overlaps nothing)", t->optimizer);
    if (b->zero) printf("  %-58s %10.4g s\n", "ZeRO all-gather of the new weights (exposed)", t->zero_gather);
    printf("  %-58s %10.4g s\n", "step", t->step);
    printf("\n  memory of the largest rank (stage %d, %d micro-batch%s in flight), MB:\n",
           b->mem.peak_stage, b->mem.peak.n_slots, b->mem.peak.n_slots == 1 ? "" : "es");
    for (int k = 0; k < MEM_COUNT; k++)
        printf("    %-34s %10.1f\n", MEM_ITEM_NAMES[k], (double)b->mem.peak.bytes[k] / MB);
    printf("    %-34s %10.1f   (of %.0f)\n", "total", (double)b->mem.peak.total / MB,
           (double)r->mem_limit / MB);
    if (b->pp > 1) {
        printf("  per stage (1F1B keeps pp - s micro-batches on stage s), MB:");
        for (int s = 0; s < b->pp && s < 16; s++) printf(" %.0f", (double)b->stage_total[s] / MB);
        printf("%s\n", b->pp > 16 ? " ..." : "");
    }
    int any = 0;
    for (int i = 0; i < res->n && i < r->top; i++) any |= res->c[i].mem.analytic;
    if (any)
        printf("\n* memory of recompute / zero / optim_state from the standard formulas "
               "(src/plan.c): trident's memory plan does not model them yet\n");
    printf("%d layouts searched, %d candidates; %d layouts refused%s\n", res->n_layouts, res->n,
           res->n_rej, res->n_rej ? " (--json lists them)" : "");
}

/* ------------------------------------------------------------------------------------ */
/* the command                                                                          */

static int given(int argc, char **argv, const char *key) {
    size_t n = strlen(key);
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, key, n) == 0 &&
            (argv[i][2 + n] == '=' || argv[i][2 + n] == '\0'))
            return 1;
    return 0;
}

int plan_main(int argc, char **argv) {
    struct plan_req r;
    memset(&r, 0, sizeof r);
    /* --json is a flag: take it out before the key = value parser sees it */
    char **av = tr_malloc(sizeof(char *) * (size_t)(argc + 1));
    int ac = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) r.json = 1;
        else av[ac++] = argv[i];
    }
    av[ac] = NULL;
    int has_config = 0;
    for (int i = 0; i < ac; i++) {
        if (strncmp(av[i], "--", 2) != 0) has_config = 1;
        else if (!strchr(av[i], '=')) i++;
    }
    if (!has_config)
        tr_fail(TR_EXIT_USAGE, "trident plan CONFIG --nodes N --ranks-per-node K "
                "[--hardware FILE] [--mem-per-rank SIZE] [--layout DPxTPxPP] [--json]",
                "plan: no config file given");
    static const char *const extra[] = {"nodes", "ranks-per-node", "hardware", "mem-per-rank",
                                        "layout", "top", NULL};
    const char *ev[7];
    config_defaults(&r.cfg);
    config_parse_args(&r.cfg, ac, av, extra, ev);
    if (!ev[0] || !ev[1])
        tr_fail(TR_EXIT_USAGE, "e.g. trident plan CONFIG --nodes 2 --ranks-per-node 8",
                "plan: give --nodes and --ranks-per-node");
    r.nodes = (int)config_parse_int("--nodes", "nodes", ev[0], 1, 1 << 20);
    r.rpn = (int)config_parse_int("--ranks-per-node", "ranks-per-node", ev[1], 1, 4096);
    if ((long)r.nodes * r.rpn > (1 << 22))
        tr_fail(TR_EXIT_USAGE, "plan at most 4M ranks", "plan: %d × %d ranks is too many",
                r.nodes, r.rpn);
    r.world = r.nodes * r.rpn;
    r.top = ev[5] ? (int)config_parse_int("--top", "top", ev[5], 1, 100000) : 10;
    plan_hardware_load(&r.hw, ev[2] ? ev[2] : "inputs/hardware/this-machine.hw");
    if (r.rpn > r.hw.devices_per_node)
        tr_fail(TR_EXIT_USAGE, "use at most one rank per device (--ranks-per-node)",
                "plan: %d ranks per node, but %s has %d devices per node", r.rpn, r.hw.name,
                r.hw.devices_per_node);
    if (ev[3]) {
        r.mem_limit = memplan_parse_size(ev[3]);
        if (r.mem_limit <= 0)
            tr_fail(TR_EXIT_USAGE, "write a size such as 16G or 512M",
                    "--mem-per-rank '%s' is not a size", ev[3]);
    } else {
        r.mem_limit = (int64_t)(r.hw.mem_per_device * r.hw.devices_per_node / r.rpn);
    }
    if (ev[4]) {
        char tail;
        if (sscanf(ev[4], "%dx%dx%d%c", &r.ldp, &r.ltp, &r.lpp, &tail) != 3 || r.ldp < 1 ||
            r.ltp < 1 || r.lpp < 1)
            tr_fail(TR_EXIT_USAGE, "write --layout DPxTPxPP, e.g. --layout 4x2x1",
                    "--layout '%s' is not DPxTPxPP", ev[4]);
        char msg[300], hint[300];
        if (grid_check_layout(&r.cfg, r.world, r.ldp, r.ltp, r.lpp, msg, sizeof msg, hint,
                              sizeof hint))
            tr_fail(TR_EXIT_USAGE, hint[0] ? hint : "choose dp × tp × pp = nodes × ranks per node",
                    "--layout %s: %s", ev[4], msg);
        r.fix_layout = 1;
    }
    /* the model must make sense on its own (config_validate would also refuse the
     * switches that the planner is there to weigh) */
    if (r.cfg.n_embd % r.cfg.n_head)
        tr_fail(TR_EXIT_USAGE, "choose n_head dividing n_embd", "n_head = %d does not divide "
                "n_embd = %d", r.cfg.n_head, r.cfg.n_embd);
    if (r.cfg.seq_len > r.cfg.block_size)
        tr_fail(TR_EXIT_USAGE, "set seq_len <= block_size", "seq_len = %d exceeds block_size "
                "= %d", r.cfg.seq_len, r.cfg.block_size);
    r.fix_batch = given(ac, av, "micro_batch") && given(ac, av, "grad_accum");
    r.fix_prec = given(ac, av, "precision");
    r.fix_recompute = given(ac, av, "recompute");
    r.fix_zero = given(ac, av, "zero");
    r.fix_optim = given(ac, av, "optim_state");
    if (r.fix_prec && r.hw.peak[pd_of(r.cfg.precision)] <= 0)
        tr_fail(TR_EXIT_USAGE, "choose a precision the hardware computes in",
                "precision = %s: %s has no %s arithmetic", r.cfg.precision, r.hw.name,
                r.cfg.precision);
    r.global = (int64_t)r.cfg.micro_batch * TR_MAX(r.cfg.grad_accum, 1) * TR_MAX(r.cfg.dp, 1);
    if (!r.fix_layout || !given(ac, av, "stages")) r.cfg.stages[0] = '\0';

    struct plan_result res;
    search(&r, &res);
    char why[600], *whyp = NULL;
    if (!res.n || !res.c[0].fits) {
        whyp = why;
        if (!res.n)
            snprintf(why, sizeof why, "no layout of %d ranks is possible for this model "
                     "(%s)", r.world, res.n_rej ? res.rej[0].why : "nothing to search");
        else
            snprintf(why, sizeof why, "the smallest candidate (%d×%d×%d, micro_batch %d, %s, "
                     "recompute %s, zero %d, optim_state %s) needs %.0f MB per rank, more than "
                     "the %.0f MB a rank may use; use more ranks or nodes, or a smaller model "
                     "or seq_len", res.c[0].dp, res.c[0].tp, res.c[0].pp, res.c[0].mb,
                     PD_NAMES[res.c[0].prec], res.c[0].recompute, res.c[0].zero,
                     res.c[0].optim_state, (double)res.c[0].mem.peak.total / MB,
                     (double)r.mem_limit / MB);
    }
    if (tr_rank() == 0) {
        if (r.json) print_json(&r, &res, whyp);
        else print_text(&r, &res, whyp);
        fflush(stdout);
    }
    int rc = whyp && !r.fix_layout ? TR_EXIT_USAGE : TR_EXIT_OK;
    if (whyp && r.fix_layout) rc = TR_EXIT_USAGE;
    tr_free(res.c);
    tr_free(res.rej);
    tr_free(av);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* the pre-flight's hint                                                                */

void plan_print_fit_hint(const struct config *cfg, const struct grid *g,
                         int64_t limit_per_rank) {
    if (tr_rank() != 0 || limit_per_rank <= 0) return;
    struct config c = *cfg;
    /* single changes, cheapest first: what each costs is in the comment */
    struct { const char *what; int kind; } opts[] = {
        {"micro_batch", 0},          /* smaller micro-batches, more of them: same batch */
        {"recompute = selective", 1},/* a few % more compute */
        {"zero = 1", 2},             /* one more all-gather of the weights per step */
        {"optim_state = bf16", 3},   /* 16-bit moments */
        {"recompute = full", 4},     /* about a third more compute */
        {"precision = bf16", 5},     /* halves activations, adds a 16-bit weight copy */
        {"optim_state = int8", 6},
    };
    char out[900] = "";
    int n = 0;
    for (size_t i = 0; i < sizeof opts / sizeof opts[0] && n < 3; i++) {
        struct config t = c;
        char text[160];
        snprintf(text, sizeof text, "%s", opts[i].what);
        switch (opts[i].kind) {
        case 0: {
            int mb = t.micro_batch / 2;
            while (mb >= 1 && t.micro_batch % mb) mb--;
            if (mb < 1 || mb == t.micro_batch) continue;
            /* the largest micro-batch that fits, keeping micro_batch × grad_accum */
            int found = 0;
            for (; mb >= 1; mb--) {
                if (t.micro_batch % mb) continue;
                struct config u = c;
                u.grad_accum = c.grad_accum * (c.micro_batch / mb);
                u.micro_batch = mb;
                struct plan_mem pm;
                plan_memory(&u, NULL, g->dp, g->tp, g->pp, g->ranks_per_node, -1, &pm, NULL);
                if (pm.peak.total <= limit_per_rank) {
                    snprintf(text, sizeof text, "micro_batch = %d, grad_accum = %d (same "
                             "global batch)", mb, u.grad_accum);
                    found = 1;
                    break;
                }
            }
            if (!found) continue;
            snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", n ? ", or " : "", text);
            n++;
            continue;
        }
        case 1: snprintf(t.recompute, sizeof t.recompute, "selective"); break;
        case 2:
            if (g->dp < 2 || c.zero) continue;
            t.zero = 1;
            snprintf(text, sizeof text, "zero = 1 (dp = %d)", g->dp);
            break;
        case 3: snprintf(t.optim_state, sizeof t.optim_state, "bf16"); break;
        case 4: snprintf(t.recompute, sizeof t.recompute, "full"); break;
        case 5:
            if (strcmp(c.precision, "fp32") != 0) continue;
            snprintf(t.precision, sizeof t.precision, "bf16");
            break;
        case 6: snprintf(t.optim_state, sizeof t.optim_state, "int8"); break;
        }
        if (strcmp(t.recompute, c.recompute) == 0 && strcmp(t.optim_state, c.optim_state) == 0 &&
            t.zero == c.zero && strcmp(t.precision, c.precision) == 0)
            continue;
        struct plan_mem pm;
        plan_memory(&t, NULL, g->dp, g->tp, g->pp, g->ranks_per_node, -1, &pm, NULL);
        if (pm.peak.total > limit_per_rank) continue;
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s%s", n ? ", or " : "", text,
                 pm.analytic ? " (once built)" : "");
        n++;
    }
    if (n)
        fprintf(stderr, "trident: it would fit (%.0f MB a rank may use) with %s; `trident plan "
                "CONFIG --nodes N --ranks-per-node K` weighs every layout and switch\n",
                (double)limit_per_rank / MB, out);
    else
        fprintf(stderr, "trident: no single switch makes it fit on this layout (%.0f MB a rank "
                "may use); `trident plan CONFIG --nodes N --ranks-per-node K` searches layouts "
                "and combinations\n", (double)limit_per_rank / MB);
    fflush(stderr);
}

/* plan.h — the planner: which layout, micro-batch and switches to train a config with on
 * N nodes of K ranks, with each candidate's per-rank memory and predicted step time.
 *
 * Memory comes from the same plan the `train` pre-flight refuses with (memplan_rank on a
 * planning grid, memplan_grid), so the two cannot disagree. Switches that memplan does
 * not model yet (recompute, zero, optim_state bf16/int8) are modelled here by the
 * standard formulas and used only while memplan's numbers do not change with the switch;
 * once model_mem_plan/memplan implement one, its real lists are used (plan_switch_built).
 *
 * Step time: compute (model FLOPs / the calibrated matmul rate, non-matmul kernels as
 * bytes / memory bandwidth) plus an α–β model of the tensor-, pipeline- and
 * data-parallel traffic, the pipeline bubble and what overlaps (plan.c says which).
 *
 * Hardware comes from `key = value` files (inputs/hardware/NAME.hw), parsed as strictly as
 * configs: per device peak FLOP/s per dtype, measured or assumed GEMM rate, memory,
 * bandwidth, devices per node, and the links inside and between nodes; optionally the
 * measured rates of the non-matmul kernels and of the optimizer update (`trident
 * calibrate` writes them), and what the backend does with 16-bit kernels and attention
 * (the CPU backend widens 16-bit operands into fp32 and keeps the attention
 * probabilities; the CUDA backend computes in 16 bits and keeps one log-sum-exp per row).
 */
#ifndef TRIDENT_PLAN_H
#define TRIDENT_PLAN_H

#include <stdint.h>

#include "config.h"
#include "grid.h"
#include "memplan.h"

enum plan_dtype { PD_FP32, PD_BF16, PD_FP16, PD_COUNT };

struct hardware {
    char   name[128];
    int    devices_per_node;       /* GPUs, or cores for a CPU node */
    double peak[PD_COUNT];         /* dense FLOP/s per device; 0 = not supported */
    double gemm[PD_COUNT];         /* FLOP/s per device on model-sized GEMMs (0: peak × gemm_efficiency) */
    double gemm_efficiency;        /* for a dtype without a measured gemm rate */
    double mem_per_device;         /* bytes */
    double mem_bandwidth;          /* bytes/s per device */
    double runtime_bytes;          /* per rank, counted against its memory; < 0: measured here */
    double intra_latency, intra_bandwidth;   /* s; bytes/s per rank, inside a node */
    double inter_latency, inter_bandwidth;   /* s; bytes/s per NODE (its NICs together) */
    /* the non-matmul kernels (LayerNorm, attention, GELU, residual) per dtype: the
     * planner's byte count of a layer (plan_layer_kernel_bytes) over their measured time,
     * bytes/s per device; 0: not measured (bytes / mem_bandwidth, widened when 16-bit
     * kernels are) */
    double kernels_bw[PD_COUNT];
    /* AdamW parameters updated per second per device, by state form (fp32, bf16, int8);
     * 0: not measured (bytes / mem_bandwidth) */
    double optim_rate[3];
    int    widened16;              /* 1: 16-bit non-matmul kernels run on fp32 copies (CPU) */
    int    flash_attention;        /* 1: attention keeps a log-sum-exp per row, not T x T */
};

/* Bytes the non-matmul kernels of one transformer layer move per token, forward (the
 * backward pass is counted as twice this), with activations of e bytes: two LayerNorms,
 * two residual adds, GELU, and the attention's softmax (T x T probabilities) or, with
 * flash attention, only its q, k, v and output. */
double plan_layer_kernel_bytes(double C, double NH, double T, int tp, double e, int flash);

/* Read a hardware file; a missing key, an unknown key, a bad value: tr_fail naming the
 * file and line. */
void plan_hardware_load(struct hardware *hw, const char *path);

/* The memory of one candidate on the rank that needs the most, in bytes, by item, and
 * each stage's total (the peak over the stage's ranks). Fills the switches that memplan
 * does not model from the analytic formulas (see plan.c). stage_total may be NULL; else it
 * has pp entries. hw says what the backend keeps (NULL: the CPU backend, whose plan is
 * memplan's): with flash attention a log-sum-exp per row instead of the probabilities,
 * with native 16-bit kernels no widening workspaces. */
struct plan_mem {
    struct mem_breakdown peak;       /* the largest rank */
    int64_t item_max[MEM_COUNT];     /* each item's largest value over the ranks */
    int     peak_stage;
    int     analytic;                /* bit i: switch i of PLAN_SW_* modelled here */
};
enum { PLAN_SW_RECOMPUTE = 1, PLAN_SW_ZERO = 2, PLAN_SW_OPTIM_STATE = 4 };
void plan_memory(const struct config *cfg, const struct hardware *hw, int dp, int tp, int pp,
                 int ranks_per_node, double runtime_bytes, struct plan_mem *pm,
                 int64_t *stage_total);

/* Whether memplan/model_mem_plan model a switch already (its numbers change with it). */
int plan_switch_built(const struct config *cfg, int sw);

/* At the pre-flight's refusal (memplan_check): print, on rank 0, the cheapest switches
 * that would make cfg fit on grid g where each rank may use limit_per_rank bytes. */
void plan_print_fit_hint(const struct config *cfg, const struct grid *g,
                         int64_t limit_per_rank);

/* `trident plan ...` and `trident calibrate ...` (argv[0] is the command's name). */
int plan_main(int argc, char **argv);
int calibrate_main(int argc, char **argv);

#endif

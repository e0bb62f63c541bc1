/* cpu.c — the CPU fp32 backend table: one instance, read-only. */
#include "cpu.h"

const struct kernels cpu_kernels_f32 = {
    .name          = "cpu-f32",
    .matmul_fwd    = cpu_matmul_fwd,
    .matmul_bwd    = cpu_matmul_bwd,
    .layernorm_fwd = cpu_layernorm_fwd,
    .layernorm_bwd = cpu_layernorm_bwd,
    .attention_fwd = cpu_attention_fwd,
    .attention_bwd = cpu_attention_bwd,
    .gelu_fwd      = cpu_gelu_fwd,
    .gelu_bwd      = cpu_gelu_bwd,
    .residual_fwd  = cpu_residual_fwd,
    .embedding_fwd = cpu_embedding_fwd,
    .embedding_bwd = cpu_embedding_bwd,
    .xent_max      = cpu_xent_max,
    .xent_sumexp   = cpu_xent_sumexp,
    .xent_target   = cpu_xent_target,
    .xent_bwd      = cpu_xent_bwd,
    .adamw         = cpu_adamw,
    .sumsq         = cpu_sumsq,
    .scale         = cpu_scale,
};

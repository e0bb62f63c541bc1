/* bench_train.c — training throughput of one rank vs the hardware's peak and the BLAS.
 *
 * Runs full training steps (forward, backward, AdamW) of a GPT-2-124M-shaped model
 * (L=12, heads=12, C=768, T=256, micro-batch 4, vocab 256 by default) on random tokens,
 * measures the CPU's peak fp32 FLOP/s with the FMA probe (kernels_peak_flops), and in the
 * same run times cblas_sgemm on exactly the GEMM shapes and transposes the model uses.
 * Prints tokens/s and ms/step of the median step, the model's GFLOP/s (6 per matmul
 * parameter + causal attention, model_flops_per_token), the peak and sgemm rates, MFU
 * (model rate / peak) and BLAS efficiency (model rate / sgemm), and where the time goes.
 *
 *   bin/bench_train [--n_layer=12 --n_embd=768 ... any config key] [--steps=N]
 *                   [--precision=fp32|bf16|fp16]
 *
 * (The sgemm reference is fp32 whatever the precision: on the CPU backend 16-bit
 * operands are widened to fp32 for the GEMMs, kernels.h.)
 *
 * --device=cuda (bin-cuda/bench_train, the CUDA build): the model runs on the CUDA
 * backend (GPU 0). The reference GEMM rate is then cuBLAS(Lt)'s own, measured in the same
 * run through the backend's matmul kernels on the model's shapes and dtype, timed with
 * backend events; the peak is the GPU's dense peak for the precision (fp32: CUDA cores;
 * bf16/fp16: tensor cores) from the hardware file (inputs/hardware/NAME.hw) its name
 * maps to (GPU_HW below), or --hardware=FILE, or --peak_tflops=N; the output says which. Step times
 * are backend events around forward, backward and optimizer; the table gives the median.
 * Without a CUDA build or a GPU it prints one line ending in "skipped" and exits 0.
 *   bin-cuda/bench_train --device=cuda [--precision=bf16] [--peak_tflops=N | --hardware=F]
 *   bin/bench_train --hw_for_gpu="NVIDIA H100 80GB HBM3"   (which file and peaks; no run)
 *
 * Like trident, it replaces OpenBLAS' kernels by faster ones the CPU runs (re-exec with
 * OPENBLAS_CORETYPE) unless OPENBLAS_CORETYPE is set: set it to see a slow BLAS in MFU.
 */
#include <cblas.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas_core.h"
#include "convert.h"

#include "common.h"
#include "config.h"
#include "grid.h"
#include "kernels.h"
#include "model.h"
#include "optim.h"
#include "plan.h"
#include "rng.h"
#ifdef TR_HAVE_CUDA
#include "backend_impl.h"
#include "cuda/device_info.h"
#endif

/* one CPU backend for the whole test program (it holds the models' buffers) */
static struct backend *cpu_backend(void) {
    static struct backend *be;
    if (!be) be = backend_init(KDEV_CPU, 0, NULL, 0);
    return be;
}

/* Seconds per call of one sgemm shape (best of 3 to 8 repetitions, as many as fit in
 * 0.3 s after the first: the LM-head shapes of a 50257 vocabulary take 0.1-1 s each). */
static double time_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,
                         float beta) {
    float *A = tr_malloc(sizeof(float) * (size_t)M * K);
    float *B = tr_malloc(sizeof(float) * (size_t)K * N);
    float *C = tr_malloc(sizeof(float) * (size_t)M * N);
    for (long i = 0; i < (long)M * K; i++) A[i] = (float)(i % 7) * 0.01f;
    for (long i = 0; i < (long)K * N; i++) B[i] = (float)(i % 5) * 0.01f;
    memset(C, 0, sizeof(float) * (size_t)M * N);
    int lda = ta == CblasNoTrans ? K : M, ldb = tb == CblasNoTrans ? N : K;
    double best = 1e30;
    double start = tr_now();
    for (int r = 0; r < 8 && (r < 4 || tr_now() - start < 0.3); r++) {
        double t0 = tr_now();
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, N);
        double dt = tr_now() - t0;
        if (r > 0 && dt < best) best = dt; /* the first call warms caches and threads */
    }
    tr_free(A);
    tr_free(B);
    tr_free(C);
    return best;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* trident's choice of OpenBLAS kernels (src/main.c), so the bench measures what it runs */
static void fix_blas_core(char **argv) {
    int avx512 = 0, avx2 = 0;
    blas_cpu_flags(&avx512, &avx2);
    const char *better = blas_better_coretype(kernels_blas_corename(), avx512, avx2);
    const char *set = getenv("OPENBLAS_CORETYPE");
    if (!better || (set && *set) || getenv("TRIDENT_BLAS_REEXEC")) return;
    setenv("OPENBLAS_CORETYPE", better, 1);
    setenv("TRIDENT_BLAS_REEXEC", kernels_blas_corename(), 1);
    execv("/proc/self/exe", argv);
}

/* --- the CUDA path ------------------------------------------------------------------ */

/* The hardware file of each GPU by the name the driver gives it (cudaGetDeviceProperties,
 * as nvidia-smi -L prints it), matched exactly: a PCIe, NVL or 40 GB variant has other
 * peaks or memory than its SXM sibling. The PCIe A100s have the SXM parts' datasheet
 * peaks (FP32 19.5, BF16 312 TFLOP/s dense), and only the peaks are read here. A GPU not
 * listed gets no MFU unless --peak_tflops or --hardware says what its peak is. */
static const struct { const char *gpu, *file; } GPU_HW[] = {
    {"NVIDIA H100 80GB HBM3", "inputs/hardware/h100-sxm-8x.hw"},
    {"NVIDIA H100 PCIe", "inputs/hardware/h100-pcie-8x.hw"},
    {"NVIDIA H200", "inputs/hardware/h200-sxm-8x.hw"},
    {"NVIDIA A100-SXM4-80GB", "inputs/hardware/a100-80gb-8x.hw"},
    {"NVIDIA A100 80GB PCIe", "inputs/hardware/a100-80gb-8x.hw"},
    {"NVIDIA A100-SXM4-40GB", "inputs/hardware/a100-40gb-8x.hw"},
    {"NVIDIA A100-PCIE-40GB", "inputs/hardware/a100-40gb-8x.hw"},
};

static const char *hw_file_for_gpu(const char *gpu) {
    for (size_t i = 0; i < sizeof GPU_HW / sizeof GPU_HW[0]; i++)
        if (strcmp(GPU_HW[i].gpu, gpu) == 0) return GPU_HW[i].file;
    return NULL;
}

#ifdef TR_HAVE_CUDA
static enum plan_dtype plan_dtype_of(enum kdtype dt) {
    return dt == KDT_BF16 ? PD_BF16 : dt == KDT_F16 ? PD_FP16 : PD_FP32;
}

/* The GPU's dense peak FLOP/s for the matmuls of precision dt (fp32: CUDA cores; bf16,
 * fp16: tensor cores), and in src where it comes from; 0 when nothing says. */
static double gpu_peak(const char *gpu, enum kdtype dt, const char *peak_arg,
                       const char *hw_arg, char *src, size_t src_len) {
    if (peak_arg) {
        char *end;
        double v = strtod(peak_arg, &end);
        if (end == peak_arg || *end || !(v > 0) || v > 1e6)
            tr_fail(TR_EXIT_USAGE, "write --peak_tflops=N, the GPU's dense TFLOP/s for the "
                    "precision (e.g. 989 for an H100 SXM in bf16, 67 in fp32)",
                    "--peak_tflops='%s' is not a positive number of TFLOP/s", peak_arg);
        snprintf(src, src_len, "--peak_tflops=%s (given)", peak_arg);
        return v * 1e12;
    }
    const char *file = hw_arg ? hw_arg : hw_file_for_gpu(gpu);
    if (!file) {
        snprintf(src, src_len, "no inputs/hardware file for '%s' (give --peak_tflops=N or "
                 "--hardware=FILE)", gpu);
        return 0;
    }
    struct hardware hw;
    plan_hardware_load(&hw, file);
    snprintf(src, src_len, "%s: %s%s", file, hw.name, hw_arg ? " (--hardware given)" : "");
    return hw.peak[plan_dtype_of(dt)];
}
#endif

/* --hw_for_gpu=NAME: the file and peaks the CUDA path would use for a GPU of that name,
 * without a GPU (so the CPU build can check the table). 0 when known, 1 when not. */
static int print_hw_for_gpu(const char *gpu) {
    const char *file = hw_file_for_gpu(gpu);
    if (!file) {
        printf("GPU '%s': no hardware file; known GPUs:", gpu);
        for (size_t i = 0; i < sizeof GPU_HW / sizeof GPU_HW[0]; i++)
            printf("%s '%s'", i ? "," : "", GPU_HW[i].gpu);
        printf("\nHINT: give --peak_tflops=N or --hardware=FILE for it\n");
        return 1;
    }
    struct hardware hw;
    plan_hardware_load(&hw, file);
    printf("GPU '%s': %s (%s): dense peak fp32 %.1f, bf16 %.1f, fp16 %.1f TFLOP/s\n", gpu,
           file, hw.name, hw.peak[PD_FP32] / 1e12, hw.peak[PD_BF16] / 1e12,
           hw.peak[PD_FP16] / 1e12);
    return 0;
}

#ifdef TR_HAVE_CUDA
/* n elements of dtype dt at device address dst, filled with values in [-1, 1] (not zeros:
 * a GPU multiplying zeros draws less power and may clock higher than on real data),
 * copied in chunks so that the LM head's operands need no host copy of their size. */
static void fill_device(struct backend *be, void *dst, enum kdtype dt, int64_t n) {
    enum { CHUNK = 1 << 20 };
    float *f = tr_malloc(sizeof(float) * CHUNK);
    uint16_t *h = tr_malloc(sizeof(uint16_t) * CHUNK);
    for (int i = 0; i < CHUNK; i++)
        f[i] = (float)((int)(((uint32_t)i * 2654435761u) >> 16) % 2001 - 1000) * 1e-3f;
    if (dt == KDT_BF16) cpu_f32_to_bf16(h, f, CHUNK);
    if (dt == KDT_F16) cpu_f32_to_f16(h, f, CHUNK);
    const void *src = dt == KDT_F32 ? (const void *)f : (const void *)h;
    const size_t es = kdtype_size(dt);
    for (int64_t at = 0; at < n; at += CHUNK) {
        int64_t len = n - at < CHUNK ? n - at : CHUNK;
        backend_copy_h2d(be, (char *)dst + (size_t)at * es, src, (size_t)len * es);
    }
    tr_free(f);
    tr_free(h);
}

enum gemm_op { GEMM_FWD, GEMM_DINP, GEMM_DW };

/* Seconds of one call of the backend's matmul kernel for op on one shape: the best of 7
 * calls after a first one (which makes the cuBLASLt plan of the shape), each timed with
 * backend events. The best is the fair reference: anything else running on the GPU can
 * only make cuBLAS look slower, which would flatter the model's efficiency against it. */
static double time_gemm(struct backend *be, enum gemm_op op, struct tensor inp, struct tensor w,
                        struct tensor out, struct tensor dinp, struct tensor dw) {
    const struct kernels *k = backend_kernels(be);
    struct backend_event *e0 = backend_event_new(be), *e1 = backend_event_new(be);
    double best = 1e30;
    for (int r = 0; r < 8; r++) {
        backend_event_record(be, e0);
        switch (op) {
        case GEMM_FWD:  k->matmul_fwd(be, out, inp, w, TENSOR_NONE); break;
        case GEMM_DINP: k->matmul_bwd(be, dinp, TENSOR_NONE, TENSOR_NONE, out, inp, w); break;
        case GEMM_DW:   k->matmul_bwd(be, TENSOR_NONE, dw, TENSOR_NONE, out, inp, w); break;
        }
        backend_event_record(be, e1);
        double dt = backend_event_elapsed(be, e0, e1);
        if (r > 0 && dt < best) best = dt;
    }
    backend_event_free(be, e0);
    backend_event_free(be, e1);
    return best;
}
#endif

/* --device=cuda: the model on GPU 0 against cuBLAS's rate and the GPU's peak. */
static int bench_cuda(const struct config *cfg, const char *peak_arg, const char *hw_arg) {
#ifndef TR_HAVE_CUDA
    (void)cfg;
    (void)peak_arg;
    (void)hw_arg;
    printf("bench_train: --device=cuda skipped: this is the CPU build (the CUDA path is "
           "bin-cuda/bench_train, from make BACKEND=cuda tests)\n");
    return 0;
#else
    config_validate(cfg);  /* refuses what the CUDA kernels cannot run, before any GPU work */
    char err[1024];
    struct backend *be = backend_init(KDEV_CUDA, 0, err, sizeof err);
    if (!be) {
        char *nl = strchr(err, '\n');
        if (nl) *nl = '\0';
        printf("bench_train: --device=cuda skipped: %s\n", err);
        return 0;
    }
    struct cuda_device_info di;
    if (cuda_device_describe(be, &di, err, sizeof err)) TR_ABORT("%s", err);
    struct grid g;
    grid_init(&g, cfg);
    struct model m;
    model_init(&m, cfg, &g, be, 1);
    model_init_weights(&m, 1);
    struct optim o;
    optim_init(&o, &m);

    const int B = cfg->micro_batch, T = cfg->seq_len, C = cfg->n_embd, Vp = m.Vp;
    const int BT = B * T;
    const enum kdtype dt = m.dt;
    char src[512];
    double peak = gpu_peak(di.name, dt, peak_arg, hw_arg, src, sizeof src);
    printf("bench_train: L=%d heads=%d C=%d T=%d micro-batch=%d vocab=%d (padded %d), "
           "%.1fM parameters, precision %s, device cuda %d: %s (sm_%d%d, %d SMs, %.1f GiB)\n",
           cfg->n_layer, cfg->n_head, C, T, B, cfg->vocab_size, Vp, m.n_logical / 1e6,
           kdtype_name(dt), di.device, di.name, di.cc_major, di.cc_minor, di.n_sm,
           di.mem_bytes / (1024.0 * 1024.0 * 1024.0));
    if (peak > 0)
        printf("peak: %.1f TFLOP/s %s dense (%s), from %s\n", peak / 1e12, kdtype_name(dt),
               dt == KDT_F32 ? "CUDA cores" : "tensor cores", src);
    else
        printf("peak: unknown, MFU not computed: %s\n", src);
    const char *tf32 = getenv("TRIDENT_CUDA_TF32");
    if (dt == KDT_F32 && tf32 && strcmp(tf32, "1") == 0)
        printf("note: TRIDENT_CUDA_TF32=1 runs the fp32 GEMMs on TF32 tensor cores; the peak "
               "above is still the fp32 CUDA-core one\n");

    /* --- training steps, timed with backend events --------------------------------- */
    if (m.slots[0].tokens.dt != KDT_I32 || tensor_numel(m.slots[0].tokens) < BT ||
        tensor_numel(m.slots[0].targets) < BT)
        TR_ABORT("bench_train needs int32 token ids for %d tokens in the model's slot 0", BT);
    int32_t *tokens = tr_malloc(sizeof(int32_t) * (size_t)BT);
    int32_t *targets = tr_malloc(sizeof(int32_t) * (size_t)BT);
    struct backend_event *e0 = backend_event_new(be), *e1 = backend_event_new(be),
                         *e2 = backend_event_new(be);
    double dloss = 1.0 / BT;
    double flops_step = model_flops_per_token(cfg) * BT;
    int steps = cfg->steps < 2 ? 2 : cfg->steps;
    double *step_t = tr_calloc((size_t)steps, sizeof(double));
    double *step_opt = tr_calloc((size_t)steps, sizeof(double));
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < BT; i++) {
            tokens[i] = (int32_t)rng_below(rng_key3(7, (uint64_t)s, (uint64_t)i),
                                           (uint64_t)cfg->vocab_size);
            targets[i] = (int32_t)rng_below(rng_key3(8, (uint64_t)s, (uint64_t)i),
                                            (uint64_t)cfg->vocab_size);
        }
        backend_copy_h2d(be, m.slots[0].tokens.data, tokens, sizeof(int32_t) * (size_t)BT);
        backend_copy_h2d(be, m.slots[0].targets.data, targets, sizeof(int32_t) * (size_t)BT);
        model_timers_reset(&m);
        backend_event_record(be, e0);
        model_zero_grads(&m);
        double loss = model_forward(&m, 0, B, T, (float)dloss) / BT;
        model_backward(&m, 0, B, T);
        backend_event_record(be, e1);
        double norm = optim_grad_norm(&m);
        optim_step(&o, &m, 1e-4f, norm > 1.0 ? (float)(1.0 / norm) : 1.0f);
        backend_event_record(be, e2);
        double t = backend_event_elapsed(be, e0, e2);  /* waits for the step's last kernel */
        step_t[s] = t;
        step_opt[s] = backend_event_elapsed(be, e1, e2);
        printf("  step %d: loss %.4f, %.1f ms, %.0f tokens/s\n", s + 1, loss, t * 1e3, BT / t);
    }
    backend_event_free(be, e0);
    backend_event_free(be, e1);
    backend_event_free(be, e2);
    /* the median of the steps after the first (which warms up: cuBLASLt plans, workspaces) */
    double *sorted = tr_calloc((size_t)steps, sizeof(double));
    memcpy(sorted, step_t + 1, sizeof(double) * (steps - 1));
    qsort(sorted, steps - 1, sizeof(double), cmp_double);
    double med_t = sorted[(steps - 2) / 2], fastest = sorted[0];
    int med = 1;
    while (med < steps - 1 && step_t[med] != med_t) med++;
    /* the model's own device memory, read before the GEMM reference allocates its operands */
    struct backend_mem mem;
    backend_mem_stats(be, &mem);

    /* --- cuBLAS's rate on the model's GEMMs, same dtype, after the steps -------------- */
    /* (N, K) of each linear layer: forward out[BT][N] = inp[BT][K] @ w[N][K]^T, backward
     * dinp = dout @ w and dw += dout^T @ inp (fp32); the LM head once, the others per
     * layer. Without bias, so the reference is the bare GEMM. */
    struct { int N, K, per_layer; } shapes[] = {
        {3 * C, C, 1}, {C, C, 1}, {4 * C, C, 1}, {C, 4 * C, 1}, {Vp, C, 0},
    };
    const size_t es = kdtype_size(dt);
    double gemm_flops = 0, gemm_time = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t N = shapes[i].N, K = shapes[i].K;
        struct tensor inp = tensor_2d(backend_alloc(be, (size_t)BT * K * es), dt, BT, K);
        struct tensor w = tensor_2d(backend_alloc(be, (size_t)N * K * es), dt, N, K);
        struct tensor out = tensor_2d(backend_alloc(be, (size_t)BT * N * es), dt, BT, N);
        struct tensor dinp = tensor_2d(backend_alloc(be, (size_t)BT * K * es), dt, BT, K);
        struct tensor dw = tensor_2d(backend_alloc(be, sizeof(float) * (size_t)N * K), KDT_F32,
                                     N, K);
        fill_device(be, inp.data, dt, tensor_numel(inp));
        fill_device(be, w.data, dt, tensor_numel(w));
        fill_device(be, out.data, dt, tensor_numel(out));  /* also the backward's dout */
        backend_memset(be, dw.data, 0, tensor_bytes(dw));
        double t = time_gemm(be, GEMM_FWD, inp, w, out, dinp, dw) +
                   time_gemm(be, GEMM_DINP, inp, w, out, dinp, dw) +
                   time_gemm(be, GEMM_DW, inp, w, out, dinp, dw);
        double reps = shapes[i].per_layer ? cfg->n_layer : 1;
        gemm_flops += reps * 3 * 2.0 * (double)BT * N * K;
        gemm_time += reps * t;
        backend_synchronize(be);
        backend_free_mem(be, inp.data);
        backend_free_mem(be, w.data);
        backend_free_mem(be, out.data);
        backend_free_mem(be, dinp.data);
        backend_free_mem(be, dw.data);
    }
    double cublas_rate = gemm_flops / gemm_time;
    struct model_eff e = model_efficiency(flops_step, med_t, 1, peak / 1e9, cublas_rate / 1e9);
    double dev_mib = (double)mem.peak / (1024.0 * 1024.0);

    char label[64];
    printf("\n%-42s %12s\n", "", "value");
    printf("%-42s %12.0f\n", "tokens/s (median step)", BT / med_t);
    printf("%-42s %12.1f\n", "ms/step, median step", med_t * 1e3);
    printf("%-42s %12.1f\n", "ms/step, fastest step", fastest * 1e3);
    printf("%-42s %12.1f\n", "optimizer ms, median step", step_opt[med] * 1e3);
    snprintf(label, sizeof label, "peak GFLOP/s (%s dense)", kdtype_name(dt));
    if (peak > 0) printf("%-42s %12.1f\n", label, peak / 1e9);
    else printf("%-42s %12s\n", label, "unknown");
    snprintf(label, sizeof label, "cuBLAS GFLOP/s on the model shapes (%s)", kdtype_name(dt));
    printf("%-42s %12.1f\n", label, cublas_rate / 1e9);
    printf("%-42s %12.1f\n", "model GFLOP/s (6N + causal attention)", e.gflops);
    if (peak > 0) printf("%-42s %11.1f%%\n", "MFU = model / peak", 100.0 * e.mfu);
    else printf("%-42s %12s\n", "MFU = model / peak", "n/a");
    printf("%-42s %11.1f%%\n", "cuBLAS efficiency = model / cuBLAS", 100.0 * e.blas_eff);
    printf("%-42s %12.1f\n", "device peak MiB (backend allocations)", dev_mib);
    printf("(per-kernel times are not shown: the kernels are queued on the GPU's stream, so\n"
           " host clocks around them measure launches, not work)\n");
    /* one line for tests/bench.sh */
    printf("CUDA_BENCH precision=%s tokens_s=%.1f ms_step=%.3f model_gflops=%.1f "
           "peak_gflops=%.1f cublas_gflops=%.1f mfu=%.4f cublas_eff=%.4f device_peak_mib=%.1f "
           "flops_per_token=%.6g\n",
           kdtype_name(dt), BT / med_t, med_t * 1e3, e.gflops, peak / 1e9, cublas_rate / 1e9,
           peak > 0 ? e.mfu : 0.0, e.blas_eff, dev_mib, model_flops_per_token(cfg));
    tr_free(tokens);
    tr_free(targets);
    tr_free(step_t);
    tr_free(step_opt);
    tr_free(sorted);
    optim_free(&o);
    model_free(&m);
    grid_free(&g);
    backend_free(be);
    return 0;
#endif
}

int main(int argc, char **argv) {
    fix_blas_core(argv);
    MPI_Init(&argc, &argv);
    struct config cfg;
    config_defaults(&cfg);
    const char *defaults[][2] = {{"n_layer", "12"}, {"n_head", "12"}, {"n_embd", "768"},
                                 {"seq_len", "256"}, {"block_size", "1024"},
                                 {"vocab_size", "256"}, {"micro_batch", "4"},
                                 {"grad_accum", "1"}, {"steps", "6"}, {"tp", "1"},
                                 {"pp", "1"}, {"dp", "1"}};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        config_set(&cfg, defaults[i][0], defaults[i][1], "bench default");
    /* options of the bench itself, not config keys (the CUDA path's peak; the table) */
    static const char *const extra[] = {"peak_tflops", "hardware", "hw_for_gpu", NULL};
    const char *extra_v[3];
    config_parse_args(&cfg, argc - 1, argv + 1, extra, extra_v);
    if (extra_v[2] || strcmp(cfg.device, "cuda") == 0) {
        int rc = extra_v[2] ? print_hw_for_gpu(extra_v[2])
                            : bench_cuda(&cfg, extra_v[0], extra_v[1]);
        MPI_Finalize();
        return rc;
    }
    if (extra_v[0] || extra_v[1])
        tr_fail(TR_EXIT_USAGE, "leave them out: the CPU path measures its peak with the FMA "
                "probe", "--peak_tflops and --hardware are for --device=cuda");
    config_validate(&cfg);
    struct grid g;
    grid_init(&g, &cfg);
    struct model m;
    model_init(&m, &cfg, &g, cpu_backend(), 1);
    model_init_weights(&m, 1);
    struct optim o;
    optim_init(&o, &m);

    const int B = cfg.micro_batch, T = cfg.seq_len, C = cfg.n_embd, Vp = m.Vp;
    const int BT = B * T;
    printf("bench_train: L=%d heads=%d C=%d T=%d micro-batch=%d vocab=%d (padded %d), "
           "%.1fM parameters, precision %s, %d threads, BLAS core '%s'\n",
           cfg.n_layer, cfg.n_head, C, T, B, cfg.vocab_size, Vp, m.n_logical / 1e6,
           kdtype_name(m.dt), kernels_threads(), kernels_blas_corename());

    /* --- the machine's sgemm rate on the model's shapes ----------------------------- */
    struct { CBLAS_TRANSPOSE ta, tb; int M, N, K; float beta; int per_layer; } shapes[] = {
        /* forward: out[BT][N] = inp[BT][K] @ W[N][K]^T */
        {CblasNoTrans, CblasTrans, BT, 3 * C, C, 0, 1},
        {CblasNoTrans, CblasTrans, BT, C, C, 0, 1},
        {CblasNoTrans, CblasTrans, BT, 4 * C, C, 0, 1},
        {CblasNoTrans, CblasTrans, BT, C, 4 * C, 0, 1},
        {CblasNoTrans, CblasTrans, BT, Vp, C, 0, 0},
        /* backward, input: dinp[BT][K] = dout[BT][N] @ W[N][K] */
        {CblasNoTrans, CblasNoTrans, BT, C, 3 * C, 0, 1},
        {CblasNoTrans, CblasNoTrans, BT, C, C, 0, 1},
        {CblasNoTrans, CblasNoTrans, BT, C, 4 * C, 0, 1},
        {CblasNoTrans, CblasNoTrans, BT, 4 * C, C, 0, 1},
        {CblasNoTrans, CblasNoTrans, BT, C, Vp, 0, 0},
        /* backward, weight: dW[N][K] += dout^T[N][BT] @ inp[BT][K] */
        {CblasTrans, CblasNoTrans, 3 * C, C, BT, 1, 1},
        {CblasTrans, CblasNoTrans, C, C, BT, 1, 1},
        {CblasTrans, CblasNoTrans, 4 * C, C, BT, 1, 1},
        {CblasTrans, CblasNoTrans, C, 4 * C, BT, 1, 1},
        {CblasTrans, CblasNoTrans, Vp, C, BT, 1, 0},
    };
    /* Timed before and after the training steps, keeping each shape's best: a busy
     * moment on a shared machine can only make the BLAS look slower, which would flatter
     * the ratio, so the best observed sgemm rate is the fair reference. The same for the
     * peak: the higher of two probes (each the best of 7 runs). */
    const char *isa = "?";
    double peak = kernels_peak_flops(&isa);
    enum { N_SHAPES = sizeof shapes / sizeof shapes[0] };
    double shape_best[N_SHAPES];
    for (int i = 0; i < N_SHAPES; i++)
        shape_best[i] = time_sgemm(shapes[i].ta, shapes[i].tb, shapes[i].M, shapes[i].N,
                                   shapes[i].K, shapes[i].beta);

    /* --- training steps ---------------------------------------------------------- */
    double dloss = 1.0 / BT;
    double flops_step = model_flops_per_token(&cfg) * BT;
    int steps = cfg.steps < 2 ? 2 : cfg.steps;
    double *step_t = tr_calloc((size_t)steps, sizeof(double));
    double *step_opt = tr_calloc((size_t)steps, sizeof(double));
    double(*step_kt)[KT_COUNT] = tr_calloc((size_t)steps, sizeof *step_kt);
    for (int s = 0; s < steps; s++) {
        /* the CPU backend's memory is the host's: the bench writes the token ids in place */
        int32_t *tokens = backend_host_view(m.be, m.slots[0].tokens.data);
        int32_t *targets = backend_host_view(m.be, m.slots[0].targets.data);
        if (!tokens || !targets || m.slots[0].tokens.dt != KDT_I32)
            TR_ABORT("bench_train needs int32 token ids in host memory");
        for (int i = 0; i < BT; i++) {
            tokens[i] = (int32_t)rng_below(rng_key3(7, (uint64_t)s, (uint64_t)i),
                                           (uint64_t)cfg.vocab_size);
            targets[i] = (int32_t)rng_below(rng_key3(8, (uint64_t)s, (uint64_t)i),
                                            (uint64_t)cfg.vocab_size);
        }
        model_timers_reset(&m);
        double t0 = tr_now();
        model_zero_grads(&m);
        double loss = model_forward(&m, 0, B, T, (float)dloss) / BT;
        model_backward(&m, 0, B, T);
        double t1 = tr_now();
        double norm = optim_grad_norm(&m);
        optim_step(&o, &m, 1e-4f, norm > 1.0 ? (float)(1.0 / norm) : 1.0f);
        double t2 = tr_now();
        double dt = t2 - t0;
        printf("  step %d: loss %.4f, %.1f ms, %.0f tokens/s\n", s + 1, loss, dt * 1e3, BT / dt);
        step_t[s] = dt;
        step_opt[s] = t2 - t1;
        memcpy(step_kt[s], m.t_kernel, sizeof step_kt[s]);
    }
    /* the median of the steps after the first (which warms up), and its breakdown */
    double *sorted = tr_calloc((size_t)steps, sizeof(double));
    memcpy(sorted, step_t + 1, sizeof(double) * (steps - 1));
    qsort(sorted, steps - 1, sizeof(double), cmp_double);
    double best = sorted[(steps - 2) / 2], fastest = sorted[0];
    int med = 1;
    while (med < steps - 1 && step_t[med] != best) med++;
    double kernels_best[KT_COUNT], opt_best = step_opt[med];
    memcpy(kernels_best, step_kt[med], sizeof kernels_best);
    {
        const char *isa2 = isa;
        double p2 = kernels_peak_flops(&isa2);
        if (p2 > peak) { peak = p2; isa = isa2; }
    }
    double gemm_flops = 0, gemm_time = 0;
    for (int i = 0; i < N_SHAPES; i++) {
        double t = time_sgemm(shapes[i].ta, shapes[i].tb, shapes[i].M, shapes[i].N,
                              shapes[i].K, shapes[i].beta);
        if (t < shape_best[i]) shape_best[i] = t;
        double reps = shapes[i].per_layer ? cfg.n_layer : 1;
        gemm_flops += reps * 2.0 * shapes[i].M * shapes[i].N * shapes[i].K;
        gemm_time += reps * shape_best[i];
    }
    double sgemm_rate = gemm_flops / gemm_time;
    struct model_eff e = model_efficiency(flops_step, best, 1, peak / 1e9, sgemm_rate / 1e9);
    printf("\n%-42s %12s\n", "", "value");
    printf("%-42s %12.0f\n", "tokens/s (median step)", BT / best);
    printf("%-42s %12.1f\n", "ms/step, median step", best * 1e3);
    printf("%-42s %12.1f\n", "ms/step, fastest step", fastest * 1e3);
    printf("%-42s %12.1f\n", "peak GFLOP/s (FMA probe)", peak / 1e9);
    printf("%-42s %12.1f\n", "sgemm GFLOP/s on the model shapes", sgemm_rate / 1e9);
    printf("%-42s %12.1f\n", "model GFLOP/s (6N + causal attention)", e.gflops);
    printf("%-42s %11.1f%%\n", "MFU = model / peak", 100.0 * e.mfu);
    printf("%-42s %11.1f%%\n", "BLAS efficiency = model / sgemm (>= 50%)", 100.0 * e.blas_eff);
    printf("%-42s %12s\n", "BLAS core", kernels_blas_corename());
    printf("%-42s %12s\n", "probe ISA", isa);
    printf("\nwhere the time goes (median step):\n");
    printf("  %-18s %10s %7s\n", "kernel", "ms", "share");
    double accounted = 0;
    for (int i = 0; i < KT_COUNT; i++) {
        printf("  %-18s %10.2f %6.1f%%\n", KTIMER_NAMES[i], kernels_best[i] * 1e3,
               100.0 * kernels_best[i] / best);
        accounted += kernels_best[i];
    }
    printf("  %-18s %10.2f %6.1f%%\n", "optimizer", opt_best * 1e3, 100.0 * opt_best / best);
    accounted += opt_best;
    printf("  %-18s %10.2f %6.1f%%\n", "other", (best - accounted) * 1e3,
           100.0 * (best - accounted) / best);
    printf("  (matmul alone: %.1f GFLOP/s)\n",
           6.0 * (cfg.n_layer * 12.0 * C * C + (double)Vp * C) * BT /
               (kernels_best[KT_MATMUL_F] + kernels_best[KT_MATMUL_B]) / 1e9);
    tr_free(step_t);
    tr_free(step_opt);
    tr_free(step_kt);
    tr_free(sorted);
    optim_free(&o);
    model_free(&m);
    grid_free(&g);
    MPI_Finalize();
    return 0;
}

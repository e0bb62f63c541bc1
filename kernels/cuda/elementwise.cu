/* elementwise.cu — element-wise kernels and whole-buffer reductions: residual, convert,
 * scale, accumulate, the non-finite count and the sum of squares (the gradient norm).
 *
 * Arithmetic is fp32 on values widened as they are loaded, rounded to nearest even once
 * when stored (dtype.cuh), as the CPU backend's widen-compute-narrow. This file is built
 * with -fmad=false (Makefile): a multiply and an add stay two roundings, as in the CPU
 * reference, so the results agree bit for bit where the operations are the same.
 * The sum of squares is deterministic: a grid that depends only on the element count,
 * each block's partial sum (double) in a fixed tree order, the partials summed in order.
 */
#include "cuda_ctx.h"
#include "elementwise_k.cuh"

enum { WS_RED = 0 };  /* workspace slot of the reductions */

static unsigned grid_for(int64_t n)
{
    int64_t g = (n + EW_THREADS - 1) / EW_THREADS;
    return (unsigned)(g < 1 ? 1 : g > EW_MAX_BLOCKS ? EW_MAX_BLOCKS : g);
}

static int is_act(struct tensor t) { return t.dt == KDT_F32 || kdtype_is_16bit(t.dt); }
/* ---------------------------------------------------------------------------------- */
/* the table's entries                                                                  */

extern "C" void cuda_residual_fwd(struct backend *b, struct tensor out, struct tensor a,
                                  struct tensor c)
{
    const char *kn = "residual_fwd";
    CUDA_NEED(a.data && is_act(a), kn, "a", a);
    CUDA_NEED(c.data && is_act(c) && tensor_numel(c) == tensor_numel(a), kn, "c", c);
    CUDA_NEED(out.data && is_act(out) && tensor_numel(out) == tensor_numel(a), kn, "out", out);
    const int64_t n = tensor_numel(a);
    if (!n) return;
    residual_kernel<<<grid_for(n), EW_THREADS, 0, cuda_stream(b)>>>(out.data, out.dt, a.data,
                                                                    a.dt, c.data, c.dt, n);
    CUDA_CHECK_LAUNCH("residual_kernel");
}

extern "C" void cuda_convert(struct backend *b, struct tensor dst, struct tensor src)
{
    const char *kn = "convert";
    CUDA_NEED(src.data && is_act(src), kn, "src", src);
    CUDA_NEED(dst.data && is_act(dst) && tensor_numel(dst) == tensor_numel(src), kn, "dst", dst);
    const int64_t n = tensor_numel(src);
    if (!n) return;
    if (dst.dt == src.dt) {
        if (dst.data != src.data)
            CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, tensor_bytes(src),
                                       cudaMemcpyDeviceToDevice, cuda_stream(b)));
        return;
    }
    /* bf16 <-> fp16 goes through fp32, which holds either exactly: one rounding */
    convert_kernel<<<grid_for(n), EW_THREADS, 0, cuda_stream(b)>>>(dst.data, dst.dt, src.data,
                                                                   src.dt, n);
    CUDA_CHECK_LAUNCH("convert_kernel");
}

extern "C" void cuda_scale(struct backend *b, struct tensor x, float s)
{
    if (!x.data || !tensor_numel(x)) return;
    CUDA_NEED(is_act(x), "scale", "x", x);
    const int64_t n = tensor_numel(x);
    scale_kernel<<<grid_for(n), EW_THREADS, 0, cuda_stream(b)>>>(x.data, x.dt, s, n);
    CUDA_CHECK_LAUNCH("scale_kernel");
}

extern "C" void cuda_accumulate(struct backend *b, struct tensor dst, struct tensor src)
{
    const char *kn = "accumulate";
    CUDA_NEED(dst.data && dst.dt == KDT_F32, kn, "dst", dst);
    CUDA_NEED(src.data && is_act(src) && tensor_numel(src) == tensor_numel(dst), kn, "src", src);
    const int64_t n = tensor_numel(dst);
    if (!n) return;
    accumulate_kernel<<<grid_for(n), EW_THREADS, 0, cuda_stream(b)>>>((float *)dst.data, src.data,
                                                                      src.dt, n);
    CUDA_CHECK_LAUNCH("accumulate_kernel");
}

extern "C" double cuda_sumsq(struct backend *b, struct tensor x)
{
    if (!x.data || !tensor_numel(x)) return 0.0;
    CUDA_NEED(is_act(x), "sumsq", "x", x);
    const int64_t n = tensor_numel(x);
    struct cuda_ctx *c = cuda_ctx_of(b);
    int64_t g = (n + EW_THREADS - 1) / EW_THREADS;
    const unsigned blocks = (unsigned)(g > SUMSQ_BLOCKS ? SUMSQ_BLOCKS : g);
    double *part = (double *)backend_workspace(b, WS_RED, sizeof(double) * (SUMSQ_BLOCKS + 1));
    sumsq_partial_kernel<<<blocks, EW_THREADS, 0, c->stream>>>(part + 1, x.data, x.dt, n);
    CUDA_CHECK_LAUNCH("sumsq_partial_kernel");
    sum_partials_f64<<<1, 1024, 0, c->stream>>>(part, part + 1, blocks);
    CUDA_CHECK_LAUNCH("sum_partials_f64");
    CUDA_CHECK(cudaMemcpyAsync(c->host, part, sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return *(const double *)c->host;
}

extern "C" int64_t cuda_count_nonfinite(struct backend *b, struct tensor x)
{
    if (!x.data || !tensor_numel(x)) return 0;
    CUDA_NEED(is_act(x), "count_nonfinite", "x", x);
    const int64_t n = tensor_numel(x);
    struct cuda_ctx *c = cuda_ctx_of(b);
    unsigned long long *count =
        (unsigned long long *)backend_workspace(b, WS_RED, sizeof(unsigned long long));
    CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof *count, c->stream));
    nonfinite_kernel<<<grid_for(n), EW_THREADS, 0, c->stream>>>(count, x.data, x.dt, n);
    CUDA_CHECK_LAUNCH("nonfinite_kernel");
    CUDA_CHECK(cudaMemcpyAsync(c->host, count, sizeof *count, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return (int64_t) * (const unsigned long long *)c->host;
}

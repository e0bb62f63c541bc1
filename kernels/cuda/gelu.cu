/* gelu.cu — GELU, tanh form, element by element (grid-stride loops), through the same
 * identity as the CPU reference: 0.5 (1 + tanh(u)) = sigmoid(2u). */
#include <math.h>

#include "cuda_common.h"
#include "dtype.cuh"
#include "launch.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

static __device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
gelu_fwd_kernel(void *out, enum kdtype out_dt, const void *inp, enum kdtype inp_dt, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float x = ld_act(inp, inp_dt, i);
        const float u = GELU_K * (x + GELU_A * x * x * x);
        st_act(out, out_dt, i, x * sigmoid(2.0f * u));
    }
}

/* d/dx [x s(2u)] = s + x 2 s (1 - s) u', u' = k (1 + 3 a x^2). dinp may be dout: each
 * element is read, then written, by the same thread, so neither pointer is restrict. */
__global__ void __launch_bounds__(CUDA_ELEM_THREADS)
gelu_bwd_kernel(void *dinp, enum kdtype di_dt, const void *inp, enum kdtype inp_dt,
                const void *dout, enum kdtype g_dt, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float x = ld_act(inp, inp_dt, i);
        const float u = GELU_K * (x + GELU_A * x * x * x);
        const float s = sigmoid(2.0f * u);
        const float du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
        const float g = ld_act(dout, g_dt, i);
        st_act(dinp, di_dt, i, g * (s + x * 2.0f * s * (1.0f - s) * du));
    }
}

extern "C" void cuda_gelu_fwd(struct backend *b, struct tensor out, struct tensor inp)
{
    const char *kn = "gelu_fwd";
    CUDA_NN_NEED(inp.data && cuda_is_float(inp), kn, "inp", inp);
    CUDA_NN_NEED(out.data && cuda_is_float(out) && tensor_numel(out) == tensor_numel(inp), kn,
              "out", out);
    const struct cuda_launch l = cuda_launch_elementwise(tensor_numel(inp));
    if (l.grid_x == 0) return;
    gelu_fwd_kernel<<<(unsigned)l.grid_x, l.threads, 0, cuda_stream(b)>>>(
        out.data, out.dt, inp.data, inp.dt, tensor_numel(inp));
    CUDA_CHECK_LAUNCH(kn);
}

extern "C" void cuda_gelu_bwd(struct backend *b, struct tensor dinp, struct tensor inp,
                              struct tensor dout)
{
    const char *kn = "gelu_bwd";
    CUDA_NN_NEED(inp.data && cuda_is_float(inp), kn, "inp", inp);
    CUDA_NN_NEED(dinp.data && cuda_is_float(dinp) && tensor_numel(dinp) == tensor_numel(inp), kn,
              "dinp", dinp);
    CUDA_NN_NEED(dout.data && cuda_is_float(dout) && tensor_numel(dout) == tensor_numel(inp), kn,
              "dout", dout);
    /* in place is allowed only as exactly the same buffer and dtype */
    CUDA_NN_NEED(dinp.data != dout.data || dinp.dt == dout.dt, kn, "dinp (in place on dout)",
              dinp);
    const struct cuda_launch l = cuda_launch_elementwise(tensor_numel(inp));
    if (l.grid_x == 0) return;
    gelu_bwd_kernel<<<(unsigned)l.grid_x, l.threads, 0, cuda_stream(b)>>>(
        dinp.data, dinp.dt, inp.data, inp.dt, dout.data, dout.dt, tensor_numel(inp));
    CUDA_CHECK_LAUNCH(kn);
}

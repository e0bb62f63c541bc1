/* gelu.cu — GELU, tanh form, element by element (grid-stride loops), through the same
 * identity as the CPU reference: 0.5 (1 + tanh(u)) = sigmoid(2u). */

#include "cuda_common.h"
#include "gelu_k.cuh"

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

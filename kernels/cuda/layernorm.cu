/* layernorm.cu — LayerNorm over the columns of [N][C], eps 1e-5, fp32 statistics.
 *
 * Forward and the input gradient: one warp per row, CUDA_ROW_WARPS rows per block. The
 * row is read in two passes (mean, then the centred variance, which avoids the
 * cancellation of E[x^2] - E[x]^2, as the CPU reference does); each lane sums its
 * columns in order and the warp adds the lanes in a fixed butterfly.
 * Parameter gradients sum over all N rows. Deterministically, without atomics: each
 * block sums a chunk of CUDA_LN_CHUNK_ROWS rows for its columns in row order into a
 * partial in a workspace, then one thread per column adds the chunks in order into
 * dw, db (+=: they accumulate over micro-batches).
 */

#include "cuda_common.h"
#include "layernorm_k.cuh"

/* ---------------------------------------------------------------------------------- */

extern "C" void cuda_layernorm_fwd(struct backend *b, struct tensor out, struct tensor mean,
                                   struct tensor rstd, struct tensor inp, struct tensor w,
                                   struct tensor bias)
{
    const char *kn = "layernorm_fwd";
    CUDA_NN_NEED(inp.data && cuda_is_float(inp) && inp.cols > 0 && inp.cols <= INT32_MAX, kn,
              "inp", inp);
    CUDA_NN_NEED(out.data && cuda_is_float(out) && out.rows == inp.rows && out.cols == inp.cols,
              kn, "out", out);
    CUDA_NN_NEED(mean.data && mean.dt == KDT_F32 && tensor_numel(mean) == inp.rows, kn, "mean",
              mean);
    CUDA_NN_NEED(rstd.data && rstd.dt == KDT_F32 && tensor_numel(rstd) == inp.rows, kn, "rstd",
              rstd);
    CUDA_NN_NEED(w.data && cuda_is_float(w) && tensor_numel(w) == inp.cols, kn, "w", w);
    CUDA_NN_NEED(bias.data && cuda_is_float(bias) && tensor_numel(bias) == inp.cols, kn, "bias",
              bias);
    const struct cuda_launch l = cuda_launch_warp_rows(inp.rows);
    if (l.grid_x == 0) return;
    layernorm_fwd_kernel<<<(unsigned)l.grid_x, l.threads, 0, cuda_stream(b)>>>(
        out.data, out.dt, (float *)mean.data, (float *)rstd.data, inp.data, inp.dt, w.data,
        w.dt, bias.data, bias.dt, inp.rows, (int)inp.cols);
    CUDA_CHECK_LAUNCH(kn);
}

extern "C" void cuda_layernorm_bwd(struct backend *b, struct tensor dinp, struct tensor dw,
                                   struct tensor db, struct tensor dout, struct tensor inp,
                                   struct tensor w, struct tensor mean, struct tensor rstd)
{
    const char *kn = "layernorm_bwd";
    CUDA_NN_NEED(inp.data && cuda_is_float(inp) && inp.cols > 0 && inp.cols <= INT32_MAX, kn,
              "inp", inp);
    const int64_t N = inp.rows, C = inp.cols;
    CUDA_NN_NEED(dinp.data && cuda_is_float(dinp) && dinp.rows == N && dinp.cols == C, kn,
              "dinp", dinp);
    CUDA_NN_NEED(dout.data && cuda_is_float(dout) && dout.rows == N && dout.cols == C, kn,
              "dout", dout);
    CUDA_NN_NEED(dw.data && dw.dt == KDT_F32 && tensor_numel(dw) == C, kn, "dw", dw);
    CUDA_NN_NEED(db.data && db.dt == KDT_F32 && tensor_numel(db) == C, kn, "db", db);
    CUDA_NN_NEED(w.data && cuda_is_float(w) && tensor_numel(w) == C, kn, "w", w);
    CUDA_NN_NEED(mean.data && mean.dt == KDT_F32 && tensor_numel(mean) == N, kn, "mean", mean);
    CUDA_NN_NEED(rstd.data && rstd.dt == KDT_F32 && tensor_numel(rstd) == N, kn, "rstd", rstd);
    struct cuda_ln_bwd_plan p;
    char err[256];
    if (cuda_ln_bwd_plan(N, C, &p, err, sizeof err)) TR_ABORT("%s", err);
    if (N == 0) return;
    cudaStream_t s = cuda_stream(b);
    float *part = (float *)backend_workspace(b, 0, p.ws_bytes);
    layernorm_bwd_inp_kernel<<<(unsigned)p.rows.grid_x, p.rows.threads, 0, s>>>(
        dinp.data, dinp.dt, dout.data, dout.dt, inp.data, inp.dt, w.data, w.dt,
        (const float *)mean.data, (const float *)rstd.data, N, (int)C);
    CUDA_CHECK_LAUNCH("layernorm_bwd (dinp)");
    layernorm_bwd_partial_kernel<<<dim3((unsigned)p.partial.grid_x, (unsigned)p.partial.grid_y),
                                   p.partial.threads, 0, s>>>(
        part, dout.data, dout.dt, inp.data, inp.dt, (const float *)mean.data,
        (const float *)rstd.data, N, (int)C);
    CUDA_CHECK_LAUNCH("layernorm_bwd (partials)");
    layernorm_bwd_finish_kernel<<<(unsigned)p.finish.grid_x, p.finish.threads, 0, s>>>(
        (float *)dw.data, (float *)db.data, part, p.n_chunks, (int)C);
    CUDA_CHECK_LAUNCH("layernorm_bwd (dw, db)");
}

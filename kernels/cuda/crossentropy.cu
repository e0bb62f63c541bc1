/* crossentropy.cu — softmax cross-entropy in steps over a vocabulary shard.
 *
 * Local column j is global column v0 + j; only global columns < V are real, so a row has
 * n_real = clamp(V - v0, 0, Vl) real columns and the padding after them never takes part
 * (its gradient is 0). Row reductions run one block per row: each thread over its strided
 * columns in order, then a fixed tree across the block, so every result is reproducible.
 * xent_loss sums the rows' losses in double in one block, in a fixed order, and waits
 * for its result.
 */

#include "cuda_common.h"
#include "crossentropy_k.cuh"

static int xent_n_real(int64_t Vl, int v0, int V)
{
    int64_t n = (int64_t)V - v0;
    return (int)(n < 0 ? 0 : n > Vl ? Vl : n);
}

/* ---------------------------------------------------------------------------------- */

static void xent_rows(const char *kn, struct tensor logits, struct tensor row, const char *what)
{
    CUDA_NN_NEED(logits.data && cuda_is_float(logits) && logits.rows <= CUDA_MAX_GRID_X, kn,
              "logits", logits);
    CUDA_NN_NEED(row.data && row.dt == KDT_F32 && tensor_numel(row) == logits.rows, kn, what, row);
}

extern "C" void cuda_xent_max(struct backend *b, struct tensor rowmax, struct tensor logits,
                              int v0, int V)
{
    xent_rows("xent_max", logits, rowmax, "rowmax");
    const struct cuda_launch l = cuda_launch_block_rows(logits.rows);
    if (l.grid_x == 0) return;
    xent_max_kernel<<<(unsigned)l.grid_x, l.threads, 0, cuda_stream(b)>>>(
        (float *)rowmax.data, logits.data, logits.dt, logits.cols,
        xent_n_real(logits.cols, v0, V));
    CUDA_CHECK_LAUNCH("xent_max");
}

extern "C" void cuda_xent_sumexp(struct backend *b, struct tensor sumexp, struct tensor logits,
                                 struct tensor rowmax, int v0, int V)
{
    xent_rows("xent_sumexp", logits, sumexp, "sumexp");
    xent_rows("xent_sumexp", logits, rowmax, "rowmax");
    const struct cuda_launch l = cuda_launch_block_rows(logits.rows);
    if (l.grid_x == 0) return;
    xent_sumexp_kernel<<<(unsigned)l.grid_x, l.threads, 0, cuda_stream(b)>>>(
        (float *)sumexp.data, logits.data, logits.dt, (const float *)rowmax.data, logits.cols,
        xent_n_real(logits.cols, v0, V));
    CUDA_CHECK_LAUNCH("xent_sumexp");
}

extern "C" void cuda_xent_target(struct backend *b, struct tensor tlogit, struct tensor logits,
                                 struct tensor targets, int v0)
{
    xent_rows("xent_target", logits, tlogit, "tlogit");
    CUDA_NN_NEED(targets.data && targets.dt == KDT_I32 && tensor_numel(targets) == logits.rows,
              "xent_target", "targets", targets);
    const struct cuda_launch l = cuda_launch_elementwise(logits.rows);
    if (l.grid_x == 0) return;
    xent_target_kernel<<<(unsigned)l.grid_x, l.threads, 0, cuda_stream(b)>>>(
        (float *)tlogit.data, logits.data, logits.dt, (const int32_t *)targets.data,
        logits.rows, logits.cols, v0);
    CUDA_CHECK_LAUNCH("xent_target");
}

extern "C" void cuda_xent_bwd(struct backend *b, struct tensor logits, struct tensor rowmax,
                              struct tensor sumexp, struct tensor targets, float dloss, int v0,
                              int V)
{
    xent_rows("xent_bwd", logits, rowmax, "rowmax");
    xent_rows("xent_bwd", logits, sumexp, "sumexp");
    CUDA_NN_NEED(targets.data && targets.dt == KDT_I32 && tensor_numel(targets) == logits.rows,
              "xent_bwd", "targets", targets);
    const struct cuda_launch l = cuda_launch_block_rows(logits.rows);
    if (l.grid_x == 0) return;
    xent_bwd_kernel<<<(unsigned)l.grid_x, l.threads, 0, cuda_stream(b)>>>(
        logits.data, logits.dt, (const float *)rowmax.data, (const float *)sumexp.data,
        (const int32_t *)targets.data, dloss, logits.cols, xent_n_real(logits.cols, v0, V), v0);
    CUDA_CHECK_LAUNCH("xent_bwd");
}

extern "C" double cuda_xent_loss(struct backend *b, struct tensor rowmax, struct tensor sumexp,
                                 struct tensor tlogit)
{
    const char *kn = "xent_loss";
    CUDA_NN_NEED(rowmax.data && rowmax.dt == KDT_F32, kn, "rowmax", rowmax);
    CUDA_NN_NEED(sumexp.data && sumexp.dt == KDT_F32 &&
                  tensor_numel(sumexp) == tensor_numel(rowmax), kn, "sumexp", sumexp);
    CUDA_NN_NEED(tlogit.data && tlogit.dt == KDT_F32 &&
                  tensor_numel(tlogit) == tensor_numel(rowmax), kn, "tlogit", tlogit);
    cudaStream_t s = cuda_stream(b);
    double *d_loss = (double *)backend_workspace(b, 0, sizeof(double));
    xent_loss_kernel<<<1, CUDA_ELEM_THREADS, 0, s>>>(d_loss, (const float *)rowmax.data,
                                                     (const float *)sumexp.data,
                                                     (const float *)tlogit.data,
                                                     tensor_numel(rowmax));
    CUDA_CHECK_LAUNCH(kn);
    double loss = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&loss, d_loss, sizeof loss, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    return loss;
}

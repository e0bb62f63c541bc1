/* embedding.cu — token + position embedding over a vocabulary shard [v0, v0 + Vl).
 *
 * Forward: element by element. Backward, deterministic and without float atomics:
 *  - dwpe[t][c] += sum over sequences b, in b order (one thread per (t, c));
 *  - dwte: the (token, position) pairs are sorted by token with cub's radix sort, which
 *    is stable, so each token's positions stay in increasing order; tokens outside the
 *    shard get the key Vl and sort last. The first position of each token's run then sums
 *    the run's rows of dout, in position order, for a block of columns, and adds the sum
 *    into that token's row of dwte. The order of every sum is fixed by the tokens alone.
 */
#include <cub/device/device_radix_sort.cuh>

#include "cuda_common.h"
#include "embedding_k.cuh"

/* ---------------------------------------------------------------------------------- */

extern "C" void cuda_embedding_fwd(struct backend *b, struct tensor out, struct tensor tokens,
                                   struct tensor wte, struct tensor wpe, int v0)
{
    const char *kn = "embedding_fwd";
    CUDA_NN_NEED(tokens.data && tokens.dt == KDT_I32, kn, "tokens", tokens);
    const int B = (int)tokens.rows, T = (int)tokens.cols;
    CUDA_NN_NEED(wte.data && cuda_is_float(wte) && wte.cols <= INT32_MAX && wte.rows <= INT32_MAX,
              kn, "wte", wte);
    const int C = (int)wte.cols, Vl = (int)wte.rows;
    CUDA_NN_NEED(out.data && cuda_is_float(out) && out.rows == (int64_t)B * T && out.cols == C,
              kn, "out", out);
    CUDA_NN_NEED(!wpe.data || (cuda_is_float(wpe) && wpe.rows >= T && wpe.cols == C), kn, "wpe",
              wpe);
    const int64_t n = (int64_t)B * T * C;
    const struct cuda_launch l = cuda_launch_elementwise(n);
    if (l.grid_x == 0) return;
    embedding_fwd_kernel<<<(unsigned)l.grid_x, l.threads, 0, cuda_stream(b)>>>(
        out.data, out.dt, (const int32_t *)tokens.data, wte.data, wte.dt, wpe.data, wpe.dt, T,
        C, v0, Vl, n);
    CUDA_CHECK_LAUNCH(kn);
}

extern "C" void cuda_embedding_bwd(struct backend *b, struct tensor dwte, struct tensor dwpe,
                                   struct tensor dout, struct tensor tokens, int v0)
{
    const char *kn = "embedding_bwd";
    CUDA_NN_NEED(tokens.data && tokens.dt == KDT_I32 && tensor_numel(tokens) <= INT32_MAX, kn,
              "tokens", tokens);
    const int B = (int)tokens.rows, T = (int)tokens.cols, n = B * T;
    CUDA_NN_NEED(dwte.data && dwte.dt == KDT_F32 && dwte.cols <= INT32_MAX &&
                  dwte.rows < INT32_MAX, kn, "dwte", dwte);
    const int C = (int)dwte.cols, Vl = (int)dwte.rows;
    CUDA_NN_NEED(dout.data && cuda_is_float(dout) && dout.rows == (int64_t)n && dout.cols == C,
              kn, "dout", dout);
    CUDA_NN_NEED(!dwpe.data || (dwpe.dt == KDT_F32 && dwpe.rows >= T && dwpe.cols == C), kn,
              "dwpe", dwpe);
    if (n == 0 || C == 0) return;
    cudaStream_t s = cuda_stream(b);

    if (dwpe.data) {
        const struct cuda_launch l = cuda_launch_elementwise((int64_t)T * C);
        embedding_dwpe_kernel<<<(unsigned)l.grid_x, l.threads, 0, s>>>(
            (float *)dwpe.data, dout.data, dout.dt, B, T, C);
        CUDA_CHECK_LAUNCH("embedding_bwd (dwpe)");
    }
    if (Vl == 0) return;

    struct cuda_launch lrun;
    char err[256];
    if (cuda_embedding_bwd_launch(n, C, &lrun, err, sizeof err)) TR_ABORT("%s", err);
    const size_t n_bytes = sizeof(int32_t) * (size_t)n;
    int32_t *keys_in = (int32_t *)backend_workspace(b, 0, n_bytes);
    int32_t *pos_in = (int32_t *)backend_workspace(b, 1, n_bytes);
    int32_t *keys = (int32_t *)backend_workspace(b, 2, n_bytes);
    int32_t *pos = (int32_t *)backend_workspace(b, 3, n_bytes);
    const int end_bit = cuda_sort_end_bit(Vl);
    size_t temp_bytes = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, temp_bytes, keys_in, keys, pos_in, pos, n,
                                               0, end_bit, s));
    void *temp = backend_workspace(b, 4, temp_bytes);

    const struct cuda_launch lk = cuda_launch_elementwise(n);
    embedding_keys_kernel<<<(unsigned)lk.grid_x, lk.threads, 0, s>>>(
        keys_in, pos_in, (const int32_t *)tokens.data, v0, Vl, n);
    CUDA_CHECK_LAUNCH("embedding_bwd (keys)");
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys, pos_in, pos, n,
                                               0, end_bit, s));
    embedding_dwte_kernel<<<dim3((unsigned)lrun.grid_x, (unsigned)lrun.grid_y), lrun.threads, 0,
                            s>>>((float *)dwte.data, keys, pos, dout.data, dout.dt, C, Vl, n);
    CUDA_CHECK_LAUNCH("embedding_bwd (dwte)");
}

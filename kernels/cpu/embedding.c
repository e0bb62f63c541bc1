/* embedding.c — token + position embedding over a vocabulary shard [v0, v0+Vl). */
#include <string.h>

#include "common.h"
#include "cpu.h"

enum { EMB_COL_BLOCK = 64 };

void cpu_embedding_fwd(float *out, const int32_t *tokens, const float *wte,
                       const float *wpe, int B, int T, int C, int v0, int Vl)
{
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        float *restrict o = out + (size_t)bt * C;
        int tok = tokens[bt] - v0;
        const float *wp = wpe ? wpe + (size_t)(bt % T) * C : NULL;
        /* tokens outside the shard contribute 0: the sum over shards is the full row */
        if (tok >= 0 && tok < Vl) {
            const float *restrict we = wte + (size_t)tok * C;
            if (wp) {
#pragma omp simd
                for (int i = 0; i < C; i++) o[i] = we[i] + wp[i];
            } else {
                memcpy(o, we, (size_t)C * sizeof(float));
            }
        } else if (wp) {
            memcpy(o, wp, (size_t)C * sizeof(float));
        } else {
            memset(o, 0, (size_t)C * sizeof(float));
        }
    }
}

/* Two tokens may hit the same wte row, so rows cannot be split over threads without
 * atomics. Channels can: each thread owns a block of columns of dwte and dwpe and walks
 * every token in order, which fixes the summation order for any thread count. */
void cpu_embedding_bwd(float *dwte, float *dwpe, const float *dout,
                       const int32_t *tokens, int B, int T, int C, int v0, int Vl)
{
    int n_blocks = (C + EMB_COL_BLOCK - 1) / EMB_COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < n_blocks; blk++) {
        int c0 = blk * EMB_COL_BLOCK;
        int nc = TR_MIN(EMB_COL_BLOCK, C - c0);
        for (int bt = 0; bt < B * T; bt++) {
            const float *restrict g = dout + (size_t)bt * C + c0;
            int tok = tokens[bt] - v0;
            if (tok >= 0 && tok < Vl) {
                float *restrict dwr = dwte + (size_t)tok * C + c0;
#pragma omp simd
                for (int i = 0; i < nc; i++) dwr[i] += g[i];
            }
            if (dwpe) {
                float *restrict dpr = dwpe + (size_t)(bt % T) * C + c0;
#pragma omp simd
                for (int i = 0; i < nc; i++) dpr[i] += g[i];
            }
        }
    }
}

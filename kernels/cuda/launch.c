/* launch.c — launch shapes, tiles and shared-memory budgets of the CUDA backend's
 * neural-network kernels (launch.h says what each one decides). Plain C: the CPU tests
 * check these numbers where no GPU exists. */
#include <stdio.h>

#include "common.h"
#include "launch.h"

static struct cuda_launch launch_1d(int64_t grid_x, int threads)
{
    struct cuda_launch l = {grid_x, 1, threads, 0, 0};
    return l;
}

struct cuda_launch cuda_launch_elementwise(int64_t n)
{
    int64_t g = cuda_tile_count(n > 0 ? n : 0, CUDA_ELEM_THREADS);
    return launch_1d(g < CUDA_ELEM_MAX_GRID ? g : CUDA_ELEM_MAX_GRID, CUDA_ELEM_THREADS);
}

struct cuda_launch cuda_launch_warp_rows(int64_t n_rows)
{
    return launch_1d(cuda_tile_count(n_rows > 0 ? n_rows : 0, CUDA_ROW_WARPS),
                     CUDA_ROW_WARPS * CUDA_WARP);
}

struct cuda_launch cuda_launch_block_rows(int64_t n_rows)
{
    return launch_1d(n_rows > 0 ? n_rows : 0, CUDA_ELEM_THREADS);
}

int cuda_ln_bwd_plan(int64_t N, int64_t C, struct cuda_ln_bwd_plan *p, char *err,
                     size_t err_len)
{
    p->n_chunks = cuda_tile_count(N, CUDA_LN_CHUNK_ROWS);
    p->rows = cuda_launch_warp_rows(N);
    p->partial = launch_1d(cuda_tile_count(C, CUDA_ELEM_THREADS), CUDA_ELEM_THREADS);
    p->partial.grid_y = (int)(p->n_chunks < CUDA_MAX_GRID_YZ + 1 ? p->n_chunks : 0);
    p->finish = launch_1d(cuda_tile_count(C, CUDA_ELEM_THREADS), CUDA_ELEM_THREADS);
    p->ws_bytes = sizeof(float) * 2 * (size_t)p->n_chunks * (size_t)C;
    if (p->n_chunks > CUDA_MAX_GRID_YZ) {
        snprintf(err, err_len,
                 "layernorm_bwd: %lld rows make %lld chunks of %d, more than a grid's %d\n"
                 "HINT: use fewer tokens per micro-batch (batch_size x seq_len)",
                 (long long)N, (long long)p->n_chunks, CUDA_LN_CHUNK_ROWS, CUDA_MAX_GRID_YZ);
        return -1;
    }
    return 0;
}

int cuda_sort_end_bit(int64_t max_key)
{
    int b = 1;
    while (b < 62 && ((int64_t)1 << b) <= max_key) b++;
    return b;
}

int cuda_embedding_bwd_launch(int64_t n_tokens, int64_t C, struct cuda_launch *l, char *err,
                              size_t err_len)
{
    *l = launch_1d(n_tokens, CUDA_EMB_COLS);
    int64_t gy = cuda_tile_count(C, CUDA_EMB_COLS);
    l->grid_y = (int)(gy <= CUDA_MAX_GRID_YZ ? gy : 0);
    if (n_tokens > CUDA_MAX_GRID_X || gy > CUDA_MAX_GRID_YZ) {
        snprintf(err, err_len,
                 "embedding_bwd: %lld tokens x %lld channels do not fit one grid\n"
                 "HINT: use fewer tokens per micro-batch or a smaller n_embd",
                 (long long)n_tokens, (long long)C);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* attention                                                                            */

static const int att_head_sizes[] = {16, 32, 64, 128};

int cuda_attention_head_size_ok(int hs)
{
    for (size_t i = 0; i < sizeof att_head_sizes / sizeof att_head_sizes[0]; i++)
        if (att_head_sizes[i] == hs) return 1;
    return 0;
}

const char *cuda_attention_head_sizes(void) { return "16, 32, 64, 128"; }

/* A launch of n_blocks blocks with `floats` fp32 of shared memory, or -1 when the
 * device cannot run it. */
static int att_launch(const char *kname, int64_t n_blocks, int64_t floats,
                      size_t smem_optin_max, struct cuda_launch *l, char *err, size_t err_len)
{
    *l = launch_1d(n_blocks, CUDA_ATT_THREADS);
    l->smem = sizeof(float) * (size_t)floats;
    l->smem_optin = l->smem > CUDA_SMEM_DEFAULT;
    if (n_blocks > CUDA_MAX_GRID_X) {
        snprintf(err, err_len, "%s: %lld blocks, more than a grid's %lld\n"
                 "HINT: use fewer sequences per micro-batch or fewer heads per rank",
                 kname, (long long)n_blocks, (long long)CUDA_MAX_GRID_X);
        return -1;
    }
    if (l->smem_optin && l->smem > smem_optin_max) {
        snprintf(err, err_len, "%s: needs %zu bytes of shared memory per block, the device "
                 "allows %zu\nHINT: use a smaller head size (n_embd / n_head) or device = cpu",
                 kname, l->smem, smem_optin_max);
        return -1;
    }
    return 0;
}

int cuda_attention_plan(int B, int NH, int T, int hs, size_t smem_optin_max,
                        struct cuda_attn_plan *p, char *err, size_t err_len)
{
    if (!cuda_attention_head_size_ok(hs)) {
        snprintf(err, err_len, "attention: head size %d (n_embd / n_head) is not one the CUDA "
                 "attention kernels are built for (%s)\nHINT: choose n_embd and n_head so "
                 "that n_embd / n_head is one of %s, or run with device = cpu",
                 hs, cuda_attention_head_sizes(), cuda_attention_head_sizes());
        return -1;
    }
    if (B <= 0 || NH <= 0 || T <= 0) {
        snprintf(err, err_len, "attention: B = %d, NH = %d, T = %d: all must be positive\n"
                 "HINT: this is a bug of the caller", B, NH, T);
        return -1;
    }
    p->hs = hs;
    p->BH = (int64_t)B * NH;
    p->n_tiles = cuda_tile_count(T, CUDA_ATT_BR);
    int64_t n_blocks = p->BH * p->n_tiles;
    if (att_launch("attention_fwd", n_blocks, CUDA_ATT_FWD_FLOATS(hs), smem_optin_max,
                   &p->fwd, err, err_len) ||
        att_launch("attention_bwd (dQ)", n_blocks, CUDA_ATT_BWDQ_FLOATS(hs), smem_optin_max,
                   &p->bwd_q, err, err_len) ||
        att_launch("attention_bwd (dK, dV)", n_blocks, CUDA_ATT_BWDKV_FLOATS(hs),
                   smem_optin_max, &p->bwd_kv, err, err_len))
        return -1;
    return 0;
}

/* ---------------------------------------------------------------------------------- */

void cuda_shape_fail(const char *kname, const char *what, struct tensor t, const char *cond)
{
    if (!t.data)
        TR_ABORT("%s (CUDA): %s is absent (%s)", kname, what, cond);
    TR_ABORT("%s (CUDA): %s is %s[%lld][%lld] (%s)", kname, what, kdtype_name(t.dt),
             (long long)t.rows, (long long)t.cols, cond);
}

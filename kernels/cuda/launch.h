/* launch.h — the host-side decisions of the CUDA backend's neural-network kernels
 * (LayerNorm, GELU, attention, embedding, cross-entropy): launch shapes, tile counts,
 * shared-memory budgets, workspace sizes and the argument checks.
 *
 * Plain C, built in both builds, so that tests/test_cuda_launch.c checks on a machine
 * without a GPU what the kernels will be launched with: every tile of T is covered once
 * (the last one ragged), no grid dimension passes the hardware's limit, shared memory
 * stays under the 48 KiB a kernel gets by default or is opted into explicitly, below the
 * device's opt-in ceiling. The small tile arithmetic the kernels themselves repeat on the
 * device (CUDA_HD functions) is defined here once, for both sides.
 */
#ifndef TRIDENT_CUDA_LAUNCH_H
#define TRIDENT_CUDA_LAUNCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "tensor.h"
#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
#define CUDA_HD static __host__ __device__ __forceinline__
#else
#define CUDA_HD static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Hardware limits every launch is checked against (compute capability >= 8.0). */
enum {
    CUDA_WARP           = 32,
    CUDA_SMEM_DEFAULT   = 48 * 1024,  /* dynamic shared memory without an opt-in */
    CUDA_MAX_THREADS    = 1024,
    CUDA_MAX_GRID_YZ    = 65535,
    CUDA_ELEM_THREADS   = 256,        /* element-wise and per-row-block kernels */
    CUDA_ELEM_MAX_GRID  = 65536,      /* element-wise kernels loop with a grid stride */
    CUDA_ROW_WARPS      = 8,          /* warp-per-row kernels: 8 rows per block */
    CUDA_LN_CHUNK_ROWS  = 256,        /* layernorm_bwd: rows summed per dw/db partial */
    CUDA_EMB_COLS       = 128,        /* embedding_bwd: columns per block */
};
#define CUDA_MAX_GRID_X 2147483647LL

/* One launch: grid (x, y), threads per block, dynamic shared memory in bytes, and whether
 * that needs cudaFuncSetAttribute(MaxDynamicSharedMemorySize) first (> 48 KiB). */
struct cuda_launch {
    int64_t grid_x;
    int     grid_y;
    int     threads;
    size_t  smem;
    int     smem_optin;
};

/* ---------------------------------------------------------------------------------- */
/* tiles                                                                                */

/* The number of tiles of `tile` elements that cover n (the last one ragged). */
CUDA_HD int64_t cuda_tile_count(int64_t n, int tile) { return (n + tile - 1) / tile; }
/* Tile i covers [i*tile, i*tile + cuda_tile_len(i, tile, n)). */
CUDA_HD int cuda_tile_len(int64_t i, int tile, int64_t n)
{
    int64_t left = n - i * (int64_t)tile;
    return (int)(left < tile ? (left > 0 ? left : 0) : tile);
}

/* ---------------------------------------------------------------------------------- */
/* simple shapes                                                                        */

/* n independent elements, a grid-stride loop (n >= 0; an empty launch has grid_x 0). */
struct cuda_launch cuda_launch_elementwise(int64_t n);
/* One warp per row, CUDA_ROW_WARPS rows per block. */
struct cuda_launch cuda_launch_warp_rows(int64_t n_rows);
/* One block of CUDA_ELEM_THREADS per row (rows of a long vocabulary). */
struct cuda_launch cuda_launch_block_rows(int64_t n_rows);

/* layernorm_bwd's parameter gradients, deterministic: each block sums its chunk of
 * CUDA_LN_CHUNK_ROWS rows for CUDA_ELEM_THREADS columns in row order into a partial
 * (fp32 [n_chunks][2][C] in a workspace), then one thread per column adds the partials
 * in chunk order into dw, db. */
struct cuda_ln_bwd_plan {
    int64_t n_chunks;
    struct cuda_launch rows;     /* dinp: warp per row */
    struct cuda_launch partial;  /* grid (column blocks, chunks) */
    struct cuda_launch finish;   /* one thread per column */
    size_t  ws_bytes;            /* the partials */
};
int cuda_ln_bwd_plan(int64_t N, int64_t C, struct cuda_ln_bwd_plan *p, char *err,
                     size_t err_len);

/* The end bit of a radix sort of keys 0..max_key (the smallest b with 2^b > max_key,
 * at least 1): embedding_bwd sorts (token - v0) with the out-of-shard key Vl. */
int cuda_sort_end_bit(int64_t max_key);
/* embedding_bwd after the sort: block x = a position of the sorted tokens (only the first
 * of each token's run works), block y = a block of CUDA_EMB_COLS columns. */
int cuda_embedding_bwd_launch(int64_t n_tokens, int64_t C, struct cuda_launch *l, char *err,
                              size_t err_len);

/* ---------------------------------------------------------------------------------- */
/* attention                                                                            */

/* The flash-style kernels' tiles. A block has CUDA_ATT_WARPS warps; each warp owns
 * CUDA_ATT_ROWS rows of the block's tile (query rows in the forward pass and dQ, key rows
 * in dK/dV), so a block's tile has CUDA_ATT_BR rows. The other side (keys in the forward
 * pass and dQ, queries in dK/dV) is walked in tiles of CUDA_ATT_BC = 32 rows: one per
 * lane, so a score is one lane's dot product and the softmax of a tile is a warp
 * reduction. */
enum {
    CUDA_ATT_WARPS = 4,
    CUDA_ATT_ROWS  = 4,
    CUDA_ATT_BR    = CUDA_ATT_WARPS * CUDA_ATT_ROWS,
    CUDA_ATT_BC    = CUDA_WARP,
    CUDA_ATT_THREADS = CUDA_ATT_WARPS * CUDA_WARP,
};
/* Shared memory, in floats, of each kernel for head size hs (rows read by one lane per row
 * are padded to hs + 1 floats, so that 32 lanes reading 32 rows hit 32 banks):
 *  fwd:    Q [BR][hs], K [BC][hs+1], V [BC][hs]
 *  bwd_q:  Q, dO [BR][hs], K, V [BC][hs+1]
 *  bwd_kv: K, V [BR][hs], Q, dO [BC][hs+1], lse, D [BC] */
#define CUDA_ATT_FWD_FLOATS(hs)   (CUDA_ATT_BR * (hs) + CUDA_ATT_BC * ((hs) + 1) + \
                                   CUDA_ATT_BC * (hs))
#define CUDA_ATT_BWDQ_FLOATS(hs)  (2 * CUDA_ATT_BR * (hs) + 2 * CUDA_ATT_BC * ((hs) + 1))
#define CUDA_ATT_BWDKV_FLOATS(hs) (2 * CUDA_ATT_BR * (hs) + 2 * CUDA_ATT_BC * ((hs) + 1) + \
                                   2 * CUDA_ATT_BC)

/* Causal extents. A block of query rows [q0, q0 + BR) reads keys [0, kend): the number of
 * key tiles it walks. A block of key rows [k0, k0 + BR) is attended by queries
 * [k0, T): the first query tile it walks starts at the BC-aligned row at or below k0. */
CUDA_HD int64_t cuda_att_key_tiles(int64_t q0, int64_t T)
{
    int64_t kend = q0 + CUDA_ATT_BR < T ? q0 + CUDA_ATT_BR : T;
    return cuda_tile_count(kend, CUDA_ATT_BC);
}
CUDA_HD int64_t cuda_att_first_query_tile(int64_t k0) { return k0 / CUDA_ATT_BC; }

/* 1 when the CUDA attention kernels are built for head size hs (n_embd / n_head). */
int  cuda_attention_head_size_ok(int hs);
/* "16, 32, 64, 128": the head sizes built in, for messages */
const char *cuda_attention_head_sizes(void);

/* The three launches of one attention call: B sequences of T tokens, NH heads of size hs.
 * Blocks are numbered bh + B*NH * tile (flat grid x), heaviest causal tiles first.
 * smem_optin_max: the device's cudaDevAttrMaxSharedMemoryPerBlockOptin. 0, or -1 with the
 * reason (and a HINT line) in err for a head size not built in, a grid or shared memory
 * the device cannot launch. */
struct cuda_attn_plan {
    int     hs;
    int64_t BH, n_tiles;           /* (sequence, head) pairs; tiles of BR rows over T */
    struct cuda_launch fwd, bwd_q, bwd_kv;
};
int cuda_attention_plan(int B, int NH, int T, int hs, size_t smem_optin_max,
                        struct cuda_attn_plan *p, char *err, size_t err_len);

/* ---------------------------------------------------------------------------------- */
/* argument checks                                                                      */

/* Abort naming the kernel, the argument, its shape and the failed condition (shapes that
 * do not fit are bugs of the caller: kernels.h). */
void cuda_shape_fail(const char *kname, const char *what, struct tensor t, const char *cond)
    __attribute__((noreturn));
#define CUDA_NN_NEED(cond, kname, what, t)                                               \
    do {                                                                                 \
        if (!(cond)) cuda_shape_fail(kname, what, t, #cond);                             \
    } while (0)
static inline int cuda_is_float(struct tensor t)
{
    return t.dt == KDT_F32 || t.dt == KDT_BF16 || t.dt == KDT_F16;
}

#ifdef __cplusplus
}
#endif

#endif

/* test_cuda_launch.c — the launch decisions of the CUDA backend's neural-network kernels
 * (kernels/cuda/launch.c), checked on the CPU: the tiles cover T once, the causal walks of
 * the attention kernels visit every (query, key) pair at or below the diagonal exactly
 * once, grids and shared memory stay within what an A100/H100 launches for GPT-2 124M at
 * T = 1024 and at T = 8192, and head sizes without a kernel are refused with a hint. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/launch.h"
#include "test.h"

enum { A100_OPTIN = 166912, H100_OPTIN = 232448 };  /* cudaDevAttrMaxSharedMemoryPerBlockOptin */

static void test_tiles_cover_every_length_once_with_a_ragged_last_tile(void)
{
    const int64_t Ts[] = {1, 2, 15, 16, 17, 31, 32, 33, 100, 1000, 1024, 8192, 8191};
    const int tiles[] = {CUDA_ATT_BR, CUDA_ATT_BC, CUDA_LN_CHUNK_ROWS, 7};
    for (size_t ti = 0; ti < sizeof tiles / sizeof tiles[0]; ti++)
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
            const int64_t T = Ts[k];
            const int tile = tiles[ti];
            const int64_t n = cuda_tile_count(T, tile);
            int64_t covered = 0;
            for (int64_t i = 0; i < n; i++) {
                const int len = cuda_tile_len(i, tile, T);
                CHECK_MSG(len > 0 && len <= tile, "T %lld tile %d: tile %lld has %d rows",
                          (long long)T, tile, (long long)i, len);
                /* only the last tile may be short */
                if (i < n - 1) CHECK(len == tile);
                covered += len;
            }
            CHECK_MSG(covered == T, "T %lld tile %d: %lld rows covered", (long long)T, tile,
                      (long long)covered);
            CHECK(cuda_tile_len(n, tile, T) == 0);  /* nothing past the end */
        }
}

/* Replays the loops of the attention kernels for one sequence: the forward pass / dQ
 * (per query tile, key tiles 0 .. cuda_att_key_tiles, a lane per key, visible j <= t)
 * and dK/dV (per key tile, query tiles from cuda_att_first_query_tile, visible i >= j),
 * counting how often each (query, key) pair is computed. */
static void att_visits(int T, unsigned char *fwd, unsigned char *bwd)
{
    memset(fwd, 0, (size_t)T * T);
    memset(bwd, 0, (size_t)T * T);
    const int64_t n_tiles = cuda_tile_count(T, CUDA_ATT_BR);
    for (int64_t tile = 0; tile < n_tiles; tile++) {
        const int q0 = (int)(tile * CUDA_ATT_BR);
        for (int r = 0; r < CUDA_ATT_BR; r++) {
            const int t = q0 + r;
            if (t >= T) continue;
            for (int64_t kt = 0; kt < cuda_att_key_tiles(q0, T); kt++)
                for (int lane = 0; lane < CUDA_ATT_BC; lane++) {
                    const int j = (int)(kt * CUDA_ATT_BC) + lane;
                    if (j <= t) fwd[(size_t)t * T + j]++;
                }
        }
        const int k0 = q0;
        for (int r = 0; r < CUDA_ATT_BR; r++) {
            const int j = k0 + r;
            if (j >= T) continue;
            for (int64_t qt = cuda_att_first_query_tile(k0); qt < cuda_tile_count(T, CUDA_ATT_BC);
                 qt++)
                for (int lane = 0; lane < CUDA_ATT_BC; lane++) {
                    const int i = (int)(qt * CUDA_ATT_BC) + lane;
                    if (i >= j && i < T) bwd[(size_t)i * T + j]++;
                }
        }
    }
}

static void test_attention_walks_visit_each_causal_pair_exactly_once(void)
{
    const int Ts[] = {1, 5, 16, 17, 32, 33, 47, 100, 257};
    for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
        const int T = Ts[k];
        unsigned char *fwd = malloc((size_t)T * T), *bwd = malloc((size_t)T * T);
        att_visits(T, fwd, bwd);
        int bad = 0;
        for (int i = 0; i < T && !bad; i++)
            for (int j = 0; j < T && !bad; j++) {
                const int want = j <= i;
                if (fwd[(size_t)i * T + j] != want || bwd[(size_t)i * T + j] != want) {
                    CHECK_MSG(0, "T %d: pair (query %d, key %d) visited %d (forward) and %d "
                              "(dK/dV) times, want %d", T, i, j, fwd[(size_t)i * T + j],
                              bwd[(size_t)i * T + j], want);
                    bad = 1;
                }
            }
        free(fwd);
        free(bwd);
    }
}

static void test_attention_key_walk_stops_at_the_diagonal(void)
{
    /* no block walks a key tile that is masked for all of its rows */
    const int T = 8192;
    for (int64_t q0 = 0; q0 < T; q0 += CUDA_ATT_BR) {
        const int64_t kend = q0 + CUDA_ATT_BR < T ? q0 + CUDA_ATT_BR : T;
        const int64_t n = cuda_att_key_tiles(q0, T);
        CHECK(n * CUDA_ATT_BC >= kend && (n - 1) * CUDA_ATT_BC < kend);
        const int64_t k0 = cuda_att_first_query_tile(q0) * CUDA_ATT_BC;
        CHECK(k0 <= q0 && k0 + CUDA_ATT_BC > q0);
    }
}

/* the launch limits of every kernel of a plan on a device with opt-in ceiling optin */
static void check_att_launch(const char *name, const struct cuda_launch *l, size_t optin)
{
    CHECK_MSG(l->grid_x > 0 && l->grid_x <= CUDA_MAX_GRID_X && l->grid_y == 1,
              "%s: grid %lld x %d", name, (long long)l->grid_x, l->grid_y);
    CHECK(l->threads == CUDA_ATT_THREADS && l->threads <= CUDA_MAX_THREADS);
    CHECK_MSG(l->smem_optin == (l->smem > CUDA_SMEM_DEFAULT), "%s: %zu bytes, opt-in %d",
              name, l->smem, l->smem_optin);
    CHECK(l->smem <= optin);
}

static void test_attention_plans_fit_gpt2_at_1024_and_8192_tokens(void)
{
    struct {
        int B, NH, T, hs;
    } cases[] = {
        {8, 12, 1024, 64},   /* GPT-2 124M, micro-batch 8 */
        {64, 12, 1024, 64},  /* GPT-2 124M, micro-batch 64 */
        {4, 12, 8192, 64},   /* long context */
        {1, 25, 8192, 64},   /* GPT-2 XL heads */
        {2, 16, 8192, 128},  /* head size 128 needs the opt-in */
        {3, 4, 17, 16},      /* tiny configs of inputs/ */
        {2, 4, 33, 32},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const size_t optins[] = {A100_OPTIN, H100_OPTIN};
        for (int o = 0; o < 2; o++) {
            struct cuda_attn_plan p;
            char err[512] = "";
            int rc = cuda_attention_plan(cases[k].B, cases[k].NH, cases[k].T, cases[k].hs,
                                         optins[o], &p, err, sizeof err);
            CHECK_MSG(rc == 0, "B %d NH %d T %d hs %d: %s", cases[k].B, cases[k].NH,
                      cases[k].T, cases[k].hs, err);
            if (rc) continue;
            CHECK(p.BH == (int64_t)cases[k].B * cases[k].NH);
            CHECK(p.n_tiles * CUDA_ATT_BR >= cases[k].T &&
                  (p.n_tiles - 1) * CUDA_ATT_BR < cases[k].T);
            CHECK(p.fwd.grid_x == p.BH * p.n_tiles);
            check_att_launch("fwd", &p.fwd, optins[o]);
            check_att_launch("bwd_q", &p.bwd_q, optins[o]);
            check_att_launch("bwd_kv", &p.bwd_kv, optins[o]);
            CHECK(p.fwd.smem == sizeof(float) * CUDA_ATT_FWD_FLOATS(cases[k].hs));
            CHECK(p.bwd_q.smem == sizeof(float) * CUDA_ATT_BWDQ_FLOATS(cases[k].hs));
            CHECK(p.bwd_kv.smem == sizeof(float) * CUDA_ATT_BWDKV_FLOATS(cases[k].hs));
        }
    }
    /* GPT-2 124M's head size 64 runs without any opt-in */
    struct cuda_attn_plan p;
    char err[512];
    CHECK(cuda_attention_plan(8, 12, 1024, 64, CUDA_SMEM_DEFAULT, &p, err, sizeof err) == 0);
    CHECK(!p.fwd.smem_optin && !p.bwd_q.smem_optin && !p.bwd_kv.smem_optin);
}

static void test_attention_refuses_head_sizes_without_a_kernel_and_small_devices(void)
{
    const int ok[] = {16, 32, 64, 128}, bad[] = {8, 24, 48, 80, 96, 256};
    for (size_t i = 0; i < 4; i++) CHECK(cuda_attention_head_size_ok(ok[i]));
    for (size_t i = 0; i < 6; i++) {
        CHECK(!cuda_attention_head_size_ok(bad[i]));
        struct cuda_attn_plan p;
        char err[512] = "";
        CHECK(cuda_attention_plan(2, 4, 64, bad[i], A100_OPTIN, &p, err, sizeof err) == -1);
        CHECK_MSG(strstr(err, "head size") && strstr(err, "HINT:") &&
                      strstr(err, cuda_attention_head_sizes()),
                  "message: %s", err);
    }
    /* hs 128 needs more than 48 KiB: a device without the opt-in is told so */
    struct cuda_attn_plan p;
    char err[512] = "";
    CHECK(cuda_attention_plan(2, 4, 64, 128, CUDA_SMEM_DEFAULT, &p, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "shared memory") && strstr(err, "HINT:"), "message: %s", err);
}

static void test_row_and_elementwise_launches_cover_their_work(void)
{
    const int64_t ns[] = {0, 1, 255, 256, 257, 12345, (int64_t)1 << 20, (int64_t)1 << 34};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        const int64_t n = ns[k];
        struct cuda_launch l = cuda_launch_elementwise(n);
        CHECK(l.threads == CUDA_ELEM_THREADS && l.grid_y == 1);
        CHECK(l.grid_x <= CUDA_ELEM_MAX_GRID);
        CHECK(n == 0 ? l.grid_x == 0 : l.grid_x > 0);  /* a grid-stride loop needs >= 1 */
        CHECK(l.grid_x * l.threads >= n || l.grid_x == CUDA_ELEM_MAX_GRID);
        l = cuda_launch_warp_rows(n);
        CHECK(l.threads == CUDA_ROW_WARPS * CUDA_WARP);
        CHECK(l.grid_x * CUDA_ROW_WARPS >= n && (l.grid_x - 1) * CUDA_ROW_WARPS < n + (n == 0));
        l = cuda_launch_block_rows(n);
        CHECK(l.grid_x == n);
    }
}

static void test_layernorm_backward_chunks_cover_the_rows(void)
{
    const int64_t Ns[] = {1, 255, 256, 257, 8 * 1024, 64 * 1024};
    for (size_t k = 0; k < sizeof Ns / sizeof Ns[0]; k++) {
        struct cuda_ln_bwd_plan p;
        char err[256];
        CHECK(cuda_ln_bwd_plan(Ns[k], 768, &p, err, sizeof err) == 0);
        int64_t rows = 0;
        for (int64_t c = 0; c < p.n_chunks; c++)
            rows += cuda_tile_len(c, CUDA_LN_CHUNK_ROWS, Ns[k]);
        CHECK(rows == Ns[k]);
        CHECK(p.partial.grid_y == p.n_chunks);
        CHECK(p.partial.grid_x * p.partial.threads >= 768);
        CHECK(p.finish.grid_x * p.finish.threads >= 768);
        CHECK(p.ws_bytes == sizeof(float) * 2 * (size_t)p.n_chunks * 768);
    }
    struct cuda_ln_bwd_plan p;
    char err[256] = "";
    CHECK(cuda_ln_bwd_plan((int64_t)CUDA_LN_CHUNK_ROWS * 70000, 768, &p, err, sizeof err) == -1);
    CHECK(strstr(err, "HINT:") != NULL);
}

static void test_sort_end_bit_holds_every_key_and_no_more(void)
{
    const int64_t keys[] = {0, 1, 2, 3, 4, 255, 256, 50257, 50304, 65535, 65536, 12566};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const int bits = cuda_sort_end_bit(keys[k]);
        CHECK_MSG(((int64_t)1 << bits) > keys[k], "key %lld, %d bits", (long long)keys[k], bits);
        CHECK_MSG(bits == 1 || ((int64_t)1 << (bits - 1)) <= keys[k], "key %lld, %d bits",
                  (long long)keys[k], bits);
    }
}

static void test_embedding_backward_launch_covers_tokens_and_channels(void)
{
    struct cuda_launch l;
    char err[256] = "";
    CHECK(cuda_embedding_bwd_launch(64 * 1024, 768, &l, err, sizeof err) == 0);
    CHECK(l.grid_x == 64 * 1024 && l.grid_y * l.threads >= 768 &&
          (l.grid_y - 1) * l.threads < 768);
    CHECK(cuda_embedding_bwd_launch(100, 1600, &l, err, sizeof err) == 0);
    CHECK(l.grid_y * CUDA_EMB_COLS >= 1600);
    CHECK(cuda_embedding_bwd_launch(100, (int64_t)CUDA_EMB_COLS * 70000, &l, err, sizeof err) ==
          -1);
    CHECK(strstr(err, "HINT:") != NULL);
}

int main(void)
{
    RUN(test_tiles_cover_every_length_once_with_a_ragged_last_tile);
    RUN(test_attention_walks_visit_each_causal_pair_exactly_once);
    RUN(test_attention_key_walk_stops_at_the_diagonal);
    RUN(test_attention_plans_fit_gpt2_at_1024_and_8192_tokens);
    RUN(test_attention_refuses_head_sizes_without_a_kernel_and_small_devices);
    RUN(test_row_and_elementwise_launches_cover_their_work);
    RUN(test_layernorm_backward_chunks_cover_the_rows);
    RUN(test_sort_end_bit_holds_every_key_and_no_more);
    RUN(test_embedding_backward_launch_covers_tokens_and_channels);
    return test_summary();
}

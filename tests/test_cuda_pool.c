/* test_cuda_pool.c — the CUDA backend's memory pool (kernels/cuda/pool.c) as arithmetic:
 * alignment, merging of freed neighbours, best and first fit, exhaustion and its message,
 * and the pattern of a training job's allocations. The pool is plain C, so these run in
 * the CPU build; the CUDA suite (cudatest_core) runs it again behind a real cudaMalloc. */
#include <stdlib.h>
#include <string.h>

#include "cuda/pool.h"
#include "test.h"

/* deterministic pseudo-random numbers (xorshift64*) */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static void test_blocks_are_aligned_and_rounded(void)
{
    struct pool p;
    pool_init(&p, 1 << 20, POOL_BEST_FIT);
    const uint64_t sizes[] = {1, 0, 255, 256, 257, 1000, 4096, 12345};
    uint64_t expect_use = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        int64_t off = pool_alloc(&p, sizes[i]);
        CHECK(off >= 0);
        CHECK(off % POOL_ALIGN == 0);
        uint64_t r = sizes[i] ? (sizes[i] + 255) / 256 * 256 : 256;
        expect_use += r;
    }
    CHECK(p.in_use == expect_use);
    CHECK(pool_free_bytes(&p) == (1u << 20) - expect_use);
    pool_destroy(&p);
    /* a size that is not a multiple of the alignment is cut to one */
    pool_init(&p, 1000, POOL_BEST_FIT);
    CHECK(p.size == 768);
    CHECK(pool_alloc(&p, 768) == 0);
    CHECK(pool_alloc(&p, 1) == -1);
    pool_destroy(&p);
}

/* Four blocks that fill the pool, freed in each of the 24 orders, leave one free range */
static void test_freed_neighbours_merge_in_any_order(void)
{
    int perm[4] = {0, 1, 2, 3};
    int n_orders = 0;
    /* every permutation of 4 by Heap's algorithm (iterative) */
    int c[4] = {0};
    for (int i = 0;;) {
        struct pool p;
        pool_init(&p, 4 * 1024, POOL_FIRST_FIT);
        int64_t off[4];
        for (int k = 0; k < 4; k++) off[k] = pool_alloc(&p, 1024);
        CHECK(off[3] == 3 * 1024);
        for (int k = 0; k < 4; k++) CHECK(pool_release(&p, (uint64_t)off[perm[k]]) == 0);
        CHECK_MSG(p.n_free == 1 && pool_largest_free(&p) == 4 * 1024,
                  "order %d%d%d%d left %lld free ranges, largest %llu", perm[0], perm[1],
                  perm[2], perm[3], (long long)p.n_free,
                  (unsigned long long)pool_largest_free(&p));
        CHECK(pool_alloc(&p, 4 * 1024) == 0);  /* the whole pool is one block again */
        pool_destroy(&p);
        n_orders++;
        while (i < 4 && c[i] >= i) c[i++] = 0;
        if (i >= 4) break;
        int j = i % 2 ? c[i] : 0, t = perm[j];
        perm[j] = perm[i];
        perm[i] = t;
        c[i]++;
        i = 0;
    }
    CHECK(n_orders == 24);
}

/* holes of 1024 (at 0) and 512 (later): best fit takes the 512 one, first fit the first */
static void test_best_fit_and_first_fit_choose_their_holes(void)
{
    for (int fit = 0; fit < 2; fit++) {
        struct pool p;
        pool_init(&p, 8192, (enum pool_fit)fit);
        int64_t a = pool_alloc(&p, 1024), b = pool_alloc(&p, 256), c = pool_alloc(&p, 512),
                d = pool_alloc(&p, 256);
        CHECK(a == 0 && b == 1024 && c == 1280 && d == 1792);
        CHECK(pool_release(&p, (uint64_t)a) == 0);
        CHECK(pool_release(&p, (uint64_t)c) == 0);
        int64_t e = pool_alloc(&p, 500);
        if (fit == POOL_BEST_FIT) CHECK(e == 1280);
        else CHECK(e == 0);
        pool_destroy(&p);
    }
    /* ties: best fit takes the lowest offset of equal ranges */
    struct pool p;
    pool_init(&p, 4096, POOL_BEST_FIT);
    int64_t x = pool_alloc(&p, 512), y = pool_alloc(&p, 256), z = pool_alloc(&p, 512),
            w = pool_alloc(&p, 2816);
    CHECK(x == 0 && y == 512 && z == 768 && w == 1280);
    CHECK(pool_release(&p, (uint64_t)z) == 0);
    CHECK(pool_release(&p, (uint64_t)x) == 0);
    CHECK(pool_alloc(&p, 512) == 0);
    pool_destroy(&p);
}

static void test_exhaustion_is_refused_and_explained(void)
{
    struct pool p;
    pool_init(&p, 10 * 1024, POOL_BEST_FIT);
    int64_t off[10];
    for (int k = 0; k < 10; k++) off[k] = pool_alloc(&p, 1024);
    CHECK(pool_alloc(&p, 1) == -1);
    /* free every other block: 5 KiB free, none of it more than 1 KiB in one piece */
    for (int k = 0; k < 10; k += 2) CHECK(pool_release(&p, (uint64_t)off[k]) == 0);
    const uint64_t in_use = p.in_use;
    CHECK(pool_alloc(&p, 2048) == -1);
    CHECK(p.in_use == in_use && p.n_free == 5);  /* a refusal changes nothing */
    char msg[1024];
    pool_describe_failure(&p, 2048, msg, sizeof msg);
    CHECK_MSG(strstr(msg, "2048 bytes") && strstr(msg, "5120 bytes") &&
              strstr(msg, "largest free range is 1024 bytes") && strstr(msg, "fragmented") &&
              strstr(msg, "\nHINT: ") && strstr(msg, "TRIDENT_CUDA_POOL_MARGIN"),
              "message: %s", msg);
    pool_describe_failure(&p, 1 << 20, msg, sizeof msg);
    CHECK(!strstr(msg, "fragmented"));  /* not enough bytes at all: not a fragmentation */
    CHECK(pool_release(&p, 12345) == -1);           /* not a block */
    CHECK(pool_release(&p, (uint64_t)off[0]) == -1); /* already free */
    pool_destroy(&p);
}

/* Random allocations and frees, checked against a map of which 256-byte unit belongs to
 * which block: no two live blocks overlap, every block lies inside the pool, and the
 * free count is the pool minus the live blocks. */
static void test_random_blocks_never_overlap(void)
{
    enum { UNITS = 4096, LIVE = 200 };
    for (int fit = 0; fit < 2; fit++) {
        struct pool p;
        pool_init(&p, (uint64_t)UNITS * POOL_ALIGN, (enum pool_fit)fit);
        int owner[UNITS];
        for (int u = 0; u < UNITS; u++) owner[u] = -1;
        int64_t off[LIVE];
        uint64_t len[LIVE];
        for (int k = 0; k < LIVE; k++) off[k] = -1;
        int bad = 0, n_refused = 0;
        for (int it = 0; it < 20000 && !bad; it++) {
            int k = (int)(rnd() % LIVE);
            if (off[k] >= 0) {
                for (uint64_t u = 0; u < len[k]; u++) owner[off[k] / POOL_ALIGN + u] = -1;
                if (pool_release(&p, (uint64_t)off[k]) != 0) bad = 1;
                off[k] = -1;
                continue;
            }
            uint64_t n = 1 + rnd() % (64 * POOL_ALIGN);
            int64_t o = pool_alloc(&p, n);
            if (o < 0) {
                n_refused++;
                continue;
            }
            len[k] = (n + POOL_ALIGN - 1) / POOL_ALIGN;
            if (o % POOL_ALIGN || (uint64_t)o / POOL_ALIGN + len[k] > UNITS) {
                bad = 1;
                break;
            }
            for (uint64_t u = 0; u < len[k]; u++) {
                if (owner[o / POOL_ALIGN + u] != -1) bad = 1;
                owner[o / POOL_ALIGN + u] = k;
            }
            off[k] = o;
            uint64_t used_units = 0;
            for (int u = 0; u < UNITS; u++) used_units += owner[u] != -1;
            if (pool_free_bytes(&p) != (UNITS - used_units) * POOL_ALIGN) bad = 1;
        }
        CHECK_MSG(!bad, "%s: overlapping or lost blocks", fit ? "first fit" : "best fit");
        CHECK(n_refused > 0);  /* the pool was driven full: refusals were exercised */
        for (int k = 0; k < LIVE; k++)
            if (off[k] >= 0) CHECK(pool_release(&p, (uint64_t)off[k]) == 0);
        CHECK(p.n_free == 1 && pool_free_bytes(&p) == p.size && p.n_used == 0);
        pool_destroy(&p);
    }
}

/* What a training job does: the long-lived buffers (masters, gradients, the weights'
 * 16-bit copy, two optimizer moments, activation slots) at start, then per step
 * workspaces that grow (free, then a larger block), temporaries that come and go, and a
 * checkpoint's staging buffer. With the size pool_reserve_bytes gives for the sum of the
 * long-lived buffers and the largest transient ones, no step is refused, and freeing
 * everything leaves one free range. */
static void test_a_training_jobs_pattern_fits_its_reservation(void)
{
    const uint64_t MiB = 1 << 20;
    const uint64_t n_params = 3 * MiB + 17;  /* an odd count: sizes not multiples of 256 */
    const uint64_t lived[] = {4 * n_params, 4 * n_params, 2 * n_params, 4 * n_params,
                              4 * n_params, 24 * MiB + 64, 24 * MiB + 64, 24 * MiB + 64};
    const int n_lived = (int)(sizeof lived / sizeof *lived);
    uint64_t plan = 0;
    for (int i = 0; i < n_lived; i++) plan += lived[i];
    const uint64_t ws_max = 8 * MiB, tmp = 3 * MiB + 5, stage = 4 * n_params;
    plan += ws_max + tmp + stage;
    int64_t size = pool_reserve_bytes((int64_t)plan, NULL);
    CHECK(size == (int64_t)(plan + plan / 8 + 256 * MiB));
    /* the test runs with no margin beyond alignment: the plan plus one POOL_ALIGN per block */
    struct pool p;
    pool_init(&p, plan + 16 * POOL_ALIGN, POOL_BEST_FIT);
    int64_t lo[8];
    for (int i = 0; i < n_lived; i++) CHECK((lo[i] = pool_alloc(&p, lived[i])) >= 0);
    int64_t ws = -1;
    uint64_t ws_n = 0;
    int refused = 0;
    for (int step = 0; step < 200; step++) {
        uint64_t want = MiB * (1 + (uint64_t)step % 8);  /* grow-only workspace */
        if (want > ws_n) {
            if (ws >= 0) CHECK(pool_release(&p, (uint64_t)ws) == 0);
            ws = pool_alloc(&p, want);
            ws_n = want;
            refused += ws < 0;
        }
        int64_t t = pool_alloc(&p, tmp);
        refused += t < 0;
        if (step % 50 == 49) {  /* a checkpoint stages the masters */
            int64_t s = pool_alloc(&p, stage);
            refused += s < 0;
            if (s >= 0) CHECK(pool_release(&p, (uint64_t)s) == 0);
        }
        if (t >= 0) CHECK(pool_release(&p, (uint64_t)t) == 0);
    }
    CHECK_MSG(refused == 0, "%d requests refused in a pool the plan's size", refused);
    if (ws >= 0) CHECK(pool_release(&p, (uint64_t)ws) == 0);
    for (int i = n_lived - 1; i >= 0; i--) CHECK(pool_release(&p, (uint64_t)lo[i]) == 0);
    CHECK(p.n_free == 1 && p.in_use == 0);
    CHECK(p.peak <= plan + 16 * POOL_ALIGN);
    pool_destroy(&p);
}

static void test_the_margin_setting_is_parsed(void)
{
    const int64_t MiB = 1 << 20;
    CHECK(pool_reserve_bytes(0, NULL) == 256 * MiB);
    CHECK(pool_reserve_bytes(800 * MiB, NULL) == 800 * MiB + 100 * MiB + 256 * MiB);
    CHECK(pool_reserve_bytes(800 * MiB, "2G") == 800 * MiB + 2048 * MiB);
    CHECK(pool_reserve_bytes(800 * MiB, "512MiB") == 800 * MiB + 512 * MiB);
    CHECK(pool_reserve_bytes(800 * MiB, "1.5G") == 800 * MiB + 1536 * MiB);
    CHECK(pool_reserve_bytes(800 * MiB, "0") == 800 * MiB);
    CHECK(pool_reserve_bytes(800 * MiB, "4096") == 800 * MiB + 4096);
    CHECK(pool_reserve_bytes(800 * MiB, "lots") == -1);
    CHECK(pool_reserve_bytes(800 * MiB, "-1G") == -1);
    CHECK(pool_reserve_bytes(800 * MiB, "2X") == -1);
    CHECK(pool_reserve_bytes(800 * MiB, "") == -1);
}

int main(void)
{
    RUN(test_blocks_are_aligned_and_rounded);
    RUN(test_freed_neighbours_merge_in_any_order);
    RUN(test_best_fit_and_first_fit_choose_their_holes);
    RUN(test_exhaustion_is_refused_and_explained);
    RUN(test_random_blocks_never_overlap);
    RUN(test_a_training_jobs_pattern_fits_its_reservation);
    RUN(test_the_margin_setting_is_parsed);
    return test_summary();
}

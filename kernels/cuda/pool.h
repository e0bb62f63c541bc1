/* pool.h — the CUDA backend's memory pool, as plain bookkeeping over a range of offsets.
 *
 * At backend_reserve the CUDA backend makes one cudaMalloc of the memory plan's size;
 * every backend_alloc after that is carved out of it here, so nothing is asked of the
 * driver inside a training step and a plan that is too small shows as a clear error, not
 * as a cudaMalloc failing somewhere in step 3. This file knows nothing of CUDA (it hands
 * out offsets into [0, size)), so the CPU tests check it (tests/test_cuda_pool.c).
 *
 * Blocks are POOL_ALIGN-byte aligned (cuBLASLt's preferred alignment, and whole cache
 * lines of the GPU). A free range is merged with its free neighbours when a block comes
 * back, so a pattern of allocations freed in any order leaves one free range again.
 * Best fit (the default) takes the smallest free range that holds the request, the lowest
 * such offset on ties; first fit takes the lowest free range that holds it.
 */
#ifndef TRIDENT_CUDA_POOL_H
#define TRIDENT_CUDA_POOL_H

#include <stddef.h>
#include <stdint.h>

enum { POOL_ALIGN = 256 };
enum pool_fit { POOL_BEST_FIT = 0, POOL_FIRST_FIT = 1 };

struct pool_range {
    uint64_t off, n_bytes;
};

struct pool {
    uint64_t size;                /* bytes managed: [0, size) */
    enum pool_fit fit;
    struct pool_range *free;      /* free ranges, sorted by offset, none adjacent */
    int64_t n_free, cap_free;
    struct pool_range *used;      /* live blocks (unsorted) */
    int64_t n_used, cap_used;
    uint64_t in_use, peak;        /* bytes in live blocks (each rounded to POOL_ALIGN) */
};

/* A pool over [0, size); size is rounded down to POOL_ALIGN. */
void     pool_init(struct pool *p, uint64_t size, enum pool_fit fit);
void     pool_destroy(struct pool *p);
/* The offset of a new block of n_bytes (0 counts as one POOL_ALIGN block), or -1 when no
 * free range holds it (the pool is unchanged). */
int64_t  pool_alloc(struct pool *p, uint64_t n_bytes);
/* Gives back the block at off: 0, or -1 when no live block starts there. */
int      pool_release(struct pool *p, uint64_t off);
uint64_t pool_free_bytes(const struct pool *p);
uint64_t pool_largest_free(const struct pool *p);
/* The sentence and HINT line for a request of n_bytes that pool_alloc refused: the bytes
 * asked, free and the largest free range, and what to do. */
void     pool_describe_failure(const struct pool *p, uint64_t n_bytes, char *buf, size_t len);

/* The pool's size for a memory plan that puts plan_bytes on the device: the plan plus a
 * margin for what it does not count exactly (fragmentation between blocks of different
 * lifetimes, POOL_ALIGN rounding, workspaces that grow). Default margin: 1/8 of the plan
 * + 256 MiB. margin_env (the text of TRIDENT_CUDA_POOL_MARGIN, NULL when unset) replaces
 * it: a size in bytes with an optional K, M, G or T suffix (binary units), e.g. "2G".
 * Returns -1 when margin_env is not such a size. */
int64_t  pool_reserve_bytes(int64_t plan_bytes, const char *margin_env);

#endif

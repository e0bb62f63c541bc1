/* pool.c — offsets handed out from one pre-sized range (pool.h says why). */
#include "pool.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static uint64_t round_up(uint64_t n) { return (n + POOL_ALIGN - 1) / POOL_ALIGN * POOL_ALIGN; }

/* room for one more entry in a growable array of ranges */
static void reserve_one(struct pool_range **a, int64_t n, int64_t *cap)
{
    if (n < *cap) return;
    int64_t c = *cap ? 2 * *cap : 64;
    struct pool_range *na = realloc(*a, sizeof *na * (size_t)c);
    if (!na) TR_ABORT("out of host memory growing the CUDA pool's block table");
    *a = na;
    *cap = c;
}

void pool_init(struct pool *p, uint64_t size, enum pool_fit fit)
{
    memset(p, 0, sizeof *p);
    p->size = size / POOL_ALIGN * POOL_ALIGN;
    p->fit = fit;
    if (p->size) {
        reserve_one(&p->free, 0, &p->cap_free);
        p->free[0] = (struct pool_range){0, p->size};
        p->n_free = 1;
    }
}

void pool_destroy(struct pool *p)
{
    free(p->free);
    free(p->used);
    memset(p, 0, sizeof *p);
}

int64_t pool_alloc(struct pool *p, uint64_t n_bytes)
{
    if (n_bytes > UINT64_MAX - POOL_ALIGN) return -1;
    const uint64_t need = round_up(n_bytes ? n_bytes : 1);
    int64_t pick = -1;
    for (int64_t i = 0; i < p->n_free; i++) {
        if (p->free[i].n_bytes < need) continue;
        if (p->fit == POOL_FIRST_FIT) {
            pick = i;
            break;
        }
        /* best fit: strictly smaller wins, so ties keep the lowest offset */
        if (pick < 0 || p->free[i].n_bytes < p->free[pick].n_bytes) pick = i;
    }
    if (pick < 0) return -1;
    const uint64_t off = p->free[pick].off;
    if (p->free[pick].n_bytes == need) {
        memmove(p->free + pick, p->free + pick + 1,
                sizeof *p->free * (size_t)(p->n_free - pick - 1));
        p->n_free--;
    } else {
        p->free[pick].off += need;
        p->free[pick].n_bytes -= need;
    }
    reserve_one(&p->used, p->n_used, &p->cap_used);
    p->used[p->n_used++] = (struct pool_range){off, need};
    p->in_use += need;
    if (p->in_use > p->peak) p->peak = p->in_use;
    return (int64_t)off;
}

int pool_release(struct pool *p, uint64_t off)
{
    /* newest first: blocks mostly come back in the reverse order of allocation */
    int64_t u = p->n_used - 1;
    while (u >= 0 && p->used[u].off != off) u--;
    if (u < 0) return -1;
    const struct pool_range blk = p->used[u];
    p->used[u] = p->used[--p->n_used];
    p->in_use -= blk.n_bytes;

    /* i: the first free range after the block (the list is sorted by offset) */
    int64_t lo = 0, hi = p->n_free;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (p->free[mid].off < blk.off) lo = mid + 1;
        else hi = mid;
    }
    const int64_t i = lo;
    const int join_prev = i > 0 && p->free[i - 1].off + p->free[i - 1].n_bytes == blk.off;
    const int join_next = i < p->n_free && blk.off + blk.n_bytes == p->free[i].off;
    if (join_prev && join_next) {
        p->free[i - 1].n_bytes += blk.n_bytes + p->free[i].n_bytes;
        memmove(p->free + i, p->free + i + 1, sizeof *p->free * (size_t)(p->n_free - i - 1));
        p->n_free--;
    } else if (join_prev) {
        p->free[i - 1].n_bytes += blk.n_bytes;
    } else if (join_next) {
        p->free[i].off = blk.off;
        p->free[i].n_bytes += blk.n_bytes;
    } else {
        reserve_one(&p->free, p->n_free, &p->cap_free);
        memmove(p->free + i + 1, p->free + i, sizeof *p->free * (size_t)(p->n_free - i));
        p->free[i] = blk;
        p->n_free++;
    }
    return 0;
}

uint64_t pool_free_bytes(const struct pool *p) { return p->size - p->in_use; }

uint64_t pool_largest_free(const struct pool *p)
{
    uint64_t m = 0;
    for (int64_t i = 0; i < p->n_free; i++)
        if (p->free[i].n_bytes > m) m = p->free[i].n_bytes;
    return m;
}

void pool_describe_failure(const struct pool *p, uint64_t n_bytes, char *buf, size_t len)
{
    const double MiB = 1048576.0;
    const uint64_t free_b = pool_free_bytes(p), largest = pool_largest_free(p);
    snprintf(buf, len,
             "the CUDA memory pool cannot hold a block of %llu bytes (%.1f MiB): %llu bytes "
             "(%.1f MiB) of %llu are free, the largest free range is %llu bytes (%.1f MiB)%s\n"
             "HINT: the pool is sized from the memory plan at start, so the plan missed an "
             "allocation: please report it with this message; meanwhile raise the pool's "
             "margin with TRIDENT_CUDA_POOL_MARGIN (a size, e.g. TRIDENT_CUDA_POOL_MARGIN=4G)",
             (unsigned long long)n_bytes, n_bytes / MiB, (unsigned long long)free_b,
             free_b / MiB, (unsigned long long)p->size, (unsigned long long)largest,
             largest / MiB,
             free_b >= round_up(n_bytes) ? " (enough bytes in all, but fragmented)" : "");
}

int64_t pool_reserve_bytes(int64_t plan_bytes, const char *margin_env)
{
    if (plan_bytes < 0) plan_bytes = 0;
    int64_t margin = plan_bytes / 8 + ((int64_t)256 << 20);
    if (margin_env) {
        char *end;
        const char *s = margin_env;
        while (isspace((unsigned char)*s)) s++;
        if (!isdigit((unsigned char)*s)) return -1;
        double v = strtod(s, &end);
        int shift = 0;
        switch (toupper((unsigned char)*end)) {
        case 'K': shift = 10; end++; break;
        case 'M': shift = 20; end++; break;
        case 'G': shift = 30; end++; break;
        case 'T': shift = 40; end++; break;
        default: break;
        }
        if (toupper((unsigned char)*end) == 'I' && shift) end++;
        if (toupper((unsigned char)*end) == 'B') end++;
        while (isspace((unsigned char)*end)) end++;
        if (*end || !(v >= 0) || v * (double)((int64_t)1 << shift) > 9.0e18) return -1;
        margin = (int64_t)(v * (double)((int64_t)1 << shift));
    }
    if (plan_bytes > INT64_MAX - margin) return -1;
    return plan_bytes + margin;
}

/* backend.c — choosing a backend, and the bookkeeping every device shares: each
 * allocation's size (so backend_free_mem can count it back), the current and peak bytes,
 * argument checks. The device work itself is the table's (kernels/cpu/backend_cpu.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_impl.h"
#include "common.h"

int backend_parse(const char *name)
{
    if (strcmp(name, "cpu") == 0) return KDEV_CPU;
    if (strcmp(name, "cuda") == 0) return KDEV_CUDA;
    return -1;
}

/* The table for dev, or NULL with the reason (sentence + HINT line) in err. */
static const struct backend_ops *ops_for(enum kdevice dev, char *err, size_t err_len)
{
    switch (dev) {
    case KDEV_CPU: return &backend_cpu_ops;
    case KDEV_CUDA:
#ifdef TR_HAVE_CUDA
        return &backend_cuda_ops;
#else
        snprintf(err, err_len, "trident was built without the CUDA backend (device = cuda): "
                 "this binary is the CPU build\n"
                 "HINT: build the CUDA one with `make BACKEND=cuda` (the CUDA toolkit, cuBLAS "
                 "and NCCL; it is bin-cuda/trident), or set device = cpu");
        return NULL;
#endif
    }
    snprintf(err, err_len, "unknown device %d\nHINT: device is one of: cpu, cuda", (int)dev);
    return NULL;
}

struct backend *backend_init(enum kdevice dev, int local_rank, char *err, size_t err_len)
{
    char scratch[8];
    if (!err || !err_len) err = scratch, err_len = sizeof scratch;
    err[0] = '\0';
    const struct backend_ops *ops = ops_for(dev, err, err_len);
    if (!ops) return NULL;
    struct backend *b = calloc(1, sizeof *b);
    if (!b) TR_ABORT("out of memory allocating the backend context");
    b->ops = ops;
    b->local_rank = local_rank;
    if (ops->init && ops->init(b, local_rank, err, err_len) != 0) {
        free(b);
        return NULL;
    }
    return b;
}

void backend_free(struct backend *b)
{
    if (!b) return;
    /* whatever is still allocated goes with the context */
    for (int64_t i = 0; i < b->n_blocks; i++) b->ops->free_mem(b, b->blocks[i].p);
    if (b->ops->free) b->ops->free(b);
    free(b->blocks);
    free(b);
}

const char  *backend_name(const struct backend *b) { return b->ops->name; }
enum kdevice backend_device(const struct backend *b) { return b->ops->device; }

void *backend_alloc(struct backend *b, size_t n_bytes)
{
    if (n_bytes > SIZE_MAX - 64) TR_ABORT("allocation size overflow: %zu bytes", n_bytes);
    size_t rounded = n_bytes ? (n_bytes + 63) & ~(size_t)63 : 64;
    void *p = b->ops->alloc(b, rounded);
    if (!p)
        TR_ABORT("out of %s memory allocating %zu bytes (%.3g GiB allocated, peak %.3g GiB)",
                 b->ops->name, n_bytes, b->mem.current / 1073741824.0,
                 b->mem.peak / 1073741824.0);
    if (b->n_blocks == b->cap_blocks) {
        int64_t cap = b->cap_blocks ? 2 * b->cap_blocks : 64;
        struct backend_block *nb = realloc(b->blocks, sizeof *nb * (size_t)cap);
        if (!nb) TR_ABORT("out of memory tracking backend allocations");
        b->blocks = nb;
        b->cap_blocks = cap;
    }
    b->blocks[b->n_blocks++] = (struct backend_block){p, rounded};
    b->mem.current += (int64_t)rounded;
    b->mem.n_allocs++;
    if (b->mem.current > b->mem.peak) b->mem.peak = b->mem.current;
    return p;
}

void backend_free_mem(struct backend *b, void *p)
{
    if (!p) return;
    /* newest first: buffers are mostly freed in the reverse order of allocation */
    for (int64_t i = b->n_blocks - 1; i >= 0; i--) {
        if (b->blocks[i].p != p) continue;
        b->mem.current -= (int64_t)b->blocks[i].n_bytes;
        b->mem.n_allocs--;
        b->blocks[i] = b->blocks[--b->n_blocks];
        b->ops->free_mem(b, p);
        return;
    }
    TR_ABORT("backend_free_mem: %p was not allocated by the %s backend", p, b->ops->name);
}

void backend_memset(struct backend *b, void *p, int value, size_t n_bytes)
{
    if (n_bytes) b->ops->memset(b, p, value, n_bytes);
}

void backend_copy_h2d(struct backend *b, void *dst, const void *src, size_t n_bytes)
{
    if (n_bytes) b->ops->copy(b, dst, src, n_bytes, BACKEND_H2D);
}

void backend_copy_d2h(struct backend *b, void *dst, const void *src, size_t n_bytes)
{
    if (n_bytes) b->ops->copy(b, dst, src, n_bytes, BACKEND_D2H);
}

void backend_copy_d2d(struct backend *b, void *dst, const void *src, size_t n_bytes)
{
    if (n_bytes) b->ops->copy(b, dst, src, n_bytes, BACKEND_D2D);
}

void backend_mem_stats(const struct backend *b, struct backend_mem *s) { *s = b->mem; }

void *backend_host_view(const struct backend *b, void *p) { return b->ops->host_memory ? p : NULL; }

struct backend_event *backend_event_new(struct backend *b)
{
    struct backend_event *e = calloc(1, sizeof *e);
    if (!e) TR_ABORT("out of memory allocating an event");
    if (b->ops->event_create) b->ops->event_create(b, e);
    return e;
}

void backend_event_free(struct backend *b, struct backend_event *e)
{
    if (!e) return;
    if (b->ops->event_destroy) b->ops->event_destroy(b, e);
    free(e);
}

void backend_event_record(struct backend *b, struct backend_event *e)
{
    b->ops->event_record(b, e);
}

double backend_event_elapsed(struct backend *b, const struct backend_event *start,
                             const struct backend_event *stop)
{
    return b->ops->event_elapsed(b, start, stop);
}

void backend_synchronize(struct backend *b) { b->ops->synchronize(b); }

int backend_reserve(struct backend *b, size_t n_bytes, char *err, size_t err_len)
{
    char scratch[8];
    if (!err || !err_len) err = scratch, err_len = sizeof scratch;
    err[0] = '\0';
    return b->ops->reserve ? b->ops->reserve(b, n_bytes, err, err_len) : 0;
}

void *backend_stream(const struct backend *b) { return b->ops->stream ? b->ops->stream(b) : NULL; }

const struct kernels *backend_kernels(const struct backend *b) { return b->ops->kernels; }

void *backend_workspace(struct backend *b, int slot, size_t n_bytes)
{
    if (slot < 0 || slot >= BACKEND_WS_SLOTS) TR_ABORT("workspace slot %d out of range", slot);
    struct backend_ws *w = &b->ws[slot];
    if (w->n_bytes < n_bytes) {
        backend_free_mem(b, w->p);
        w->p = backend_alloc(b, n_bytes);
        w->n_bytes = (n_bytes + 63) & ~(size_t)63;  /* what the block really holds */
    }
    return w->p;
}

int64_t kernels_attention_saved_cols(enum kdevice dev, int T, enum kdtype dt)
{
    if (dev == KDEV_CUDA) return kdtype_is_16bit(dt) ? 2 : 1;  /* one fp32 log-sum-exp */
    return T;                                                  /* the probabilities */
}

int64_t kernels_attention_scratch_cols(enum kdevice dev, int T)
{
    return dev == KDEV_CUDA ? 1 : T;
}

/* backend_impl.h — the inside of a backend (private to kernels/): the handle's body and
 * the function table each device fills. backend.c does the bookkeeping common to every
 * device (allocation sizes, memory statistics, argument checks) and calls the table. */
#ifndef TRIDENT_BACKEND_IMPL_H
#define TRIDENT_BACKEND_IMPL_H

#include "backend.h"

enum backend_copy_kind { BACKEND_H2D, BACKEND_D2H, BACKEND_D2D };

struct backend_ops {
    const char  *name;     /* "cpu", "cuda" */
    enum kdevice device;
    int          host_memory;  /* 1: device memory is host memory (backend_host_view) */
    /* open the device; 0 on success, else -1 with the reason in err */
    int   (*init)(struct backend *b, int local_rank, char *err, size_t err_len);
    void  (*free)(struct backend *b);
    void *(*alloc)(struct backend *b, size_t n_bytes);  /* n_bytes: a multiple of 64 */
    void  (*free_mem)(struct backend *b, void *p);
    void  (*memset)(struct backend *b, void *p, int value, size_t n_bytes);
    void  (*copy)(struct backend *b, void *dst, const void *src, size_t n_bytes,
                  enum backend_copy_kind kind);
    /* optional (NULL: nothing to create): the device's event behind e->dev */
    void  (*event_create)(struct backend *b, struct backend_event *e);
    void  (*event_destroy)(struct backend *b, struct backend_event *e);
    void  (*event_record)(struct backend *b, struct backend_event *e);
    double (*event_elapsed)(struct backend *b, const struct backend_event *start,
                            const struct backend_event *stop);
    void  (*synchronize)(struct backend *b);
    /* optional (NULL: nothing to reserve / no stream): backend_reserve, backend_stream */
    int   (*reserve)(struct backend *b, size_t n_bytes, char *err, size_t err_len);
    void *(*stream)(const struct backend *b);
    const struct kernels *kernels;
};

/* One live allocation: the pointer and the bytes counted for it. */
struct backend_block {
    void  *p;
    size_t n_bytes;
};

/* Scratch memory a kernel needs for the length of one call (the CPU backend widens
 * 16-bit tensors into it). Grow-only, one buffer per slot, counted like any allocation. */
enum { BACKEND_WS_SLOTS = 8 };
struct backend_ws {
    void  *p;
    size_t n_bytes;
};

struct backend {
    const struct backend_ops *ops;
    void *dev;                      /* the device's own context (stream, handles, ...) */
    int   local_rank;
    struct backend_mem mem;
    struct backend_block *blocks;   /* live allocations (a few dozen per rank) */
    int64_t n_blocks, cap_blocks;
    struct backend_ws ws[BACKEND_WS_SLOTS];
};

/* Workspace slot `slot` (0 <= slot < BACKEND_WS_SLOTS) with room for n_bytes; valid
 * until the next call for the same slot. Kernels of one call use distinct slots. */
void *backend_workspace(struct backend *b, int slot, size_t n_bytes);

struct backend_event {
    double t;                       /* CPU: monotonic clock, seconds */
    void  *dev;                     /* the device's event (cudaEvent_t) */
};

extern const struct backend_ops backend_cpu_ops;
#ifdef TR_HAVE_CUDA
extern const struct backend_ops backend_cuda_ops;  /* kernels/cuda/backend_cuda.cu */
#endif

#endif

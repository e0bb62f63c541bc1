/* backend.h — the device a rank computes on: context, memory, events, kernels.
 *
 * A backend is an opaque handle over a function table (ggml-style): the CPU backend
 * (kernels/cpu/backend_cpu.c) is the reference, a CUDA one (kernels/cuda/) will fill the
 * same table with a stream, cuBLAS handles and device memory. src/ holds one backend per
 * rank (struct trainer) and allocates through it every buffer a kernel reads or writes:
 * parameters, gradients, activations, optimizer moments.
 *
 * Memory returned by backend_alloc is "device memory": on the CPU backend it is host
 * memory, 64-byte aligned (one AVX-512 vector, one cache line), and the copies are
 * memcpy; on a GPU it may only be touched by kernels and the copy functions. Every
 * allocation is counted, so the metrics can report the device's current and peak use.
 *
 * Errors: a device that is not built in, or not present, is a recoverable failure
 * (backend_init returns NULL and says why); running out of device memory aborts with
 * file and line, like tr_malloc.
 */
#ifndef TRIDENT_BACKEND_H
#define TRIDENT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

struct backend;        /* one per rank: the device context */
struct backend_event;  /* a point in the backend's stream of work, for timing */

/* Bytes allocated through a backend, counted in whole 64-byte blocks (what the device
 * reserves): the same rounding the memory plan uses. */
struct backend_mem {
    int64_t current;   /* bytes allocated now */
    int64_t peak;      /* most bytes allocated at any time since backend_init */
    int64_t n_allocs;  /* live allocations */
};

/* The backend for device dev (local_rank picks the GPU among a node's devices), or NULL
 * with the reason in err (a sentence and, after '\n', a "HINT: ..." line) when the device
 * is not built into this binary or cannot be opened. */
struct backend *backend_init      (enum kdevice dev, int local_rank, char *err, size_t err_len);
void            backend_free      (struct backend *b);
const char     *backend_name      (const struct backend *b);   /* "cpu" */
enum kdevice    backend_device    (const struct backend *b);
/* KDEV_CPU for "cpu", KDEV_CUDA for "cuda"; -1 for anything else */
int             backend_parse     (const char *name);

/* memory (n_bytes == 0 allocates one block; backend_free_mem(b, NULL) does nothing) */
void           *backend_alloc     (struct backend *b, size_t n_bytes);
void            backend_free_mem  (struct backend *b, void *p);
void            backend_memset    (struct backend *b, void *p, int value, size_t n_bytes);
void            backend_copy_h2d  (struct backend *b, void *dst, const void *src, size_t n_bytes);
void            backend_copy_d2h  (struct backend *b, void *dst, const void *src, size_t n_bytes);
void            backend_copy_d2d  (struct backend *b, void *dst, const void *src, size_t n_bytes);
void            backend_mem_stats (const struct backend *b, struct backend_mem *s);
/* p itself when the device's memory is the host's (the CPU backend), so that file I/O
 * can read and write it in place; NULL when it must be staged through the copies. */
void           *backend_host_view (const struct backend *b, void *p);

/* timing: record an event when the work queued so far is done; elapsed seconds
 * between two recorded events (synchronizes on stop) */
struct backend_event *backend_event_new    (struct backend *b);
void                  backend_event_free   (struct backend *b, struct backend_event *e);
void                  backend_event_record (struct backend *b, struct backend_event *e);
double                backend_event_elapsed(struct backend *b, const struct backend_event *start,
                                            const struct backend_event *stop);
/* wait until all work queued on the backend is done (CPU: nothing to wait for) */
void                  backend_synchronize  (struct backend *b);

/* Reserve, up front, the device memory this rank will allocate (the memory plan's total,
 * with its margin): a device that allocates from one pre-sized pool (CUDA) creates the
 * pool here, so that nothing is allocated from the driver inside a step and running out
 * shows at start. 0 on success; -1 with the reason in err (a sentence and, after '\n', a
 * "HINT: ..." line) when it cannot. The CPU allocates as it goes: 0. Called at most once,
 * before the first backend_alloc that should come from the pool. */
int   backend_reserve(struct backend *b, size_t n_bytes, char *err, size_t err_len);
/* The device's stream of work (a cudaStream_t) for a layer that orders its own device work
 * behind the kernels' (the NCCL communicator); NULL on the CPU. */
void *backend_stream(const struct backend *b);

/* The backend's kernel table (one for every element type: kernels.h). */
const struct kernels *backend_kernels(const struct backend *b);

#endif

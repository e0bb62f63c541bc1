/* backend_cpu.c — the CPU backend's table: host memory, memcpy, the monotonic clock.
 * Work runs synchronously on the calling thread (and its OpenMP team), so there is no
 * queue to wait for: an event records the time at which it is recorded. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_impl.h"
#include "cpu.h"

static void *cpu_alloc(struct backend *b, size_t n_bytes)
{
    /* n_bytes is a multiple of 64 (backend_alloc rounds), as aligned_alloc requires */
    return aligned_alloc(64, n_bytes);
}

static void cpu_free_mem(struct backend *b, void *p) { free(p); }

static void cpu_memset(struct backend *b, void *p, int value, size_t n_bytes)
{
    memset(p, value, n_bytes);
}

static void cpu_copy(struct backend *b, void *dst, const void *src, size_t n_bytes,
                     enum backend_copy_kind kind)
{
    /* host and device are the same memory; memmove because d2d may overlap */
    memmove(dst, src, n_bytes);
}

static void cpu_event_record(struct backend *b, struct backend_event *e)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    e->t = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_event_elapsed(struct backend *b, const struct backend_event *start,
                                const struct backend_event *stop)
{
    return stop->t - start->t;
}

static void cpu_synchronize(struct backend *b) {}

const struct backend_ops backend_cpu_ops = {
    .name          = "cpu",
    .device        = KDEV_CPU,
    .host_memory   = 1,
    .alloc         = cpu_alloc,
    .free_mem      = cpu_free_mem,
    .memset        = cpu_memset,
    .copy          = cpu_copy,
    .event_record  = cpu_event_record,
    .event_elapsed = cpu_event_elapsed,
    .synchronize   = cpu_synchronize,
    .kernels       = &cpu_kernels,
};

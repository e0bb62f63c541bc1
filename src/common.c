/* common.c — error reporting, aligned allocation, clock, string hash. */
#include "common.h"

#include <mpi.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The world rank is process-wide and written once, before any thread starts: it only
 * labels messages. */
static int g_rank = 0;

void tr_set_rank(int world_rank) { g_rank = world_rank; }
int  tr_rank(void) { return g_rank; }

void tr_fail(int code, const char *hint, const char *fmt, ...) {
    /* Every rank sees the same bad input; rank 0 speaks for all of them. */
    if (g_rank == 0) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "trident: error: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
        if (hint) fprintf(stderr, "HINT: %s\n", hint);
        fflush(stderr);
    }
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Finalize();
    exit(code);
}

void tr_abort(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "trident: fatal [rank %d] %s:%d: ", g_rank, file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Abort(MPI_COMM_WORLD, TR_EXIT_FAILURE);
    exit(TR_EXIT_FAILURE);
}

void tr_warn(const char *fmt, ...) {
    if (g_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "trident: warning: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
}

void tr_info(const char *fmt, ...) {
    if (g_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}

void *tr_malloc(size_t n_bytes) {
    if (n_bytes == 0) n_bytes = 64;
    /* 64-byte alignment: one AVX-512 vector, one cache line. */
    size_t rounded = (n_bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (!p) TR_ABORT("out of memory allocating %zu bytes", n_bytes);
    return p;
}

void *tr_calloc(size_t n_elems, size_t elem_bytes) {
    if (elem_bytes && n_elems > SIZE_MAX / elem_bytes)
        TR_ABORT("allocation size overflow: %zu x %zu bytes", n_elems, elem_bytes);
    void *p = tr_malloc(n_elems * elem_bytes);
    memset(p, 0, n_elems * elem_bytes);
    return p;
}

void tr_free(void *p) { free(p); }

void tr_mpi_defaults(void) {
    /* Open MPI's default MPI-IO component (OMPIO) writes our collective checkpoints at
     * a quarter of ROMIO's speed on a local file system (measured by tests/bench.sh);
     * prefer ROMIO unless the user chose. Other MPI libraries ignore the variable. */
    setenv("OMPI_MCA_io", "romio321", 0);
}

double tr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t tr_hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

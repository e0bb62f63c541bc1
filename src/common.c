/* common.c — error reporting, aligned allocation, clock, string hash. */
#include "common.h"

#include <mpi.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The world rank is process-wide and written once, before any thread starts: it only
 * labels messages. */
static int g_rank = 0;
/* A duplicate of MPI_COMM_WORLD used only by tr_fail to learn whether every rank met the
 * same error; set once, right after MPI_Init, like the rank. */
static MPI_Comm g_fail_comm = MPI_COMM_NULL;
/* Called on the way out (tr_fail, tr_abort): releases the run directory's lock. */
static void (*g_exit_hook)(void *) = NULL;
static void *g_exit_ctx = NULL;

void tr_set_rank(int world_rank) { g_rank = world_rank; }
int  tr_rank(void) { return g_rank; }

void tr_init_mpi(void) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    tr_set_rank(rank);
    MPI_Comm_dup(MPI_COMM_WORLD, &g_fail_comm);
}

void tr_set_exit_hook(void (*hook)(void *), void *ctx) {
    g_exit_hook = hook;
    g_exit_ctx = ctx;
}

static void run_exit_hook(void) {
    void (*hook)(void *) = g_exit_hook;
    g_exit_hook = NULL;
    if (hook) hook(g_exit_ctx);
}

/* Did every rank reach tr_fail within TR_FAIL_AGREE_S? A non-blocking barrier on a
 * communicator nothing else uses: it completes only when all ranks have called it. */
static int all_ranks_failing(void) {
    int size = 1;
    MPI_Comm_size(g_fail_comm, &size);
    if (size == 1) return 1;
    MPI_Request req;
    if (MPI_Ibarrier(g_fail_comm, &req) != MPI_SUCCESS) return 0;
    double t0 = tr_now();
    int done = 0;
    while (!done && tr_now() - t0 < TR_FAIL_AGREE_S) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (!done) tr_sleep(1e-3);
    }
    return done;
}

static void print_error(const char *msg, const char *hint, int with_rank) {
    if (with_rank) fprintf(stderr, "trident: error [rank %d]: %s\n", g_rank, msg);
    else fprintf(stderr, "trident: error: %s\n", msg);
    if (hint) fprintf(stderr, "HINT: %s\n", hint);
    fflush(stderr);
}

void tr_fail(int code, const char *hint, const char *fmt, ...) {
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    run_exit_hook();
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized && g_fail_comm != MPI_COMM_NULL) {
        /* An error seen by every rank (bad input is the same everywhere) is printed once,
         * by rank 0, and the job ends quietly with `code`. One seen by some ranks only
         * must not leave the others waiting in a collective forever: this rank prints
         * it and ends the whole job, still with `code`. */
        if (!all_ranks_failing()) {
            print_error(msg, hint, 1);
            fprintf(stderr, "trident: rank %d: the other ranks did not meet this error within "
                    "%d s; ending the whole job\n", g_rank, TR_FAIL_AGREE_S);
            fflush(stderr);
            MPI_Abort(MPI_COMM_WORLD, code);
        }
        if (g_rank == 0) print_error(msg, hint, 0);
        MPI_Finalize();
    } else {
        if (g_rank == 0) print_error(msg, hint, 0);
        if (inited && !finalized) MPI_Finalize();
    }
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
    run_exit_hook();
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

void tr_sleep(double seconds) {
    if (!(seconds > 0)) return;
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint64_t tr_hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

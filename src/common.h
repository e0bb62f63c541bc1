/* common.h — error handling, allocation and timing shared by every module.
 *
 * Errors come in two kinds:
 *  - bugs and failed library calls (MPI, HDF5, CUDA): a CHECK macro prints file, line
 *    and MPI rank and aborts the whole job, so no rank is ever left hanging;
 *  - bad user input: validated once at start; tr_fail() prints the problem and the fix
 *    and exits with TR_EXIT_USAGE on every rank (the input is the same everywhere).
 */
#ifndef TRIDENT_COMMON_H
#define TRIDENT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes (documented in README.md, used by slurm/train.sbatch). */
enum {
    TR_EXIT_OK      = 0,
    TR_EXIT_FAILURE = 1,  /* a run failed (I/O error, numerical blow-up, ...) */
    TR_EXIT_USAGE   = 2,  /* bad config, layout, file: fix the input and run again */
    TR_EXIT_REQUEUE = 75, /* checkpointed on a signal: start again to resume (EX_TEMPFAIL) */
};

/* Print "trident: error: ..." (and a HINT line when hint is non-NULL) once, from rank 0,
 * then exit with `code`. When every rank meets the error (bad input is the same
 * everywhere) the job ends quietly; when the others do not follow within
 * TR_FAIL_AGREE_S seconds, the whole job is aborted with `code`: no rank is ever left
 * waiting. An error only one rank can see should still be broadcast and failed on every
 * rank where possible, so that rank 0 can print it. */
void tr_fail(int code, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

/* Abort the whole MPI job (all ranks) after printing file, line and rank. */
void tr_abort(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

void tr_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tr_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define TR_FAIL_AGREE_S 10

/* Messages from rank 0 only (tr_info) are the default; set by main once the rank is known. */
void tr_set_rank(int world_rank);
int  tr_rank(void);
/* Right after MPI_Init: records the rank and makes tr_fail's private communicator. */
void tr_init_mpi(void);
/* A function run once when the program ends through tr_fail or tr_abort (the run
 * directory's lock is released this way). NULL to remove. */
void tr_set_exit_hook(void (*hook)(void *), void *ctx);

#define TR_ABORT(...) tr_abort(__FILE__, __LINE__, __VA_ARGS__)

#define MPI_CHECK(call)                                                              \
    do {                                                                             \
        int mpi_rc_ = (call);                                                        \
        if (mpi_rc_ != MPI_SUCCESS) {                                                \
            char mpi_msg_[MPI_MAX_ERROR_STRING];                                     \
            int mpi_len_ = 0;                                                        \
            MPI_Error_string(mpi_rc_, mpi_msg_, &mpi_len_);                          \
            tr_abort(__FILE__, __LINE__, "MPI call failed: %s: %s", #call, mpi_msg_); \
        }                                                                            \
    } while (0)

/* Allocation goes through one place so a device or element type can be added later. */
void *tr_malloc(size_t n_bytes);           /* aborts on failure; 64-byte aligned   */
void *tr_calloc(size_t n_elems, size_t elem_bytes);
void  tr_free(void *p);

/* Settings for the MPI library, made before MPI_Init (the user's environment wins). */
void tr_mpi_defaults(void);

double tr_now(void);                       /* monotonic wall clock, seconds */
void   tr_sleep(double seconds);           /* the whole time, even when a signal arrives */

/* 64-bit FNV-1a of a string: stable tensor identifiers for the RNG and checksums. */
uint64_t tr_hash_str(const char *s);

#define TR_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TR_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif

/* comm.h — the communication layer: every collective and point-to-point transfer of
 * training traffic goes through here, on the groups of the process grid.
 *
 *   groups   COMM_WORLD, COMM_TP, COMM_DP, COMM_PP (pipeline: peers are pp ranks),
 *            COMM_EMB (first + last stage), COMM_DP_NODE, COMM_DP_CROSS (hierarchical
 *            all-reduce), COMM_NODE (every rank on this node), resolved from struct grid
 *            by comm_init
 *   dtypes   f32 f64 i32 i64 u64, bf16 f16 (moved as raw 2-byte values), u8
 *   ops      sum max min; and comm_allreduce_maxloc/minloc on a (double, rank) pair
 *
 * Every call has a blocking form and a non-blocking `_start` form that fills a
 * struct comm_req, finished by comm_wait (or polled with comm_test). Buffers stay owned
 * by the caller and must live until the request completes. Counts are elements (n),
 * never bytes. Every MPI failure aborts the job through MPI_CHECK (file, line, rank).
 * Calling a collective on a group this rank is not in (COMM_EMB on a middle stage) is a
 * bug and aborts with the group's name.
 *
 * Reductions of bf16/f16 in host memory are refused (comm_supports says so for the MPI
 * backend; the call aborts naming the dtype): MPI has no 16-bit float type, a
 * user-defined op would be a slow scalar loop whose rounding and order match neither fp32
 * accumulation nor NCCL's, and how 16-bit gradients are summed (in fp32 masters, part 6)
 * is a numerics decision that belongs to the mixed-precision code, not to a transport.
 * Moving them (bcast, gather, send) works. NCCL reduces bf16 and f16 natively (in fp32
 * inside each step of its ring, rounding at every hop), so the NCCL backend's
 * comm_supports says yes for them; a 16-bit reduction it is handed in host memory still
 * goes to MPI and is refused there, by name.
 *
 * Backends: struct comm holds a pointer to a function table (struct comm_backend, below),
 * chosen once by comm_init; every public function dispatches through it.
 *   MPI  (comm.c): every buffer is host memory.
 *   NCCL (comm_nccl.c, built by make BACKEND=cuda; the trainer's choice when device =
 *        cuda): comm_init(..., COMM_BACKEND_NCCL), after the backend has chosen the GPU,
 *        creates one ncclComm_t per group this rank is in (two more for the pipeline's
 *        point-to-point, one per direction), each from an ncclUniqueId that the group's
 *        rank 0 creates and broadcasts over the group's MPI communicator
 *        (src/comm_groups.h says who shares which; no file polling). Each call looks at
 *        its buffers (cudaPointerGetAttributes): device memory travels by NCCL, host
 *        memory (losses, norms, metrics, the checkpoint's host staging) by MPI, as
 *        before; one call must not mix the two, and every member passes the same kind.
 *        NCCL work is queued on streams of the communicator's own, after the work queued
 *        so far on the compute stream (comm_set_stream: the backend's stream), and a
 *        request's completion is an event: comm_wait makes the compute stream wait for it
 *        (the host does not block), comm_test asks whether it has happened. A blocking
 *        call on device memory returns once the compute stream is ordered after it: work
 *        queued there afterwards (kernels, the backend's copies) sees the result.
 */
#ifndef TRIDENT_COMM_H
#define TRIDENT_COMM_H

#include <mpi.h>

struct grid;
struct comm_backend;

enum comm_group {
    COMM_WORLD, COMM_TP, COMM_DP, COMM_PP, COMM_EMB, COMM_DP_NODE, COMM_DP_CROSS, COMM_NODE,
    COMM_N_GROUPS
};
enum comm_dtype {
    COMM_F32, COMM_F64, COMM_I32, COMM_I64, COMM_U64, COMM_BF16, COMM_F16, COMM_U8,
    COMM_N_DTYPES
};
enum comm_op { COMM_SUM, COMM_MAX, COMM_MIN, COMM_N_OPS };
enum comm_backend_kind { COMM_BACKEND_MPI, COMM_BACKEND_NCCL };

struct comm_handle {
    MPI_Comm mpi;         /* MPI_COMM_NULL: this rank is not in the group */
    int      rank, size;  /* of this rank in the group */
    int      owned;       /* the MPI communicator is freed by comm_free (a comm_dup copy) */
    void    *dev;         /* the NCCL backend's communicators and streams (comm_nccl.c);
                             owned by the comm, freed by comm_free; NULL with MPI */
};

struct comm {
    const struct comm_backend *be;
    int world_rank;
    struct comm_handle grp[COMM_N_GROUPS];
};

/* A request of a non-blocking call. be == NULL: nothing in flight (COMM_REQ_NULL). */
struct comm_req {
    const struct comm_backend *be;
    MPI_Request mpi;
    void *dev;            /* NCCL: the cudaEvent_t recorded when the work is done */
    void *dev_stream;     /* NCCL: the compute stream comm_wait orders after it */
};
#define COMM_REQ_NULL ((struct comm_req){0})

/* Resolve every group from g. MPI: no communication (grid_init built the communicators).
 * NCCL: collective over every rank of the job (each group's NCCL communicator is created
 * by its members, in one fixed order of groups); the CUDA device must already be chosen.
 * A kind that is not built in aborts, naming the build that has it. */
void comm_init(struct comm *c, const struct grid *g, enum comm_backend_kind kind);
/* Hand the comm layer the device's compute stream (backend_stream(): a cudaStream_t),
 * which its device transfers are ordered against; the MPI backend ignores it. Call it
 * once after comm_init, before any call on device memory. */
void comm_set_stream(struct comm *c, void *stream);
/* A context on a bare communicator, for a layer handed one instead of a grid (the data
 * layer): its only group, COMM_WORLD, is `world` (not owned; no communication). */
void comm_init_on(struct comm *c, MPI_Comm world, enum comm_backend_kind kind);
/* A context whose group grp is a private duplicate of c's (collective over grp; the
 * others are absent): traffic on it never matches traffic on the original. */
void comm_dup(struct comm *out, const struct comm *c, enum comm_group grp);
/* Free what c owns (duplicates, NCCL communicators); the grid's MPI communicators
 * belong to grid_free. c is all zeros afterwards (freeing it again does nothing). */
void comm_free(struct comm *c);

int         comm_rank(const struct comm *c, enum comm_group grp);
int         comm_size(const struct comm *c, enum comm_group grp);
int         comm_supports(const struct comm *c, enum comm_op op, enum comm_dtype dt);
int         comm_dtype_bytes(enum comm_dtype dt);
const char *comm_dtype_name(enum comm_dtype dt);
const char *comm_group_name(enum comm_group grp);

/* in-place all-reduce of n elements (blocking form: any n; _start: n <= INT_MAX) */
void comm_allreduce      (const struct comm *c, enum comm_group grp, void *buf, long n,
                          enum comm_dtype dt, enum comm_op op);
void comm_allreduce_start(const struct comm *c, enum comm_group grp, void *buf, long n,
                          enum comm_dtype dt, enum comm_op op, struct comm_req *req);
/* Which member holds the largest (maxloc) or smallest (minloc) value (blocking only): on
 * entry *value is this member's; on return *value is the extreme over grp and *rank the
 * rank in grp of the member holding it, the lowest such rank on a tie (as MPI_MAXLOC).
 * NaN values are not ordered: keep them out. */
void comm_allreduce_maxloc(const struct comm *c, enum comm_group grp, double *value,
                           int *rank);
void comm_allreduce_minloc(const struct comm *c, enum comm_group grp, double *value,
                           int *rank);
/* member i of grp receives counts[i] elements of the reduction of every member's send
 * (laid out rank after rank) into recv */
void comm_reduce_scatter      (const struct comm *c, enum comm_group grp, const void *send,
                               void *recv, const int *counts, enum comm_dtype dt,
                               enum comm_op op);
void comm_reduce_scatter_start(const struct comm *c, enum comm_group grp, const void *send,
                               void *recv, const int *counts, enum comm_dtype dt,
                               enum comm_op op, struct comm_req *req);
/* every member's n elements, rank after rank, into recv (size * n) */
void comm_allgather       (const struct comm *c, enum comm_group grp, const void *send,
                           long n, void *recv, enum comm_dtype dt);
void comm_allgather_start (const struct comm *c, enum comm_group grp, const void *send,
                           long n, void *recv, enum comm_dtype dt, struct comm_req *req);
/* member i's n elements (n == counts[i]) into recv + displs[i] */
void comm_allgatherv      (const struct comm *c, enum comm_group grp, const void *send,
                           long n, void *recv, const int *counts, const int *displs,
                           enum comm_dtype dt);
void comm_allgatherv_start(const struct comm *c, enum comm_group grp, const void *send,
                           long n, void *recv, const int *counts, const int *displs,
                           enum comm_dtype dt, struct comm_req *req);
/* member i sends scounts[j] elements at send + sdispls[j] to member j, and receives
 * rcounts[j] elements from member j at recv + rdispls[j] (a personalised exchange: the
 * first half of a reduction whose sum the caller computes itself, e.g. in fp32) */
void comm_alltoallv      (const struct comm *c, enum comm_group grp, const void *send,
                          const int *scounts, const int *sdispls, void *recv,
                          const int *rcounts, const int *rdispls, enum comm_dtype dt);
void comm_alltoallv_start(const struct comm *c, enum comm_group grp, const void *send,
                          const int *scounts, const int *sdispls, void *recv,
                          const int *rcounts, const int *rdispls, enum comm_dtype dt,
                          struct comm_req *req);
/* root's n elements to every member (blocking form: any n) */
void comm_bcast      (const struct comm *c, enum comm_group grp, void *buf, long n,
                      enum comm_dtype dt, int root);
void comm_bcast_start(const struct comm *c, enum comm_group grp, void *buf, long n,
                      enum comm_dtype dt, int root, struct comm_req *req);
/* tagged point-to-point; peer is a rank in grp; messages of one (peer, tag) arrive in
 * the order they were sent, messages of different tags are matched by tag */
void comm_send      (const struct comm *c, enum comm_group grp, const void *buf, long n,
                     enum comm_dtype dt, int peer, int tag);
void comm_send_start(const struct comm *c, enum comm_group grp, const void *buf, long n,
                     enum comm_dtype dt, int peer, int tag, struct comm_req *req);
void comm_recv      (const struct comm *c, enum comm_group grp, void *buf, long n,
                     enum comm_dtype dt, int peer, int tag);
void comm_recv_start(const struct comm *c, enum comm_group grp, void *buf, long n,
                     enum comm_dtype dt, int peer, int tag, struct comm_req *req);
/* diagnostics (blocking only): root gathers every member's n elements, rank after rank
 * (gather), or member i's counts[i] elements at recv + displs[i] (gatherv; n ==
 * counts[i]); only root reads recv, counts and displs. Barrier. */
void comm_gather (const struct comm *c, enum comm_group grp, const void *send, long n,
                  void *recv, enum comm_dtype dt, int root);
void comm_gatherv(const struct comm *c, enum comm_group grp, const void *send, long n,
                  void *recv, const int *counts, const int *displs, enum comm_dtype dt,
                  int root);
void comm_barrier(const struct comm *c, enum comm_group grp);

/* finish a request (no-op on COMM_REQ_NULL; afterwards *req is COMM_REQ_NULL) */
void comm_wait(struct comm_req *req);
/* 1 when the request has completed (and is now COMM_REQ_NULL), else 0 */
int  comm_test(struct comm_req *req);

/* ------------------------------------------------------------------------------------ */
/* For the backends only (comm.c, comm_nccl.c): the table each fills. A call arrives
 * checked (members only, int-sized counts, supported reductions); req == NULL: blocking. */
struct comm_backend {
    const char *name;
    int  (*supports)(enum comm_op op, enum comm_dtype dt);
    void (*allreduce)(const struct comm_handle *h, void *buf, int n, enum comm_dtype dt,
                      enum comm_op op, struct comm_req *req);
    void (*allreduce_loc)(const struct comm_handle *h, double *value, int *rank,
                          enum comm_op op);
    void (*reduce_scatter)(const struct comm_handle *h, const void *send, void *recv,
                           const int *counts, enum comm_dtype dt, enum comm_op op,
                           struct comm_req *req);
    void (*allgather)(const struct comm_handle *h, const void *send, int n, void *recv,
                      enum comm_dtype dt, struct comm_req *req);
    void (*allgatherv)(const struct comm_handle *h, const void *send, int n, void *recv,
                       const int *counts, const int *displs, enum comm_dtype dt,
                       struct comm_req *req);
    void (*alltoallv)(const struct comm_handle *h, const void *send, const int *scounts,
                      const int *sdispls, void *recv, const int *rcounts, const int *rdispls,
                      enum comm_dtype dt, struct comm_req *req);
    void (*bcast)(const struct comm_handle *h, void *buf, int n, enum comm_dtype dt, int root,
                  struct comm_req *req);
    void (*send)(const struct comm_handle *h, const void *buf, int n, enum comm_dtype dt,
                 int peer, int tag, struct comm_req *req);
    void (*recv)(const struct comm_handle *h, void *buf, int n, enum comm_dtype dt, int peer,
                 int tag, struct comm_req *req);
    void (*gather)(const struct comm_handle *h, const void *send, int n, void *recv,
                   enum comm_dtype dt, int root);
    void (*gatherv)(const struct comm_handle *h, const void *send, int n, void *recv,
                    const int *counts, const int *displs, enum comm_dtype dt, int root);
    void (*barrier)(const struct comm_handle *h);
    void (*wait)(struct comm_req *req);
    int  (*test)(struct comm_req *req);
    /* out: a private duplicate of in (collective over the group) */
    void (*dup)(const struct comm_handle *in, struct comm_handle *out);
    /* free what h holds: its MPI communicator when h->owned, its device part (h->dev) */
    void (*free)(struct comm_handle *h);
    /* optional: the compute stream for h's device work */
    void (*set_stream)(struct comm_handle *h, void *stream);
};

/* the MPI table (comm.c): the NCCL backend sends host buffers, and its own bootstrap
 * (the ncclUniqueId broadcast), through it */
extern const struct comm_backend comm_backend_mpi;
#ifdef TR_HAVE_CUDA
/* the NCCL table and its set-up (comm_nccl.c): builds h->dev for every group c is in */
extern const struct comm_backend comm_backend_nccl;
void comm_nccl_attach(struct comm *c, const struct grid *g);
#endif

#endif

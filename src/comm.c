/* comm.c — the communication layer: public calls, then the MPI backend's table
 * (the NCCL one is comm_nccl.c). */
#include "comm.h"

#include <limits.h>
#include <string.h>

#include "common.h"
#include "grid.h"


/* ------------------------------------------------------------------------------------ */
/* names, sizes, checks                                                                 */

static const char *const dtype_names[COMM_N_DTYPES] = {"f32", "f64", "i32", "i64", "u64",
                                                       "bf16", "f16", "u8"};
static const int dtype_bytes[COMM_N_DTYPES] = {4, 8, 4, 8, 8, 2, 2, 1};
static const char *const group_names[COMM_N_GROUPS] = {"world", "tp", "dp", "pp", "emb",
                                                       "dp_node", "dp_cross", "node"};
static const char *const op_names[COMM_N_OPS] = {"sum", "max", "min"};

int comm_dtype_bytes(enum comm_dtype dt) { return dtype_bytes[dt]; }
const char *comm_dtype_name(enum comm_dtype dt) { return dtype_names[dt]; }
const char *comm_group_name(enum comm_group grp) { return group_names[grp]; }

/* The group's handle, or abort: calling on a group this rank is not in is a bug. */
static const struct comm_handle *member(const struct comm *c, enum comm_group grp) {
    if ((unsigned)grp >= COMM_N_GROUPS) TR_ABORT("comm: no group %d", (int)grp);
    const struct comm_handle *h = &c->grp[grp];
    if (h->mpi == MPI_COMM_NULL)
        TR_ABORT("comm: rank %d is not in group '%s' (or it was not duplicated here)",
                 c->world_rank, group_names[grp]);
    return h;
}

static int count_of(long n, const char *what) {
    if (n < 0 || n > INT_MAX)
        TR_ABORT("comm: %s of %ld elements: the count must be in [0, INT_MAX]", what, n);
    return (int)n;
}

static void check_reduction(const struct comm *c, enum comm_op op, enum comm_dtype dt,
                            const char *what) {
    if (!comm_supports(c, op, dt))
        TR_ABORT("comm: %s with op %s of dtype %s is not supported by the %s backend (16-bit "
                 "values are reduced in fp32 by the caller)", what,
                 (unsigned)op < COMM_N_OPS ? op_names[op] : "?",
                 (unsigned)dt < COMM_N_DTYPES ? dtype_names[dt] : "?", c->be->name);
}

/* ------------------------------------------------------------------------------------ */
/* set-up                                                                               */

static void handle_set(struct comm_handle *h, MPI_Comm mpi) {
    memset(h, 0, sizeof *h);
    h->mpi = mpi;
    if (mpi == MPI_COMM_NULL) return;
    MPI_CHECK(MPI_Comm_rank(mpi, &h->rank));
    MPI_CHECK(MPI_Comm_size(mpi, &h->size));
}

/* the table of kind, or abort when it is not built into this binary */
static const struct comm_backend *backend_of(enum comm_backend_kind kind) {
    if (kind == COMM_BACKEND_MPI) return &comm_backend_mpi;
#ifdef TR_HAVE_CUDA
    if (kind == COMM_BACKEND_NCCL) return &comm_backend_nccl;
#endif
    if (kind == COMM_BACKEND_NCCL)
        TR_ABORT("comm: the NCCL backend is not built into this binary (build it with `make "
                 "BACKEND=cuda`: bin-cuda/trident)");
    TR_ABORT("comm: backend %d is not built in", (int)kind);
    return NULL;
}

void comm_init(struct comm *c, const struct grid *g, enum comm_backend_kind kind) {
    memset(c, 0, sizeof *c);
    c->be = backend_of(kind);
    c->world_rank = g->world_rank;
    handle_set(&c->grp[COMM_WORLD], MPI_COMM_WORLD);
    handle_set(&c->grp[COMM_TP], g->tp_comm);
    handle_set(&c->grp[COMM_DP], g->dp_comm);
    handle_set(&c->grp[COMM_PP], g->pp_comm);
    handle_set(&c->grp[COMM_EMB], g->emb_comm);
    handle_set(&c->grp[COMM_DP_NODE], g->dp_node_comm);
    handle_set(&c->grp[COMM_DP_CROSS], g->dp_cross_comm);
    handle_set(&c->grp[COMM_NODE], g->node_comm);
#ifdef TR_HAVE_CUDA
    if (kind == COMM_BACKEND_NCCL) comm_nccl_attach(c, g);
#endif
}

void comm_set_stream(struct comm *c, void *stream) {
    if (!c->be->set_stream) return;
    for (int i = 0; i < COMM_N_GROUPS; i++)
        if (c->grp[i].dev) c->be->set_stream(&c->grp[i], stream);
}

void comm_init_on(struct comm *c, MPI_Comm world, enum comm_backend_kind kind) {
    memset(c, 0, sizeof *c);
    /* a bare communicator carries host data only (the data layer, calibration) */
    if (kind != COMM_BACKEND_MPI)
        TR_ABORT("comm: comm_init_on takes the MPI backend only (it has no grid to build "
                 "device communicators on)");
    c->be = &comm_backend_mpi;
    for (int i = 0; i < COMM_N_GROUPS; i++) c->grp[i].mpi = MPI_COMM_NULL;
    handle_set(&c->grp[COMM_WORLD], world);
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &c->world_rank));
}

void comm_dup(struct comm *out, const struct comm *c, enum comm_group grp) {
    const struct comm_handle *h = member(c, grp);
    memset(out, 0, sizeof *out);
    out->be = c->be;
    out->world_rank = c->world_rank;
    for (int i = 0; i < COMM_N_GROUPS; i++) out->grp[i].mpi = MPI_COMM_NULL;
    c->be->dup(h, &out->grp[grp]);
    out->grp[grp].owned = 1;
}

void comm_free(struct comm *c) {
    for (int i = 0; i < COMM_N_GROUPS; i++)
        if ((c->grp[i].owned && c->grp[i].mpi != MPI_COMM_NULL) || c->grp[i].dev)
            c->be->free(&c->grp[i]);
    memset(c, 0, sizeof *c);
}

int comm_rank(const struct comm *c, enum comm_group grp) { return member(c, grp)->rank; }
int comm_size(const struct comm *c, enum comm_group grp) { return member(c, grp)->size; }

int comm_supports(const struct comm *c, enum comm_op op, enum comm_dtype dt) {
    if ((unsigned)op >= COMM_N_OPS || (unsigned)dt >= COMM_N_DTYPES) return 0;
    return c->be->supports(op, dt);
}

/* ------------------------------------------------------------------------------------ */
/* collectives and point-to-point                                                       */

void comm_allreduce(const struct comm *c, enum comm_group grp, void *buf, long n,
                    enum comm_dtype dt, enum comm_op op) {
    const struct comm_handle *h = member(c, grp);
    check_reduction(c, op, dt, "all-reduce");
    /* counts are int: split very large buffers (every member splits alike) */
    const long chunk = 1L << 30;
    for (long off = 0; off < n; off += chunk)
        c->be->allreduce(h, (char *)buf + off * dtype_bytes[dt], (int)TR_MIN(chunk, n - off),
                         dt, op, NULL);
}

void comm_allreduce_start(const struct comm *c, enum comm_group grp, void *buf, long n,
                          enum comm_dtype dt, enum comm_op op, struct comm_req *req) {
    const struct comm_handle *h = member(c, grp);
    check_reduction(c, op, dt, "all-reduce");
    c->be->allreduce(h, buf, count_of(n, "all-reduce"), dt, op, req);
}

void comm_allreduce_maxloc(const struct comm *c, enum comm_group grp, double *value,
                           int *rank) {
    c->be->allreduce_loc(member(c, grp), value, rank, COMM_MAX);
}

void comm_allreduce_minloc(const struct comm *c, enum comm_group grp, double *value,
                           int *rank) {
    c->be->allreduce_loc(member(c, grp), value, rank, COMM_MIN);
}

void comm_reduce_scatter(const struct comm *c, enum comm_group grp, const void *send,
                         void *recv, const int *counts, enum comm_dtype dt, enum comm_op op) {
    const struct comm_handle *h = member(c, grp);
    check_reduction(c, op, dt, "reduce-scatter");
    c->be->reduce_scatter(h, send, recv, counts, dt, op, NULL);
}

void comm_reduce_scatter_start(const struct comm *c, enum comm_group grp, const void *send,
                               void *recv, const int *counts, enum comm_dtype dt,
                               enum comm_op op, struct comm_req *req) {
    const struct comm_handle *h = member(c, grp);
    check_reduction(c, op, dt, "reduce-scatter");
    c->be->reduce_scatter(h, send, recv, counts, dt, op, req);
}

void comm_allgather(const struct comm *c, enum comm_group grp, const void *send, long n,
                    void *recv, enum comm_dtype dt) {
    c->be->allgather(member(c, grp), send, count_of(n, "all-gather"), recv, dt, NULL);
}

void comm_allgather_start(const struct comm *c, enum comm_group grp, const void *send,
                          long n, void *recv, enum comm_dtype dt, struct comm_req *req) {
    c->be->allgather(member(c, grp), send, count_of(n, "all-gather"), recv, dt, req);
}

void comm_allgatherv(const struct comm *c, enum comm_group grp, const void *send, long n,
                     void *recv, const int *counts, const int *displs, enum comm_dtype dt) {
    c->be->allgatherv(member(c, grp), send, count_of(n, "all-gather"), recv, counts, displs,
                      dt, NULL);
}

void comm_allgatherv_start(const struct comm *c, enum comm_group grp, const void *send,
                           long n, void *recv, const int *counts, const int *displs,
                           enum comm_dtype dt, struct comm_req *req) {
    c->be->allgatherv(member(c, grp), send, count_of(n, "all-gather"), recv, counts, displs,
                      dt, req);
}

void comm_alltoallv(const struct comm *c, enum comm_group grp, const void *send,
                    const int *scounts, const int *sdispls, void *recv, const int *rcounts,
                    const int *rdispls, enum comm_dtype dt) {
    c->be->alltoallv(member(c, grp), send, scounts, sdispls, recv, rcounts, rdispls, dt, NULL);
}

void comm_alltoallv_start(const struct comm *c, enum comm_group grp, const void *send,
                          const int *scounts, const int *sdispls, void *recv,
                          const int *rcounts, const int *rdispls, enum comm_dtype dt,
                          struct comm_req *req) {
    c->be->alltoallv(member(c, grp), send, scounts, sdispls, recv, rcounts, rdispls, dt, req);
}

void comm_bcast(const struct comm *c, enum comm_group grp, void *buf, long n,
                enum comm_dtype dt, int root) {
    const struct comm_handle *h = member(c, grp);
    const long chunk = 1L << 30;
    for (long off = 0; off < n; off += chunk)
        c->be->bcast(h, (char *)buf + off * dtype_bytes[dt], (int)TR_MIN(chunk, n - off), dt,
                     root, NULL);
}

void comm_bcast_start(const struct comm *c, enum comm_group grp, void *buf, long n,
                      enum comm_dtype dt, int root, struct comm_req *req) {
    c->be->bcast(member(c, grp), buf, count_of(n, "broadcast"), dt, root, req);
}

void comm_send(const struct comm *c, enum comm_group grp, const void *buf, long n,
               enum comm_dtype dt, int peer, int tag) {
    c->be->send(member(c, grp), buf, count_of(n, "send"), dt, peer, tag, NULL);
}

void comm_send_start(const struct comm *c, enum comm_group grp, const void *buf, long n,
                     enum comm_dtype dt, int peer, int tag, struct comm_req *req) {
    c->be->send(member(c, grp), buf, count_of(n, "send"), dt, peer, tag, req);
}

void comm_recv(const struct comm *c, enum comm_group grp, void *buf, long n,
               enum comm_dtype dt, int peer, int tag) {
    c->be->recv(member(c, grp), buf, count_of(n, "receive"), dt, peer, tag, NULL);
}

void comm_recv_start(const struct comm *c, enum comm_group grp, void *buf, long n,
                     enum comm_dtype dt, int peer, int tag, struct comm_req *req) {
    c->be->recv(member(c, grp), buf, count_of(n, "receive"), dt, peer, tag, req);
}

void comm_gather(const struct comm *c, enum comm_group grp, const void *send, long n,
                 void *recv, enum comm_dtype dt, int root) {
    c->be->gather(member(c, grp), send, count_of(n, "gather"), recv, dt, root);
}

void comm_gatherv(const struct comm *c, enum comm_group grp, const void *send, long n,
                  void *recv, const int *counts, const int *displs, enum comm_dtype dt,
                  int root) {
    c->be->gatherv(member(c, grp), send, count_of(n, "gather"), recv, counts, displs, dt,
                   root);
}

void comm_barrier(const struct comm *c, enum comm_group grp) {
    c->be->barrier(member(c, grp));
}

void comm_wait(struct comm_req *req) {
    if (!req->be) return;
    req->be->wait(req);
    *req = COMM_REQ_NULL;
}

int comm_test(struct comm_req *req) {
    if (!req->be) return 1;
    if (!req->be->test(req)) return 0;
    *req = COMM_REQ_NULL;
    return 1;
}

/* ==================================================================================== */
/* MPI backend                                                                          */

/* bf16 and f16 travel as raw 2-byte integers: MPI has no 16-bit float */
static MPI_Datatype mpi_type(enum comm_dtype dt) {
    switch (dt) {
    case COMM_F32:  return MPI_FLOAT;
    case COMM_F64:  return MPI_DOUBLE;
    case COMM_I32:  return MPI_INT32_T;
    case COMM_I64:  return MPI_INT64_T;
    case COMM_U64:  return MPI_UINT64_T;
    case COMM_BF16:
    case COMM_F16:  return MPI_UINT16_T;
    case COMM_U8:   return MPI_BYTE;
    default:        break;
    }
    TR_ABORT("comm: no dtype %d", (int)dt);
    return MPI_DATATYPE_NULL;
}

static MPI_Op mpi_op(enum comm_op op) {
    return op == COMM_MAX ? MPI_MAX : op == COMM_MIN ? MPI_MIN : MPI_SUM;
}

static int mpi_supports(enum comm_op op, enum comm_dtype dt) {
    (void)op;
    return dt != COMM_BF16 && dt != COMM_F16 && dt != COMM_U8;
}

/* a started request belongs to this backend */
static MPI_Request *mpi_req(struct comm_req *req) {
    *req = COMM_REQ_NULL;
    req->be = &comm_backend_mpi;
    return &req->mpi;
}

static void mpi_allreduce(const struct comm_handle *h, void *buf, int n, enum comm_dtype dt,
                          enum comm_op op, struct comm_req *req) {
    if (req)
        MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, n, mpi_type(dt), mpi_op(op), h->mpi,
                                 mpi_req(req)));
    else
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, n, mpi_type(dt), mpi_op(op), h->mpi));
}

/* MPI_DOUBLE_INT is the pair struct { double; int; } */
static void mpi_allreduce_loc(const struct comm_handle *h, double *value, int *rank,
                              enum comm_op op) {
    struct { double v; int r; } loc = {*value, h->rank};
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &loc, 1, MPI_DOUBLE_INT,
                            op == COMM_MIN ? MPI_MINLOC : MPI_MAXLOC, h->mpi));
    *value = loc.v;
    *rank = loc.r;
}

static void mpi_reduce_scatter(const struct comm_handle *h, const void *send, void *recv,
                               const int *counts, enum comm_dtype dt, enum comm_op op,
                               struct comm_req *req) {
    if (req)
        MPI_CHECK(MPI_Ireduce_scatter(send, recv, counts, mpi_type(dt), mpi_op(op), h->mpi,
                                      mpi_req(req)));
    else
        MPI_CHECK(MPI_Reduce_scatter(send, recv, counts, mpi_type(dt), mpi_op(op), h->mpi));
}

static void mpi_allgather(const struct comm_handle *h, const void *send, int n, void *recv,
                          enum comm_dtype dt, struct comm_req *req) {
    MPI_Datatype t = mpi_type(dt);
    if (req) MPI_CHECK(MPI_Iallgather(send, n, t, recv, n, t, h->mpi, mpi_req(req)));
    else     MPI_CHECK(MPI_Allgather(send, n, t, recv, n, t, h->mpi));
}

static void mpi_allgatherv(const struct comm_handle *h, const void *send, int n, void *recv,
                           const int *counts, const int *displs, enum comm_dtype dt,
                           struct comm_req *req) {
    MPI_Datatype t = mpi_type(dt);
    if (req)
        MPI_CHECK(MPI_Iallgatherv(send, n, t, recv, counts, displs, t, h->mpi, mpi_req(req)));
    else
        MPI_CHECK(MPI_Allgatherv(send, n, t, recv, counts, displs, t, h->mpi));
}

static void mpi_alltoallv(const struct comm_handle *h, const void *send, const int *scounts,
                          const int *sdispls, void *recv, const int *rcounts,
                          const int *rdispls, enum comm_dtype dt, struct comm_req *req) {
    MPI_Datatype t = mpi_type(dt);
    if (req)
        MPI_CHECK(MPI_Ialltoallv(send, scounts, sdispls, t, recv, rcounts, rdispls, t, h->mpi,
                                 mpi_req(req)));
    else
        MPI_CHECK(MPI_Alltoallv(send, scounts, sdispls, t, recv, rcounts, rdispls, t, h->mpi));
}

static void mpi_bcast(const struct comm_handle *h, void *buf, int n, enum comm_dtype dt,
                      int root, struct comm_req *req) {
    if (req) MPI_CHECK(MPI_Ibcast(buf, n, mpi_type(dt), root, h->mpi, mpi_req(req)));
    else     MPI_CHECK(MPI_Bcast(buf, n, mpi_type(dt), root, h->mpi));
}

static void mpi_send(const struct comm_handle *h, const void *buf, int n, enum comm_dtype dt,
                     int peer, int tag, struct comm_req *req) {
    if (req) MPI_CHECK(MPI_Isend(buf, n, mpi_type(dt), peer, tag, h->mpi, mpi_req(req)));
    else     MPI_CHECK(MPI_Send(buf, n, mpi_type(dt), peer, tag, h->mpi));
}

static void mpi_recv(const struct comm_handle *h, void *buf, int n, enum comm_dtype dt,
                     int peer, int tag, struct comm_req *req) {
    if (req)
        MPI_CHECK(MPI_Irecv(buf, n, mpi_type(dt), peer, tag, h->mpi, mpi_req(req)));
    else
        MPI_CHECK(MPI_Recv(buf, n, mpi_type(dt), peer, tag, h->mpi, MPI_STATUS_IGNORE));
}

static void mpi_gather(const struct comm_handle *h, const void *send, int n, void *recv,
                       enum comm_dtype dt, int root) {
    MPI_Datatype t = mpi_type(dt);
    MPI_CHECK(MPI_Gather(send, n, t, recv, n, t, root, h->mpi));
}

static void mpi_gatherv(const struct comm_handle *h, const void *send, int n, void *recv,
                        const int *counts, const int *displs, enum comm_dtype dt, int root) {
    MPI_Datatype t = mpi_type(dt);
    MPI_CHECK(MPI_Gatherv(send, n, t, recv, counts, displs, t, root, h->mpi));
}

static void mpi_barrier(const struct comm_handle *h) { MPI_CHECK(MPI_Barrier(h->mpi)); }

static void mpi_wait(struct comm_req *req) {
    MPI_CHECK(MPI_Wait(&req->mpi, MPI_STATUS_IGNORE));
}

static int mpi_test(struct comm_req *req) {
    int done = 0;
    MPI_CHECK(MPI_Test(&req->mpi, &done, MPI_STATUS_IGNORE));
    return done;
}

static void mpi_dup(const struct comm_handle *in, struct comm_handle *out) {
    MPI_Comm d;
    MPI_CHECK(MPI_Comm_dup(in->mpi, &d));
    handle_set(out, d);
}

static void mpi_free(struct comm_handle *h) {
    MPI_CHECK(MPI_Comm_free(&h->mpi));
    h->mpi = MPI_COMM_NULL;
}

const struct comm_backend comm_backend_mpi = {
    .name = "MPI",
    .supports = mpi_supports,
    .allreduce = mpi_allreduce,
    .allreduce_loc = mpi_allreduce_loc,
    .reduce_scatter = mpi_reduce_scatter,
    .allgather = mpi_allgather,
    .allgatherv = mpi_allgatherv,
    .alltoallv = mpi_alltoallv,
    .bcast = mpi_bcast,
    .send = mpi_send,
    .recv = mpi_recv,
    .gather = mpi_gather,
    .gatherv = mpi_gatherv,
    .barrier = mpi_barrier,
    .wait = mpi_wait,
    .test = mpi_test,
    .dup = mpi_dup,
    .free = mpi_free,
};

/* comm_nccl.c — the NCCL backend of the comm layer (built by make BACKEND=cuda; chosen by
 * the trainer when device = cuda). comm.h says what every call means; this file says how
 * device buffers travel.
 *
 * Communicators. comm_nccl_attach gives every group this rank is in (tp, dp, pp, emb,
 * dp_node, dp_cross, node, world, in that order on every rank) one ncclComm_t, whose
 * ncclUniqueId the group's rank 0 creates and broadcasts over the group's MPI
 * communicator; the pipeline group gets two more, one per direction of point-to-point
 * flow (below). NCCL ranks are the MPI ranks, checked against src/comm_groups.c's
 * arithmetic before anything is created. A duplicate (comm_dup) gets communicators of its
 * own, made the same way on the MPI duplicate.
 *
 * Which transport. Each call looks at its buffers (cudaPointerGetAttributes): device or
 * managed memory goes through NCCL, host memory through the MPI table, unchanged (losses,
 * norms, metrics, the token batch, the checkpoint's host staging). A call with one buffer
 * on each side aborts; NULL buffers (nothing to move) say nothing, and a call whose
 * buffers are all NULL takes NCCL. Every member must pass the same kind of memory: the
 * ranks of one job run one backend and the same code, so they do.
 *
 * Streams. Each communicator has a stream of its own (high priority, so that a transfer
 * is not queued behind a long GEMM's blocks). A call records an event on the compute
 * stream (comm_set_stream: the backend's), makes the communicator's stream wait for it —
 * so NCCL reads what the kernels queued before the call wrote — queues the NCCL work, and
 * records a second event when it is done. A request carries that event: comm_wait makes
 * the compute stream wait for it (the host does not block), comm_test asks the device
 * whether it has passed. A blocking call does comm_wait at once. So the gradient buckets
 * of the data-parallel reduction run beside the backward pass's kernels, and the
 * all-reduces of different groups (a bucket's node-local reduce-scatter beside an earlier
 * bucket's cross-node all-reduce) never queue behind each other: separate communicators
 * on separate streams, started in the same order on every rank (dp.c), as NCCL requires.
 *
 * Point-to-point. NCCL matches a send with a receive by (communicator, peer) in the order
 * both were queued, with no tags, and runs the operations of one communicator one after
 * another. One communicator for both directions would deadlock the pipeline: stage s
 * queues its send of activations to s+1 and then its receive of gradients from s+1, while
 * s+1 queues its send of gradients to s and then its receive of activations from s; each
 * send waits for a receive queued behind the other side's send. So the pipeline group has
 * one communicator (and stream) per direction of flow: UP carries every message from a
 * lower to a higher group rank (activations, forward), DOWN every message from higher to
 * lower (their gradients, backward). The two never wait for each other. On one of them the
 * data flows one way along the chain of stages, so the last member in the flow only
 * receives and completes, and each stage before it completes once the one after it has
 * queued its matching receive: no cycle. Tags: p2p.c tags a message by (micro-batch,
 * direction); the direction is now the communicator, and both schedules (GPipe, 1F1B)
 * send the micro-batches of one direction to one peer in increasing order and receive
 * them in the same order, so NCCL's order of arrival is the order the tags ask for. A
 * schedule that received out of order would need tags back (comm.h's contract); the tag
 * is accepted and not used here.
 *
 * Collectives with counts, which NCCL lacks: reduce-scatter with unequal counts is one
 * ncclReduce to each member of its slice, grouped (ncclGroupStart/End: one launch, every
 * slice's reduction in flight at once, no padding buffer); all-gather with counts is one
 * ncclBroadcast from each member of its slice into its place, grouped; all-to-all with
 * counts is a grouped ncclSend/ncclRecv to/from every other member and a device copy for
 * this member's own slice. Equal counts (contiguous) take ncclReduceScatter and
 * ncclAllGather. Zero-count pieces are left out (every member knows every count, so all
 * leave out the same ones).
 *
 * Host-only calls (maxloc/minloc, gather, gatherv, barrier: diagnostics) are MPI's.
 */
#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>
#include <nccl.h>

#include "comm.h"
#include "comm_groups.h"
#include "common.h"
#include "cuda_common.h"
#include "grid.h"

/* A failed NCCL call (a peer gone, a bad argument) ends the job naming the call. */
#define NCCL_CHECK(call)                                                                 \
    do {                                                                                 \
        ncclResult_t r_ = (call);                                                        \
        if (r_ != ncclSuccess)                                                           \
            TR_ABORT("NCCL call failed: %s: %s (%s)", #call, ncclGetErrorString(r_),     \
                     ncclGetLastError(NULL));                                            \
    } while (0)

/* The device part of one group (comm_handle.dev). */
struct nccl_group {
    const char  *name;              /* the group's, for messages */
    ncclComm_t   coll;              /* collectives */
    cudaStream_t coll_stream;
    ncclComm_t   p2p[COMM_N_FLOWS];       /* point-to-point by direction (NULL: none) */
    cudaStream_t p2p_stream[COMM_N_FLOWS];
    cudaStream_t compute;           /* comm_set_stream's; NULL until then */
    cudaEvent_t  ready;             /* recorded on compute before each call */
    cudaEvent_t  done;              /* a blocking call's completion */
};

/* ------------------------------------------------------------------------------------ */
/* types, buffers, ordering                                                             */

static ncclDataType_t nccl_type(enum comm_dtype dt) {
    switch (dt) {
    case COMM_F32:  return ncclFloat32;
    case COMM_F64:  return ncclFloat64;
    case COMM_I32:  return ncclInt32;
    case COMM_I64:  return ncclInt64;
    case COMM_U64:  return ncclUint64;
    case COMM_BF16: return ncclBfloat16;
    case COMM_F16:  return ncclFloat16;
    case COMM_U8:   return ncclUint8;
    default:        break;
    }
    TR_ABORT("comm: no dtype %d", (int)dt);
    return ncclFloat32;
}

static ncclRedOp_t nccl_op(enum comm_op op) {
    return op == COMM_MAX ? ncclMax : op == COMM_MIN ? ncclMin : ncclSum;
}

/* NCCL reduces every dtype it has, 16-bit floats included */
static int nccl_supports(enum comm_op op, enum comm_dtype dt) {
    (void)op;
    (void)dt;
    return 1;
}

static struct nccl_group *group_of(const struct comm_handle *h) {
    if (!h->dev) TR_ABORT("comm: a group of rank %d has no NCCL communicator", h->rank);
    return h->dev;
}

/* 1: device (or managed) memory, 0: host memory, -1: NULL (says nothing) */
static int kind_of(const void *p) {
    if (!p) return -1;
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        (void)cudaGetLastError(); /* an unknown host pointer on an old runtime: clear it */
        return 0;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

/* Does this call move device memory (NCCL) rather than host memory (MPI)? */
static int on_device(const struct comm_handle *h, const char *what, const void *a,
                     const void *b) {
    int ka = kind_of(a), kb = kind_of(b);
    if (ka >= 0 && kb >= 0 && ka != kb)
        TR_ABORT("comm: %s on group '%s' with one buffer in host and one in device memory "
                 "(%p, %p): both buffers of a call must be on the same side", what,
                 group_of(h)->name, a, b);
    return ka != 0 && kb != 0;
}

/* host memory through MPI, which sums no 16-bit floats (comm.h) */
static void check_host_reduction(const struct comm_handle *h, enum comm_op op,
                                 enum comm_dtype dt, const char *what) {
    if (!comm_backend_mpi.supports(op, dt))
        TR_ABORT("comm: %s of %s values in host memory on group '%s': MPI reduces no 16-bit "
                 "floats; reduce them in device memory (NCCL) or widen them to fp32 first",
                 what, comm_dtype_name(dt), group_of(h)->name);
}

/* Before NCCL work on stream s: s waits for what the compute stream has queued so far. */
static void order_after_compute(struct nccl_group *g, cudaStream_t s) {
    if (!g->compute)
        TR_ABORT("comm: device buffers on group '%s' before the compute stream was handed "
                 "over: call comm_set_stream(c, backend_stream(be)) after comm_init", g->name);
    CUDA_CHECK(cudaEventRecord(g->ready, g->compute));
    CUDA_CHECK(cudaStreamWaitEvent(s, g->ready, 0));
}

/* After NCCL work on stream s: the request's event, or (blocking) the compute stream
 * ordered after it. */
static void complete_on(struct nccl_group *g, cudaStream_t s, struct comm_req *req) {
    if (!req) {
        CUDA_CHECK(cudaEventRecord(g->done, s));
        CUDA_CHECK(cudaStreamWaitEvent(g->compute, g->done, 0));
        return;
    }
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(e, s));
    *req = COMM_REQ_NULL;
    req->be = &comm_backend_nccl;
    req->dev = e;
    req->dev_stream = g->compute;
}

static char *at(const void *base, long off, enum comm_dtype dt) {
    return (char *)base + off * (long)comm_dtype_bytes(dt);
}

/* ------------------------------------------------------------------------------------ */
/* collectives and point-to-point                                                       */

static void nccl_allreduce(const struct comm_handle *h, void *buf, int n, enum comm_dtype dt,
                           enum comm_op op, struct comm_req *req) {
    if (!on_device(h, "all-reduce", buf, NULL)) {
        check_host_reduction(h, op, dt, "all-reduce");
        comm_backend_mpi.allreduce(h, buf, n, dt, op, req);
        return;
    }
    struct nccl_group *g = group_of(h);
    order_after_compute(g, g->coll_stream);
    if (n > 0)
        NCCL_CHECK(ncclAllReduce(buf, buf, (size_t)n, nccl_type(dt), nccl_op(op), g->coll,
                                 g->coll_stream));
    complete_on(g, g->coll_stream, req);
}

static void nccl_allreduce_loc(const struct comm_handle *h, double *value, int *rank,
                               enum comm_op op) {
    comm_backend_mpi.allreduce_loc(h, value, rank, op);
}

static void nccl_reduce_scatter(const struct comm_handle *h, const void *send, void *recv,
                                const int *counts, enum comm_dtype dt, enum comm_op op,
                                struct comm_req *req) {
    if (!on_device(h, "reduce-scatter", send, recv)) {
        check_host_reduction(h, op, dt, "reduce-scatter");
        comm_backend_mpi.reduce_scatter(h, send, recv, counts, dt, op, req);
        return;
    }
    struct nccl_group *g = group_of(h);
    cudaStream_t s = g->coll_stream;
    order_after_compute(g, s);
    const int p = h->size;
    if (comm_counts_uniform(counts, NULL, p)) {
        if (counts[0] > 0)
            NCCL_CHECK(ncclReduceScatter(send, recv, (size_t)counts[0], nccl_type(dt),
                                         nccl_op(op), g->coll, s));
    } else {
        /* member i's slice, reduced onto member i (recv is read on the root only) */
        NCCL_CHECK(ncclGroupStart());
        long off = 0;
        for (int i = 0; i < p; i++) {
            if (counts[i] > 0)
                NCCL_CHECK(ncclReduce(at(send, off, dt), i == h->rank ? recv : NULL,
                                      (size_t)counts[i], nccl_type(dt), nccl_op(op), i,
                                      g->coll, s));
            off += counts[i];
        }
        NCCL_CHECK(ncclGroupEnd());
    }
    complete_on(g, s, req);
}

static void nccl_allgather(const struct comm_handle *h, const void *send, int n, void *recv,
                           enum comm_dtype dt, struct comm_req *req) {
    if (!on_device(h, "all-gather", send, recv)) {
        comm_backend_mpi.allgather(h, send, n, recv, dt, req);
        return;
    }
    struct nccl_group *g = group_of(h);
    order_after_compute(g, g->coll_stream);
    if (n > 0)
        NCCL_CHECK(ncclAllGather(send, recv, (size_t)n, nccl_type(dt), g->coll,
                                 g->coll_stream));
    complete_on(g, g->coll_stream, req);
}

static void nccl_allgatherv(const struct comm_handle *h, const void *send, int n, void *recv,
                            const int *counts, const int *displs, enum comm_dtype dt,
                            struct comm_req *req) {
    if (!on_device(h, "all-gather", send, recv)) {
        comm_backend_mpi.allgatherv(h, send, n, recv, counts, displs, dt, req);
        return;
    }
    if (n != counts[h->rank])
        TR_ABORT("comm: all-gather on group '%s': this member sends %d elements, counts "
                 "says %d", group_of(h)->name, n, counts[h->rank]);
    struct nccl_group *g = group_of(h);
    cudaStream_t s = g->coll_stream;
    order_after_compute(g, s);
    const int p = h->size;
    if (comm_counts_uniform(counts, displs, p)) {
        if (counts[0] > 0)
            NCCL_CHECK(ncclAllGather(send, recv, (size_t)counts[0], nccl_type(dt), g->coll, s));
    } else {
        /* member i broadcasts its slice into its place (send is read on the root only) */
        NCCL_CHECK(ncclGroupStart());
        for (int i = 0; i < p; i++)
            if (counts[i] > 0)
                NCCL_CHECK(ncclBroadcast(i == h->rank ? send : at(recv, displs[i], dt),
                                         at(recv, displs[i], dt), (size_t)counts[i],
                                         nccl_type(dt), i, g->coll, s));
        NCCL_CHECK(ncclGroupEnd());
    }
    complete_on(g, s, req);
}

static void nccl_alltoallv(const struct comm_handle *h, const void *send, const int *scounts,
                           const int *sdispls, void *recv, const int *rcounts,
                           const int *rdispls, enum comm_dtype dt, struct comm_req *req) {
    if (!on_device(h, "all-to-all", send, recv)) {
        comm_backend_mpi.alltoallv(h, send, scounts, sdispls, recv, rcounts, rdispls, dt, req);
        return;
    }
    const int me = h->rank, p = h->size;
    if (scounts[me] != rcounts[me])
        TR_ABORT("comm: all-to-all on group '%s': this member sends itself %d elements and "
                 "receives %d", group_of(h)->name, scounts[me], rcounts[me]);
    struct nccl_group *g = group_of(h);
    cudaStream_t s = g->coll_stream;
    order_after_compute(g, s);
    if (scounts[me] > 0)
        CUDA_CHECK(cudaMemcpyAsync(at(recv, rdispls[me], dt), at(send, sdispls[me], dt),
                                   (size_t)scounts[me] * (size_t)comm_dtype_bytes(dt),
                                   cudaMemcpyDeviceToDevice, s));
    NCCL_CHECK(ncclGroupStart());
    for (int j = 0; j < p; j++) {
        if (j == me) continue;
        if (scounts[j] > 0)
            NCCL_CHECK(ncclSend(at(send, sdispls[j], dt), (size_t)scounts[j], nccl_type(dt), j,
                                g->coll, s));
        if (rcounts[j] > 0)
            NCCL_CHECK(ncclRecv(at(recv, rdispls[j], dt), (size_t)rcounts[j], nccl_type(dt), j,
                                g->coll, s));
    }
    NCCL_CHECK(ncclGroupEnd());
    complete_on(g, s, req);
}

static void nccl_bcast(const struct comm_handle *h, void *buf, int n, enum comm_dtype dt,
                       int root, struct comm_req *req) {
    if (!on_device(h, "broadcast", buf, NULL)) {
        comm_backend_mpi.bcast(h, buf, n, dt, root, req);
        return;
    }
    struct nccl_group *g = group_of(h);
    order_after_compute(g, g->coll_stream);
    if (n > 0)
        NCCL_CHECK(ncclBroadcast(buf, buf, (size_t)n, nccl_type(dt), root, g->coll,
                                 g->coll_stream));
    complete_on(g, g->coll_stream, req);
}

/* the communicator a message to (send) or from (recv) peer travels on */
static enum comm_flow direction(const struct comm_handle *h, int peer, int sending,
                                const char *what) {
    struct nccl_group *g = group_of(h);
    if (peer == h->rank || peer < 0 || peer >= h->size)
        TR_ABORT("comm: %s of device memory on group '%s' with peer %d (this member is %d of "
                 "%d): the peer must be another member", what, g->name, peer, h->rank, h->size);
    enum comm_flow d = comm_p2p_flow(h->rank, peer, sending);
    if (!g->p2p[d])
        TR_ABORT("comm: %s of device memory on group '%s', which has no point-to-point "
                 "communicators (only the pipeline group sends device buffers: "
                 "comm_group_has_p2p)", what, g->name);
    return d;
}

static void nccl_send(const struct comm_handle *h, const void *buf, int n, enum comm_dtype dt,
                      int peer, int tag, struct comm_req *req) {
    if (!on_device(h, "send", buf, NULL)) {
        comm_backend_mpi.send(h, buf, n, dt, peer, tag, req);
        return;
    }
    struct nccl_group *g = group_of(h);
    enum comm_flow d = direction(h, peer, 1, "send");
    order_after_compute(g, g->p2p_stream[d]);
    if (n > 0)
        NCCL_CHECK(ncclSend(buf, (size_t)n, nccl_type(dt), peer, g->p2p[d], g->p2p_stream[d]));
    complete_on(g, g->p2p_stream[d], req);
}

static void nccl_recv(const struct comm_handle *h, void *buf, int n, enum comm_dtype dt,
                      int peer, int tag, struct comm_req *req) {
    if (!on_device(h, "receive", buf, NULL)) {
        comm_backend_mpi.recv(h, buf, n, dt, peer, tag, req);
        return;
    }
    struct nccl_group *g = group_of(h);
    enum comm_flow d = direction(h, peer, 0, "receive");
    order_after_compute(g, g->p2p_stream[d]);
    if (n > 0)
        NCCL_CHECK(ncclRecv(buf, (size_t)n, nccl_type(dt), peer, g->p2p[d], g->p2p_stream[d]));
    complete_on(g, g->p2p_stream[d], req);
}

static void nccl_gather(const struct comm_handle *h, const void *send, int n, void *recv,
                        enum comm_dtype dt, int root) {
    if (on_device(h, "gather", send, recv))
        TR_ABORT("comm: gather takes host memory (diagnostics), on group '%s'",
                 group_of(h)->name);
    comm_backend_mpi.gather(h, send, n, recv, dt, root);
}

static void nccl_gatherv(const struct comm_handle *h, const void *send, int n, void *recv,
                         const int *counts, const int *displs, enum comm_dtype dt, int root) {
    if (on_device(h, "gather", send, recv))
        TR_ABORT("comm: gatherv takes host memory (diagnostics), on group '%s'",
                 group_of(h)->name);
    comm_backend_mpi.gatherv(h, send, n, recv, counts, displs, dt, root);
}

static void nccl_barrier(const struct comm_handle *h) { comm_backend_mpi.barrier(h); }

static void nccl_wait(struct comm_req *req) {
    cudaEvent_t e = req->dev;
    CUDA_CHECK(cudaStreamWaitEvent((cudaStream_t)req->dev_stream, e, 0));
    /* released by the runtime once the event has passed */
    CUDA_CHECK(cudaEventDestroy(e));
}

static int nccl_test(struct comm_req *req) {
    cudaEvent_t e = req->dev;
    cudaError_t st = cudaEventQuery(e);
    if (st == cudaErrorNotReady) return 0;
    CUDA_CHECK(st);
    CUDA_CHECK(cudaEventDestroy(e));
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* set-up                                                                               */

/* One NCCL communicator over h's members: rank 0 makes the id, MPI carries it. */
static ncclComm_t comm_new(const struct comm_handle *h) {
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (h->rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    comm_backend_mpi.bcast(h, &id, (int)sizeof id, COMM_U8, 0, NULL);
    ncclComm_t comm;
    NCCL_CHECK(ncclCommInitRank(&comm, h->size, id, h->rank));
    return comm;
}

static cudaStream_t stream_new(void) {
    int least, greatest;
    CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    cudaStream_t s;
    CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, greatest));
    return s;
}

static struct nccl_group *group_new(const struct comm_handle *h, const char *name, int p2p,
                                    cudaStream_t compute) {
    struct nccl_group *g = tr_calloc(1, sizeof *g);
    g->name = name;
    g->compute = compute;
    g->coll = comm_new(h);
    g->coll_stream = stream_new();
    /* one member has no one to talk to */
    for (int d = 0; p2p && h->size > 1 && d < COMM_N_FLOWS; d++) {
        g->p2p[d] = comm_new(h);
        g->p2p_stream[d] = stream_new();
    }
    CUDA_CHECK(cudaEventCreateWithFlags(&g->ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&g->done, cudaEventDisableTiming));
    return g;
}

static void group_destroy(struct nccl_group *g) {
    ncclComm_t comms[1 + COMM_N_FLOWS] = {g->coll, g->p2p[COMM_FLOW_UP], g->p2p[COMM_FLOW_DOWN]};
    cudaStream_t streams[1 + COMM_N_FLOWS] = {g->coll_stream, g->p2p_stream[COMM_FLOW_UP],
                                        g->p2p_stream[COMM_FLOW_DOWN]};
    for (int i = 0; i < 1 + COMM_N_FLOWS; i++) {
        if (!comms[i]) continue;
        CUDA_CHECK(cudaStreamSynchronize(streams[i]));
        NCCL_CHECK(ncclCommFinalize(comms[i]));
        NCCL_CHECK(ncclCommDestroy(comms[i]));
        CUDA_CHECK(cudaStreamDestroy(streams[i]));
    }
    CUDA_CHECK(cudaEventDestroy(g->ready));
    CUDA_CHECK(cudaEventDestroy(g->done));
    tr_free(g);
}

static const enum comm_group attach_order[] = {COMM_TP, COMM_DP, COMM_PP, COMM_EMB,
                                               COMM_DP_NODE, COMM_DP_CROSS, COMM_NODE,
                                               COMM_WORLD};

void comm_nccl_attach(struct comm *c, const struct grid *g) {
    int dev = -1;
    CUDA_CHECK(cudaGetDevice(&dev));
    const int world = g->world_size;
    /* the node of every rank: the groups below are checked against comm_groups' lists */
    int *node_of = tr_malloc(sizeof(int) * (size_t)world);
    comm_backend_mpi.allgather(&c->grp[COMM_WORLD], &g->node_id, 1, node_of, COMM_I32, NULL);
    const struct comm_layout l = {.dp = g->dp, .tp = g->tp, .pp = g->pp, .node_of = node_of};
    int *members = tr_malloc(sizeof(int) * (size_t)world);
    for (size_t k = 0; k < sizeof attach_order / sizeof attach_order[0]; k++) {
        const enum comm_group grp = attach_order[k];
        struct comm_handle *h = &c->grp[grp];
        int me, n = comm_group_members(&l, grp, g->world_rank, members, &me);
        int in = h->mpi != MPI_COMM_NULL;
        if (n != (in ? h->size : 0) || (in && me != h->rank))
            TR_ABORT("comm: the grid's '%s' group (%d members, this rank %d of them) is not "
                     "the one comm_groups computes (%d, this rank %d): a bug in src/grid.c or "
                     "src/comm_groups.c", comm_group_name(grp), in ? h->size : 0,
                     in ? h->rank : -1, n, me);
        if (in) h->dev = group_new(h, comm_group_name(grp), comm_group_has_p2p(grp), NULL);
    }
    tr_free(members);
    tr_free(node_of);
    tr_info("NCCL %d.%d.%d: one communicator per comm group of each of the %d ranks (rank 0 "
            "on GPU %d), two more for the pipeline's sends and receives", NCCL_MAJOR,
            NCCL_MINOR, NCCL_PATCH, world, dev);
}

static void nccl_dup(const struct comm_handle *in, struct comm_handle *out) {
    const struct nccl_group *g = group_of(in);
    comm_backend_mpi.dup(in, out);
    out->dev = group_new(out, g->name, g->p2p[COMM_FLOW_UP] != NULL, g->compute);
}

static void nccl_free(struct comm_handle *h) {
    if (h->dev) group_destroy(h->dev);
    h->dev = NULL;
    if (h->owned && h->mpi != MPI_COMM_NULL) comm_backend_mpi.free(h);
}

static void nccl_set_stream(struct comm_handle *h, void *stream) {
    group_of(h)->compute = (cudaStream_t)stream;
}

const struct comm_backend comm_backend_nccl = {
    .name = "NCCL",
    .supports = nccl_supports,
    .allreduce = nccl_allreduce,
    .allreduce_loc = nccl_allreduce_loc,
    .reduce_scatter = nccl_reduce_scatter,
    .allgather = nccl_allgather,
    .allgatherv = nccl_allgatherv,
    .alltoallv = nccl_alltoallv,
    .bcast = nccl_bcast,
    .send = nccl_send,
    .recv = nccl_recv,
    .gather = nccl_gather,
    .gatherv = nccl_gatherv,
    .barrier = nccl_barrier,
    .wait = nccl_wait,
    .test = nccl_test,
    .dup = nccl_dup,
    .free = nccl_free,
    .set_stream = nccl_set_stream,
};

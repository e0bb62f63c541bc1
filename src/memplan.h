/* memplan.h — what a training job will allocate, checked against what a node may use,
 * before anything large is allocated.
 *
 * Every rank plans its own memory from the same size lists the model allocates from
 * (model_mem_plan), plus the optimizer state, pipeline send buffers, gradient-reduction
 * buffers, data buffers, workspace, and the runtime it already holds (MPI, BLAS, HDF5:
 * measured). The ranks of a node add up their plans; a node whose sum exceeds the memory
 * it may use (mem_limit: auto = the cgroup limit, else MemAvailable; a size; or off)
 * fails the whole job with exit 2, a table and a hint — on every rank at once.
 */
#ifndef TRIDENT_MEMPLAN_H
#define TRIDENT_MEMPLAN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "grid.h"

enum mem_item {
    MEM_RUNTIME,    /* MPI, OpenBLAS, HDF5, the program: measured + what they add later */
    MEM_WEIGHTS,
    MEM_GRADS,
    MEM_OPTIM,      /* AdamW first and second moments */
    MEM_ACTS,       /* one slot per micro-batch in flight */
    MEM_WORKSPACE,  /* backward scratch, parameter table, the matmul-rate probe */
    MEM_PIPE,       /* gradients being sent to the previous stage */
    MEM_REDUCE,     /* data-parallel reduction: hierarchical chunks and MPI's temporaries */
    MEM_DATA,       /* token windows and the reader's prefetch queue */
    MEM_COUNT
};

extern const char *const MEM_ITEM_NAMES[MEM_COUNT];

/* One rank's plan, in bytes. */
struct mem_breakdown {
    int64_t bytes[MEM_COUNT];
    int64_t total;
    int     n_slots;    /* micro-batches in flight (activation slots) */
};

/* The job's verdict (the same on every rank) and the numbers the run header shows. */
struct mem_plan {
    struct mem_breakdown rank;  /* this rank */
    int64_t rank_max;           /* the largest rank total of the job */
    int64_t node_total;         /* the busiest node (by share of its limit): its sum */
    int64_t node_limit;         /* ... and what it may use (0: no check) */
    int     node_ranks;         /* ... and its ranks */
    char    limit_source[64];   /* "mem_limit", "cgroup", "MemAvailable", "off" */
};

/* This rank's plan for cfg on grid g with n_slots activation slots. Allocates nothing
 * large; reads this process's resident memory for the runtime item. */
void memplan_rank(const struct config *cfg, const struct grid *g, int n_slots,
                  struct mem_breakdown *b);

/* "16G", "512M", "1.5T", "800K", "12345" (bytes; binary units, an optional B or iB).
 * Returns -1 when the text is not a size. */
int64_t memplan_parse_size(const char *text);

/* Bytes this node may use according to mem_limit, with where that number comes from;
 * 0 for "off"; INT64_MAX when auto finds nothing. A bad mem_limit: tr_fail. Bytes that
 * the node's ranks already hold (held_bytes) count as available for MemAvailable, which
 * does not include them. */
int64_t memplan_limit(const char *mem_limit, int64_t held_bytes, char *source, size_t n);

/* Collective over MPI_COMM_WORLD: plan, add up each node, compare with its limit. When a
 * node does not fit, rank 0 prints the breakdown of the worst node and every rank exits
 * with TR_EXIT_USAGE. */
void memplan_check(const struct config *cfg, const struct grid *g, int n_slots,
                   struct mem_plan *plan);

/* One line for the run header (rank 0): predicted per-rank and node totals. */
void memplan_print(const struct mem_plan *plan);

/* The planning fields of a struct grid for a layout that does not exist (the planner,
 * `trident plan`): sizes, this cell's coordinates, the world and node sizes, the node of
 * this rank and whether data parallelism spans nodes; no communicators (MPI_COMM_NULL)
 * and no comm layer. Enough for memplan_rank and model_mem_plan, nothing that talks. */
void memplan_grid(struct grid *g, int dp, int tp, int pp, int ranks_per_node, int dp_rank,
                  int tp_rank, int pp_rank);

#endif

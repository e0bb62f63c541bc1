/* train.h — the training job: data → pipeline schedule → gradient reduction →
 * optimizer → metrics and checkpoints, and the commands built on the same machinery. */
#ifndef TRIDENT_TRAIN_H
#define TRIDENT_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "dp.h"
#include "grid.h"
#include "memplan.h"
#include "model.h"
#include "optim.h"
#include "trace.h"

struct dataset;

/* Seconds spent per step, by kind (this rank). */
struct step_times {
    double compute, tp_comm, pipe_wait, dp_exposed, optimizer, data, total;
};

struct trainer {
    struct config cfg;
    struct grid   g;
    const struct kernels *k;
    struct model  m;
    struct optim  o;
    struct dp_reducer dpr;
    struct mem_plan mem;     /* what this job was predicted to use */
    struct dataset *ds;
    int  M;                  /* micro-batches per step */
    int  gpipe;              /* schedule: 1 = GPipe, 0 = 1F1B */
    int  step;               /* next step to run (0-based) */
    int  prefetched;         /* step whose windows are being read ahead (-1: none) */
    int32_t *batch;          /* [M*B][T+1] this step's windows (first/last stage) */
    int64_t *offsets;
    float  **gsend;          /* per slot: gradient being sent to the previous stage */
    MPI_Request *fsend, *bsend;
    struct step_times tm;
    FILE *metrics;           /* run_dir/metrics.jsonl, rank 0 */
    struct trace trace;      /* timeline of the first cfg.trace_steps steps */
};

/* Set up everything for cfg on MPI_COMM_WORLD: layout, data, model, optimizer; resume
 * from a checkpoint as cfg.resume says. open_run_dir: create run_dir and metrics. */
void trainer_init(struct trainer *t, const struct config *cfg, int open_run_dir);
void trainer_free(struct trainer *t);

/* One optimizer step; returns the mean training loss of the global batch. */
double trainer_step(struct trainer *t, double *grad_norm, float *lr);

/* Mean loss per token over the validation windows (same for every layout). */
double trainer_eval(struct trainer *t);

/* The `train` command: loop, log, evaluate, checkpoint. Returns an exit code. */
int train_main(int argc, char **argv);
int eval_main(int argc, char **argv);

#endif

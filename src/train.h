/* train.h — the training job: data → pipeline schedule → gradient reduction →
 * optimizer → metrics and checkpoints, and the commands built on the same machinery. */
#ifndef TRIDENT_TRAIN_H
#define TRIDENT_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "ckpt.h"
#include "config.h"
#include "dp.h"
#include "grid.h"
#include "guard.h"
#include "linkprobe.h"
#include "memplan.h"
#include "model.h"
#include "optim.h"
#include "runlock.h"
#include "trace.h"
#include "watchdog.h"

struct dataset;

/* Seconds spent per step, by kind (this rank). */
struct step_times {
    double compute, tp_comm, pipe_wait, dp_exposed, optimizer, data, total;
};

struct trainer {
    struct config cfg;
    struct grid   g;
    struct backend *be;      /* this rank's device (cfg.device): owns model and optimizer memory */
    const struct kernels *k; /* backend_kernels(be) */
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
    struct tensor *gsend;     /* per slot: gradient being sent to the previous stage */
    struct comm_req *fsend, *bsend;
    struct step_times tm;
    FILE *metrics;           /* run_dir/metrics.jsonl, rank 0 */
    struct trace trace;      /* timeline of the first cfg.trace_steps steps */
    struct linkprobe lp;     /* each rank's link, every cfg.link_probe_every steps */
    /* reliability */
    struct runlock lock;     /* run_dir/lock, held by rank 0 of `train` */
    struct watchdog wd;      /* ends the job when this rank stops making progress */
    struct guard guard;      /* divergence verdict of each step */
    double last_loss;        /* training loss of the last applied step (NAN: none yet) */
    char   diverged[512];    /* set by trainer_step when it withheld the update */
    int    rollbacks;        /* divergence rollbacks in this invocation */
    int    n_skips;          /* data steps skipped by rollbacks (ascending) */
    int64_t skips[CKPT_MAX_SKIPS];
    /* mixed precision */
    int    fp16;             /* precision = fp16: dynamic loss scaling */
    struct loss_scale ls;    /* the scaler (the same on every rank: one verdict per step) */
    int    overflow;         /* the last step overflowed and was skipped (fp16) */
    double step_scale;       /* the loss scale the last step's backward pass used */
};

/* The backend named by a config's device ("cpu", "cuda"); a device that is unknown or
 * not built into this binary ends the job with exit 2, the reason and a HINT. */
struct backend *trainer_open_backend(const char *device, int local_rank);

/* Set up everything for cfg on MPI_COMM_WORLD: layout, data, model, optimizer; resume
 * from a checkpoint as cfg.resume says. open_run_dir: create run_dir and metrics. */
void trainer_init(struct trainer *t, const struct config *cfg, int open_run_dir);
void trainer_free(struct trainer *t);

/* One optimizer step; returns the mean training loss of the global batch. When the
 * divergence guard rejects the step, the update is not applied, t->step stays, and
 * t->diverged says why (the same on every rank). With fp16, a step whose gradients
 * overflowed anywhere in the job is skipped by every rank (t->overflow): no update, the
 * loss scale backs off, and the step counts as done (its data is consumed). */
double trainer_step(struct trainer *t, double *grad_norm, float *lr);

/* After a divergence: skip the offending step's data from now on, reload the newest good
 * checkpoint in run_dir (or the initial weights when there is none). Returns the step it
 * went back to. Collective. */
int trainer_rollback(struct trainer *t);

/* Are all of this job's weights and optimizer moments finite, and do all ranks count the
 * same optimizer steps (no rank applied an update that another skipped)? Collective. */
int trainer_state_finite(const struct trainer *t);

/* The run state that goes into a checkpoint of the current step. */
void trainer_ckpt_meta(const struct trainer *t, struct ckpt_meta *meta);

/* Mean loss per token over the validation windows (same for every layout). */
double trainer_eval(struct trainer *t);

/* The `train` command: loop, log, evaluate, checkpoint. Returns an exit code. */
int train_main(int argc, char **argv);
int eval_main(int argc, char **argv);

#endif

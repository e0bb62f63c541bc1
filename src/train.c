/* train.c — one training step over the 3D grid, the training loop, evaluation. */
#include "train.h"

#include <errno.h>
#include <sched.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "common.h"
#include "cuda/pool.h"
#include "dataset.h"
#include "fault.h"
#include "p2p.h"
#include "rng.h"

/* Keys that separate the random streams drawn from one seed. */
#define STREAM_TRAIN_WINDOWS 0x7472616e5f77696eull

/* ------------------------------------------------------------------------------------ */
/* data                                                                                 */

/* The data step that training step `step` reads: the step itself, moved past every data
 * step a divergence rollback skipped (t->skips, ascending). Without skips: the step. */
static int64_t data_index(const struct trainer *t, int step) {
    int64_t d = step;
    for (int i = 0; i < t->n_skips; i++)
        if (t->skips[i] <= d) d++;
    return d;
}

/* The windows of global step `step`: sample i of the global batch starts at a position
 * that depends only on (seed, data step, i). This rank's micro-batch mb holds samples
 * (dp_rank*M + mb)*B + b, so every layout covers the same global batch. */
static void batch_offsets(const struct trainer *t, int step, int64_t *offsets) {
    const int B = t->cfg.micro_batch, T = t->cfg.seq_len;
    const uint64_t d = (uint64_t)data_index(t, step);
    int64_t n_pos = dataset_n_tokens(t->ds, DS_TRAIN) - T;
    for (int mb = 0; mb < t->M; mb++)
        for (int b = 0; b < B; b++) {
            uint64_t i = (uint64_t)(t->g.dp_rank * t->M + mb) * B + b;
            offsets[mb * B + b] = (int64_t)rng_below(
                rng_key3((uint64_t)t->cfg.seed, STREAM_TRAIN_WINDOWS ^ d, i),
                (uint64_t)n_pos);
        }
}

/* For the partitioned-reading test: TRIDENT_LOG_READS=DIR makes each rank append the
 * windows it reads to DIR/reads.<rank> ("step offset" lines). */
static void log_reads(const struct trainer *t, int step, const int64_t *offsets, int n) {
    const char *dir = getenv("TRIDENT_LOG_READS");
    if (!dir || !*dir) return;
    char path[CFG_STR_MAX];
    snprintf(path, sizeof path, "%s/reads.%d", dir, t->g.world_rank);
    FILE *f = fopen(path, "a");
    if (!f) return;
    for (int i = 0; i < n; i++) fprintf(f, "%d %lld\n", step, (long long)offsets[i]);
    fclose(f);
}

static int reads_data(const struct trainer *t) {
    return (t->m.first || t->m.last) && t->g.tp_rank == 0;
}

/* Start reading the windows of `step` in the background (the data layer's own thread),
 * so they are in memory by the time the step begins. */
static void prefetch_batch(struct trainer *t, int step) {
    if (!reads_data(t) || step >= t->cfg.steps) return;
    const int n = t->M * t->cfg.micro_batch;
    batch_offsets(t, step, t->offsets);
    log_reads(t, step, t->offsets, n);
    dataset_prefetch(t->ds, DS_TRAIN, t->offsets, n, t->cfg.seq_len + 1);
    t->prefetched = step;
}

/* Only the stages that need tokens read them (the first: inputs, the last: targets), and
 * of each tensor-parallel group only rank 0, which shares the windows with its peers.
 * The windows of the next step are requested as soon as this step's have arrived. */
static void read_batch(struct trainer *t, int step) {
    struct model *m = &t->m;
    if (!m->first && !m->last) return;
    double t0 = tr_now();
    const int n = t->M * t->cfg.micro_batch, len = t->cfg.seq_len + 1;
    if (t->g.tp_rank == 0) {
        if (t->prefetched != step) TR_ABORT("step %d's windows were not prefetched", step);
        dataset_wait(t->ds, t->batch);
        t->prefetched = -1;
        prefetch_batch(t, step + 1);
    }
    if (t->g.tp > 1)
        comm_bcast(&t->g.comm, COMM_TP, t->batch, (long)n * len, COMM_I32, 0);
    t->tm.data += tr_now() - t0;
}

/* Copy rows [first, first+B) of a window buffer into a slot: inputs and targets are the
 * same window shifted by one token. */
static void load_slot(struct trainer *t, int slot, const int32_t *windows, int B, int T) {
    struct acts *a = &t->m.slots[slot];
    for (int b = 0; b < B; b++) {
        const int32_t *w = windows + (long)b * (T + 1);
        if (t->m.first)
            backend_copy_h2d(t->be, tensor_view(a->tokens, (int64_t)b * T, 1, T).data, w,
                             sizeof(int32_t) * (size_t)T);
        if (t->m.last)
            backend_copy_h2d(t->be, tensor_view(a->targets, (int64_t)b * T, 1, T).data, w + 1,
                             sizeof(int32_t) * (size_t)T);
    }
}

/* ------------------------------------------------------------------------------------ */
/* the pipeline schedule                                                                */

static double forward_step(struct trainer *t, int mb, int B, int T, float dloss,
                           const int32_t *windows) {
    struct model *m = &t->m;
    int slot = mb % m->n_slots;
    /* the slot's output may still be on its way to the next stage */
    double t0 = tr_now();
    watchdog_beat(&t->wd, t->step + 1, "sending activations to the next pipeline stage");
    t->tm.pipe_wait += p2p_wait(&t->fsend[slot]);
    if (windows) load_slot(t, slot, windows, B, T);
    watchdog_beat(&t->wd, t->step + 1, "waiting for activations from the previous pipeline stage");
    if (!m->first) t->tm.pipe_wait += p2p_recv_fwd(&t->g, model_stage_input(m, slot, B, T), mb);
    watchdog_beat(&t->wd, t->step + 1, "forward pass (tensor-parallel all-reduces inside)");
    double t1 = tr_now();
    trace_add(&t->trace, "wait activations", t0, t1, mb);
    double loss = model_forward(m, slot, B, T, dloss);
    if (mb == 0 && dloss != 0.0f) fault_point("forward", t->step + 1);
    if (!m->last) p2p_send_fwd(&t->g, model_stage_output(m, slot, B, T), mb, &t->fsend[slot]);
    trace_add(&t->trace, "forward", t1, tr_now(), mb);
    return loss;
}

static void backward_step(struct trainer *t, int mb, int B, int T) {
    struct model *m = &t->m;
    int slot = mb % m->n_slots;
    struct tensor dres = model_dres(m, B, T);
    double t0 = tr_now();
    watchdog_beat(&t->wd, t->step + 1, "waiting for gradients from the next pipeline stage");
    if (!m->last) t->tm.pipe_wait += p2p_recv_bwd(&t->g, dres, mb);
    watchdog_beat(&t->wd, t->step + 1, "backward pass (tensor-parallel all-reduces inside)");
    double t1 = tr_now();
    trace_add(&t->trace, "wait gradients", t0, t1, mb);
    if (mb == t->M - 1) dpr_arm(&t->dpr);
    model_backward(m, slot, B, T);
    if (mb == 0) fault_point("backward", t->step + 1);
    if (!m->first) {
        watchdog_beat(&t->wd, t->step + 1, "sending gradients to the previous pipeline stage");
        t->tm.pipe_wait += p2p_wait(&t->bsend[slot]);
        struct tensor send = tensor_view(t->gsend[slot], 0, dres.rows, dres.cols);
        backend_copy_d2d(t->be, send.data, dres.data, tensor_bytes(dres));
        p2p_send_bwd(&t->g, send, mb, &t->bsend[slot]);
    }
    trace_add(&t->trace, "backward", t1, tr_now(), mb);
}

/* Runs every micro-batch of the step through this stage; returns the summed loss of
 * the tokens this rank scored (last stage; 0 elsewhere).
 *
 * Both schedules run the backward passes in micro-batch order 0..M-1, so parameter
 * gradients accumulate in the same order whatever the schedule or the number of stages:
 * the same config gives the same bits under GPipe, 1F1B and PP = 1. */
static double run_schedule(struct trainer *t, float dloss) {
    const int B = t->cfg.micro_batch, T = t->cfg.seq_len, M = t->M;
    const int32_t *w = t->batch;
    const long wstride = (long)B * (T + 1);
    double loss = 0.0;
    if (t->gpipe) {
        for (int mb = 0; mb < M; mb++) loss += forward_step(t, mb, B, T, dloss, w + mb * wstride);
        for (int mb = 0; mb < M; mb++) backward_step(t, mb, B, T);
        return loss;
    }
    /* 1F1B: stage s first runs (pp - s - 1) forwards (warmup), then alternates one
     * forward and one backward (steady state), then drains the backwards (cooldown).
     * At most pp - s micro-batches are in flight, which bounds activation memory. */
    int warmup = TR_MIN(t->g.pp - t->g.pp_rank - 1, M);
    int steady = M - warmup;
    for (int mb = 0; mb < warmup; mb++)                               /* warmup   */
        loss += forward_step(t, mb, B, T, dloss, w + mb * wstride);
    for (int i = 0; i < steady; i++) {                                /* steady   */
        int f = warmup + i;
        loss += forward_step(t, f, B, T, dloss, w + f * wstride);
        backward_step(t, i, B, T);
    }
    for (int mb = steady; mb < M; mb++) backward_step(t, mb, B, T);  /* cooldown */
    return loss;
}

static void on_grads(void *ctx, int first, int n) {
    dpr_ready((struct dp_reducer *)ctx, first, n);
}

double trainer_step(struct trainer *t, double *grad_norm, float *lr_out) {
    struct model *m = &t->m;
    memset(&t->tm, 0, sizeof t->tm);
    t->trace.on = t->step < t->cfg.trace_steps;
    fault_point("start", t->step + 1);
    t->diverged[0] = '\0';
    double t0 = tr_now();
    /* zero = 1: the last step's weights are all-gathered before this forward reads them */
    watchdog_beat(&t->wd, t->step + 1, "gathering the updated weights (zero = 1)");
    optim_gather_wait(&t->o);
    watchdog_beat(&t->wd, t->step + 1, "reading this step's data windows");
    read_batch(t, t->step);
    trace_add(&t->trace, "data", t0, tr_now(), -1);
    model_timers_reset(m);
    model_zero_grads(m);

    const long tokens = (long)t->cfg.micro_batch * t->cfg.seq_len * t->M * t->g.dp;
    /* the loss is the mean over every target token of the global batch; fp16 scales it
     * so that small gradients survive in 16 bits */
    t->step_scale = t->fp16 ? t->ls.scale : 1.0;
    float dloss = (float)(t->step_scale / (double)tokens);
    double loss_local = run_schedule(t, dloss);
    fault_point("step", t->step + 1);
    for (int s = 0; s < m->n_slots; s++) {
        t->tm.pipe_wait += p2p_wait(&t->fsend[s]);
        t->tm.pipe_wait += p2p_wait(&t->bsend[s]);
    }
    double t_dp = tr_now();
    watchdog_beat(&t->wd, t->step + 1, "data-parallel gradient reduction");
    dpr_finish(&t->dpr);
    fault_point("reduce", t->step + 1);
    t->tm.dp_exposed = t->dpr.t_exposed;
    double t1 = tr_now();
    trace_add(&t->trace, "gradient reduction", t_dp, t1, -1);

    watchdog_beat(&t->wd, t->step + 1, "gradient norm, loss and optimizer");
    if (fault_armed("overflow", t->step + 1)) {
        /* in the first part of a gradient this rank's norm counts, so the norm sees it */
        for (int i = 0; i < m->pt.n; i++) {
            struct tensor part = optim_norm_part(m, i);
            if (!tensor_present(part)) continue;
            fault_overflow(t->be, part, t->step + 1);
            break;
        }
    }
    /* the norm is summed over every rank, so an inf or NaN anywhere reaches every rank:
     * with fp16 that is the job-wide overflow verdict, one for all */
    double norm = optim_grad_norm(m);
    t->overflow = 0;
    if (t->fp16) {
        t->overflow = !loss_scale_update(&t->ls, !isfinite(norm));
        norm /= t->step_scale;
    }
    /* one scalar per step reaches every rank: the loss, counted by tensor rank 0 of
     * the last stage of each data-parallel replica. It is known before the update, so a
     * diverged step is never applied. */
    double loss = (m->last && t->g.tp_rank == 0) ? loss_local : 0.0;
    comm_allreduce(&t->g.comm, COMM_WORLD, &loss, 1, COMM_F64, COMM_SUM);
    loss = fault_loss(loss / (double)tokens, (long)data_index(t, t->step) + 1);
    float lr = optim_step_lr(&t->o, &t->cfg, t->step);
    char why[400];
    if (t->overflow && isfinite(loss)) {
        /* skipped: nothing applied; the scale was lowered for the next step */
        guard_accept(&t->guard, loss);
        t->last_loss = loss;
    } else if (guard_check(&t->guard, loss, norm, why, sizeof why)) {
        snprintf(t->diverged, sizeof t->diverged, "step %d diverged: %s", t->step + 1, why);
    } else {
        float scale = 1.0f;
        if (t->cfg.grad_clip > 0 && norm > t->cfg.grad_clip) scale = (float)(t->cfg.grad_clip / norm);
        optim_step(&t->o, m, lr, (float)(scale / t->step_scale));
        fault_point("optim", t->step + 1);
        /* zero = 1: the poison must land after the weights' all-gather, not under it */
        if (fault_armed("nanweights", t->step + 1)) optim_gather_wait(&t->o);
        fault_poison(t->be, t->m.params, t->step + 1);
        guard_accept(&t->guard, loss);
        t->last_loss = loss;
    }
    t->tm.optimizer = tr_now() - t1;
    trace_add(&t->trace, "optimizer", t1, tr_now(), -1);

    t->tm.tp_comm = m->t_tp_comm;
    t->tm.compute = 0;
    for (int i = 0; i < KT_COUNT; i++) t->tm.compute += m->t_kernel[i];
    t->tm.total = tr_now() - t0;
    if (!t->diverged[0]) t->step++;
    if (grad_norm) *grad_norm = norm;
    if (lr_out) *lr_out = lr;
    return loss;
}

int trainer_state_finite(const struct trainer *t) {
    /* zero = 1: each rank checks its slice of masters and moments, and the gathered
     * weights (which the optimizer may still be gathering: the request is the only
     * part of the trainer this changes) */
    optim_gather_wait((struct optim *)&t->o);
    const struct tensor bufs[4] = {t->m.params, t->o.m, t->o.v,
                                   t->m.z.on && t->m.w.data != t->m.params.data ? t->m.w
                                                                              : TENSOR_NONE};
    int ok = 1;
    for (int b = 0; b < 4; b++) ok &= t->k->count_nonfinite(t->be, bufs[b]) == 0;
    /* a skipped (fp16 overflow) or rejected step must be skipped everywhere */
    int lo = t->o.t, hi = t->o.t;
    comm_allreduce(&t->g.comm, COMM_WORLD, &lo, 1, COMM_I32, COMM_MIN);
    comm_allreduce(&t->g.comm, COMM_WORLD, &hi, 1, COMM_I32, COMM_MAX);
    if (lo != hi)
        tr_fail(TR_EXIT_FAILURE, "this is a bug in trident: report it with the log",
                "the ranks disagree on the optimizer steps applied (%d to %d): their weights "
                "have drifted apart; not saving this state", lo, hi);
    comm_allreduce(&t->g.comm, COMM_WORLD, &ok, 1, COMM_I32, COMM_MIN);
    return ok;
}

void trainer_ckpt_meta(const struct trainer *t, struct ckpt_meta *meta) {
    memset(meta, 0, sizeof *meta);
    meta->step = t->step;
    meta->loss = t->last_loss;
    meta->n_skips = t->n_skips;
    memcpy(meta->skips, t->skips, sizeof(int64_t) * (size_t)t->n_skips);
    if (t->fp16) loss_scale_format(&t->ls, meta->loss_scaler, sizeof meta->loss_scaler);
}

/* The loss scaler of a fresh fp16 run (the config's first scale), or the one a
 * checkpoint saved (text from ckpt_meta; "" when the run that wrote it had none). */
static void scaler_restore(struct trainer *t, const char *saved) {
    if (!t->fp16) return;
    struct loss_scale_opts o = LOSS_SCALE_OPTS_DEFAULT;
    o.init_scale = t->cfg.loss_scale;
    o.growth_interval = t->cfg.loss_scale_window;
    char err[200];
    if (loss_scale_init(&t->ls, &o, err, sizeof err) != 0)
        tr_fail(TR_EXIT_USAGE, "see loss_scale and loss_scale_window in the README", "%s", err);
    if (saved && saved[0] && loss_scale_parse(&t->ls, saved, err, sizeof err) != 0)
        tr_warn("the checkpoint's loss scaler state is unreadable (%s): starting from "
                "loss_scale = %g", err, (double)t->cfg.loss_scale);
}

/* ------------------------------------------------------------------------------------ */
/* evaluation                                                                           */

double trainer_eval(struct trainer *t) {
    struct model *m = &t->m;
    optim_gather_wait(&t->o);
    const int B = t->cfg.micro_batch, T = t->cfg.seq_len;
    const long W = (long)t->cfg.eval_batches * B;  /* windows, for the whole job */
    int64_t n_pos = dataset_n_tokens(t->ds, DS_VAL) - T;
    /* evenly spaced windows over the validation split; data-parallel rank d takes the
     * contiguous share [d*W/dp, (d+1)*W/dp), in micro-batches of up to B */
    long lo = W * t->g.dp_rank / t->g.dp, hi = W * (t->g.dp_rank + 1) / t->g.dp;
    double loss = 0.0;
    for (long w0 = lo; w0 < hi; w0 += B) {
        int nb = (int)TR_MIN((long)B, hi - w0);
        int32_t *win = NULL;
        if (m->first || m->last) {
            if (t->g.tp_rank == 0) {
                for (int b = 0; b < nb; b++)
                    t->offsets[b] = W > 1 ? (int64_t)((w0 + b) * (n_pos - 1) / (W - 1)) : 0;
                dataset_read_windows(t->ds, DS_VAL, t->offsets, nb, T + 1, t->batch);
            }
            if (t->g.tp > 1)
                comm_bcast(&t->g.comm, COMM_TP, t->batch, (long)nb * (T + 1), COMM_I32, 0);
            win = t->batch;
        }
        /* forward only, micro-batch by micro-batch, through the stages */
        loss += forward_step(t, 0, nb, T, 0.0f, win);
    }
    for (int s = 0; s < m->n_slots; s++) p2p_wait(&t->fsend[s]);
    double total = (m->last && t->g.tp_rank == 0) ? loss : 0.0;
    comm_allreduce(&t->g.comm, COMM_WORLD, &total, 1, COMM_F64, COMM_SUM);
    return total / (double)(W * T);
}

/* ------------------------------------------------------------------------------------ */
/* set-up                                                                               */

/* mkdir -p; 0, or -1 with the reason in err */
static int make_dir(const char *path, char *err, size_t err_len) {
    char buf[CFG_STR_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
        snprintf(err, err_len, "cannot create run_dir '%s': %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, err_len, "run_dir '%s' is not a directory", path);
        return -1;
    }
    return 0;
}

static void release_lock(void *ctx) { runlock_release((struct runlock *)ctx); }

/* Rank 0 creates run_dir and takes its lock, then removes what an interrupted save of an
 * earlier attempt left; every rank learns the verdict, so all of them fail together. */
static void take_run_dir(struct trainer *t) {
    struct { int rc; char msg[1500]; } v = {0, ""};
    if (t->g.world_rank == 0) {
        if (make_dir(t->cfg.run_dir, v.msg, sizeof v.msg) != 0) v.rc = 1;
        else if (runlock_acquire(&t->lock, t->cfg.run_dir, v.msg, sizeof v.msg) != 0) v.rc = 2;
        else {
            tr_set_exit_hook(release_lock, &t->lock);
            ckpt_clean_tmp(t->cfg.run_dir);
        }
    }
    comm_bcast(&t->g.comm, COMM_WORLD, &v, (long)sizeof v, COMM_U8, 0);
    if (v.rc == 1) tr_fail(TR_EXIT_USAGE, "choose a run_dir you can write to", "%s", v.msg);
    if (v.rc == 2)
        tr_fail(TR_EXIT_USAGE, "wait for that job to end, stop it (scancel JOBID, or kill PID on "
                "its host), or use another run_dir. A lock whose holder is gone is taken over "
                "by itself", "%s", v.msg);
}

static void check_data(const struct trainer *t) {
    const struct config *c = &t->cfg;
    int dv = dataset_vocab_size(t->ds);
    if (dv > c->vocab_size) {
        char hint[160];
        snprintf(hint, sizeof hint, "set vocab_size = %d (or more), or prepare the data with "
                 "a smaller tokenizer", dv);
        tr_fail(TR_EXIT_USAGE, hint, "data '%s' has a vocabulary of %d tokens but the model's "
                "vocab_size is %d", c->data, dv, c->vocab_size);
    }
    const char *split_name[2] = {"training", "validation"};
    for (int s = 0; s < 2; s++) {
        int64_t n = dataset_n_tokens(t->ds, (enum dataset_split)s);
        if (n < (int64_t)c->seq_len + 2) {
            char hint[160];
            snprintf(hint, sizeof hint, "use a shorter seq_len (at most %lld), or a larger "
                     "corpus", (long long)(n > 2 ? n - 2 : 1));
            tr_fail(TR_EXIT_USAGE, hint, "data '%s': the %s split has %lld tokens, fewer than "
                    "one window of seq_len + 1 = %d", c->data, split_name[s], (long long)n,
                    c->seq_len + 1);
        }
    }
}

static void fresh_state(struct trainer *t) {
    model_init_weights(&t->m, (uint64_t)t->cfg.seed);
    optim_zero(&t->o);
    t->o.t = 0;
    t->step = 0;
    t->last_loss = NAN;
    scaler_restore(t, NULL);
}

static void resume_or_init(struct trainer *t, int training, char *from, size_t from_len) {
    const struct config *c = &t->cfg;
    char path[CFG_STR_MAX + 64];
    int step = -1;
    struct ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.loss = NAN;
    from[0] = '\0';
    if (strcmp(c->resume, "none") == 0) {
        /* a fresh run only in a directory without checkpoints, readable or not */
        int n = t->g.world_rank == 0 ? ckpt_count(c->run_dir) : 0;
        comm_bcast(&t->g.comm, COMM_WORLD, &n, 1, COMM_I32, 0);
        if (n > 0)
            tr_fail(TR_EXIT_USAGE, "use resume = auto to continue it, or another run_dir",
                    "resume = none but run_dir '%s' already holds %d checkpoint file%s",
                    c->run_dir, n, n == 1 ? "" : "s");
    } else if (strcmp(c->resume, "auto") == 0) {
        step = ckpt_resume_latest(c->run_dir, &t->m, &t->o, &meta, path, sizeof path);
    } else {
        snprintf(path, sizeof path, "%s", c->resume);
        step = ckpt_load_meta(path, &t->m, &t->o, &meta);
    }
    if (step >= 0) {
        t->step = step;
        t->last_loss = meta.loss;
        t->n_skips = meta.n_skips;
        memcpy(t->skips, meta.skips, sizeof(int64_t) * (size_t)meta.n_skips);
        scaler_restore(t, meta.loss_scaler);
        guard_reset(&t->guard, meta.loss);
        snprintf(from, from_len, "%s", path);
        if (training) tr_info("resumed from %s at step %d", path, step);
        return;
    }
    fresh_state(t);
}

int trainer_rollback(struct trainer *t) {
    /* from now on the offending step's windows are skipped */
    int64_t d = data_index(t, t->step);
    if (t->n_skips >= CKPT_MAX_SKIPS)
        tr_fail(TR_EXIT_FAILURE, "lower lr or raise warmup",
                "%d data steps were skipped already; not skipping more", CKPT_MAX_SKIPS);
    int at = t->n_skips;
    while (at > 0 && t->skips[at - 1] > d) {
        t->skips[at] = t->skips[at - 1];
        at--;
    }
    t->skips[at] = d;
    t->n_skips++;
    int64_t skips[CKPT_MAX_SKIPS];
    int n_skips = t->n_skips;
    memcpy(skips, t->skips, sizeof skips);
    /* the windows read ahead for the next step are not needed any more */
    if (t->prefetched >= 0) {
        dataset_wait(t->ds, t->batch);
        t->prefetched = -1;
    }
    char path[CFG_STR_MAX + 64];
    struct ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.loss = NAN;
    int step = ckpt_resume_latest(t->cfg.run_dir, &t->m, &t->o, &meta, path, sizeof path);
    if (step < 0) fresh_state(t);
    else {
        t->step = step;
        t->last_loss = meta.loss;
        scaler_restore(t, meta.loss_scaler);
    }
    /* the checkpoint's list is a prefix of ours: keep ours */
    t->n_skips = n_skips;
    memcpy(t->skips, skips, sizeof skips);
    guard_reset(&t->guard, t->last_loss);
    t->rollbacks++;
    prefetch_batch(t, t->step);
    return t->step;
}

/* A launcher that binds each rank to fewer cores than it runs threads on (Open MPI binds
 * to one core by default for 2 ranks or fewer) silently halves or worse the speed. */
static void check_binding(const struct grid *g) {
    cpu_set_t set;
    int cores = 0, threads = kernels_threads();
    if (sched_getaffinity(0, sizeof set, &set) == 0) cores = CPU_COUNT(&set);
    int bad = cores > 0 && cores < threads;
    comm_allreduce(&g->comm, COMM_WORLD, &bad, 1, COMM_I32, COMM_MAX);
    if (bad)
        tr_warn("a rank runs %d threads but is bound to fewer cores; their threads share "
                "cores. With mpirun use --bind-to none or --map-by slot:PE=%d; with srun "
                "--cpus-per-task=%d", threads, threads, threads);
}

/* A backend's refusal (a sentence, then after a newline "HINT: the fix") as a usage error */
static void fail_backend(char *err) {
    char *hint = strstr(err, "\nHINT: ");
    if (hint) *hint = '\0', hint += strlen("\nHINT: ");
    tr_fail(TR_EXIT_USAGE, hint, "%s", err);
}

struct backend *trainer_open_backend(const char *device, int local_rank) {
    int dev = backend_parse(device);
    if (dev < 0)
        tr_fail(TR_EXIT_USAGE, "device is one of: cpu, cuda", "unknown device '%s'", device);
    char err[512];
    struct backend *be = backend_init((enum kdevice)dev, local_rank, err, sizeof err);
    if (!be) fail_backend(err);
    return be;
}

void trainer_init(struct trainer *t, const struct config *cfg, int open_run_dir) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    config_validate(&t->cfg);
    grid_init(&t->g, &t->cfg);
    /* Every rank meets the same verdict (the same binary, the same config), so a device
     * that is not built in ends the job quietly with the message from rank 0, before
     * run_dir is touched. The local rank picks the GPU: ranks of a node are consecutive
     * in the grid. */
    t->be = trainer_open_backend(t->cfg.device, t->g.world_rank % t->g.ranks_per_node);
    t->k = backend_kernels(t->be);
    /* on a GPU, device buffers travel by NCCL (host ones still by MPI), ordered against
     * the kernels' stream; its communicators need the GPU the backend has just chosen */
    if (backend_device(t->be) == KDEV_CUDA) {
        comm_free(&t->g.comm);
        comm_init(&t->g.comm, &t->g, COMM_BACKEND_NCCL);
        comm_set_stream(&t->g.comm, backend_stream(t->be));
    }
    /* before anything reads or writes run_dir: one training job per directory */
    if (open_run_dir) take_run_dir(t);
    watchdog_start(&t->wd, &t->g.comm, t->cfg.watchdog_s,
                   open_run_dir ? t->cfg.run_dir : NULL);
    guard_init(&t->guard, t->cfg.spike_factor, t->cfg.spike_window);
    t->last_loss = NAN;
    check_binding(&t->g);
    t->M = t->cfg.grad_accum;
    t->fp16 = strcmp(t->cfg.precision, "fp16") == 0;
    t->step_scale = 1.0;
    t->gpipe = strcmp(t->cfg.schedule, "gpipe") == 0;
    if (t->g.pp > 1 && t->M < t->g.pp)
        tr_warn("%d micro-batches for %d pipeline stages: the pipeline is idle %.0f%% of the "
                "time; use grad_accum >= %d (ideally 4x that)", t->M, t->g.pp,
                100.0 * (t->g.pp - 1) / (t->M + t->g.pp - 1), t->g.pp);

    t->ds = dataset_open(t->cfg.data, MPI_COMM_WORLD);
    check_data(t);

    int n_slots = t->gpipe ? t->M : TR_MIN(t->M, t->g.pp - t->g.pp_rank);
    memplan_check(&t->cfg, &t->g, n_slots, &t->mem); /* refuses what would not fit */
    /* A GPU's memory is reserved here, once, as one pool (nothing is allocated from the
     * driver inside a step): what the plan puts on the device (all but the host's runtime
     * and data buffers) plus a margin for fragmentation and growing workspaces
     * (pool_reserve_bytes: 1/8 + 256 MiB, or TRIDENT_CUDA_POOL_MARGIN). The CPU: nothing. */
    if (backend_device(t->be) != KDEV_CPU) {
        const struct mem_breakdown *mb = &t->mem.rank;
        const char *margin = getenv("TRIDENT_CUDA_POOL_MARGIN");
        int64_t pool = pool_reserve_bytes(mb->total - mb->bytes[MEM_RUNTIME] -
                                          mb->bytes[MEM_DATA], margin);
        if (pool < 0)
            tr_fail(TR_EXIT_USAGE, "a size in bytes with an optional K, M, G or T, e.g. 2G",
                    "TRIDENT_CUDA_POOL_MARGIN='%s' is not a size", margin ? margin : "");
        char err[768];
        if (backend_reserve(t->be, (size_t)pool, err, sizeof err) != 0) fail_backend(err);
    }
    model_init(&t->m, &t->cfg, &t->g, t->be, n_slots);
    optim_init(&t->o, &t->m);
    dpr_init(&t->dpr, &t->m, &t->g, &t->cfg);
    t->m.on_grads = on_grads;
    t->m.hook_ctx = &t->dpr;

    const int B = t->cfg.micro_batch, T = t->cfg.seq_len;
    long n_win = (long)TR_MAX(t->M, 1) * B;
    t->batch = tr_malloc(sizeof(int32_t) * (size_t)n_win * (T + 1));
    t->offsets = tr_malloc(sizeof(int64_t) * (size_t)n_win);
    t->gsend = tr_calloc((size_t)n_slots, sizeof(struct tensor));
    t->fsend = tr_malloc(sizeof(struct comm_req) * (size_t)n_slots);
    t->bsend = tr_malloc(sizeof(struct comm_req) * (size_t)n_slots);
    for (int s = 0; s < n_slots; s++) {
        t->fsend[s] = t->bsend[s] = COMM_REQ_NULL;
        if (!t->m.first)
            t->gsend[s] = tensor_2d(backend_alloc(t->be, kdtype_size(t->m.dt) * (size_t)B * T *
                                                  t->m.C), t->m.dt, (int64_t)B * T, t->m.C);
    }
    char from[CFG_STR_MAX + 64];
    resume_or_init(t, open_run_dir, from, sizeof from);
    trace_init(&t->trace, &t->g);
    linkprobe_init(&t->lp, &t->g, open_run_dir ? t->cfg.link_probe_every : 0);
    t->prefetched = -1;
    prefetch_batch(t, t->step);
    if (open_run_dir && t->g.world_rank == 0) {
        char path[CFG_STR_MAX + 32];
        snprintf(path, sizeof path, "%s/config.txt", t->cfg.run_dir);
        FILE *f = fopen(path, "w");
        if (!f) tr_fail(TR_EXIT_USAGE, NULL, "cannot write '%s': %s", path, strerror(errno));
        config_print(&t->cfg, f);
        fclose(f);
        snprintf(path, sizeof path, "%s/metrics.jsonl", t->cfg.run_dir);
        t->metrics = fopen(path, "a");
        if (!t->metrics) tr_fail(TR_EXIT_USAGE, NULL, "cannot write '%s': %s", path,
                                 strerror(errno));
        /* steps after a resume repeat numbers already in the file (those after the
         * checkpoint): this line tells readers that what follows replaces them */
        if (from[0]) {
            fprintf(t->metrics, "{\"event\":\"resume\",\"step\":%d,\"checkpoint\":\"%s\"}\n",
                    t->step, from);
            fflush(t->metrics);
        }
    }
}

void trainer_free(struct trainer *t) {
    watchdog_stop(&t->wd);
    guard_free(&t->guard);
    tr_set_exit_hook(NULL, NULL);
    runlock_release(&t->lock);
    trace_free(&t->trace);
    linkprobe_free(&t->lp);
    if (t->metrics) fclose(t->metrics);
    for (int s = 0; s < t->m.n_slots; s++) backend_free_mem(t->be, t->gsend[s].data);
    tr_free(t->gsend);
    tr_free(t->fsend);
    tr_free(t->bsend);
    tr_free(t->batch);
    tr_free(t->offsets);
    dpr_free(&t->dpr);
    optim_free(&t->o);
    model_free(&t->m);
    /* NCCL's communicators go before the device they live on (grid_free finds none) */
    if (backend_device(t->be) == KDEV_CUDA) comm_free(&t->g.comm);
    backend_free(t->be);
    dataset_close(t->ds);
    grid_free(&t->g);
}

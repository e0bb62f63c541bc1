/* cmd_train.c — the `train` and `eval` commands: the loop, progress, metrics, signals,
 * and the summary at the end of a run. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ckpt.h"
#include "common.h"
#include "train.h"

/* Set by SIGUSR1/SIGTERM (Slurm's warning before a time limit or preemption). A signal
 * handler can only talk to the program through a flag like this one; it is read once per
 * step and agreed on by every rank. */
static volatile sig_atomic_t g_stop_signal = 0;

static void on_stop_signal(int sig) { g_stop_signal = sig; }

static void install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void format_duration(double s, char *out, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long sec = (long)(s + 0.5);
    if (sec >= 3600) snprintf(out, n, "%ldh%02ldm", sec / 3600, sec / 60 % 60);
    else if (sec >= 60) snprintf(out, n, "%ldm%02lds", sec / 60, sec % 60);
    else snprintf(out, n, "%lds", sec);
}

/* What every rank agrees on after a step. */
struct step_view {
    struct step_times mean;  /* averaged over ranks */
    double slowest, fastest; /* step time of the slowest / fastest rank */
    int    slowest_rank;
    double mem_max_mb, mem_min_mb; /* peak resident memory over ranks */
    double dev_max_mb;             /* peak bytes allocated through the backend, max of ranks */
    int    stop_signal, ckpt_due;
};

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

static void gather_step(const struct trainer *t, int ckpt_due_local, struct step_view *v) {
    const struct step_times *tm = &t->tm;
    double sum[7] = {tm->compute, tm->tp_comm, tm->pipe_wait, tm->dp_exposed, tm->optimizer,
                     tm->data, tm->total};
    comm_allreduce(&t->g.comm, COMM_WORLD, sum, 7, COMM_F64, COMM_SUM);
    double mem = peak_rss_mb();
    struct backend_mem dev;
    backend_mem_stats(t->be, &dev);
    /* one MAX reduction carries maxima, minima (as negated maxima) and flags */
    double mx[7] = {tm->total, -tm->total, mem, -mem, g_stop_signal != 0, ckpt_due_local,
                    (double)dev.peak / (1024.0 * 1024.0)};
    comm_allreduce(&t->g.comm, COMM_WORLD, mx, 7, COMM_F64, COMM_MAX);
    double slowest = tm->total;
    int slowest_rank = 0;
    comm_allreduce_maxloc(&t->g.comm, COMM_WORLD, &slowest, &slowest_rank);
    double w = t->g.world_size;
    v->mean = (struct step_times){sum[0] / w, sum[1] / w, sum[2] / w, sum[3] / w, sum[4] / w,
                                  sum[5] / w, sum[6] / w};
    v->slowest = mx[0];
    v->fastest = -mx[1];
    v->mem_max_mb = mx[2];
    v->mem_min_mb = -mx[3];
    v->stop_signal = mx[4] != 0;
    v->ckpt_due = mx[5] != 0;
    v->dev_max_mb = mx[6];
    v->slowest_rank = slowest_rank;
}

/* This rank's share of the hardware's peak GFLOP/s in the arithmetic the model's matmuls
 * use (fp32 FMAs; bf16 dot products for a native bf16 GEMM): the reference for MFU.
 * TRIDENT_PEAK_GFLOPS (GFLOP/s per rank, e.g. from the CPU's data sheet: cores per rank
 * × clock × FLOPs per cycle) replaces the probe; otherwise every rank runs the FMA probe
 * (kernels_peak_flops) at once, so ranks that share a node's cores share them here too
 * and each gets its share of the node's peak. The mean over ranks is used. (With more
 * ranks than cores, each rank's best moment can fall while others wait, so the shares add
 * up to a little more than the node: 8 ranks on 2 cores read 82 GFLOP/s each, not 66.) */
static double probe_peak_gflops(const struct trainer *t) {
    const char *env = getenv("TRIDENT_PEAK_GFLOPS");
    if (env && *env) {
        char *end;
        double v = strtod(env, &end);
        if (*end || !isfinite(v) || v <= 0)
            tr_fail(TR_EXIT_USAGE, "give the peak GFLOP/s of one rank, e.g. "
                    "TRIDENT_PEAK_GFLOPS=520, or unset it to measure",
                    "TRIDENT_PEAK_GFLOPS='%s' is not a positive number", env);
        tr_info("peak: %.0f GFLOP/s per rank (TRIDENT_PEAK_GFLOPS)", v);
        return v;
    }
    comm_barrier(&t->g.comm, COMM_WORLD);
    const char *isa;
    double rate = kernels_peak_flops_matmul(t->m.dt, &isa) / 1e9;
    comm_allreduce(&t->g.comm, COMM_WORLD, &rate, 1, COMM_F64, COMM_SUM);
    rate /= t->g.world_size;
    tr_info("peak: %.0f GFLOP/s per rank (%s probe, %d thread%s per rank, all ranks at "
            "once; TRIDENT_PEAK_GFLOPS overrides)", rate, isa, kernels_threads(),
            kernels_threads() > 1 ? "s" : "");
    return rate;
}

/* This rank's matmul rate on a GEMM of the model's shape and compute dtype, with every
 * rank measuring at once (so ranks that share cores share them here too): the reference
 * for the BLAS efficiency (how close the model gets to what its matmul kernel reaches). */
static double probe_sgemm_gflops(const struct trainer *t) {
    int M = TR_MIN(t->cfg.micro_batch * t->cfg.seq_len, 1024), K = t->cfg.n_embd;
    int N = 4 * t->cfg.n_embd / t->g.tp;
    enum kdtype dt = t->m.dt;
    struct tensor a = tensor_2d(backend_alloc(t->be, kdtype_size(dt) * (size_t)M * K), dt, M, K);
    struct tensor w = tensor_2d(backend_alloc(t->be, kdtype_size(dt) * (size_t)N * K), dt, N, K);
    struct tensor out = tensor_2d(backend_alloc(t->be, kdtype_size(dt) * (size_t)M * N), dt, M, N);
    backend_memset(t->be, a.data, 0, tensor_bytes(a));
    backend_memset(t->be, w.data, 0, tensor_bytes(w));
    comm_barrier(&t->g.comm, COMM_WORLD);
    /* the best of many calls over at least a quarter second: a busy moment on a shared
     * machine can only slow a call down, never speed it up */
    double best = 1e30, start = tr_now();
    for (int r = 0; r < 200 && (r < 8 || tr_now() - start < 0.25); r++) {
        double t0 = tr_now();
        t->k->matmul_fwd(t->be, out, a, w, TENSOR_NONE);
        backend_synchronize(t->be);
        if (r > 0) best = TR_MIN(best, tr_now() - t0);
    }
    backend_free_mem(t->be, a.data);
    backend_free_mem(t->be, w.data);
    backend_free_mem(t->be, out.data);
    double rate = 2.0 * M * N * K / best / 1e9;
    comm_allreduce(&t->g.comm, COMM_WORLD, &rate, 1, COMM_F64, COMM_SUM);
    return rate / t->g.world_size;
}

/* A state with a non-finite weight or moment is a divergence, never a checkpoint. When
 * the state after the last step is broken, that step is the one to skip: t->step goes
 * back to it and t->diverged says why. Collective (every rank gets the same answer). */
static int state_broken(struct trainer *t) {
    watchdog_beat(&t->wd, t->step, "checking the weights for non-finite values");
    if (trainer_state_finite(t)) return 0;
    snprintf(t->diverged, sizeof t->diverged, "after step %d the weights or optimizer "
             "moments hold non-finite values", t->step);
    t->step--;
    return 1;
}

/* Publish a checkpoint of the current step (whose state was found finite). */
static void save(struct trainer *t) {
    char path[CFG_STR_MAX + 64];
    double t0 = tr_now();
    watchdog_beat(&t->wd, t->step, "checkpoint write (collective, parallel HDF5)");
    struct ckpt_meta meta;
    trainer_ckpt_meta(t, &meta);
    ckpt_save(t->cfg.run_dir, &meta, &t->m, &t->o, t->cfg.ckpt_keep, path, sizeof path);
    watchdog_beat(&t->wd, t->step, "after the checkpoint");
    trace_add(&t->trace, "checkpoint", t0, tr_now(), -1);
    tr_info("checkpoint %s (%.2f s)", path, tr_now() - t0);
}

/* A divergence (t->diverged): stop with exit 1, or roll back to the last good
 * checkpoint and skip the step's data, at most max_rollbacks times. Every rank reaches
 * the same verdict (from global values), so they all take the same branch. */
static void on_divergence(struct trainer *t) {
    const struct config *c = &t->cfg;
    int rollback = strcmp(c->on_divergence, "rollback") == 0;
    if (!rollback || t->rollbacks >= c->max_rollbacks) {
        if (t->g.world_rank == 0 && t->metrics) {
            fprintf(t->metrics, "{\"event\":\"diverged\",\"step\":%d,\"stopped\":true}\n",
                    t->step + 1);
            fflush(t->metrics);
        }
        char hint[400];
        snprintf(hint, sizeof hint, "nothing was saved after the last good checkpoint. Lower lr "
                 "or raise warmup and start again: it resumes from that checkpoint%s",
                 rollback ? "" : "; or set on_divergence = rollback to reload it and skip the "
                 "offending data automatically");
        if (rollback)
            tr_fail(TR_EXIT_FAILURE, hint, "training diverged again after %d rollback%s: %s",
                    t->rollbacks, t->rollbacks == 1 ? "" : "s", t->diverged);
        tr_fail(TR_EXIT_FAILURE, hint, "training stopped: %s", t->diverged);
    }
    int bad = t->step + 1;
    watchdog_beat(&t->wd, t->step, "rolling back to the last good checkpoint");
    int to = trainer_rollback(t);
    tr_warn("%s; rolled back to step %d and skipping that step's data (rollback %d of %d)",
            t->diverged, to, t->rollbacks, c->max_rollbacks);
    if (t->g.world_rank == 0) {
        fprintf(t->metrics, "{\"event\":\"rollback\",\"step\":%d,\"to_step\":%d,"
                "\"rollback\":%d}\n", bad, to, t->rollbacks);
        fflush(t->metrics);
    }
}

/* Open MPI's mpirun answers a TERM or Ctrl-C by killing the ranks 2 s later, however long
 * the checkpoint takes; slurm/mpirun.sh and train.sbatch turn those into USR1. Say so
 * when neither is in the way. */
static void warn_bare_mpirun(void) {
    if (getenv("OMPI_COMM_WORLD_SIZE") && !getenv("SLURM_JOB_ID") &&
        !getenv("TRIDENT_SIGNAL_LAUNCHER"))
        tr_info("note: started by mpirun directly: a TERM or Ctrl-C to mpirun kills the ranks "
                "after 2 s, losing the step and its checkpoint. Start with slurm/mpirun.sh "
                "(same arguments), or stop with kill -USR1 <mpirun pid>");
}

static void print_header(const struct trainer *t, long tokens_per_step) {
    const struct grid *g = &t->g;
    const struct config *c = &t->cfg;
    warn_bare_mpirun();
    tr_info("trident train: %d ranks = dp %d × tp %d × pp %d (%d node%s), schedule %s, "
            "gradient all-reduce %s, %d thread%s per rank",
            g->world_size, g->dp, g->tp, g->pp, g->n_nodes, g->n_nodes > 1 ? "s" : "",
            t->gpipe ? "GPipe" : "1F1B", dpr_algo_name(t->dpr.algo), kernels_threads(),
            kernels_threads() > 1 ? "s" : "");
    if (g->world_rank == 0) {
        printf("# effective config\n");
        config_print(c, stdout);
        fflush(stdout);
    }
    tr_info("model: %.2fM parameters, %d layers on %d stage%s; global batch %ld sequences = "
            "%ld tokens per step",
            t->m.n_logical / 1e6, c->n_layer, g->pp, g->pp > 1 ? "s" : "",
            (long)c->micro_batch * t->M * g->dp, tokens_per_step);
    {
        const double f = t->o.lr_factor;
        if (strcmp(c->lr_scaling, "none") != 0 && c->ref_batch > 0)
            tr_info("optimizer %s, state %s: lr %.4g, min_lr %.4g (lr_scaling %s: x%.4g = "
                    "global batch %ld / ref_batch %d%s)", c->optimizer, c->optim_state,
                    c->lr * f, c->min_lr * f, c->lr_scaling, f,
                    (long)c->micro_batch * t->M * g->dp, c->ref_batch,
                    strcmp(c->lr_scaling, "sqrt") == 0 ? ", square root" : "");
        else
            tr_info("optimizer %s, state %s: lr %.4g, min_lr %.4g%s", c->optimizer,
                    c->optim_state, c->lr, c->min_lr,
                    strcmp(c->lr_scaling, "none") != 0 ? " (lr_scaling: ref_batch = 0, "
                    "no scaling)" : "");
    }
    {
        const char *mm;
        kernels_native_matmul(t->m.dt, &mm);
        tr_info("precision %s: fp32 master weights, gradients and optimizer state%s; "
                "matmuls: %s%s", c->precision,
                t->m.dt == KDT_F32 ? "" : ", 16-bit weight copy and activations", mm,
                t->m.dt == KDT_F32 ? "" : "; other kernels compute in fp32 on widened operands");
    }
    memplan_print(&t->mem);
    if (g->pp > 1 && g->world_rank == 0) {
        int bounds[1025];
        model_stage_bounds(c, g->pp, bounds);
        printf("pipeline: layers per stage");
        for (int s = 0; s < g->pp && s < 1024; s++) printf(" %d", bounds[s + 1] - bounds[s]);
        printf("; %d micro-batches; theoretical bubble %.1f%%\n", t->M,
               100.0 * (g->pp - 1) / (t->M + g->pp - 1));
    }
}

/* mfu: model FLOP/s per rank ÷ the hardware's peak per rank (probe_peak_gflops);
 * blas_eff: ÷ the BLAS's sgemm rate on the model's shapes. Model FLOPs: 6 per matmul
 * parameter + causal attention, 6·L·C·(T+1) per token (model_flops_per_token). */
static void write_metrics(const struct trainer *t, int step, double loss, float lr, double norm,
                          const struct step_view *v, double tok_s, const struct model_eff *e,
                          double peak, double val, const struct linkprobe_result *link) {
    FILE *f = t->metrics;
    const struct step_times *m = &v->mean;
    /* JSON has no inf or NaN: an overflowed fp16 step's norm is written as null */
    char norm_text[32] = "null";
    if (isfinite(norm)) snprintf(norm_text, sizeof norm_text, "%.6f", norm);
    fprintf(f,
            "{\"step\":%d,\"loss\":%.17g,\"lr\":%.6e,\"grad_norm\":%s,\"tokens_per_s\":%.1f,"
            "\"ms_per_step\":%.3f,\"gflops_per_rank\":%.3f,\"mfu\":%.4f,\"blas_eff\":%.4f,"
            "\"peak_gflops_per_rank\":%.1f,"
            "\"t_compute\":%.6f,\"t_tp_comm\":%.6f,\"t_pipe_wait\":%.6f,\"t_dp_exposed\":%.6f,"
            "\"t_optimizer\":%.6f,\"t_data\":%.6f,\"bubble\":%.4f,\"bubble_theory\":%.4f,"
            "\"slowest_ms\":%.3f,\"fastest_ms\":%.3f,\"slowest_rank\":%d,"
            "\"peak_mem_mb_max\":%.1f,\"peak_mem_mb_min\":%.1f,\"device_peak_mb_max\":%.1f",
            step, loss, lr, norm_text, tok_s, v->slowest * 1e3, e->gflops, e->mfu, e->blas_eff, peak,
            m->compute, m->tp_comm,
            m->pipe_wait, m->dp_exposed, m->optimizer, m->data,
            m->total > 0 ? m->pipe_wait / m->total : 0.0,
            (double)(t->g.pp - 1) / (t->M + t->g.pp - 1), v->slowest * 1e3, v->fastest * 1e3,
            v->slowest_rank, v->mem_max_mb, v->mem_min_mb, v->dev_max_mb);
    if (t->fp16)  /* the scale this step's backward used, and the steps skipped so far */
        fprintf(f, ",\"loss_scale\":%.17g,\"overflow\":%s,\"skipped_steps\":%ld",
                t->step_scale, t->overflow ? "true" : "false", t->ls.skipped);
    if (isfinite(val)) fprintf(f, ",\"val_loss\":%.6f", val);
    if (link->seconds > 0) /* a link probe ran after this step (linkprobe.h) */
        fprintf(f, ",\"link_min_mbps\":%.2f,\"link_median_mbps\":%.2f,\"link_slowest_rank\":%d,"
                "\"link_straggler\":%d,\"link_probe_ms\":%.1f", link->min_mbps,
                link->median_mbps, link->slowest_rank, link->straggler, link->seconds * 1e3);
    fprintf(f, ",\"precision\":\"%s\"}\n", t->cfg.precision);
    fflush(f);
}

/* Totals over the steps of this invocation, for the summary table. */
struct totals {
    int    steps;
    double wall, compute, tp_comm, pipe_wait, dp_exposed, optimizer, data, ckpt, eval;
    double mfu_sum, blas_eff_sum, mem_max;
    double first_loss, last_loss, last_val;
    int    n_ckpt;
};

static void print_summary(const struct trainer *t, const struct totals *s, long tokens_per_step) {
    if (t->g.world_rank != 0 || s->steps == 0) return;
    double other = s->wall - s->compute - s->tp_comm - s->pipe_wait - s->dp_exposed -
                   s->optimizer - s->data;
    printf("\nsummary: %d steps, %.1f s, %.0f tokens/s, MFU %.1f%% of the peak FLOP/s, BLAS "
           "efficiency %.1f%% of its sgemm rate, peak memory %.0f MB per rank\n",
           s->steps, s->wall, s->steps * (double)tokens_per_step / s->wall,
           100.0 * s->mfu_sum / s->steps, 100.0 * s->blas_eff_sum / s->steps, s->mem_max);
    printf("  loss %.4f -> %.4f, validation %.4f; %d checkpoint%s (%.1f s), evaluation %.1f s\n",
           s->first_loss, s->last_loss, s->last_val, s->n_ckpt, s->n_ckpt == 1 ? "" : "s",
           s->ckpt, s->eval);
    printf("  %-28s %10s %7s\n", "time per step, mean of ranks", "ms", "share");
    const char *names[] = {"compute (kernels)", "tensor-parallel comm", "pipeline wait (bubble)",
                           "data-parallel comm, exposed", "optimizer", "data wait", "other"};
    double vals[] = {s->compute, s->tp_comm, s->pipe_wait, s->dp_exposed, s->optimizer, s->data,
                     other};
    for (int i = 0; i < 7; i++)
        printf("  %-28s %10.2f %6.1f%%\n", names[i], 1e3 * vals[i] / s->steps,
               100.0 * vals[i] / s->wall);
}

int train_main(int argc, char **argv) {
    struct config cfg;
    config_defaults(&cfg);
    config_parse_args(&cfg, argc - 1, argv + 1, NULL, NULL);
    /* before the (possibly long) set-up: Slurm's warning may come at any time */
    install_signal_handlers();
    struct trainer t;
    trainer_init(&t, &cfg, 1);
    const struct grid *g = &t.g;
    const long tokens_per_step = (long)cfg.micro_batch * cfg.seq_len * t.M * g->dp;
    print_header(&t, tokens_per_step);

    const double flops_per_step = model_flops_per_token(&cfg) * (double)tokens_per_step;
    const double peak = probe_peak_gflops(&t), sgemm = probe_sgemm_gflops(&t);
    double steps_time = 0.0, last_ckpt_time = tr_now();
    int first_step = t.step, last_ckpt = t.step, rc = TR_EXIT_OK;
    struct totals tot = {0};
    tot.last_val = NAN;
    while (t.step < cfg.steps) {
        double norm;
        float lr;
        double loss = trainer_step(&t, &norm, &lr);
        if (t.diverged[0]) {
            on_divergence(&t);
            continue;
        }
        int step = t.step; /* steps completed */
        /* the final checkpoint, written after the loop, must not publish a broken state */
        if (step == cfg.steps && state_broken(&t)) {
            on_divergence(&t);
            continue;
        }
        watchdog_beat(&t.wd, step, "step statistics (all ranks)");
        struct step_view v;
        gather_step(&t, cfg.ckpt_minutes > 0 &&
                            tr_now() - last_ckpt_time >= 60.0 * cfg.ckpt_minutes, &v);
        steps_time += v.slowest;
        double tok_s = tokens_per_step / v.slowest;
        struct model_eff eff = model_efficiency(flops_per_step, v.slowest, g->world_size,
                                                peak, sgemm);

        struct linkprobe_result link = {.slowest_rank = -1, .straggler = -1};
        if (linkprobe_due(&t.lp, step)) {
            watchdog_beat(&t.wd, step, "link probe");
            linkprobe_run(&t.lp, step, &link);
        }
        int do_eval = cfg.eval_every > 0 && step % cfg.eval_every == 0 && step < cfg.steps;
        double val = NAN;
        if (do_eval) {
            double e0 = tr_now();
            watchdog_beat(&t.wd, step, "evaluation");
            val = trainer_eval(&t);
            trace_add(&t.trace, "evaluation", e0, tr_now(), -1);
            tot.eval += tr_now() - e0;
            tot.last_val = val;
        }
        tot.steps++;
        tot.wall += v.slowest;
        tot.compute += v.mean.compute;
        tot.tp_comm += v.mean.tp_comm;
        tot.pipe_wait += v.mean.pipe_wait;
        tot.dp_exposed += v.mean.dp_exposed;
        tot.optimizer += v.mean.optimizer;
        tot.data += v.mean.data;
        tot.mfu_sum += eff.mfu;
        tot.blas_eff_sum += eff.blas_eff;
        tot.mem_max = TR_MAX(tot.mem_max, v.mem_max_mb);
        if (tot.steps == 1) tot.first_loss = loss;
        tot.last_loss = loss;

        if (g->world_rank == 0) {
            write_metrics(&t, step, loss, lr, norm, &v, tok_s, &eff, peak, val, &link);
            if (step % cfg.log_every == 0 || step == cfg.steps || step == first_step + 1 ||
                do_eval) {
                char eta[32];
                format_duration(steps_time / (step - first_step) * (cfg.steps - step), eta,
                                sizeof eta);
                printf("step %6d/%d | loss %.4f | lr %.2e | norm %6.3f | %8.0f tok/s | "
                       "%7.1f ms | MFU %4.1f%% | BLAS %3.0f%% | ETA %s",
                       step, cfg.steps, loss, lr, norm, tok_s, v.slowest * 1e3, 100.0 * eff.mfu,
                       100.0 * eff.blas_eff, eta);
                if (do_eval) printf(" | val %.4f", val);
                if (t.fp16) printf(" | scale %g", t.ls.scale);
                printf("\n");
                fflush(stdout);
            }
        }
        /* every rank must agree to stop or save: a signal may reach ranks at slightly
         * different moments, and the clock is rank 0's */
        int by_step = cfg.ckpt_every > 0 && step % cfg.ckpt_every == 0;
        int stop_here = cfg.stop_at > 0 && step == cfg.stop_at;
        if ((by_step || v.ckpt_due || v.stop_signal || stop_here) && step < cfg.steps) {
            double c0 = tr_now();
            if (state_broken(&t)) {
                on_divergence(&t);
                continue;
            }
            save(&t);
            tot.ckpt += tr_now() - c0;
            tot.n_ckpt++;
            last_ckpt = step;
            last_ckpt_time = tr_now();
        }
        if ((v.stop_signal || stop_here) && step < cfg.steps) {
            tr_info("stopping at step %d %s (checkpoint saved); exit code %d asks the batch "
                    "script to requeue and resume", step, v.stop_signal ? "on a signal" :
                    "(stop_at)", TR_EXIT_REQUEUE);
            rc = TR_EXIT_REQUEUE;
            break;
        }
    }
    if (rc == TR_EXIT_OK) {
        /* the end of the run: a final validation loss and checkpoint */
        double e0 = tr_now();
        watchdog_beat(&t.wd, t.step, "final evaluation");
        double val = trainer_eval(&t);
        tot.eval += tr_now() - e0;
        tot.last_val = val;
        if (t.step != last_ckpt || first_step == t.step) {
            double c0 = tr_now();
            /* checked after the last step (or no step ran: a loaded or initial state) */
            save(&t);
            tot.ckpt += tr_now() - c0;
            tot.n_ckpt++;
        }
        if (g->world_rank == 0) {
            fprintf(t.metrics, "{\"step\":%d,\"val_loss\":%.6f,\"final\":true}\n", t.step, val);
            fflush(t.metrics);
        }
    }
    if (cfg.trace_steps > 0) {
        char path[CFG_STR_MAX + 32];
        snprintf(path, sizeof path, "%s/trace.json", cfg.run_dir);
        trace_write(&t.trace, g, path);
        tr_info("timeline of %d step%s: %s (open in ui.perfetto.dev)",
                TR_MIN(cfg.trace_steps, cfg.steps), cfg.trace_steps > 1 ? "s" : "", path);
    }
    print_summary(&t, &tot, tokens_per_step);
    if (rc == TR_EXIT_OK && g->world_rank == 0)
        printf("done: %d steps | final validation loss %.4f nats/token (%.3f bits/byte) | "
               "run_dir %s\n", t.step - first_step, tot.last_val, tot.last_val / log(2.0),
               cfg.run_dir);
    trainer_free(&t);
    return rc;
}

int eval_main(int argc, char **argv) {
    /* trident eval --ckpt PATH [--key=value ...]: the model's config comes from the
     * checkpoint; data, layout and eval_batches may be overridden. */
    const char *extra[] = {"ckpt", NULL};
    const char *vals[1];
    struct config cfg;
    config_defaults(&cfg);
    config_parse_args(&cfg, argc - 1, argv + 1, extra, vals); /* first pass: find --ckpt */
    if (!vals[0])
        tr_fail(TR_EXIT_USAGE, "trident eval --ckpt runs/NAME/ckpt-00001000.h5",
                "eval needs --ckpt PATH (a checkpoint, or a run directory)");
    char path[CFG_STR_MAX];
    if (ckpt_find_latest(vals[0], path, sizeof path) != 0) snprintf(path, sizeof path, "%s", vals[0]);
    config_defaults(&cfg);
    ckpt_read_config(path, &cfg);
    /* the layout it was trained on says nothing about this job: derive it from the
     * rank count, unless given on the command line */
    cfg.dp = 0;
    cfg.tp = cfg.pp = 1;
    cfg.stages[0] = '\0';
    config_parse_args(&cfg, argc - 1, argv + 1, extra, vals);
    if (strlen(path) >= sizeof cfg.resume)
        tr_fail(TR_EXIT_USAGE, NULL, "checkpoint path '%s' is too long", path);
    memcpy(cfg.resume, path, strlen(path) + 1);
    struct trainer t;
    trainer_init(&t, &cfg, 0);
    double t0 = tr_now();
    double val = trainer_eval(&t);
    tr_info("checkpoint %s (step %d): validation loss %.4f nats/token (%.3f bits/byte, "
            "perplexity %.2f) over %d windows of %d tokens of %s [%.1f s]",
            path, t.step, val, val / log(2.0), exp(val), cfg.eval_batches * cfg.micro_batch,
            cfg.seq_len, cfg.data, tr_now() - t0);
    trainer_free(&t);
    return TR_EXIT_OK;
}

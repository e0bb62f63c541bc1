/* watchdog.h — a stopped, dead or deadlocked rank must never hang the job.
 *
 * Each rank runs a thread that watches its main thread's progress: the main thread
 * reports what it is about to do or wait for (watchdog_beat: "step 12: waiting for
 * activations from stage 0", "checkpoint write", ...). When a rank makes no progress for
 * the timeout, its watchdog
 *   1. prints which rank it is, its host and pid, and what it has been waiting for,
 *   2. writes the same line to run_dir/watchdog/rank-N, waits as long as the timeout
 *      (3 to 120 s) for the other ranks' reports, and (the first rank to get there)
 *      names the ranks that made none — stopped, dead or deadlocked: the likely
 *      culprits — with their host and pid,
 *   3. aborts the whole job with exit code 1, so Slurm requeues it and it resumes from the
 *      last checkpoint.
 * Timeout: watchdog_s from the config; 0 derives it: max(WATCHDOG_FLOOR_S, 10 × the
 * longest gap between two progress reports seen so far) — a rank that needed 40 s for a
 * checkpoint gets at least 400 s next time; -1 turns it off.
 */
#ifndef TRIDENT_WATCHDOG_H
#define TRIDENT_WATCHDOG_H

#include <pthread.h>

#define WATCHDOG_FLOOR_S 300.0

struct comm;

struct watchdog {
    double timeout_s;         /* > 0 fixed; 0 derived; < 0 off */
    char   report_dir[600];   /* run_dir/watchdog, or "" */
    int    rank, world;
    char  (*hosts)[64];       /* host of every rank */
    long  *pids;              /* pid of every rank */
    /* written by the main thread, read by the watchdog thread */
    volatile double last_beat;
    volatile double longest_gap;
    const char *volatile what;
    volatile int step;
    volatile int stop;
    pthread_t thread;
    int running;
};

/* Collective over c's COMM_WORLD (on the main thread): learns every rank's host and pid,
 * starts the thread. run_dir may be NULL (no report files: eval). */
void watchdog_start(struct watchdog *w, const struct comm *c, double timeout_s,
                    const char *run_dir);

/* Progress: the main thread is now doing `what` (a string literal) in step `step`. */
void watchdog_beat(struct watchdog *w, int step, const char *what);

void watchdog_stop(struct watchdog *w);

#endif

/* runlock.h — one training job per run directory.
 *
 * `train` holds run_dir/lock for as long as it runs: a second `train` on the same
 * directory refuses (exit 2) naming the holder, so two jobs never interleave their
 * metrics or checkpoints, and only the holder removes a torn ckpt-*.h5.tmp.
 *
 * Why a lock *file* and not flock(): the run directory lives on the cluster's shared file
 * system, where flock() is unreliable (NFS emulates it with byte-range locks that vanish
 * with a client's lease; Lustre refuses it unless mounted with -o flock), and a kernel
 * lock says nothing about who holds it. Creating a file with O_CREAT|O_EXCL is atomic on
 * local file systems, NFSv3+, Lustre and GPFS, and the file names its holder: host, pid,
 * process start time, Slurm job id and restart count. A thread of the holder touches it
 * every RUNLOCK_HEARTBEAT_S seconds.
 *
 * A lock is stale — and taken over, with a warning — when its holder is provably gone:
 *   - same host, and that pid is not running (or is another process: its start time differs);
 *   - the same Slurm job id as ours at another restart count (Slurm runs one attempt of
 *     a job at a time: the holder is an earlier attempt, requeued or on a failed node);
 *   - otherwise, when its heartbeat is older than RUNLOCK_STALE_S, measured against the
 *     file server's own clock (the mtime of a file we touch), so clock skew between
 *     nodes does not matter.
 * Two jobs taking over one stale lock at the same moment are serialised by a second,
 * short-lived O_EXCL file (lock.takeover).
 */
#ifndef TRIDENT_RUNLOCK_H
#define TRIDENT_RUNLOCK_H

#include <pthread.h>
#include <stddef.h>

#define RUNLOCK_HEARTBEAT_S 30
#define RUNLOCK_STALE_S     180

struct runlock {
    char      path[600];
    char      text[512];   /* what we wrote: compared before removing */
    int       held;
    pthread_t heartbeat;
    int       heartbeat_running;
    volatile int stop;
};

/* Take run_dir/lock (run_dir must exist). 0: held. -1: refused, with the reason and the
 * holder in msg. Called on one rank (rank 0). */
int  runlock_acquire(struct runlock *l, const char *run_dir, char *msg, size_t msg_len);

/* Remove the lock if it is still ours; stops the heartbeat. Safe to call twice. */
void runlock_release(struct runlock *l);

#endif

#!/usr/bin/env bash
# test_signals.sh — a stop signal on every launch path ends in "finish the step, write a
# checkpoint, exit 75", even when the checkpoint takes longer than mpirun's kill delay
# (TRIDENT_SLOW_CKPT makes each checkpoint write take SLOW seconds; mpirun kills the
# ranks 2 s after its own TERM). Every case checks the exit code, the log line, the
# checkpoint of the step it stopped at, and that resuming from it ends with the weights
# of an uninterrupted run (bit for bit: same layout).
#
#   mpirun_launcher_term         TERM to slurm/mpirun.sh (a user's kill, outside Slurm)
#   mpirun_launcher_ctrl_c       INT to the launcher's process group (Ctrl-C)
#   slurm_mpirun_term_requeues   TRIDENT_LAUNCHER=mpirun: TERM to the batch shell
#                                (scancel -b -s TERM) -> 75, requeued, resumed, done
#   slurm_mpirun_cancel_keeps_checkpoint
#                                scancel: Slurm's TERM reaches mpirun itself; the ranks
#                                still checkpoint before Slurm's KillWait
#   slurm_srun_term_requeues     TRIDENT_LAUNCHER=srun, the same as the mpirun case
#
# The slurm_* cases bring up a one-node cluster (slurm/cluster.sh, own directory and
# port) and tear it down at exit; without root or Slurm they are reported as skipped.
# About 1.5 minutes on 2 cores.
source "$(dirname "$0")/lib.sh"
DATA=$(sample_data)
SLOW=${SIGNAL_TEST_SLOW_CKPT:-5}
STEPS=400
ARGS=(train "$ROOT/inputs/tiny.conf" --data="$DATA" "--steps=$STEPS" --eval_every=0
      --log_every=1000 --dp=2 --tp=1 --pp=1)
export TRIDENT_SLURM_DIR=${TRIDENT_SLURM_SIGNALS_DIR:-/tmp/trident-slurm-signals}
export TRIDENT_SLURM_PORT=${TRIDENT_SLURM_SIGNALS_PORT:-16617}
CLUSTER_UP=0
cleanup() {
    if [ "$CLUSTER_UP" = 1 ]; then "$ROOT/slurm/cluster.sh" down >/dev/null 2>&1 || true; fi
    [ -n "${KEEP_TEST_TMP:-}" ] || rm -rf "$TEST_TMP"
}
trap cleanup EXIT

# wait_steps RUN_DIR: until the run has logged a step (up to 60 s)
wait_steps() {
    local _
    for _ in $(seq 600); do [ -s "$1/metrics.jsonl" ] && return 0; sleep 0.1; done
    return 1
}
# stopped_step LOG: the step of "stopping at step K on a signal (checkpoint saved)"
stopped_step() { sed -n 's/.*stopping at step \([0-9]*\) on a signal (checkpoint saved).*/\1/p' "$1" | tail -n 1; }

# verify NAME RC LOG RUN_DIR RESUMED_LOG: exit 75 (RC -: not checked), the log line, ckpt-K of the stopping
# step K (LOG =K: K given), then (RESUMED_LOG: the log of the attempt that resumed) resumed from it and
# ended with the reference weights. Prints the reason and fails when something is off.
verify() {
    local name=$1 rc=$2 log=$3 run=$4 rlog=$5 k ck
    case $log in =*) k=${log#=} ;; *) k=$(stopped_step "$log") ;; esac
    ck=$(printf '%s/ckpt-%08d.h5' "$run" "${k:-0}")
    if [ "$rc" != - ] && [ "$rc" -ne 75 ]; then
        fail "$name" "exit code $rc, expected 75: $(grep -v OPENBLAS "$log" | tail -n 2 | tr '\n' ' ')"
    elif [ -z "$k" ] || [ "$k" -ge $STEPS ]; then
        fail "$name" "the log does not say it stopped on a signal with the checkpoint saved"
    elif [ ! -f "$ck" ]; then
        fail "$name" "no checkpoint of the stopping step $k ($(ls "$run" | tr '\n' ' '))"
    elif ! grep -q "resumed from .*ckpt-$(printf %08d "$k").h5 at step $k" "$rlog"; then
        fail "$name" "did not resume from step $k: $(grep -m1 -E 'resumed|error' "$rlog")"
    elif ! why=$(same_weights "$(last_ckpt "$run")" "$(last_ckpt "$TEST_TMP/ref")" 0); then
        fail "$name" "final weights differ from the uninterrupted run: $why"
    else
        pass "$name"
        echo "#   stopped at step $k with a ${SLOW}-s checkpoint, exit 75, resumed, same weights"
    fi
}

# the uninterrupted run every case must end at
mpi 2 "${ARGS[@]}" --run_dir="$TEST_TMP/ref" >"$TEST_TMP/ref.log" 2>&1 ||
    fail reference_run "$(tail -n 3 "$TEST_TMP/ref.log")"

# --- outside Slurm: slurm/mpirun.sh --------------------------------------------------
# MODE term: TERM to the launcher's PID; ctrl_c: INT to its process group, as a terminal
# sends it (set -m gives the background launcher a group of its own, with INT not ignored)
launcher_case() {
    local mode=$1 name=mpirun_launcher_$1 run=$TEST_TMP/launcher_$1 pid rc
    set -m
    TRIDENT_SLOW_CKPT=$SLOW "$ROOT/slurm/mpirun.sh" --oversubscribe -np 2 "$TRIDENT" \
        "${ARGS[@]}" --run_dir="$run" >"$run.log" 2>&1 &
    pid=$!
    set +m
    if ! wait_steps "$run"; then
        kill -TERM "$pid" 2>/dev/null; wait "$pid"
        fail "$name" "the run did not start: $(tail -n 2 "$run.log")"; return
    fi
    if [ "$mode" = term ]; then kill -TERM "$pid"; else kill -INT -- "-$pid"; fi
    wait "$pid"
    rc=$?
    mpi 2 "${ARGS[@]}" --run_dir="$run" >"$run.resume.log" 2>&1
    verify "$name" "$rc" "$run.log" "$run" "$run.resume.log"
}
launcher_case term
launcher_case ctrl_c

# --- under Slurm -----------------------------------------------------------------------
slurm_skip() {
    local c
    for c in slurm_mpirun_term_requeues slurm_mpirun_cancel_keeps_checkpoint \
        slurm_srun_term_requeues; do
        skip "$c" "no Slurm test cluster on this machine: $1"
    done
}
job_field() { scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
# wait_job ID LIMIT: until the job is over (a requeued job passes PENDING again)
wait_job() {
    local t0=$SECONDS state
    while :; do
        state=$(job_field "$1" JobState)
        case $state in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL) echo "$state"; return ;; esac
        if [ $((SECONDS - t0)) -ge "$2" ]; then
            scancel "$1" 2>/dev/null; echo "STUCK(${state:-unknown})"; return
        fi
        sleep 0.5
    done
}
submit() { # LAUNCHER RUN_DIR: prints the job id
    TRIDENT_LAUNCHER=$1 TRIDENT_SLOW_CKPT=$SLOW TRIDENT_HOME=$ROOT TRIDENT_BIN=$TRIDENT \
        sbatch --parsable --output="$2.out" --nodes=1 --ntasks-per-node=2 \
        "$ROOT/slurm/train.sbatch" "${ARGS[@]:1}" --run_dir="$2" | cut -d';' -f1
}

if [ "$(id -u)" -ne 0 ]; then
    slurm_skip "not root"
elif ! (cd "$ROOT" && slurm/cluster.sh up --nodes 1 --cpus 8 >"$TEST_TMP/cluster.log" 2>&1); then
    CLUSTER_UP=1
    slurm_skip "slurm/cluster.sh up failed: $(grep -m1 error "$TEST_TMP/cluster.log")"
else
    CLUSTER_UP=1
    export SLURM_CONF=$TRIDENT_SLURM_DIR/slurm.conf
    cd "$TEST_TMP" || exit 1
    # all three jobs run side by side; each gets its signal once it has logged a step
    declare -A ID
    for c in mpirun_term mpirun_cancel srun_term; do
        ID[$c]=$(submit "${c%_*}" "$TEST_TMP/$c") || ID[$c]=""
    done
    for c in mpirun_term mpirun_cancel srun_term; do
        if [ -z "${ID[$c]}" ] || ! wait_steps "$TEST_TMP/$c"; then continue; fi
        case $c in
            *_term) scancel --batch --signal=TERM "${ID[$c]}" ;; # TERM to the batch shell
            mpirun_cancel) scancel "${ID[$c]}" ;; # TERM to every process, KILL after KillWait
        esac
    done
    for c in mpirun_term srun_term; do
        name=slurm_${c}_requeues run=$TEST_TMP/$c
        [ -n "${ID[$c]}" ] || { fail "$name" "sbatch refused the job"; continue; }
        state=$(wait_job "${ID[$c]}" 120)
        first=$(grep -m1 'trident exited with code' "$run.out" | sed 's/.*code //')
        if [ "$state" != COMPLETED ]; then
            fail "$name" "job ${ID[$c]} ended $state: $(tail -n 3 "$run.out" | tr '\n' ' ')"
        elif ! head -n 1 "$run/attempts.log" | grep -q '| exit 75 | requeued on signal$'; then
            fail "$name" "first attempt: $(head -n 1 "$run/attempts.log" | cut -d'|' -f6,7)"
        elif ! tail -n 1 "$run/attempts.log" | grep -q '| done$'; then
            fail "$name" "the last attempt did not finish: $(tail -n 1 "$run/attempts.log")"
        else
            # the attempts share one log: the first part up to the requeue, then the rest
            sed -n '1,/requeued on signal/p' "$run.out" >"$run.first"
            sed -n '/requeued on signal/,$p' "$run.out" >"$run.second"
            verify "$name" "${first:-0}" "$run.first" "$run" "$run.second"
        fi
    done
    name=slurm_mpirun_cancel_keeps_checkpoint run=$TEST_TMP/mpirun_cancel
    if [ -z "${ID[mpirun_cancel]}" ]; then
        fail "$name" "sbatch refused the job"
    else
        state=$(wait_job "${ID[mpirun_cancel]}" 60)
        k=$(losses "$run" | tail -n 1 | cut -d' ' -f1) # the step it stopped at
        # a cancel stays a cancel (not requeued); the user starts the run again
        mpi 2 "${ARGS[@]}" --run_dir="$run" >"$run.resume.log" 2>&1
        if [ "$state" != CANCELLED ]; then
            fail "$name" "job ended $state, not CANCELLED"
        else
            # mpirun itself got Slurm's TERM: it exits 1 whatever the ranks do, and
            # forwards no more output, so the ranks' last lines are not in the job log
            verify "$name" - "=$k" "$run" "$run.resume.log"
        fi
    fi
    cd "$ROOT" || exit 1
fi
test_summary

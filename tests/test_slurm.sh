#!/usr/bin/env bash
# test_slurm.sh — end-to-end tests of slurm/train.sbatch on a real Slurm cluster of two
# emulated nodes (slurm/cluster.sh), brought up here and torn down at exit.
#
#   tests/test_slurm.sh            (as root, from anywhere; ~1.5 minutes on 2 cores)
#
#   a  a 1-node job's per-step losses equal an mpirun run's (same layout): exact
#   b  4 ranks on 2 nodes take the hierarchical all-reduce; losses equal flat's (1e-5)
#   c  a rank killed by SIGKILL after a checkpoint: the job requeues itself, resumes and
#      ends with the weights of an uninterrupted run (h5diff /model, exact)
#   d  a time limit too short for the run: USR1 warning, checkpoint, requeue, done over
#      >= 2 attempts, steps 1..N without a gap
#
# The time-limit job (d) needs Slurm's 1-minute minimum and its 30-s timer, so it is
# submitted first and runs beside a, b and c. The cluster lives in its own scratch
# directory and port (TRIDENT_SLURM_TEST_DIR, default /tmp/trident-slurm-test), so a
# cluster you have up yourself is left alone. KEEP=1 keeps the work directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export TRIDENT_SLURM_DIR=${TRIDENT_SLURM_TEST_DIR:-/tmp/trident-slurm-test}
export TRIDENT_SLURM_PORT=${TRIDENT_SLURM_TEST_PORT:-16917}
export SLURM_CONF=$TRIDENT_SLURM_DIR/slurm.conf
WORK=$(mktemp -d /tmp/trident-slurm-test-work.XXXXXX)
T0=$SECONDS
passed=0
failed=0

progress() { echo "# [$((SECONDS - T0))s] $*"; }
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

cleanup() {
    local rc=$?
    progress "tearing the cluster down"
    slurm/cluster.sh down >/dev/null 2>&1 || slurm/cluster.sh down || true
    if [ "${KEEP:-0}" = 1 ] || [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
        echo "# work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap "exit 130" INT TERM

# ---------------------------------------------------------------------------------------
# helpers

mpirun_ref() { # NP ARGS...: a reference run outside Slurm
    local np=$1
    shift
    OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        OMPI_MCA_btl_tcp_if_include=lo mpirun --oversubscribe -np "$np" \
        ./bin/trident train inputs/tiny.conf "$@"
}

submit() { # SBATCH-OPTIONS... -- TRAIN-ARGS...; prints the job id
    local opts=()
    while [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
    sbatch --parsable --output="$WORK/job-%j.out" "${opts[@]}" \
        slurm/train.sbatch inputs/tiny.conf "$@" | cut -d';' -f1
}

job_field() { # ID FIELD: one field of `scontrol show job`
    scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# Waits until job ID reaches a final state (a requeued job passes through PENDING again);
# after LIMIT seconds cancels it. Prints the final state.
wait_job() { # ID LIMIT
    local id=$1 limit=$2 t0=$SECONDS state
    while :; do
        state=$(job_field "$id" JobState)
        case $state in
            COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | \
                BOOT_FAIL | DEADLINE | PREEMPTED) echo "$state"; return 0 ;;
        esac
        if [ $((SECONDS - t0)) -ge "$limit" ]; then
            scancel "$id" 2>/dev/null || true
            echo "STUCK(${state:-unknown} after ${limit}s)"
            return 0
        fi
        sleep 0.5
    done
}

job_log() { job_field "$1" StdOut; }

# "STEP LOSS" for every per-step line of a metrics.jsonl, in file order (loss as printed)
losses() { sed -n 's/.*"step":\([0-9]*\),"loss":\([^,}]*\).*/\1 \2/p' "$1"; }

# The last "STEP LOSS" of each step: a resumed run repeats the steps after its checkpoint
final_losses() {
    losses "$1" | awk '{ v[$1] = $2; if ($1 > n) n = $1 }
                       END { for (s = 1; s <= n; s++) print s, (s in v ? v[s] : "missing") }'
}

# Why a job went wrong: its state, log tail and the daemons' logs.
explain() { # ID
    echo "#   job $1: state $(job_field "$1" JobState), exit $(job_field "$1" ExitCode)," \
        "restarts $(job_field "$1" Restarts)"
    local out
    out=$(job_log "$1")
    [ -f "$out" ] && tail -n 15 "$out" | sed 's/^/#   log: /'
    tail -n 5 "$TRIDENT_SLURM_DIR"/log/*.log 2>/dev/null | sed 's/^/#   /'
    return 0
}

# ---------------------------------------------------------------------------------------
# the tests: each ends in exactly one ok or fail

# d, part 1 (submitted first, it runs beside the others): a time limit too short for the
# run. slurmctld checks time limits every 30 s, so the warning (nominally 55 s before the
# 1-minute limit) comes at its first check, ~30 s after the cluster came up, and in later
# attempts ~23 s after their start. The run is ~45 s of work for 2 ranks on an idle
# 2-core machine, more with a, b and c beside it: 2 to 4 attempts here; a faster machine
# still needs 2, a much slower one more (up to 10 restarts allowed).
D_STEPS=1600
d_dir=$WORK/d
d_id=""
d_start=$SECONDS
submit_d() {
    d_id=$(TRIDENT_MAX_RESTARTS=10 submit --nodes=1 --ntasks-per-node=2 --time=1 \
        --signal=B:USR1@55 -- --steps=$D_STEPS --seq_len=128 --block_size=128 \
        --eval_every=0 --log_every=250 --dp=2 --tp=1 --pp=1 --run_dir="$d_dir") || d_id=""
    if [ -n "$d_id" ]; then
        progress "d: submitted job $d_id (time limit 1 min, $D_STEPS steps), runs in the background"
    fi
}

# a: a 1-node job equals mpirun, loss for loss
test_a() {
    local t=$SECONDS id state args=(--steps=30 --dp=2 --tp=2 --pp=1)
    progress "a: 1 node × 4 tasks (dp 2 × tp 2) against mpirun -np 4"
    id=$(submit --nodes=1 --ntasks-per-node=4 -- "${args[@]}" --run_dir="$WORK/a") ||
        { fail a "sbatch refused the job"; return; }
    mpirun_ref 4 "${args[@]}" --run_dir="$WORK/a-ref" >"$WORK/a-ref.log" 2>&1 ||
        { fail a "the mpirun reference run failed (see $WORK/a-ref.log)"; return; }
    state=$(wait_job "$id" 120)
    if [ "$state" != COMPLETED ]; then
        fail a "job $id ended $state"; explain "$id"
    elif ! grep -q '| done$' "$WORK/a/attempts.log" 2>/dev/null; then
        fail a "attempts.log does not say done"
    elif [ "$(losses "$WORK/a/metrics.jsonl" | wc -l)" -ne 30 ]; then
        fail a "metrics.jsonl holds $(losses "$WORK/a/metrics.jsonl" | wc -l) steps, not 30"
    elif ! diff <(losses "$WORK/a-ref/metrics.jsonl") <(losses "$WORK/a/metrics.jsonl") \
        >"$WORK/a.diff"; then
        fail a "losses differ from mpirun's: $(head -n 4 "$WORK/a.diff" | tr '\n' ' ')"
    else
        ok "a sbatch 1 node = mpirun, 30 losses equal ($((SECONDS - t))s)"
    fi
}

# b: two nodes: hierarchical all-reduce, the same curve as flat
test_b() {
    local t=$SECONDS id state log why args=(--steps=30 --dp=4 --tp=1 --pp=1)
    progress "b: 2 nodes × 2 tasks (dp 4), hierarchical against flat"
    id=$(submit --nodes=2 --ntasks-per-node=2 -- "${args[@]}" --run_dir="$WORK/b") ||
        { fail b "sbatch refused the job"; return; }
    mpirun_ref 4 "${args[@]}" --allreduce=flat --run_dir="$WORK/b-ref" \
        >"$WORK/b-ref.log" 2>&1 ||
        { fail b "the mpirun reference run failed (see $WORK/b-ref.log)"; return; }
    state=$(wait_job "$id" 120)
    log=$(job_log "$id")
    if [ "$state" != COMPLETED ]; then
        fail b "job $id ended $state"; explain "$id"
    elif ! grep -q 'trident train: 4 ranks .*(2 nodes).*hierarchical' "$log"; then
        fail b "the job log does not report 2 nodes, hierarchical: $(grep -m1 '^trident train' "$log")"
    elif ! grep -q 'gradient all-reduce flat' "$WORK/b-ref.log"; then
        fail b "the reference run did not use the flat all-reduce"
    elif ! why=$(paste -d' ' <(losses "$WORK/b-ref/metrics.jsonl") \
        <(losses "$WORK/b/metrics.jsonl") |
        awk '$1 != $3 { printf "step %s against step %s\n", $1, $3; bad = 1; exit }
             { n++; d = $2 - $4; if (d < 0) d = -d; s = $2 < 0 ? -$2 : $2
               if (d > 1e-5 * s) {
                   printf "step %d: flat %s, hierarchical %s\n", $1, $2, $4; bad = 1; exit } }
             END { if (!bad && n != 30) { printf "%d common steps, not 30\n", n; bad = 1 }
                   exit bad }'); then
        fail b "$why"
    else
        ok "b 2 nodes hierarchical = flat within 1e-5, 30 steps ($((SECONDS - t))s)"
    fi
}

# c: a rank killed mid-run; the batch script requeues, the run resumes and ends where an
# uninterrupted run ends
test_c() {
    local t=$SECONDS id state pid killed="" dir=$WORK/c last
    local args=(--steps=80 --ckpt_every=10 --seq_len=128 --block_size=128 --eval_every=0
        --dp=2 --tp=2 --pp=1)
    last=$(printf 'ckpt-%08d.h5' 80)
    progress "c: kill -9 one rank after the first checkpoint"
    id=$(submit --nodes=1 --ntasks-per-node=4 -- "${args[@]}" --run_dir="$dir") ||
        { fail c "sbatch refused the job"; return; }
    for _ in $(seq 1 600); do # up to 60 s
        if compgen -G "$dir/ckpt-*.h5" >/dev/null; then
            for pid in $(pgrep -x trident || true); do
                if grep -qa -- "--run_dir=$dir" "/proc/$pid/cmdline" 2>/dev/null &&
                    kill -KILL "$pid" 2>/dev/null; then
                    killed="$pid at step $(losses "$dir/metrics.jsonl" | tail -n 1 | cut -d' ' -f1)"
                    break
                fi
            done
        fi
        [ -n "$killed" ] && break
        [ "$(job_field "$id" JobState)" = COMPLETED ] && break
        sleep 0.1
    done
    progress "c: killed rank pid ${killed:-none}; reference run meanwhile"
    mpirun_ref 4 "${args[@]}" --run_dir="$WORK/c-ref" >"$WORK/c-ref.log" 2>&1 ||
        { fail c "the mpirun reference run failed (see $WORK/c-ref.log)"; return; }
    state=$(wait_job "$id" 180)
    if [ -z "$killed" ]; then
        fail c "no trident process to kill after the first checkpoint (job $id: $state)"
    elif [ "$state" != COMPLETED ]; then
        fail c "job $id ended $state"; explain "$id"
    elif ! grep -q 'requeued after crash' "$dir/attempts.log"; then
        fail c "attempts.log shows no requeue after the crash: $(tr '\n' ';' <"$dir/attempts.log")"
    elif ! tail -n 1 "$dir/attempts.log" | grep -q '| done$'; then
        fail c "the last attempt did not finish: $(tail -n 1 "$dir/attempts.log")"
    elif ! diff <(final_losses "$WORK/c-ref/metrics.jsonl") <(final_losses "$dir/metrics.jsonl") \
        >"$WORK/c.diff"; then
        fail c "losses differ from an uninterrupted run: $(head -n 4 "$WORK/c.diff" | tr '\n' ' ')"
    elif [ ! -f "$dir/$last" ] || [ ! -f "$WORK/c-ref/$last" ]; then
        fail c "no final checkpoint $last in both run_dirs"
    elif ! h5diff "$WORK/c-ref/$last" "$dir/$last" /model /model >"$WORK/c.h5diff" 2>&1; then
        fail c "final weights differ (h5diff /model): $(head -n 3 "$WORK/c.h5diff" | tr '\n' ' ')"
    else
        ok "c killed rank $killed: requeued, resumed, final /model identical ($((SECONDS - t))s)"
    fi
}

# d, part 2: the time-limit job's outcome
test_d() {
    local state alog=$d_dir/attempts.log n_att why limit
    [ -n "$d_id" ] || { fail d "sbatch refused the job"; return; }
    progress "d: waiting for job $d_id"
    limit=$((330 - (SECONDS - T0)))
    [ "$limit" -ge 60 ] || limit=60
    state=$(wait_job "$d_id" "$limit")
    n_att=$(wc -l <"$alog" 2>/dev/null || echo 0)
    if [ "$state" != COMPLETED ]; then
        fail d "job $d_id ended $state"; explain "$d_id"
    elif [ "$n_att" -lt 2 ]; then
        fail d "finished in $n_att attempt(s): the run was shorter than the time to the warning"
    elif [ "$(grep -c 'requeued on signal' "$alog")" -ne $((n_att - 1)) ] ||
        ! tail -n 1 "$alog" | grep -q '| done$'; then
        fail d "attempts.log is not (requeued on signal)* done: $(cut -d'|' -f1,6,7 "$alog" | tr '\n' ';')"
    elif ! grep -q 'stopping at step .* on a signal' "$(job_log "$d_id")"; then
        fail d "the job log shows no checkpoint-and-stop on the signal"
    elif ! why=$(losses "$d_dir/metrics.jsonl" | awk -v N="$D_STEPS" '
            { s = $1; while (n > 0 && k[n] >= s) { n--; rerun++ }; k[++n] = s }
            END { for (i = 1; i <= n; i++) if (k[i] != i) { print "step " i " missing"; exit 1 }
                  if (n != N) { print n " steps, not " N; exit 1 }
                  print rerun + 0 }'); then
        fail d "$why"
    else
        ok "d time limit: $n_att attempts, steps 1..$D_STEPS without a gap, $why re-run ($((SECONDS - d_start))s)"
    fi
}

# ---------------------------------------------------------------------------------------
# set-up, then the tests

setup() {
    [ "$(id -u)" -eq 0 ] || { echo "must run as root (Slurm daemons)"; return 1; }
    if [ ! -x bin/trident ]; then progress "building"; make -s || return 1; fi
    if [ ! -f data/sample.h5 ]; then
        ./bin/trident prep --out data/sample.h5 --split-on % inputs/sample.txt || return 1
    fi
    if ! command -v h5diff >/dev/null 2>&1; then
        progress "installing hdf5-tools (h5diff)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            hdf5-tools >/dev/null || return 1
    fi
    progress "bringing up a 2-node cluster in $TRIDENT_SLURM_DIR"
    slurm/cluster.sh up --nodes 2 --cpus 8 | sed 's/^/# /'
}
if ! setup; then
    fail setup "see the messages above"
    echo "$passed passed, $failed failed, 0 skipped"
    exit 1
fi

submit_d
test_a
test_b
test_c
test_d
echo "$passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]

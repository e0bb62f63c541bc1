#!/usr/bin/env bash
# tests/run.sh — run every test: the unit-test binaries (bin/test_*) and the multi-rank,
# fault-injection and Slurm scripts (tests/test_*.sh). Each prints its own
# "N passed, N failed, N skipped" line (an older "N passed, N failed" line is accepted);
# this adds them up, lists every skipped case by name and ends with the total line.
#
#   tests/run.sh            everything
#   tests/run.sh NAME...    only the tests whose name contains NAME (e.g. parallel;
#                           `tests/run.sh cuda` runs the CUDA build's suites)
#
# The CUDA build (make BACKEND=cuda: bin-cuda/) is compiled and linked on every run where
# the CUDA toolkit is installed (CUDA_HOME, default /usr/local/cuda): a CUDA build failure
# is a failed test. Its GPU suites (bin-cuda/cudatest_*) run here too; on a machine
# without a GPU each of their cases is counted as skipped, by name. Without the toolkit the
# build is one skipped case, named.
#
# Every suite runs in its own session under `timeout --kill-after=10`
# (TRIDENT_SUITE_TIMEOUT seconds, default 900): a suite that runs longer counts as a
# failure ("timed out after N s"), and whatever it left running (mpirun, its ranks) is
# killed with it.
set -u
set +m  # no job control: a background suite is no process-group leader (see below)
cd "$(dirname "$0")/.."
# a fresh machine: install what is missing, then build everything the tests use
slurm/install_deps.sh || exit 2
make -j"$(nproc)" tests >/dev/null || { echo "build failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
limit=${TRIDENT_SUITE_TIMEOUT:-900}
total_pass=0
total_fail=0
total_skip=0
failed_suites=()
skipped_cases=()

# the CUDA build, wherever a toolkit is installed: its failure fails the run
wants_cuda=1
if [ $# -gt 0 ]; then
    wants_cuda=0
    for f in "$@"; do case "cuda_build bin-cuda/cudatest_" in *"$f"*) wants_cuda=1 ;; esac; done
fi
if [ $wants_cuda -eq 1 ]; then
    cuda_home=${CUDA_HOME:-/usr/local/cuda}
    echo "=== cuda_build (make BACKEND=cuda tests, CUDA_HOME=$cuda_home)"
    if [ ! -x "$cuda_home/bin/nvcc" ]; then
        echo "skip cuda_build: no CUDA toolkit at $cuda_home (set CUDA_HOME to build the CUDA backend)"
        total_skip=$((total_skip + 1))
        skipped_cases+=("cuda_build: no CUDA toolkit at $cuda_home")
    else
        t0=$(date +%s)
        log=$(mktemp)
        if make -j"$(nproc)" BACKEND=cuda CUDA_HOME="$cuda_home" tests >"$log" 2>&1; then
            echo "ok   cuda_build ($(( $(date +%s) - t0 )) s)"
            total_pass=$((total_pass + 1))
        else
            tail -n 30 "$log"
            echo "FAIL cuda_build: make BACKEND=cuda failed (log above)"
            total_fail=$((total_fail + 1)); failed_suites+=("cuda_build")
        fi
        rm -f "$log"
    fi
fi
start=$(date +%s)
sid=
# interrupted: the running suite's session goes too
trap '[ -n "$sid" ] && pkill -KILL -s "$sid"; exit 130' INT TERM

suites=()
for t in bin/test_* bin-cuda/cudatest_* tests/test_*.sh; do
    [ -e "$t" ] || continue
    if [ $# -gt 0 ]; then
        keep=0
        for f in "$@"; do case "$t" in *"$f"*) keep=1 ;; esac; done
        [ $keep -eq 1 ] || continue
    fi
    suites+=("$t")
done

for t in "${suites[@]}"; do
    t0=$(date +%s)
    echo "=== $t"
    log=$(mktemp)
    # the suite in a session of its own whose id is $! (a background subshell is no
    # process-group leader without job control, so setsid does not fork), its output to
    # the log, shown as it comes
    (
        if [[ "$t" == bin/* ]]; then export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}; fi
        # the NCCL suite compares NCCL with MPI across ranks: one rank per GPU (2 to 4);
        # on one GPU or none it checks one rank's plumbing (or skips every case)
        if [[ "$t" == */cudatest_nccl ]]; then
            ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
            ngpu=$(( ngpu > 4 ? 4 : ngpu < 1 ? 1 : ngpu ))
            exec setsid timeout --kill-after=10 "$limit" mpirun --oversubscribe -np "$ngpu" "./$t"
        fi
        exec setsid timeout --kill-after=10 "$limit" "./$t"
    ) </dev/null >"$log" 2>&1 &
    sid=$!
    tail -n +1 -f --pid="$sid" "$log"
    wait "$sid"
    rc=$?
    # whatever the suite left behind in its session (the ranks of a killed mpirun, a
    # deadlocked run in a process group of its own) goes with it
    pkill -KILL -s "$sid" 2>/dev/null
    dt=$(( $(date +%s) - t0 ))
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$log" | tail -n 1)
    skips=$(grep -E '^skip [^ ]+: ' "$log")
    rm -f "$log"
    if { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && [ "$dt" -ge "$limit" ]; then
        echo "FAIL $t: timed out after $limit s"
        total_fail=$((total_fail + 1)); failed_suites+=("$t (timed out after $limit s)"); continue
    fi
    if [ -z "$line" ]; then
        echo "    (no summary line, exit $rc: counted as one failure)"
        total_fail=$((total_fail + 1)); failed_suites+=("$t"); continue
    fi
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}; s=0
    case "$line" in *skipped) s=${line##*, }; s=${s%% skipped} ;; esac
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f)); total_skip=$((total_skip + s))
    [ "$f" -gt 0 ] && failed_suites+=("$t")
    [ -n "$skips" ] && while read -r s; do skipped_cases+=("$t: ${s#skip }"); done <<<"$skips"
    echo "    ($dt s)"
done

echo
echo "suites: ${#suites[@]}, time: $(( $(date +%s) - start )) s"
if [ ${#skipped_cases[@]} -gt 0 ]; then
    echo "skipped:"
    for s in "${skipped_cases[@]}"; do echo "  $s"; done
fi
[ ${#failed_suites[@]} -gt 0 ] && echo "failing: ${failed_suites[*]}"
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ]

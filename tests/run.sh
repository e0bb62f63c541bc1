#!/usr/bin/env bash
# tests/run.sh — run every test: the unit-test binaries (bin/test_*) and the multi-rank,
# fault-injection and Slurm scripts (tests/test_*.sh). Each prints its own
# "N passed, N failed" line; this adds them up and ends with the total.
#
#   tests/run.sh            everything
#   tests/run.sh NAME...    only the tests whose name contains NAME (e.g. parallel)
set -u
cd "$(dirname "$0")/.."
# a fresh machine: install what is missing, then build everything the tests use
slurm/install_deps.sh || exit 2
make -j"$(nproc)" tests >/dev/null || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
total_pass=0
total_fail=0
failed_suites=()
start=$(date +%s)

suites=()
for t in bin/test_* tests/test_*.sh; do
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
    if [[ "$t" == bin/* ]]; then OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "./$t" 2>&1 | tee "$log"
    else "./$t" 2>&1 | tee "$log"; fi
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    rm -f "$log"
    if [ -z "$line" ]; then
        echo "    (no summary line: counted as one failure)"
        total_fail=$((total_fail + 1)); failed_suites+=("$t"); continue
    fi
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
    [ "$f" -gt 0 ] && failed_suites+=("$t")
    echo "    ($(( $(date +%s) - t0 )) s)"
done

echo
echo "suites: ${#suites[@]}, time: $(( $(date +%s) - start )) s"
[ ${#failed_suites[@]} -gt 0 ] && echo "failing: ${failed_suites[*]}"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]

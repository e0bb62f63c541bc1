#!/usr/bin/env bash
# test_scaling.sh — the scaling-study driver (slurm/scaling.sh) end to end on the tiny
# model (~30 s on 2 cores):
#
#   sweep     strong and weak over 1, 2, 4 ranks with mpirun: results.csv has its header
#             and one row of numbers per run, the batch arithmetic holds, speed-up and
#             efficiency of the first row are 1, the strong runs train the same model,
#             rows beyond nproc are flagged; report.md has both tables, the
#             oversubscription note and the command; both plots are PNG files
#   failing   a layout trident refuses (tp=3 with 4 heads) is reported as failed, with
#             trident's error, and the runs after it still run; exit 1
#   usage     bad options are refused before any run (exit 2)
#   sbatch    (as root, when Slurm is installed) the same driver through a real Slurm
#             cluster of 2 emulated 1-CPU nodes: 1 rank on 1 node, 2 ranks on 2 nodes
#
# The cluster lives in its own directory and port, so a cluster you have up is left alone.
set -euo pipefail
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
DATA=$(sample_data)
DRIVER=$ROOT/slurm/scaling.sh
T0=$SECONDS
NPROC=$(nproc)
CLUSTER_UP=0

export TRIDENT_SLURM_DIR=${TRIDENT_SLURM_SCALING_DIR:-/tmp/trident-slurm-scaling-test}
export TRIDENT_SLURM_PORT=${TRIDENT_SLURM_SCALING_PORT:-16947}

cleanup() {
    if [ "$CLUSTER_UP" = 1 ]; then slurm/cluster.sh down >/dev/null 2>&1 || true; fi
    if [ -n "${KEEP_TEST_TMP:-}" ]; then echo "# kept $TEST_TMP"; else rm -rf "$TEST_TMP"; fi
}
trap cleanup EXIT
progress() { echo "# [$((SECONDS - T0))s] $*"; }

# ---------------------------------------------------------------------------------------
# helpers over results.csv (the error column, last, may hold commas: never read past 26)

csv_col() { # CSV NAME: the column's values, one per row
    awk -F, -v n="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i; next }
                       { print $c }' "$1"
}

# the ok rows whose columns 2..25 are not all numbers: "row N: column NAME = 'V'"
non_numeric() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) h[i] = $i; next }
             $26 == "ok" { for (i = 2; i <= 25; i++)
                 if ($i !~ /^-?[0-9]+(\.[0-9]+)?$/) { printf "row %d: %s = %s\n", NR - 1, h[i], $i; exit } }' "$1"
}

is_png() { # FILE: nonzero size, PNG signature
    [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]
}

# ---------------------------------------------------------------------------------------
# sweep: strong and weak, 1 2 4 ranks

progress "sweep: strong and weak over 1 2 4 ranks (mpirun)"
S=$TEST_TMP/sweep
rc=0
"$DRIVER" --mode both --ranks "1 2 4" --config inputs/tiny.conf --steps 5 --global-batch 16 \
    --per-rank-batch 4 --launcher mpirun --out "$S" -- --data="$DATA" \
    >"$TEST_TMP/sweep.out" 2>&1 || rc=$?
CSV=$S/results.csv
HEADER="mode,ranks,nodes,dp,tp,pp,micro_batch,grad_accum,global_batch,tokens_per_s,ms_per_step,speedup,efficiency,mfu,compute_ms,tp_comm_ms,pipe_wait_ms,dp_exposed_ms,optimizer_ms,data_ms,other_ms,checkpoint_s,peak_mem_mb,final_loss,oversubscribed,status,error"

if [ "$rc" -eq 0 ]; then pass sweep_exits_0
else fail sweep_exits_0 "exit $rc: $(tail -n 5 "$TEST_TMP/sweep.out" | tr '\n' ' ')"; fi

if [ -f "$CSV" ] && [ "$(head -n 1 "$CSV")" = "$HEADER" ]; then pass csv_header
else fail csv_header "got: $(head -n 1 "$CSV" 2>/dev/null)"; fi

rows=$(tail -n +2 "$CSV" 2>/dev/null | cut -d, -f1,2,26 | tr '\n' ' ') || true
want="strong,1,ok strong,2,ok strong,4,ok weak,1,ok weak,2,ok weak,4,ok "
if [ "$rows" = "$want" ]; then pass csv_one_ok_row_per_run
else fail csv_one_ok_row_per_run "rows (mode,ranks,status): $rows"; fi

why=$(non_numeric "$CSV" 2>&1) || why="cannot read $CSV"
if [ -z "$why" ]; then pass csv_fields_numeric; else fail csv_fields_numeric "$why"; fi

# global batch = micro_batch × grad_accum × dp; strong: 16 always, weak: 4 per replica
why=$(awk -F, 'NR > 1 { if ($7 * $8 * $4 != $9) { print "row " NR - 1 ": " $7 "×" $8 "×" $4 " != " $9; exit }
                        if ($1 == "strong" && $9 != 16) { print "strong row " NR - 1 ": global batch " $9; exit }
                        if ($1 == "weak" && $9 != 4 * $4) { print "weak row " NR - 1 ": global batch " $9; exit } }' "$CSV") || why="cannot read $CSV"
if [ -z "$why" ]; then pass batch_arithmetic; else fail batch_arithmetic "$why"; fi

first=$(awk -F, 'NR > 1 && !seen[$1]++ { printf "%s %s %s;", $1, $12, $13 }' "$CSV" 2>&1) || true
if [ "$first" = "strong 1.000 1.000;weak 1.000 1.000;" ]; then pass first_row_speedup_and_efficiency_1
else fail first_row_speedup_and_efficiency_1 "mode speedup efficiency: $first"; fi

# each number in its own column: the range each can take; ms per step = the parts
why=$(awk -F, 'NR > 1 && $26 == "ok" {
        if (!($24 > 0.5 && $24 < 6)) { print "final_loss " $24; exit }      # ln 257 = 5.55
        if (!($23 > 1 && $23 < 100000)) { print "peak_mem_mb " $23; exit }
        if (!($22 >= 0 && $22 < 60)) { print "checkpoint_s " $22; exit }
        if (!($14 > 0 && $14 < 5)) { print "mfu " $14; exit }
        if ($10 < 100) { print "tokens_per_s " $10; exit }
        # other = step - the rest, or 0 where medians of the parts exceed the step
        s = 0; for (k = 15; k <= 21; k++) s += $k
        if ($11 - s > 0.01 || ($21 > 0 && s - $11 > 0.01)) {
            print "parts add up to " s " ms, step " $11; exit } }' "$CSV") ||
    why="cannot read $CSV"
if [ -z "$why" ]; then pass csv_columns_hold_their_quantities; else fail csv_columns_hold_their_quantities "$why"; fi

# the same global batch on any layout is the same computation (test_parallel: 1e-5)
why=$(awk -F, 'NR > 1 && $1 == "strong" { if (ref == "") ref = $24
               d = $24 - ref; if (d < 0) d = -d; if (d > 2e-4) { print $2 " ranks: " $24 " vs " ref; exit } }' "$CSV") || why="cannot read $CSV"
if [ -z "$why" ]; then pass strong_runs_reach_the_same_loss; else fail strong_runs_reach_the_same_loss "$why"; fi

why=$(awk -F, -v c="$NPROC" 'NR > 1 && $25 != ($2 > c ? 1 : 0) { print $1 " " $2 " ranks: oversubscribed=" $25; exit }' "$CSV") || why="cannot read $CSV"
if [ -z "$why" ]; then pass oversubscribed_rows_flagged; else fail oversubscribed_rows_flagged "$why"; fi

R=$S/report.md
table_rows() { # MODE: data rows of that mode's table in report.md
    awk -v h="## ${1^} scaling" 'index($0, h) == 1 { on = 1; next } /^## / { on = 0 }
                               on && /^\| [0-9]/' "$R"
}
if [ -f "$R" ] && [ "$(table_rows strong | wc -l)" -eq 3 ] && [ "$(table_rows weak | wc -l)" -eq 3 ]
then pass report_has_both_tables
else fail report_has_both_tables "strong rows $(table_rows strong 2>/dev/null | wc -l), weak rows $(table_rows weak 2>/dev/null | wc -l)"; fi

if grep -q "Real timings exist only up to $NPROC busy cores" "$R" && grep -q 'oversubscribed correctness runs' "$R"
then pass report_states_oversubscription
else fail report_states_oversubscription "no note on timings beyond $NPROC cores"; fi

# each table row beyond nproc ranks carries the mark, no other does
why=$( { table_rows strong; table_rows weak; } | awk -F'|' -v c="$NPROC" '
    { r = $2 + 0; marked = index($2, "†") > 0
      if (marked != (r > c)) { print "row \"" $2 "\" marked=" marked; exit } }') || why="cannot read $R"
if [ -z "$why" ]; then pass report_marks_oversubscribed_rows; else fail report_marks_oversubscribed_rows "$why"; fi

if grep -qF 'slurm/scaling.sh --mode both --ranks' "$R" && grep -q 'Intel\|AMD\|cores (' "$R"
then pass report_names_command_and_machine
else fail report_names_command_and_machine "no command or machine line in report.md"; fi

for p in efficiency breakdown; do
    if is_png "$S/$p.png"; then pass "${p}_png_valid"
    else fail "${p}_png_valid" "$S/$p.png missing, empty or not a PNG"; fi
done

if grep -q '^\[6/6\] weak' "$TEST_TMP/sweep.out" && grep -q 'ETA' "$TEST_TMP/sweep.out"
then pass progress_shows_run_and_eta
else fail progress_shows_run_and_eta "no [6/6] line or ETA in the driver's output"; fi

# ---------------------------------------------------------------------------------------
# failing: a layout trident refuses, between two that work

progress "failing: 1:1x1x1 3:1x3x1 4:4x1x1 (tp=3 does not divide 4 heads)"
F=$TEST_TMP/failing
rc=0
"$DRIVER" --mode strong --layouts "1:1x1x1 3:1x3x1 4:4x1x1" --config inputs/tiny.conf \
    --steps 4 --global-batch 16 --launcher mpirun --out "$F" -- --data="$DATA" \
    >"$TEST_TMP/failing.out" 2>&1 || rc=$?
rows=$(tail -n +2 "$F/results.csv" 2>/dev/null | cut -d, -f2,26 | tr '\n' ' ') || true
if [ "$rc" -eq 1 ] && [ "$rows" = "1,ok 3,failed 4,ok " ]; then pass failed_run_marked_sweep_goes_on
else fail failed_run_marked_sweep_goes_on "exit $rc, rows (ranks,status): $rows"; fi

if grep -q '^strong,3,.*,failed,".*tp=3 does not divide n_head' "$F/results.csv" 2>/dev/null &&
    grep -q '^| 3 † | 1×3×1 .*\*\*failed\*\*' "$F/report.md" &&
    grep -q '^## Failed runs' "$F/report.md"
then pass failed_run_reported_with_its_error
else fail failed_run_reported_with_its_error "no failed row with trident's error in results.csv/report.md"; fi

if grep -q 'FAILED: .*tp=3' "$TEST_TMP/failing.out" && grep -q '| HINT' "$TEST_TMP/failing.out"
then pass failed_run_shows_its_log
else fail failed_run_shows_its_log "the driver did not show the error and the end of the log"; fi

# ---------------------------------------------------------------------------------------
# usage: refused before any run

usage_case() { # NAME EXPECTED-MESSAGE ARGS...
    local name=$1 msg=$2 out rc=0
    shift 2
    out=$("$DRIVER" --launcher mpirun --out "$TEST_TMP/usage" "$@" 2>&1) || rc=$?
    if [ "$rc" -eq 2 ] && grep -q -- "$msg" <<<"$out" && [ ! -e "$TEST_TMP/usage" ]; then pass "$name"
    else fail "$name" "exit $rc: $out"; fi
}
usage_case usage_layout_product "2×1×1 is not 4 ranks" --layouts "4:2x1x1"
usage_case usage_steps_minimum "integer >= 3" --steps 2
usage_case usage_ranks_number "'x' is not a positive integer" --ranks "1 x"
usage_case usage_layout_key_after_dashdash "the driver sets --dp" -- --dp=2

# ---------------------------------------------------------------------------------------
# sbatch: through a real Slurm cluster (2 emulated nodes of 1 CPU: 2 ranks need both)

if [ "$(id -u)" -ne 0 ] || ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    skip sbatch_runs_through_slurm "needs root and slurm-wlm, munge"
else
    progress "sbatch: bringing up 2 nodes × 1 CPU in $TRIDENT_SLURM_DIR"
    # one retry: cluster.sh up can misjudge a daemon it has just forked (its
    # /proc/PID/comm is still the shell's) as "exited during start"
    if slurm/cluster.sh up --nodes 2 --cpus 1 >"$TEST_TMP/cluster.out" 2>&1 ||
        { echo "# cluster.sh up failed once ($(grep -m1 'error:' "$TEST_TMP/cluster.out")); again"
          slurm/cluster.sh up --nodes 2 --cpus 1 >"$TEST_TMP/cluster.out" 2>&1; }; then
        CLUSTER_UP=1
        export SLURM_CONF=$TRIDENT_SLURM_DIR/slurm.conf
        B=$TEST_TMP/sbatch
        rc=0
        "$DRIVER" --mode strong --ranks "1 2" --config inputs/tiny.conf --steps 4 \
            --global-batch 8 --launcher sbatch --out "$B" -- --data="$DATA" \
            >"$TEST_TMP/sbatch.out" 2>&1 || rc=$?
        rows=$(tail -n +2 "$B/results.csv" 2>/dev/null | cut -d, -f2,3,26 | tr '\n' ' ') || true
        if [ "$rc" -eq 0 ] && [ "$rows" = "1,1,ok 2,2,ok " ] &&
            grep -q '^train.sbatch .* 2 tasks on 2 node' "$B/logs/strong-2r-2x1x1.log" &&
            [ -z "$(non_numeric "$B/results.csv")" ]; then
            pass sbatch_runs_through_slurm
        else
            fail sbatch_runs_through_slurm "exit $rc, rows (ranks,nodes,status): $rows; $(tail -n 4 "$TEST_TMP/sbatch.out" | tr '\n' ' ')"
        fi
    else
        fail sbatch_runs_through_slurm "cluster.sh up failed: $(tail -n 3 "$TEST_TMP/cluster.out" | tr '\n' ' ')"
    fi
fi

progress "done"
test_summary

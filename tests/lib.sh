# tests/lib.sh — helpers shared by the shell tests (sourced, not run).
#
# Every test prints "ok   name", "FAIL name: reason" or "skip name: reason" (a case that
# cannot run here, e.g. no tmpfs mount); test_summary prints the
# "N passed, N failed, N skipped" line that tests/run.sh adds up.
#
# mpi runs every mpirun under `timeout` (TRIDENT_RUN_TIMEOUT seconds, default 300), so a
# deadlocked case fails on its own instead of eating the whole suite's time.

set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRIDENT="$ROOT/bin/trident"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# one thread per rank: oversubscribed ranks on a 2-core machine prove correctness only
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TEST_TMP=$(mktemp -d /tmp/trident-test.XXXXXX)
trap '[ -n "${KEEP_TEST_TMP:-}" ] || rm -rf "$TEST_TMP"' EXIT
N_PASS=0
N_FAIL=0
N_SKIP=0

pass() { echo "ok   $1"; N_PASS=$((N_PASS + 1)); }
fail() { echo "FAIL $1: $2"; N_FAIL=$((N_FAIL + 1)); }
skip() { echo "skip $1: $2"; N_SKIP=$((N_SKIP + 1)); }  # skip NAME REASON
check() { # check NAME COMMAND... : passes when the command succeeds
    local name=$1; shift
    if "$@"; then pass "$name"; else fail "$name" "command failed: $*"; fi
}
test_summary() {
    echo "$N_PASS passed, $N_FAIL failed, $N_SKIP skipped"
    [ "$N_FAIL" -eq 0 ]
}

# mpi NP ARGS...: run trident on NP ranks (oversubscribed), killed (exit 124 or 137)
# after TRIDENT_RUN_TIMEOUT seconds
mpi() {
    local np=$1; shift
    timeout -k 5 "${TRIDENT_RUN_TIMEOUT:-300}" mpirun --oversubscribe -np "$np" "$TRIDENT" "$@"
}

# the sample corpus as a token file, made once per test run
sample_data() {
    local f="$ROOT/data/sample.h5"
    # remade when the text or the program changed (a new trident may write new attributes)
    if [ ! -f "$f" ] || [ "$ROOT/inputs/sample.txt" -nt "$f" ] || [ "$TRIDENT" -nt "$f" ]; then
        mkdir -p "$ROOT/data"
        "$TRIDENT" prep --force --out "$f" --split-on % "$ROOT/inputs/sample.txt" >/dev/null
    fi
    echo "$f"
}

# losses RUN_DIR: the training loss of every step, one per line ("step loss")
losses() {
    sed -n 's/^{"step":\([0-9]*\),"loss":\([-0-9.e]*\),.*/\1 \2/p' "$1/metrics.jsonl"
}

# same_losses A B TOL: every step's loss agrees within relative TOL (0 = exact text)
same_losses() {
    local a=$1 b=$2 tol=$3
    paste -d' ' <(losses "$a") <(losses "$b") | awk -v tol="$tol" '
        { n++; if ($1 != $3) { print "step mismatch " $1 " vs " $3; bad = 1; exit }
          if (tol == 0) { if ($2 != $4) { print "step " $1 ": " $2 " vs " $4; bad = 1 } }
          else { d = $2 - $4; if (d < 0) d = -d; r = d / ($4 < 0 ? -$4 : $4);
                 if (r > tol) { print "step " $1 ": " $2 " vs " $4 " (rel " r ")"; bad = 1 } } }
        END { if (n == 0) { print "no steps"; bad = 1 } exit bad }'
}

# final checkpoint of a run directory
last_ckpt() { ls "$1"/ckpt-*.h5 2>/dev/null | sort | tail -n 1; }

# same_weights A B TOL: the /model tensors of two checkpoints agree within TOL (absolute;
# 0 = bit-identical)
same_weights() { "$ROOT/bin/tool_ckdiff" "$1" "$2" "$3"; }

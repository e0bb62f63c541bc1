#!/usr/bin/env bash
# bench_plan.sh — the planner's predicted step time against measured training, on the bench
# model (tests/bench.sh section 3): 1 rank × all cores' threads, and 2 ranks × 1 thread.
# A benchmark, not a test: it times things. Without an argument it first calibrates the
# machine (`mpirun -np 2 trident calibrate`, 1 thread a rank) into a temporary hardware
# file, so that prediction and measurement see the same machine minutes apart (a shared
# machine's speed drifts by more than the model's error over an hour); with one, it uses
# that file. Run it with `env -u OPENBLAS_CORETYPE` as every benchmark here, on a quiet
# machine. Target: within 25 %.
#   tests/bench_plan.sh [HARDWARE_FILE]
set -u
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
NCORES=$(nproc)
TMP=$(mktemp -d /tmp/trident-bench-plan.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
HW=${1:-}
if [ -z "$HW" ]; then
    HW=$TMP/this-machine.hw
    OMP_NUM_THREADS=1 mpirun -np 2 bin/trident calibrate --out "$HW" | sed 's/^/  /'
fi
[ -f data/fortunes.h5 ] || { mkdir -p data && bin/trident prep --out data/fortunes.h5 --split-on % /usr/share/games/fortunes >/dev/null; }
# median of column 2 of "step value" lines, skipping the first (warm-up) step
median() { awk 'NR > 1 { print $2 }' | sort -g | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : "nan" }'; }
field() { sed -n "s/.*\"$1\":\\([-0-9.e]*\\).*/\\1/p" "$2"; }
series() { paste -d' ' <(field step "$2") <(field "$1" "$2") | grep -v ' $' | grep -v '^ '; }
MODEL=(--n_layer=12 --n_head=12 --n_embd=768 --seq_len=256 --block_size=256 --micro_batch=4
       --grad_accum=1 --vocab_size=257)
RUN=(--steps=6 --warmup=1 --eval_every=0 --ckpt_every=0 --log_every=1 --data=data/fortunes.h5 --resume=none)
PRECISION=${PRECISION:-fp32}

# predicted NP LAYOUT: the planner's step time (s) for the layout on one node of NP ranks
predicted() {
    bin/trident plan inputs/small.conf "${MODEL[@]}" --precision="$PRECISION" --recompute=none \
        --zero=0 --optim_state=fp32 --nodes 1 --ranks-per-node "$1" --layout "$2" \
        --hardware "$HW" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["candidates"][0]["step_s"])'
}
printf '%-28s %12s %12s %8s\n' "run ($PRECISION)" "predicted s" "measured s" "error"
one() { # NAME NP THREADS LAYOUT ARGS...
    local name=$1 np=$2 th=$3 lay=$4; shift 4
    local dir="$TMP/run$np" pred meas
    pred=$(predicted "$np" "$lay")
    if [ "$np" = 1 ]; then
        OMP_NUM_THREADS=$th bin/trident train inputs/small.conf "${MODEL[@]}" "${RUN[@]}" \
            --precision="$PRECISION" --run_dir="$dir" "$@" >/dev/null 2>&1
    else
        OMP_NUM_THREADS=$th mpirun -np "$np" bin/trident train inputs/small.conf "${MODEL[@]}" \
            "${RUN[@]}" --precision="$PRECISION" --run_dir="$dir" "$@" >/dev/null 2>&1
    fi
    meas=$(series ms_per_step "$dir/metrics.jsonl" | median)
    awk -v n="$name" -v p="$pred" -v m="$meas" 'BEGIN { m /= 1000; e = (p - m) / m;
        printf "%-28s %12.3f %12.3f %+7.1f%%%s\n", n, p, m, 100 * e, (e > 0.25 || e < -0.25) ? "  (outside 25 %)" : "" }'
}
one "1 rank x $NCORES threads" 1 "$NCORES" 1x1x1
one "2 ranks x 1 thread (dp 2)" 2 1 2x1x1 --dp=2 --tp=1 --pp=1

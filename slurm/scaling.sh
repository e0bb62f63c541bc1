#!/usr/bin/env bash
# scaling.sh — a strong- and weak-scaling study of trident: one training run per rank
# count, their medians in one table, a report and two plots.
#
#   slurm/scaling.sh [--mode strong|weak|both] [--ranks "1 2 4 8"]
#                    [--layouts auto|"1:1x1x1 2:2x1x1 4:2x2x1 8:2x2x2"]
#                    [--config inputs/small.conf] [--steps N] [--global-batch G]
#                    [--per-rank-batch B] [--micro-batch M] [--threads T]
#                    [--launcher sbatch|mpirun] [--timeout S] [--keep-ckpt]
#                    [--out DIR] [-- --key=value ...]
#
# Strong scaling keeps the global batch fixed (G sequences, default 32): more ranks, less
# work each. Weak scaling keeps the batch per data-parallel replica fixed (B sequences,
# default 8): the global batch grows with dp. A layout "R:DPxTPxPP" gives R ranks as
# dp × tp × pp; `auto` takes dp as large as divides (strong: R and G; weak: R), then tp
# (a divisor of n_head), then pp. Each replica's batch becomes micro_batch × grad_accum,
# micro_batch as close to --micro-batch (default: the config's) as divides, and small
# enough that a pipeline gets at least pp micro-batches.
#
# The runs go one after another (timings of runs that share cores mean nothing): with
# --launcher sbatch (the default when `sinfo` answers) each is a job of slurm/train.sbatch
# with --ntasks=R on as few nodes as hold it (tensor groups inside a node), polled with
# squeue every 0.5 s; with --launcher mpirun, mpirun on this machine. A run that fails
# (or takes more than --timeout seconds, default 1800) is shown with the end of its log,
# marked failed, and the sweep goes on.
#
# Out dir (default runs/scaling-<date>): results.csv (medians over the steps after the
# first 2, which are warm-up), report.md, efficiency.png, breakdown.png, and per run
# runs/<name>/ (metrics.jsonl, config.txt; checkpoints deleted unless --keep-ckpt) and
# logs/<name>.log. On a cluster of `slurm/cluster.sh up --netns` also internode.csv and a
# table of what each run sent between the nodes (the veths' byte counters), beside the
# step time `trident plan` predicts for the run (planned_ms; the hardware file
# TRIDENT_PLAN_HW, default inputs/hardware/this-machine.hw, with the shaped link as the
# network between nodes). The trident arguments after `--` go to every run (not the layout,
# batch, steps or run_dir keys: the driver sets those). Exit: 0 all runs ok, 1 some
# failed (everything is still written), 2 bad input.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ORIG_PWD=$PWD

shell_words() { # ARGS: one line a shell reads back as the same words, quoted only where needed
    local a out=""
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then out+=" $a"
        else out+=" '${a//\'/\'\\\'\'}'"; fi
    done
    echo "${out# }"
}
CMDLINE="slurm/scaling.sh $(shell_words "$@")"

die() { echo "scaling.sh: error: $*" >&2; exit 2; }
say() { echo "scaling.sh: $*"; }
usage() {
    sed -n '2,/^set -euo/{/^set -euo/d; s/^# \{0,1\}//p}' "$0"
    exit 0
}
is_uint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
hms() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); } # seconds as m:ss
abspath() { case $1 in /*) echo "$1" ;; *) echo "$ORIG_PWD/$1" ;; esac; }

# ---------------------------------------------------------------------------------------
# options

MODE=both
RANKS="1 2 4 8"
LAYOUTS=auto
CONFIG=inputs/small.conf
STEPS=20
GLOBAL_BATCH=32
PER_RANK_BATCH=8
MICRO_BATCH=""
RANKS_GIVEN=0
THREADS=1
LAUNCHER=""
TIMEOUT=1800
KEEP_CKPT=0
OUT=""
EXTRA=()

need() { [ $# -ge 2 ] || die "$1 needs a value (see: $0 --help)"; }
while [ $# -gt 0 ]; do
    case $1 in
        --mode | --ranks | --layouts | --config | --steps | --global-batch | \
            --per-rank-batch | --micro-batch | --threads | --launcher | --timeout | --out)
            need "$@"; opt=${1#--}; val=$2; shift 2 ;;
        --*=*) opt=${1%%=*}; opt=${opt#--}; val=${1#*=}; shift ;;
        --keep-ckpt) KEEP_CKPT=1; shift; continue ;;
        --) shift; EXTRA=("$@"); break ;;
        -h | --help) usage ;;
        *) die "unknown argument '$1' (see: $0 --help)" ;;
    esac
    case $opt in
        mode) MODE=$val ;;
        ranks) RANKS=$val; RANKS_GIVEN=1 ;;
        layouts) LAYOUTS=$val ;;
        config) CONFIG=$val ;;
        steps) STEPS=$val ;;
        global-batch) GLOBAL_BATCH=$val ;;
        per-rank-batch) PER_RANK_BATCH=$val ;;
        micro-batch) MICRO_BATCH=$val ;;
        threads) THREADS=$val ;;
        launcher) LAUNCHER=$val ;;
        timeout) TIMEOUT=$val ;;
        out) OUT=$val ;;
        *) die "unknown option '--$opt' (see: $0 --help)" ;;
    esac
done

case $MODE in strong | weak | both) ;; *) die "--mode must be strong, weak or both, not '$MODE'" ;; esac
if ! is_uint "$STEPS" || [ "$STEPS" -lt 3 ]; then
    die "--steps must be an integer >= 3 (the first 2 steps are warm-up), not '$STEPS'"
fi
for v in GLOBAL_BATCH PER_RANK_BATCH THREADS TIMEOUT; do
    is_uint "${!v}" || die "--$(tr 'A-Z_' 'a-z-' <<<"$v") must be a positive integer, not '${!v}'"
done
[ -z "$MICRO_BATCH" ] || is_uint "$MICRO_BATCH" ||
    die "--micro-batch must be a positive integer, not '$MICRO_BATCH'"
for a in "${EXTRA[@]}"; do
    case $a in
        --dp=* | --tp=* | --pp=* | --micro_batch=* | --grad_accum=* | --steps=* | --run_dir=*)
            die "'$a' after --: the driver sets ${a%%=*} for each run (use its own options)" ;;
        --*=*) ;;
        *) die "'$a' after --: trident arguments are --key=value" ;;
    esac
done
if [ "$LAYOUTS" != auto ] && [ "$RANKS_GIVEN" = 1 ]; then
    die "give --ranks (auto layouts) or --layouts (which fix the ranks), not both"
fi
CONFIG=$(abspath "$CONFIG")
[ -f "$CONFIG" ] || die "config '$CONFIG' not found"
OUT=$(abspath "${OUT:-runs/scaling-$(date +%Y%m%d-%H%M%S)}")

cd "$ROOT" # the configs' relative paths (data = data/...) are relative to the repository
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

if [ -z "$LAUNCHER" ]; then
    if command -v sinfo >/dev/null 2>&1 && timeout 5 sinfo -h >/dev/null 2>&1; then
        LAUNCHER=sbatch
    else
        LAUNCHER=mpirun
    fi
fi
case $LAUNCHER in
    mpirun) command -v mpirun >/dev/null 2>&1 || die "no mpirun (install openmpi-bin)" ;;
    sbatch)
        timeout 5 sinfo -h >/dev/null 2>&1 || die "--launcher sbatch, but sinfo gets no answer
HINT: on one machine: slurm/cluster.sh up --nodes 2 --cpus 4, then export SLURM_CONF=..." ;;
    *) die "--launcher must be sbatch or mpirun, not '$LAUNCHER'" ;;
esac

# ---------------------------------------------------------------------------------------
# what trident will see: config values, data, binary

conf_get() { # KEY: the config's last `KEY = value`, overridden by --KEY=value after --
    local key=$1 v a
    v=$(sed -n "s/#.*//; s/^[[:space:]]*${key}[[:space:]]*=[[:space:]]*//p" "$CONFIG" |
        tail -n 1 | sed 's/[[:space:]]*$//; s/^"\(.*\)"$/\1/')
    for a in "${EXTRA[@]}"; do case $a in --"$key"=*) v=${a#*=} ;; esac; done
    echo "$v"
}
N_HEAD=$(conf_get n_head)
N_LAYER=$(conf_get n_layer)
SEQ_LEN=$(conf_get seq_len)
DATA=$(conf_get data)
MB_TARGET=${MICRO_BATCH:-$(conf_get micro_batch)}
is_uint "${MB_TARGET:-x}" || MB_TARGET=4

if [ ! -x bin/trident ]; then
    say "building trident (make)"
    make -s -j"$(nproc)" >/dev/null || die "make failed"
fi
if [ -n "$DATA" ] && [ ! -f "$DATA" ]; then
    case $DATA in
        data/fortunes.h5)
            [ -d /usr/share/games/fortunes ] || die "no $DATA and no fortunes corpus
HINT: apt-get install fortunes (or slurm/install_deps.sh)"
            say "making $DATA from /usr/share/games/fortunes"
            mkdir -p data
            bin/trident prep --out "$DATA" --split-on % /usr/share/games/fortunes >/dev/null ;;
        data/sample.h5)
            mkdir -p data
            bin/trident prep --out "$DATA" --split-on % inputs/sample.txt >/dev/null ;;
        *) die "data file '$DATA' (from $CONFIG) not found; make it with bin/trident prep" ;;
    esac
fi

# ---------------------------------------------------------------------------------------
# the machine and, for sbatch, the cluster

NPROC=$(nproc)
CPU_MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
CPU_MODEL=${CPU_MODEL:-unknown CPU}
CL_NODES=1
CL_CPUS=$NPROC
EMULATED=1 # all "nodes" are this machine: real timings only up to NPROC cores in all
if [ "$LAUNCHER" = sbatch ]; then
    nodes_info=$(sinfo -h -N -o '%N %n %c' | sort -u)
    CL_NODES=$(wc -l <<<"$nodes_info")
    CL_CPUS=$(awk 'NR == 1 || $3 < m { m = $3 } END { print m }' <<<"$nodes_info")
    host_s=$(hostname -s)
    host_f=$(hostname)
    if awk -v a="$host_s" -v b="$host_f" '$2 != a && $2 != b { bad = 1 } END { exit !bad }' \
        <<<"$nodes_info"; then
        EMULATED=0
    fi
fi

# A cluster of slurm/cluster.sh up --netns (its directory holds the file `netns`): every
# node has its own network namespace and a veth trPORTnK whose byte counters count what
# crosses between nodes. Each run's traffic is then measured (runs go one at a time) and
# the report gets an inter-node table: MB each node sent per step, and the time the link
# (its rate from --link) needs for them as a share of the step.
NETNS=0
NET_DIR="" NET_PORT="" NET_BITS=""
if [ "$LAUNCHER" = sbatch ] && [ -n "${SLURM_CONF:-}" ] && [ -f "$(dirname "$SLURM_CONF")/netns" ]; then
    NET_DIR=$(dirname "$SLURM_CONF")
    NET_PORT=$(sed -n 's/^SlurmctldPort=//p' "$SLURM_CONF")
    NET_RATE=$(cut -d/ -f1 "$NET_DIR/link" 2>/dev/null || true)
    NET_BITS=$(awk -v r="${NET_RATE,,}" 'BEGIN {
        if (match(r, /^[0-9]+/)) { n = substr(r, 1, RLENGTH); u = substr(r, RLENGTH + 1) } else exit
        m = u == "bit" ? 1 : u == "kbit" ? 1e3 : u == "mbit" ? 1e6 : u == "gbit" ? 1e9 : u == "tbit" ? 1e12 : 0
        if (m) printf "%.0f", n * m }')
    NETNS=1
fi
# The planner's view of one run on the netns cluster: the calibrated hardware file of this
# machine with (a) the shaped link as the network between nodes (inter_bandwidth = the
# rate / 8, bytes/s per node; inter_latency as calibrated), (b) the cluster's declared
# CPUs per node as its devices, and (c) when the run's busy threads outnumber the real
# cores, every per-device rate (peak, GEMM, memory bandwidth) times cores / threads: the
# emulated nodes share this machine's cores, so each rank gets that share of one.
PLAN_HW=${TRIDENT_PLAN_HW:-$ROOT/inputs/hardware/this-machine.hw}
plan_hw() { # RUN-INDEX OUT-FILE
    local share
    share=$(awk -v c="$NPROC" -v t=$((P_RANKS[$1] * THREADS)) 'BEGIN { printf "%.6g", (t > c ? c / t : 1) }')
    awk -v dpn="$CL_CPUS" -v share="$share" -v bits="${NET_BITS:-0}" -v rate="${NET_RATE:-}" '
        function val(line) { sub(/^[^=]*=[ \t]*/, "", line); sub(/[ \t]*(#.*)?$/, "", line); return line }
        /^[ \t]*name[ \t]*=/ { print "name = " val($0) ", netns cluster (links " rate ", cpu share " share ")"; next }
        /^[ \t]*devices_per_node[ \t]*=/ { print "devices_per_node = " dpn; next }
        /^[ \t]*(peak_fp32|peak_bf16|peak_fp16|gemm_fp32|gemm_bf16|gemm_fp16|mem_bandwidth)[ \t]*=/ {
            k = $0; sub(/[ \t]*=.*/, "", k); sub(/^[ \t]*/, "", k)
            printf "%s = %.6g\n", k, val($0) * share; next }
        /^[ \t]*inter_bandwidth[ \t]*=/ && bits > 0 { printf "inter_bandwidth = %.6g\n", bits / 8; next }
        { print }' "$PLAN_HW" >"$2"
}
# The planner's step time of run I in ms (empty when it cannot say): its layout, batch and
# the switches the run used (read back from the run's effective config).
planned_ms() { # RUN-INDEX
    local i=$1 dir=$OUT/runs/${P_NAME[$1]} k v sw=() json
    [ -f "$dir/config.txt" ] && [ "${P_NODES[i]}" -gt 0 ] || return 0
    for k in precision recompute zero optim_state grad_reduce; do
        v=$(sed -n "s/^$k *= *\"\{0,1\}\([^\"]*\)\"\{0,1\} *\$/\1/p" "$dir/config.txt")
        [ -z "$v" ] || sw+=("--$k=$v")
    done
    plan_hw "$i" "$TMP/plan.hw"
    json=$("$ROOT/bin/trident" plan "$CONFIG" --nodes="${P_NODES[i]}" \
        --ranks-per-node=$((P_RANKS[i] / P_NODES[i])) \
        --layout="${P_DP[i]}x${P_TP[i]}x${P_PP[i]}" --micro_batch="${P_MB[i]}" \
        --grad_accum="${P_GA[i]}" "${sw[@]}" "${EXTRA[@]}" --hardware="$TMP/plan.hw" --json \
        2>"$TMP/plan.err") || {
        say "warning: trident plan failed for ${P_NAME[i]}: $(grep -m1 'error' "$TMP/plan.err" ||
            tail -n 1 "$TMP/plan.err")" >&2
        return 0
    }
    grep -o '"step_s":[0-9.e+-]*' <<<"$json" | head -n 1 | awk -F: '{ printf "%.3f", $2 * 1000 }'
}

# bytes all nodes of the netns cluster have sent so far (the root ends' rx counters)
net_sent() {
    local f sum=0
    for f in /sys/class/net/tr"${NET_PORT}"n*/statistics/rx_bytes; do
        [ -f "$f" ] && sum=$((sum + $(cat "$f")))
    done
    echo "$sum"
}

# ---------------------------------------------------------------------------------------
# the plan: one run per (mode, layout)

auto_layout() { # MODE RANKS: prints "dp tp pp"
    local mode=$1 n=$2 d dp=1 tp=1 r
    for ((d = n; d >= 1; d--)); do
        ((n % d == 0)) || continue
        if [ "$mode" = weak ] || ((GLOBAL_BATCH % d == 0)); then dp=$d; break; fi
    done
    r=$((n / dp))
    for ((d = r; d >= 1; d--)); do
        ((r % d == 0)) || continue
        if ! is_uint "${N_HEAD:-x}" || ((N_HEAD % d == 0)); then tp=$d; break; fi
    done
    echo "$dp $tp $((r / tp))"
}

choose_batch() { # PER_REPLICA PP: prints "micro_batch grad_accum"
    local b=$1 pp=$2 mb=$MB_TARGET
    ((mb <= b)) || mb=$b
    while ((b % mb != 0)); do mb=$((mb - 1)); done
    # a pipeline idles unless it has at least pp micro-batches in flight
    while ((mb > 1 && b / mb < pp)); do
        mb=$((mb - 1))
        while ((b % mb != 0)); do mb=$((mb - 1)); done
    done
    echo "$mb $((b / mb))"
}

choose_nodes() { # RANKS TP: fewest nodes that hold the job, tensor groups inside one node
    local n=$1 tp=$2 k first=""
    for ((k = 1; k <= CL_NODES; k++)); do
        ((n % k == 0 && n * THREADS / k <= CL_CPUS)) || continue
        if (((n / k) % tp == 0)); then echo "$k"; return 0; fi
        [ -n "$first" ] || first=$k
    done
    echo "$first"
}

# layout list: "R:DPxTPxPP ..." sorted by R
if [ "$LAYOUTS" = auto ]; then
    rank_list=$(tr -s ' ,' '\n' <<<"$RANKS" | sed '/^$/d')
    [ -n "$rank_list" ] || die "--ranks is empty"
    for r in $rank_list; do is_uint "$r" || die "--ranks: '$r' is not a positive integer"; done
    rank_list=$(sort -n -u <<<"$rank_list")
else
    layout_list=$(tr -s ' ,' '\n' <<<"$LAYOUTS" | sed '/^$/d')
    [ -n "$layout_list" ] || die "--layouts is empty"
    while read -r l; do
        [[ $l =~ ^([1-9][0-9]*):([1-9][0-9]*)x([1-9][0-9]*)x([1-9][0-9]*)$ ]] ||
            die "--layouts: '$l' is not RANKS:DPxTPxPP (e.g. 4:2x2x1)"
        r=${BASH_REMATCH[1]}
        ((BASH_REMATCH[2] * BASH_REMATCH[3] * BASH_REMATCH[4] == r)) ||
            die "--layouts: '$l': ${BASH_REMATCH[2]}×${BASH_REMATCH[3]}×${BASH_REMATCH[4]} is not $r ranks"
    done <<<"$layout_list"
    layout_list=$(sort -t: -k1,1n -s <<<"$layout_list")
fi

P_MODE=() P_RANKS=() P_DP=() P_TP=() P_PP=() P_MB=() P_GA=() P_GB=() P_NODES=()
P_NAME=() P_WHY=()
modes=$MODE
[ "$MODE" = both ] && modes="strong weak"
for mode in $modes; do
    if [ "$LAYOUTS" = auto ]; then
        entries=$(for r in $rank_list; do
            read -r dp tp pp < <(auto_layout "$mode" "$r")
            echo "$r:${dp}x${tp}x${pp}"
        done)
    else
        entries=$layout_list
    fi
    for e in $entries; do
        r=${e%%:*}
        IFS=x read -r dp tp pp <<<"${e#*:}"
        why=""
        if [ "$mode" = strong ]; then
            gb=$GLOBAL_BATCH
            if ((gb % dp != 0)); then
                why="global batch $gb is not divisible by dp=$dp"
                per=1
            else
                per=$((gb / dp))
            fi
        else
            per=$PER_RANK_BATCH
            gb=$((per * dp))
        fi
        read -r mb ga < <(choose_batch "$per" "$pp")
        nodes=1
        if [ "$LAUNCHER" = sbatch ]; then
            nodes=$(choose_nodes "$r" "$tp")
            if [ -z "$nodes" ]; then
                why="$r ranks × $THREADS thread(s) do not fit $CL_NODES node(s) of $CL_CPUS CPUs"
                nodes=0
            fi
        fi
        P_MODE+=("$mode") P_RANKS+=("$r") P_DP+=("$dp") P_TP+=("$tp") P_PP+=("$pp")
        P_MB+=("$mb") P_GA+=("$ga") P_GB+=("$gb") P_NODES+=("$nodes") P_WHY+=("$why")
        P_NAME+=("$mode-${r}r-${dp}x${tp}x${pp}")
    done
done
N_RUNS=${#P_MODE[@]}

oversubscribed() { # RUN: more busy threads than real cores under them
    local i=$1
    if [ "$EMULATED" = 1 ]; then
        ((P_RANKS[i] * THREADS > NPROC))
    else
        ((P_NODES[i] > 0 && P_RANKS[i] * THREADS / P_NODES[i] > CL_CPUS))
    fi
}

# ---------------------------------------------------------------------------------------
# running one run (mpirun in the background, or a Slurm job), polled every 0.5 s

CUR_PID=""
CUR_JOB=""
TMP=$(mktemp -d /tmp/trident-scaling.XXXXXX)
on_exit() { rm -rf "$TMP"; }
on_signal() {
    echo >&2
    say "interrupted: stopping the current run" >&2
    if [ -n "$CUR_PID" ]; then
        # trident finishes its step, checkpoints and exits; give it 20 s
        kill -TERM "$CUR_PID" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$CUR_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$CUR_PID" 2>/dev/null || true
    fi
    if [ -n "$CUR_JOB" ]; then scancel "$CUR_JOB" 2>/dev/null || true; fi
    exit 130
}
trap on_exit EXIT
trap on_signal INT TERM

steps_done() { # METRICS: the last step written so far
    [ -f "$1" ] || { echo 0; return 0; }
    sed -n 's/^{"step":\([0-9]*\),"loss".*/\1/p' "$1" | tail -n 1 | grep . || echo 0
}

job_field() { # ID FIELD: one field of `scontrol show job` (empty once Slurm forgot the job)
    scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

job_active() { # ID: whether the job is still pending, running or completing
    local out
    if out=$(squeue -h -j "$1" -o %T 2>&1); then
        [ -n "$out" ]
    else
        # "Invalid job id": gone; anything else (a busy slurmctld): ask again next time
        if grep -qi 'invalid job id' <<<"$out"; then return 1; fi
        return 0
    fi
}

# run_one I: runs plan entry I; sets RUN_STATUS (ok|failed) and RUN_WHY
run_one() {
    local i=$1 name=${P_NAME[$1]} dir log t0 last_report step rc state
    dir=$OUT/runs/$name
    log=$OUT/logs/$name.log
    rm -rf "$dir"
    mkdir -p "$dir"
    : >"$log"
    RUN_STATUS=failed
    RUN_WHY=""
    local args=(train "$CONFIG" --steps="$STEPS" --dp="${P_DP[i]}" --tp="${P_TP[i]}"
        --pp="${P_PP[i]}" --micro_batch="${P_MB[i]}" --grad_accum="${P_GA[i]}"
        --run_dir="$dir" --eval_every=0 "${EXTRA[@]}")
    t0=$SECONDS
    if [ "$LAUNCHER" = mpirun ]; then
        local env=(OMP_NUM_THREADS="$THREADS")
        # more ranks than cores: a rank that waits must give up its core
        if oversubscribed "$i"; then env+=(OMPI_MCA_mpi_yield_when_idle=1); fi
        env "${env[@]}" timeout -k 10 "$TIMEOUT" mpirun --oversubscribe --bind-to none \
            -np "${P_RANKS[i]}" -x OMP_NUM_THREADS "$ROOT/bin/trident" "${args[@]}" \
            </dev/null >"$log" 2>&1 &
        CUR_PID=$!
    else
        local tpn=$((P_RANKS[i] / P_NODES[i]))
        # a crash must not be retried (it would time the resume); the time limit is the
        # driver's timeout plus room, so train.sbatch's USR1 warning never comes first
        if ! CUR_JOB=$(TRIDENT_HOME=$ROOT TRIDENT_MAX_RESTARTS=0 sbatch --parsable \
            --job-name="scaling-$name" --output="$log" --open-mode=truncate \
            --nodes="${P_NODES[i]}" --ntasks="${P_RANKS[i]}" --ntasks-per-node="$tpn" \
            --cpus-per-task="$THREADS" --time=$((TIMEOUT / 60 + 10)) \
            slurm/train.sbatch "${args[@]:1}" 2>"$TMP/sbatch.err"); then
            RUN_WHY="sbatch refused the job: $(tr '\n' ' ' <"$TMP/sbatch.err")"
            CUR_JOB=""
            return 0
        fi
        CUR_JOB=${CUR_JOB%%;*}
        echo "      job $CUR_JOB"
    fi

    last_report=$SECONDS
    while :; do
        if [ -n "$CUR_PID" ]; then kill -0 "$CUR_PID" 2>/dev/null || break
        else job_active "$CUR_JOB" || break; fi
        if ((SECONDS - t0 > TIMEOUT + 30)) && [ -n "$CUR_JOB" ]; then
            scancel "$CUR_JOB" 2>/dev/null || true
            RUN_WHY="timed out after ${TIMEOUT}s (job $CUR_JOB cancelled)"
        fi
        if ((SECONDS - last_report >= 10)); then
            step=$(steps_done "$dir/metrics.jsonl")
            echo "      ... step $step/$STEPS, $(hms $((SECONDS - t0)))"
            last_report=$SECONDS
        fi
        sleep 0.5
    done

    if [ -n "$CUR_PID" ]; then
        wait "$CUR_PID" && rc=0 || rc=$?
        CUR_PID=""
        case $rc in
            0) ;;
            124 | 137) RUN_WHY="timed out after ${TIMEOUT}s" ;;
            *) RUN_WHY="mpirun exited with code $rc" ;;
        esac
    else
        state=$(job_field "$CUR_JOB" JobState)
        if [ -z "$RUN_WHY" ] && [ -n "$state" ] && [ "$state" != COMPLETED ]; then
            RUN_WHY="job $CUR_JOB ended $state (exit $(job_field "$CUR_JOB" ExitCode))"
        fi
        CUR_JOB=""
    fi
    if [ -z "$RUN_WHY" ] && ! grep -q '"final":true' "$dir/metrics.jsonl" 2>/dev/null; then
        RUN_WHY="no final line in metrics.jsonl"
    fi
    if [ -n "$RUN_WHY" ]; then
        # trident's own error says more than an exit code; else the first sign of a crash
        local err
        err=$(grep -m 1 'trident.*error' "$log" 2>/dev/null ||
            grep -m 1 -E 'Segmentation fault|Bus error|Aborted|Killed|oom|signal [0-9]' "$log" \
                2>/dev/null) || err=""
        err=$(cut -c1-200 <<<"$err")
        [ -z "$err" ] || RUN_WHY="$RUN_WHY: $err"
        return 0
    fi
    RUN_STATUS=ok
    if [ "$KEEP_CKPT" = 0 ]; then rm -f "$dir"/ckpt-*.h5 "$dir/latest"; fi
}

# ---------------------------------------------------------------------------------------
# one run's numbers: medians over the steps after the first 2

# summarize METRICS: prints "tokens_per_s ms_per_step mfu compute tp_comm pipe_wait
# dp_exposed optimizer data other peak_mem_mb final_loss" (times in ms), or fails
summarize() {
    awk '
    function median(f, n,    a, i, j, t) {
        for (i = 1; i <= n; i++) a[i] = v[f, i] + 0
        for (i = 2; i <= n; i++) {        # insertion sort: a few hundred steps at most
            t = a[i]
            for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
            a[j + 1] = t
        }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    BEGIN { nf = split("tokens_per_s ms_per_step mfu t_compute t_tp_comm t_pipe_wait " \
                       "t_dp_exposed t_optimizer t_data", F, " ") }
    !/"ms_per_step"/ { next }             # the final line, evaluation lines
    {
        line = $0; gsub(/[{}" ]/, "", line)
        split("", kv); m = split(line, pairs, ",")
        for (i = 1; i <= m; i++) { split(pairs[i], p, ":"); kv[p[1]] = p[2] }
        seen++; loss = kv["loss"]
        if (kv["peak_mem_mb_max"] + 0 > peak) peak = kv["peak_mem_mb_max"] + 0
        if (seen <= 2) next               # warm-up
        n++
        for (k = 1; k <= nf; k++) v[F[k], n] = kv[F[k]]
    }
    END {
        if (n < 1) exit 1
        step = median("ms_per_step", n)
        printf "%.1f %.3f %.4f", median("tokens_per_s", n), step, median("mfu", n)
        rest = 0
        for (k = 4; k <= nf; k++) { t = 1000 * median(F[k], n); rest += t; printf " %.3f", t }
        other = step - rest; if (other < 0) other = 0
        printf " %.3f %.1f %.4f\n", other, peak, loss
    }' "$1"
}

checkpoint_seconds() { # LOG: total checkpoint time from trident's end-of-run summary
    sed -n 's/.* checkpoints\{0,1\} (\([0-9.]*\) s).*/\1/p' "$1" | tail -n 1
}

# ---------------------------------------------------------------------------------------
# the sweep

mkdir -p "$OUT/runs" "$OUT/logs"
[ ! -f "$OUT/results.csv" ] || say "note: $OUT already holds a study; its files are replaced"
describe_modes() {
    local m r out=""
    for m in strong weak; do
        r=""
        for ((i = 0; i < N_RUNS; i++)); do [ "${P_MODE[i]}" = "$m" ] && r="$r ${P_RANKS[i]}"; done
        [ -z "$r" ] || out="$out${out:+, }$m:$r"
    done
    echo "$out"
}
if [ "$LAUNCHER" = sbatch ]; then
    where="sbatch slurm/train.sbatch on $CL_NODES node(s) × $CL_CPUS CPUs"
    [ "$EMULATED" = 0 ] || where="$where (emulated on this machine)"
else
    where="mpirun on this machine"
fi
say "$N_RUNS runs ($(describe_modes) ranks), $STEPS steps each, $where"
say "this machine: $NPROC cores ($CPU_MODEL); out $OUT"

# The ETA weighs each run by its work per busy core: global batch / min(ranks × threads,
# cores), scaled by the seconds per unit the finished runs took.
weight() { awk -v g="${P_GB[$1]}" -v r="$((P_RANKS[$1] * THREADS))" -v c="$NPROC" \
    'BEGIN { printf "%.6f", g / (r < c ? r : c) }'; }

ROWS=$TMP/rows
: >"$ROWS"
N_FAILED=0
T_SWEEP=$SECONDS
done_w=0
done_s=0
for ((i = 0; i < N_RUNS; i++)); do
    mark=""
    if oversubscribed "$i"; then mark=" † oversubscribed"; fi
    printf '[%d/%d] %-6s %2d rank(s)  dp %d × tp %d × pp %d  batch %d × %d × %d = %d%s\n' \
        $((i + 1)) "$N_RUNS" "${P_MODE[i]}" "${P_RANKS[i]}" "${P_DP[i]}" "${P_TP[i]}" \
        "${P_PP[i]}" "${P_MB[i]}" "${P_GA[i]}" "${P_DP[i]}" "${P_GB[i]}" "$mark"
    t_run=$SECONDS
    if [ -n "${P_WHY[i]}" ]; then
        RUN_STATUS=failed
        RUN_WHY="${P_WHY[i]} (not run)"
    else
        [ "$NETNS" = 0 ] || net0=$(net_sent)
        run_one "$i"
        [ "$NETNS" = 0 ] || NET_BYTES[i]=$(($(net_sent) - net0))
        if [ "$NETNS" = 1 ] && [ "$RUN_STATUS" = ok ]; then PLAN_MS[i]=$(planned_ms "$i"); fi
    fi
    log=$OUT/logs/${P_NAME[i]}.log
    metrics=""
    if [ "$RUN_STATUS" = ok ] &&
        ! metrics=$(summarize "$OUT/runs/${P_NAME[i]}/metrics.jsonl"); then
        RUN_STATUS=failed
        RUN_WHY="metrics.jsonl has no step after the 2 warm-up steps"
    fi
    if [ "$RUN_STATUS" = ok ]; then
        ckpt=$(checkpoint_seconds "$log")
        read -r tps ms _ <<<"$metrics"
        done_w=$(awk -v a="$done_w" -v b="$(weight "$i")" 'BEGIN { print a + b }')
        done_s=$((done_s + SECONDS - t_run))
        left_w=0
        for ((j = i + 1; j < N_RUNS; j++)); do
            [ -n "${P_WHY[j]}" ] || left_w=$(awk -v a="$left_w" -v b="$(weight "$j")" 'BEGIN { print a + b }')
        done
        eta=$(awk -v s="$done_s" -v w="$done_w" -v l="$left_w" 'BEGIN { printf "%d", s / w * l + 0.5 }')
        echo "      ok in $(hms $((SECONDS - t_run))): $tps tokens/s, $ms ms/step" \
            "| elapsed $(hms $((SECONDS - T_SWEEP))), ETA ~$(hms "$eta")"
    else
        N_FAILED=$((N_FAILED + 1))
        echo "      FAILED: $RUN_WHY" >&2
        if [ -s "$log" ]; then
            echo "      last lines of $log:" >&2
            grep -v '^-*$' "$log" | tail -n 8 | sed 's/^/      | /' >&2
        fi
        metrics=$(printf '%s ' - - - - - - - - - - - -)
        ckpt=-
    fi
    ov=0
    if oversubscribed "$i"; then ov=1; fi
    # one line per run, the columns of results.csv but speed-up and efficiency (computed
    # below), then the error: the 12 numbers of summarize with checkpoint_s before the
    # last two (peak memory, final loss)
    read -r -a m <<<"$metrics"
    printf '%s ' "${P_MODE[i]}" "${P_RANKS[i]}" "${P_NODES[i]}" "${P_DP[i]}" "${P_TP[i]}" \
        "${P_PP[i]}" "${P_MB[i]}" "${P_GA[i]}" "${P_GB[i]}" "${m[@]:0:10}" "${ckpt:-0}" \
        "${m[@]:10:2}" "$ov" "$RUN_STATUS" >>"$ROWS"
    printf '%s\n' "${RUN_WHY//[$'\n\t']/ }" >>"$ROWS"
done

# ---------------------------------------------------------------------------------------
# results.csv: the rows, with speed-up and efficiency against the smallest rank count of
# the same mode that ran. Both come from tokens/s: strong, the same work in less time;
# weak, tokens/s per rank (speed-up / (ranks / r0) is that ratio, too).

CSV=$OUT/results.csv
awk '
    BEGIN {
        print "mode,ranks,nodes,dp,tp,pp,micro_batch,grad_accum,global_batch,tokens_per_s," \
              "ms_per_step,speedup,efficiency,mfu,compute_ms,tp_comm_ms,pipe_wait_ms," \
              "dp_exposed_ms,optimizer_ms,data_ms,other_ms,checkpoint_s,peak_mem_mb," \
              "final_loss,oversubscribed,status,error"
    }
    { row[NR] = $0 }
    $24 == "ok" && (!($1 in r0) || $2 < r0[$1]) { r0[$1] = $2; t0[$1] = $10 }
    END {
        for (i = 1; i <= NR; i++) {
            $0 = row[i]
            why = ""; for (k = 25; k <= NF; k++) why = why (k > 25 ? " " : "") $k
            gsub(/"/, "\047", why)
            sp = ef = ""
            if ($24 == "ok") {
                sp = sprintf("%.3f", $10 / t0[$1])
                ef = sprintf("%.3f", ($10 / t0[$1]) / ($2 / r0[$1]))
            }
            out = $1
            for (k = 2; k <= 11; k++) out = out "," ($k == "-" ? "" : $k)
            out = out "," sp "," ef
            for (k = 12; k <= 24; k++) out = out "," ($k == "-" ? "" : $k)
            print out "," (why == "" ? "" : "\"" why "\"")
        }
    }' "$ROWS" >"$CSV"

# ---------------------------------------------------------------------------------------
# internode.csv (netns clusters only): what crossed between nodes, per run

if [ "$NETNS" = 1 ]; then
    {
        echo "mode,ranks,nodes,dp,tp,pp,ms_per_step,dp_exposed_ms,mb_per_step_per_node,link_ms,link_share,planned_ms,measured_over_planned"
        for ((i = 0; i < N_RUNS; i++)); do
            row=$(awk -v n=$((i + 2)) 'NR == n' "$CSV")
            IFS=, read -r mode ranks nodes dp tp pp _ _ _ _ ms _ _ _ _ _ _ dpx _ <<<"$row"
            [ -n "${NET_BYTES[i]:-}" ] && [ -n "$ms" ] && [ "${nodes:-0}" -gt 0 ] || continue
            # the bytes of the whole run (all steps, plus the start and the final
            # evaluation: a small share) over STEPS steps and the nodes of the job; the
            # link time at the shaped rate is a lower bound on what crossing nodes costs
            # planned_ms: `trident plan` on this layout and link (planned_ms above)
            awk -v b="${NET_BYTES[i]}" -v s="$STEPS" -v k="$nodes" -v bits="${NET_BITS:-0}" -v ms="$ms" \
                -v pl="${PLAN_MS[i]:-}" -v pre="$mode,$ranks,$nodes,$dp,$tp,$pp,$ms,$dpx" 'BEGIN {
                    mb = b / s / k / 1e6
                    lm = bits > 0 ? b / s / k * 8 / bits * 1000 : 0
                    l = ""; sh = ""
                    if (bits > 0) l = sprintf("%.2f", lm)
                    if (bits > 0 && ms > 0) sh = sprintf("%.3f", lm / ms)
                    ra = pl > 0 ? sprintf("%.2f", ms / pl) : ""
                    printf "%s,%.3f,%s,%s,%s,%s\n", pre, mb, l, sh, pl, ra }'
        done
    } >"$OUT/internode.csv"
fi

# ---------------------------------------------------------------------------------------
# report.md

REPORT=$OUT/report.md
{
    echo "# trident scaling study"
    echo
    echo "Measured $(date '+%Y-%m-%d %H:%M') on $(hostname -s): **$NPROC cores**" \
        "($CPU_MODEL), $THREADS thread(s) per rank; $where."
    echo "Config \`${CONFIG#"$ROOT"/}\` (n_layer ${N_LAYER:-?}, n_head ${N_HEAD:-?}," \
        "seq_len ${SEQ_LEN:-?}), $STEPS steps per run; every number is the median over steps" \
        "3–$STEPS (steps 1–2 are warm-up)."
    echo
    if [ "$EMULATED" = 1 ]; then
        echo "> **Real timings exist only up to $NPROC busy cores on this machine** (ranks ×" \
            "threads ≤ $NPROC, \`nproc\`). Rows marked **†** ran more ranks than there are" \
            "cores: they are *oversubscribed correctness runs* — the layout trains, but its" \
            "ranks take turns on the cores, so their tokens/s, speed-up, efficiency, MFU and" \
            "time split are not meaningful."
    else
        echo "> Real cluster nodes of $CL_CPUS CPUs each; rows marked **†** (none expected)" \
            "put more busy threads on a node than it has CPUs and their timings are not" \
            "meaningful."
    fi
    echo
    echo "Produced by:"
    echo
    echo "    $CMDLINE"
    echo
    awk -F, -v G="$GLOBAL_BATCH" -v B="$PER_RANK_BATCH" -v T="${SEQ_LEN:-0}" '
        function pct(x) { return x == "" ? "—" : sprintf("%.0f %%", 100 * x / $11) }
        NR == 1 { next }
        { rows[$1] = rows[$1] NR " "; line[NR] = $0 }
        END {
            for (mi = 1; mi <= 2; mi++) {
                mode = mi == 1 ? "strong" : "weak"
                if (!(mode in rows)) continue
                if (mode == "strong")
                    printf "## Strong scaling: global batch %d sequences (%d tokens)\n\n", G, G * T
                else
                    printf "## Weak scaling: %d sequences per data-parallel replica (%d tokens)\n\n", B, B * T
                print "| ranks | dp×tp×pp | nodes | micro × accum | tokens/s | speed-up | efficiency | MFU | step ms | compute | TP comm | pipe wait | DP exposed | optimizer | data | other |"
                print "|---:|:---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                n = split(rows[mode], idx, " ")
                split_model = 0
                for (k = 1; k <= n; k++) {
                    $0 = line[idx[k]]
                    if ($5 * $6 > 1) split_model = 1
                    dag = $25 == 1 ? " †" : ""
                    lay = $4 "×" $5 "×" $6
                    if ($3 == 0) $3 = "—"          # did not fit the cluster: not run
                    mba = $7 " × " $8
                    if ($26 != "ok") {
                        printf "| %s%s | %s | %s | %s | **failed** | — | — | — | — | — | — | — | — | — | — | — |\n", $2, dag, lay, $3, mba
                        continue
                    }
                    printf "| %s%s | %s | %s | %s | %.0f | %.2f | %.0f %% | %.1f %% | %.1f | %s | %s | %s | %s | %s | %s | %s |\n", \
                        $2, dag, lay, $3, mba, $10, $12, 100 * $13, 100 * $14, $11, \
                        pct($15), pct($16), pct($17), pct($18), pct($19), pct($20), pct($21)
                }
                print ""
                if (mode == "weak" && split_model)
                    print "Rows with tp × pp > 1 split a replica'\''s batch over more ranks: their step gets shorter instead of staying constant; efficiency still compares tokens/s per rank.\n"
            }
        }' "$CSV"
    echo "Time split: share of the step (slowest rank) spent in kernels (compute)," \
        "tensor-parallel all-reduces, waiting for a pipeline neighbour, the exposed part of" \
        "the gradient all-reduce (the rest overlaps the backward pass), the optimizer and" \
        "waiting for data; *other* is the step minus all of these (imbalance, launch gaps)." \
        "Checkpoint time is not per step: see \`checkpoint_s\` in results.csv. MFU is" \
        "the model FLOP rate per rank against the hardware's peak per rank, which an FMA" \
        "probe measures as each run starts (TRIDENT_PEAK_GFLOPS overrides it); ranks that" \
        "share cores share that peak."
    echo
    if [ "$N_FAILED" -gt 0 ]; then
        echo "## Failed runs"
        echo
        awk -F'"' 'NR > 1 && /,failed,/ {
            split($1, f, ","); printf "* %s, %s ranks, %s×%s×%s: %s\n", f[1], f[2], f[4], f[5], f[6], $2 }' "$CSV"
        echo
        echo "Their logs are in \`logs/\` next to this report."
        echo
    fi
    if [ "$NETNS" = 1 ]; then
        echo "## Between the nodes (network namespaces, links ${NET_RATE:-not shaped})"
        echo
        echo "Each node of this cluster has its own network stack; ranks on different nodes" \
            "talk over a veth shaped to ${NET_RATE:-(no rate)} both ways, ranks of one node through" \
            "shared memory. *MB/step* is what each node sent to the others per step (the" \
            "veths' byte counters over the whole run ÷ steps ÷ nodes); *link ms* is the time" \
            "the link needs for it at its rate, and *link share* that time over the step: the" \
            "inter-node part of the step when nothing hides it (the DP-exposed column is what" \
            "the backward pass did not hide). *planned ms* is the step time \`trident plan\`" \
            "predicts for the run's layout, batch and switches on this machine's calibrated" \
            "hardware file (${PLAN_HW#"$ROOT"/}) with the link's rate as the network between nodes" \
            "and, where the run's ranks outnumber the $NPROC real cores that all emulated nodes" \
            "share, each rank's share of a core; *measured / planned* is the step ms over it."
        echo
        echo "| mode | ranks | dp×tp×pp | nodes | step ms | DP exposed ms | MB/step/node | link ms | link share | planned ms | measured / planned |"
        echo "|:---|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        awk -F, 'NR > 1 {
            l = ($10 == "" ? "—" : $10); sh = ($11 == "" ? "—" : sprintf("%.0f %%", 100 * $11))
            pl = ($12 == "" ? "—" : $12); ra = ($13 == "" ? "—" : $13 "×")
            printf "| %s | %s | %s×%s×%s | %s | %.1f | %.1f | %.2f | %s | %s | %s | %s |\n",
                $1, $2, $4, $5, $6, $3, $7, $8, $9, l, sh, pl, ra }' "$OUT/internode.csv"
        echo
    fi
    echo "Plots: parallel efficiency against ranks (\`efficiency.png\`) and the time split of" \
        "every run (\`breakdown.png\`)."
    echo
    echo "![parallel efficiency](efficiency.png)"
    echo
    echo "![time per step by part](breakdown.png)"
} >"$REPORT"

# ---------------------------------------------------------------------------------------
# plots (gnuplot)

have_gnuplot() {
    command -v gnuplot >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing gnuplot-nox (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            gnuplot-nox >/dev/null 2>&1 || true
    fi
    command -v gnuplot >/dev/null 2>&1
}

plot() {
    local term
    if gnuplot -e 'set terminal' 2>&1 | grep -qw pngcairo; then
        term="pngcairo size 900,540 font ',10'"
    elif gnuplot -e 'set terminal' 2>&1 | grep -qw png; then
        term="png size 900,540"
    else
        say "warning: gnuplot has no png terminal: no plots"; return 1
    fi
    local m maxr=1
    for m in strong weak; do # "ranks efficiency" and "label parts..." per mode, ok runs only
        awk -F, -v m="$m" 'NR > 1 && $1 == m && $26 == "ok" { print $2, $13 }' "$CSV" \
            >"$TMP/eff-$m.dat"
        awk -F, -v m="$m" 'NR > 1 && $1 == m && $26 == "ok" {
            printf "\"%s%s: %s×%s×%s\"", $2, $25 == 1 ? "†" : "", $4, $5, $6
            for (k = 15; k <= 21; k++) printf " %s", $k; print "" }' "$CSV" >"$TMP/bd-$m.dat"
    done
    maxr=$(awk -F, 'NR > 1 && $2 > m { m = $2 } END { print m + 0 }' "$CSV")
    local shade=""
    if [ "$EMULATED" = 1 ] && ((maxr * THREADS > NPROC)); then
        # ranks beyond nproc / threads: grey, labelled
        local edge
        edge=$(awk -v c="$NPROC" -v t="$THREADS" 'BEGIN { printf "%.3f", c / t * 1.41 }')
        shade="set object 1 rect from first $edge, graph 0 to graph 1, graph 1 behind fc rgb '#e8e8e8' fs solid noborder
set label 1 \"oversubscribed:\nmore ranks than cores,\ntimings not meaningful\" at first $edge, graph 0.8 offset 0.5,0 front font ',9'"
    fi
    local have_strong have_weak
    have_strong=$([ -s "$TMP/eff-strong.dat" ] && echo 1 || echo 0)
    have_weak=$([ -s "$TMP/eff-weak.dat" ] && echo 1 || echo 0)
    [ "$have_strong$have_weak" != 00 ] || { say "warning: no successful run to plot"; return 1; }
    local series=()
    [ "$have_strong" = 0 ] || series+=("'$TMP/eff-strong.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '#1f77b4' title 'strong (global batch $GLOBAL_BATCH)'")
    [ "$have_weak" = 0 ] || series+=("'$TMP/eff-weak.dat' using 1:2 with linespoints lw 2 pt 5 lc rgb '#d62728' title 'weak ($PER_RANK_BATCH per replica)'")
    series+=("1 with lines dt 2 lw 1.5 lc rgb '#555555' title 'ideal'")
    local joined ymax
    ymax=$(awk -F, 'NR > 1 && $13 != "" && $13 > m { m = $13 } END { m *= 1.1; print (m > 1.15 ? m : 1.15) }' "$CSV")
    joined=$(IFS=,; echo "${series[*]}")
    gnuplot <<EOF
set terminal $term
set output '$OUT/efficiency.png'
set title "trident parallel efficiency on $NPROC cores ($LAUNCHER)"
set xlabel 'MPI ranks'
set ylabel 'parallel efficiency'
set logscale x 2
set xrange [0.8:$((maxr * 5 / 4 + 1))]
set yrange [0:$ymax]
set grid ytics
set key outside bottom center horizontal
$shade
plot $joined
EOF
    local panels=0 layout
    panels=$((have_strong + have_weak))
    layout="1,$panels"
    {
        echo "set terminal $term"
        echo "set output '$OUT/breakdown.png'"
        echo "set multiplot layout $layout title 'time per step by part (median; † = oversubscribed, not meaningful)'"
        echo "set style data histograms"
        echo "set style histogram rowstacked"
        echo "set style fill solid 0.85 border -1"
        echo "set boxwidth 0.7"
        echo "set ylabel 'ms per step'"
        local most
        most=$(awk -F, 'NR > 1 && $26 == "ok" { n[$1]++ } END { for (m in n) if (n[m] > x) x = n[m]; print x + 0 }' "$CSV")
        if [ "$most" -gt 5 ]; then echo "set xtics rotate by -30 nomirror font ',9'"
        else echo "set xtics nomirror font ',9'"; fi
        echo "set key outside bottom center horizontal font ',8'"
        echo "set yrange [0:*]"
        echo "set grid ytics"
        echo "set linetype 1 lc rgb '#1f77b4'; set linetype 2 lc rgb '#ff7f0e'"
        echo "set linetype 3 lc rgb '#9467bd'; set linetype 4 lc rgb '#d62728'"
        echo "set linetype 5 lc rgb '#2ca02c'; set linetype 6 lc rgb '#8c564b'"
        echo "set linetype 7 lc rgb '#bbbbbb'"
        local m title
        for m in strong weak; do
            [ -s "$TMP/bd-$m.dat" ] || continue
            title="strong scaling (global batch $GLOBAL_BATCH)"
            [ "$m" = weak ] && title="weak scaling ($PER_RANK_BATCH per replica)"
            echo "set title '$title'"
            echo "set xlabel 'ranks: dp×tp×pp'"
            echo "plot '$TMP/bd-$m.dat' using 2:xtic(1) title 'compute', '' using 3 title 'TP comm', \
'' using 4 title 'pipeline wait', '' using 5 title 'DP exposed', '' using 6 title 'optimizer', \
'' using 7 title 'data', '' using 8 title 'other'"
        done
        echo "unset multiplot"
    } | gnuplot
}

if have_gnuplot; then
    plot || say "warning: plotting failed; results.csv and report.md are complete"
else
    say "warning: no gnuplot (apt-get install gnuplot-nox): no plots"
fi

# ---------------------------------------------------------------------------------------
# the end

echo
sed -n '/^## /,$p' "$REPORT" | sed '/^Time split/,$d'
say "done in $(hms $((SECONDS - T_SWEEP))): $((N_RUNS - N_FAILED)) of $N_RUNS runs ok"
say "wrote $CSV, $REPORT, $OUT/efficiency.png, $OUT/breakdown.png"
if [ "$N_FAILED" -gt 0 ]; then
    say "$N_FAILED run(s) failed (marked in results.csv and report.md)" >&2
    exit 1
fi

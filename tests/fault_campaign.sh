#!/usr/bin/env bash
# fault_campaign.sh — kill a 2×2×2 training job over and over, resume it each time, and
# prove that it ends exactly where an uninterrupted run ends.
#
#   tests/fault_campaign.sh [-k KILLS] [-s SEED] [-o OUT_DIR] [--steps N] [--ckpt-every N]
#                           [--phases LIST]
#
# 1. An uninterrupted reference run (8 ranks: dp 2 × tp 2 × pp 2, the 4-layer tiny model,
#    a checkpoint every --ckpt-every steps, the newest 2 kept) in OUT_DIR/ref.
# 2. KILLS attempts of the same run on one run directory (OUT_DIR/run), each killed once
#    by SIGKILL. Phase, rank and step are drawn from a RNG seeded with SEED; the step is
#    always ahead of the point the attempt resumes from (the newest checkpoint on disk).
#    Phases: forward backward step reduce optim ckpt rename (TRIDENT_FAULT points: the rank
#    kills itself there) and kill-9 (this script sends SIGKILL to a random rank at a random
#    moment: start-up, checkpoint load, compute, checkpoint write — points no fault marks).
#    Phases are drawn from a shuffled bag, so every phase comes once before any repeats.
# 3. After each kill: every complete-named checkpoint (ckpt-*.h5) must load with all its
#    checksums (trident eval), and `latest` must name one of them.
# 4. A last attempt without faults finishes the run. Its final checkpoint's /model tensors
#    must equal the reference's bit for bit, and every step's loss (its last computation)
#    the reference's loss.
#
# Definitions, per kill:
#   done          the last step the killed attempt completed (its last metrics.jsonl line)
#   resumed from  the step the next attempt resumed from ("resumed from ... at step N";
#                 0 = started fresh)
#   steps redone  done − resumed from: steps completed before the kill that had to be
#                 computed again. The step in flight at the kill is not counted.
#   torn loads    checkpoints the next attempt skipped on load ("falling back",
#                 "skipping checkpoint")
# Guarantees checked: every kill kills (exit code ≠ 0); 0 ≤ steps redone ≤ ckpt-every;
# the resume point is the newest checkpoint on disk and never goes back; for a fault point
# at step K it is the newest multiple of ckpt-every below K; no torn load; every
# checkpoint on disk loads after every kill; final weights and losses bit-identical.
#
# Writes OUT_DIR/campaign.md (the table), OUT_DIR/summary.txt (key=value lines),
# OUT_DIR/violations.txt (each broken guarantee, one a line; empty when none),
# OUT_DIR/logs/ (one log per attempt). Exit 0 when every guarantee held, 1 when one broke,
# 2 on bad options or a run that could not start.
source "$(dirname "$0")/lib.sh"

KILLS=20 SEED=1 OUT="" STEPS=36 EVERY=3 KEEP=2
ALL_PHASES=(forward backward step reduce optim ckpt rename kill-9)
PHASES=$(IFS=,; echo "${ALL_PHASES[*]}")
HANG_S=${FAULT_CAMPAIGN_HANG_S:-300} # an attempt running longer than this is a hang

usage() { sed -n '2,6s/^# \{0,1\}//p' "$0"; exit 2; }
die() { echo "fault_campaign: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        -k|--kills) KILLS=${2:-}; shift 2 ;;
        -s|--seed) SEED=${2:-}; shift 2 ;;
        -o|--out) OUT=${2:-}; shift 2 ;;
        --steps) STEPS=${2:-}; shift 2 ;;
        --ckpt-every) EVERY=${2:-}; shift 2 ;;
        --phases) PHASES=${2:-}; shift 2 ;;
        -h|--help) usage ;;
        *) die "unknown option '$1' (try --help)" ;;
    esac
done
for v in KILLS SEED STEPS EVERY; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, not '${!v}'"
done
[ "$KILLS" -ge 1 ] || die "--kills must be at least 1"
[ "$EVERY" -ge 1 ] && [ "$STEPS" -ge $((2 * EVERY)) ] || die "--steps must be at least 2 × --ckpt-every (and --ckpt-every ≥ 1)"
IFS=, read -r -a PHASE_LIST <<<"$PHASES"
[ ${#PHASE_LIST[@]} -gt 0 ] || die "--phases is empty"
for p in "${PHASE_LIST[@]}"; do
    [[ " ${ALL_PHASES[*]} " == *" $p "* ]] || die "unknown phase '$p' (known: ${ALL_PHASES[*]})"
done
if [ -z "$OUT" ]; then OUT=$(mktemp -d /tmp/trident-campaign.XXXXXX)
elif [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then die "output dir '$OUT' is not empty"
fi
mkdir -p "$OUT/logs" || die "cannot create '$OUT'"
OUT=$(cd "$OUT" && pwd)
REF="$OUT/ref" RUN="$OUT/run"
DATA=$(sample_data)
ARGS=(train "$ROOT/inputs/tiny.conf" --data="$DATA" --n_layer=4 --steps="$STEPS" --warmup=3
      --eval_every=0 --log_every=100 --eval_batches=2 --dp=2 --tp=2 --pp=2 --grad_accum=2
      --micro_batch=4 --ckpt_every="$EVERY" --ckpt_keep="$KEEP")
WINDOW=$((2 * EVERY)) # a kill lands at most this many steps after the resume point

RANDOM=$SEED
RND=0
rnd() { RND=$(( ((RANDOM << 15) | RANDOM) % $1 )); } # rnd N: RND = uniform 0..N-1

JOB=""
trap '[ -n "$JOB" ] && kill "$JOB" 2>/dev/null; exit 130' INT TERM

# the trident processes of this campaign's run directory (never anybody else's)
run_pids() { pgrep -f "^$TRIDENT train .*--run_dir=$1\$"; }
# pid_of_rank DIR RANK: the pid of world rank RANK of the job on DIR ("" if not up yet)
pid_of_rank() {
    local p
    for p in $(run_pids "$1"); do
        if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
            echo "$p"; return; fi
    done
}
# last_done METRICS SKIP: the last step completed after the first SKIP lines ("" if none)
last_done() {
    [ -f "$1" ] || return 0
    awk -v skip="$2" 'NR > skip && /^\{"step":[0-9]+,"loss"/ { split($0, a, /[:,]/); s = a[2] } END { print s }' "$1"
}
lines_of() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
# newest complete-named checkpoint step on disk (0 if none)
newest_ckpt() {
    local f; f=$(last_ckpt "$1")
    if [ -n "$f" ]; then f=${f##*/ckpt-}; echo $((10#${f%.h5})); else echo 0; fi
}
resumed_step() { sed -n 's/.*resumed from .* at step \([0-9][0-9]*\)$/\1/p' "$1" | head -n 1; }
torn_loads() { grep -cE 'falling back|skipping checkpoint' "$1"; }
# wait_gone DIR: no process of the job is left (a hang otherwise)
wait_gone() {
    local i
    for i in $(seq 100); do [ -z "$(run_pids "$1")" ] && return 0; sleep 0.1; done
    return 1
}
# start_job LOG [VAR=VALUE...]: the run on $RUN in the background (JOB = its pid); a run
# that refuses the run directory's lock is retried for up to a minute
LOCK_WAITS=0
run_job() { # run_job LOG BG ENV...: BG=1 leaves it in the background
    local log=$1 bg=$2; shift 2
    env "$@" timeout "$HANG_S" mpirun --oversubscribe -np 8 "$TRIDENT" "${ARGS[@]}" \
        --run_dir="$RUN" >"$log" 2>&1 &
    JOB=$!
    [ "$bg" = 1 ] && return 0
    wait "$JOB"; local rc=$?; JOB=""; return $rc
}
# the first line of LOG about a lock (the word, not "block_size")
lock_line() { grep -m1 -iwE 'lock|locked|lockfile' "$1"; }
sent=0
locked_out() { # locked_out LOG RC: the attempt did nothing because the run_dir is locked
    [ "$2" -ne 0 ] && [ "$sent" -eq 0 ] && ! grep -q 'fault injection' "$1" &&
        ! grep -q '^step ' "$1" && lock_line "$1" >/dev/null
}
# verify_ckpts: every ckpt-*.h5 in $RUN loads (checksums included); sets CK_OK, CK_N,
# CK_BAD (names), LATEST_BAD (1 when `latest` names no complete checkpoint)
verify_ckpts() {
    local f
    CK_OK=0 CK_N=0 CK_BAD="" LATEST_BAD=0
    for f in "$RUN"/ckpt-*.h5; do
        [ -f "$f" ] || continue
        CK_N=$((CK_N + 1))
        if "$TRIDENT" eval --ckpt "$f" --eval_batches=1 >"$OUT/logs/eval.log" 2>&1; then
            CK_OK=$((CK_OK + 1))
        else CK_BAD="$CK_BAD ${f##*/}"; cp "$OUT/logs/eval.log" "$OUT/logs/eval-${f##*/}-$a.log"; fi
    done
    if [ -f "$RUN/latest" ]; then
        local l; l=$(head -n 1 "$RUN/latest")
        [ -f "$RUN/$l" ] || LATEST_BAD=1
    fi
}

# settle LOG: the resume point of the attempt that wrote LOG (res; RES_KNOWN=0 when it was
# killed before it got that far). A known one is the "resumed from" of every earlier kill
# still waiting for one (PENDING), and the torn loads of LOG are theirs.
PENDING=() TORN_TOTAL=0
settle() {
    local log=$1 t i
    t=$(torn_loads "$log"); TORN_TOTAL=$((TORN_TOTAL + t))
    for i in "${PENDING[@]}"; do TORN[i]=$(( TORN[i] + t )); done
    res=$(resumed_step "$log")
    if [ -z "$res" ]; then # no checkpoint was loaded: a fresh start, or not that far yet
        if grep -q '^trident train: ' "$log"; then res=0; else RES_KNOWN=0; res=$R; return; fi
    fi
    RES_KNOWN=1
    [ "$res" -eq "$R" ] || violation "resumed from step $res, but the newest checkpoint on disk was step $R"
    for i in "${PENDING[@]}"; do RES[i]=$res; REDO[i]=$(( DONE[i] - res )); done
    PENDING=()
}

VIOL=()   # broken guarantees, one line each
violation() { VIOL+=("attempt $a: $*"); echo "  VIOLATION: $*" >&2; }

# --- 1. the uninterrupted reference -------------------------------------------------
t_start=$(date +%s)
echo "fault campaign: $KILLS kills, seed $SEED, $STEPS steps, a checkpoint every $EVERY (keep $KEEP), 8 ranks dp 2 × tp 2 × pp 2"
echo "  output: $OUT"
# (it also times the start-up, launch to first step: the window of kill -9 at start-up)
t0=$(date +%s%N)
timeout "$HANG_S" mpirun --oversubscribe -np 8 "$TRIDENT" "${ARGS[@]}" --run_dir="$REF" >"$OUT/logs/reference.log" 2>&1 &
JOB=$!
while kill -0 "$JOB" 2>/dev/null && [ ! -s "$REF/metrics.jsonl" ]; do sleep 0.01; done
STARTUP_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$JOB" || die "the reference run failed ($?): see $OUT/logs/reference.log"
JOB=""

# --- 2. the killed attempts -----------------------------------------------------------
declare -a PH RK KAT RC DONE RES REDO TORN CKS NOTE EXPECT
BAG=()
a=0 kills=0 R=0
while [ "$kills" -lt "$KILLS" ]; do
    a=$((a + 1))
    if [ ${#BAG[@]} -eq 0 ]; then # refill and shuffle the bag of phases
        BAG=("${PHASE_LIST[@]}")
        for ((i = ${#BAG[@]} - 1; i > 0; i--)); do
            rnd $((i + 1)); t=${BAG[i]}; BAG[i]=${BAG[RND]}; BAG[RND]=$t
        done
    fi
    phase=${BAG[0]}; BAG=("${BAG[@]:1}")
    R=$(newest_ckpt "$RUN") # where this attempt will resume (checked against its log)
    if [ "$R" -ge "$STEPS" ]; then
        violation "the run finished after $kills kills, before the campaign's $KILLS"; a=$((a - 1)); break
    fi
    hi=$(( R + WINDOW < STEPS ? R + WINDOW : STEPS ))
    case $phase in
        ckpt|rename) # a step that is saved: a multiple of ckpt-every, or the last step
            cands=()
            for ((s = R + 1; s <= hi; s++)); do
                if [ $((s % EVERY)) -eq 0 ] || [ "$s" -eq "$STEPS" ]; then cands+=("$s"); fi
            done
            rnd ${#cands[@]}; K=${cands[RND]} ;;
        kill-9) hi=$(( hi < STEPS - 1 ? hi : STEPS - 1 )); [ "$hi" -gt "$R" ] || hi=$((R + 1))
            rnd $((hi - R)); K=$((R + 1 + RND)) ;;
        *) rnd $((hi - R)); K=$((R + 1 + RND)) ;;
    esac
    rnd 8; rank=$RND
    log="$OUT/logs/attempt-$(printf %02d $a).log"
    skip=$(lines_of "$RUN/metrics.jsonl")
    note=""
    for _ in $(seq 30); do
        if [ "$phase" = kill-9 ]; then
            rnd 1000; delay_ms=$(( K == R + 1 ? RND * STARTUP_MS / 1000 : RND * 40 / 1000 ))
            run_job "$log" 1
            pid=""
            while kill -0 "$JOB" 2>/dev/null; do
                [ -z "$pid" ] && pid=$(pid_of_rank "$RUN" "$rank")
                if [ -n "$pid" ]; then
                    [ "$K" -eq $((R + 1)) ] && break
                    d=$(last_done "$RUN/metrics.jsonl" "$skip")
                    [ -n "$d" ] && [ "$d" -ge $((K - 1)) ] && break
                fi
                sleep 0.005
            done
            sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
            if [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; then sent=1; else sent=0; fi
            wait "$JOB"; rc=$?; JOB=""
        else
            sent=0; run_job "$log" 0 TRIDENT_FAULT="$phase:$K:$rank"; rc=$?
        fi
        locked_out "$log" "$rc" || break
        LOCK_WAITS=$((LOCK_WAITS + 1))
        echo "  attempt $a: the run directory is locked ($(lock_line "$log")); waiting" >&2
        sleep 2
    done
    locked_out "$log" "$rc" && die "attempt $a: run directory still locked after a minute: $(lock_line "$log")"
    wait_gone "$RUN" || { violation "processes left behind after the kill (a hang): $(run_pids "$RUN" | tr '\n' ' ')"
                          for p in $(run_pids "$RUN"); do kill -9 "$p" 2>/dev/null; done; }
    [ "$rc" -eq 124 ] && violation "the attempt ran past ${HANG_S}s (a hang): $log"

    settle "$log"

    d=$(last_done "$RUN/metrics.jsonl" "$skip"); d=${d:-$res}
    if [ "$phase" = kill-9 ]; then
        if [ "$sent" -eq 0 ]; then
            violation "kill -9 missed: the job ended (rc $rc) before rank $rank was killed"
            note="missed"
        elif [ "$RES_KNOWN" -eq 0 ]; then note="start-up, before the resume"
        elif [ "$d" -eq "$res" ] && [ "$K" -eq $((R + 1)) ]; then note="first step after the resume"
        elif [ -f "$RUN/ckpt-$(printf %08d "$d").h5.tmp" ]; then note="checkpoint $d write"
        else note="mid-step"; fi
        K=$((d + 1)); [ "$K" -gt "$STEPS" ] && K=$STEPS
    else
        grep -q "fault injection: rank $rank dies at $phase of step $K" "$log" ||
            violation "the fault $phase:$K:$rank did not fire (rc $rc)"
    fi
    [ "$rc" -ne 0 ] || violation "the attempt was not killed: it finished (rc 0)"
    kills=$((kills + 1))
    verify_ckpts
    [ "$CK_OK" -eq "$CK_N" ] || violation "torn checkpoint on disk after the kill:$CK_BAD"
    [ "$LATEST_BAD" -eq 0 ] || violation "'latest' names '$(head -n 1 "$RUN/latest")', which is not on disk"
    PH[a]=$phase RK[a]=$rank KAT[a]=$K RC[a]=$rc DONE[a]=$d CKS[a]="$CK_OK/$CK_N" NOTE[a]=$note TORN[a]=0
    PENDING+=("$a")
    EXPECT[a]=-1
    if [ "$phase" != kill-9 ]; then # a fault point at step K: the newest checkpoint below K
        e=$(( (K - 1) / EVERY * EVERY )); EXPECT[a]=$(( e > res ? e : res ))
    fi
    printf "  attempt %2d: %-8s rank %d, step %3d, exit %3d, had done %d%s\n" "$a" "$phase" "$rank" "$K" "$rc" "$d" \
        "${note:+ ($note)}"
done

# --- 3. finish without faults ----------------------------------------------------------
a=$((a + 1))
log="$OUT/logs/attempt-$(printf %02d $a)-final.log"
R=$(newest_ckpt "$RUN")
sent=0
for _ in $(seq 30); do
    run_job "$log" 0; rc=$?
    locked_out "$log" "$rc" || break
    LOCK_WAITS=$((LOCK_WAITS + 1)); sleep 2
done
[ "$rc" -eq 0 ] || violation "the final attempt failed (rc $rc): $(grep -m1 -iE 'error|fatal' "$log")"
settle "$log"
for i in "${PENDING[@]}"; do RES[i]=-1 REDO[i]=-1; done # (a failed final attempt)

# per-kill guarantees on the resume point
torn_total=$TORN_TOTAL max_redo=0 prev=0
for ((i = 1; i < a; i++)); do
    [ "${REDO[i]}" -gt "$max_redo" ] && max_redo=${REDO[i]}
    a_save=$a; a=$i
    [ "${TORN[i]}" -eq 0 ] || violation "the next attempt skipped ${TORN[i]} torn checkpoint(s) on load"
    [ "${REDO[i]}" -ge 0 ] && [ "${REDO[i]}" -le "$EVERY" ] ||
        violation "${REDO[i]} steps redone (done ${DONE[i]}, resumed from ${RES[i]}); at most $EVERY allowed"
    [ "${RES[i]}" -ge "$prev" ] || violation "resumed from ${RES[i]}, behind an earlier resume point $prev"
    [ "${EXPECT[i]}" -lt 0 ] || [ "${RES[i]}" -eq "${EXPECT[i]}" ] ||
        violation "resumed from ${RES[i]}; the newest checkpoint before the kill was ${EXPECT[i]}"
    prev=${RES[i]}; a=$a_save
done

# final weights and losses against the reference
if why=$(same_weights "$(last_ckpt "$RUN")" "$(last_ckpt "$REF")" 0 2>&1); then identical=yes
else identical=no; violation "final weights differ from the uninterrupted run: $why"; fi
# every step's last computed loss, as text, against the reference's
last_losses() { losses "$1" | awk '{ l[$1] = $2 } END { for (s in l) print s, l[s] }' | sort -n; }
if [ "$(last_losses "$RUN")" = "$(last_losses "$REF")" ] && [ "$(last_losses "$REF" | wc -l)" -eq "$STEPS" ]; then
    losses_identical=yes
else losses_identical=no; violation "the per-step losses differ from the uninterrupted run's"; fi
t_total=$(( $(date +%s) - t_start ))

# --- 4. the table -------------------------------------------------------------------------
{
    echo "| attempt | phase | rank | killed at step | exit | had done | resumed from | steps redone | torn loads | checkpoints loading after kill |"
    echo "|--:|:--|--:|--:|--:|--:|--:|--:|--:|:--|"
    for ((i = 1; i < a; i++)); do
        ph=${PH[i]}; [ -n "${NOTE[i]}" ] && ph="$ph (${NOTE[i]})"
        echo "| $i | $ph | ${RK[i]} | ${KAT[i]} | ${RC[i]} | ${DONE[i]} | ${RES[i]} | ${REDO[i]} | ${TORN[i]} | ${CKS[i]} |"
    done
} >"$OUT/table.md"
final="kills $kills, torn loads $torn_total, max steps redone $max_redo (checkpoint every $EVERY), final weights identical $identical"
echo
# the Markdown table as aligned plain text
awk -F' [|] ' '!/^[|]--/ { sub(/^[|] /, ""); sub(/ [|]$/, ""); r[NR] = $0; n = NR
                           for (i = 1; i <= NF; i++) if (length($i) > w[i]) w[i] = length($i) }
    END { for (j = 1; j <= n; j++) { if (!(j in r)) continue; m = split(r[j], f, / [|] /); line = ""
              for (i = 1; i <= m; i++) line = line sprintf(i == 1 ? "%*s" : " | %*s", w[i], f[i])
              print line } }' "$OUT/table.md"
echo "$final"
echo "per-step losses identical $losses_identical; ${#VIOL[@]} guarantee(s) broken; $t_total s"
{
    echo "# Fault campaign"
    echo
    echo "\`tests/fault_campaign.sh -k $KILLS -s $SEED --steps $STEPS --ckpt-every $EVERY --phases $PHASES\`:"
    echo "8 ranks (dp 2 × tp 2 × pp 2), $STEPS steps, a checkpoint every $EVERY steps (newest $KEEP kept),"
    echo "$kills SIGKILLs, each followed by a resume on the same run directory; $(date -u '+%Y-%m-%d %H:%M UTC'), $t_total s."
    echo "*had done*: the last step the killed attempt completed; *steps redone* = had done − resumed from."
    echo
    cat "$OUT/table.md"
    echo
    echo "**$final**; per-step losses identical $losses_identical."
    if [ ${#VIOL[@]} -gt 0 ]; then echo; echo "Broken guarantees:"; printf -- '- %s\n' "${VIOL[@]}"; fi
} >"$OUT/campaign.md"
used=$(printf '%s\n' "${PH[@]}" | sort -u | tr '\n' ',' | sed 's/,$//')
cat >"$OUT/summary.txt" <<EOF
kills=$kills
attempts=$a
seed=$SEED
ckpt_every=$EVERY
torn_loads=$torn_total
max_redone=$max_redo
identical=$identical
losses_identical=$losses_identical
phases=$used
lock_waits=$LOCK_WAITS
violations=${#VIOL[@]}
seconds=$t_total
EOF
printf '%s\n' "${VIOL[@]}" | grep . >"$OUT/violations.txt"
if [ ${#VIOL[@]} -gt 0 ]; then
    printf 'broken: %s\n' "${VIOL[@]}"
    exit 1
fi
exit 0

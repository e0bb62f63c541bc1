#!/usr/bin/env bash
# test_plan.sh — the planner (`trident plan`): its per-rank memory is the `train`
# pre-flight's, item by item, on several layouts and switches; bad arguments and bad
# hardware files are refused with the reason and a HINT; --json is valid JSON; a config
# that fits nowhere lists no candidate and says why; the pre-flight's refusal suggests
# switches that would fit; the step-time model's terms (widened 16-bit kernels, measured
# kernel and optimizer rates, flash attention's memory, ZeRO-1's reduce-scatter, flat and
# hierarchical, with every optimizer and state form) against arithmetic written here;
# every shipped hardware file loads; calibrate writes one.
# (No timing here: tests/bench_plan.sh compares predicted and measured step times.)
source "$(dirname "$0")/lib.sh"
DATA=$(sample_data)
BASE=(train "$ROOT/inputs/tiny.conf" --data="$DATA" --resume=none --eval_every=0 --steps=1)
MID=(--n_layer=8 --n_embd=512 --n_head=8 --micro_batch=4 --seq_len=128 --block_size=128)
# a made-up node of 4 devices, for the planner's arithmetic only
HW="$TEST_TMP/test.hw"
cat > "$HW" <<'HWEOF'
name = test node
devices_per_node = 4
peak_fp32 = 1e11
peak_bf16 = 2e11
peak_fp16 = 1e11
gemm_efficiency = 0.8
mem_per_device = 4G
mem_bandwidth = 1e10
runtime = measured
intra_latency = 1e-6
intra_bandwidth = 5e9
inter_latency = 2e-5
inter_bandwidth = 1.25e9
HWEOF
PLAN=(plan "$ROOT/inputs/tiny.conf" --hardware "$HW")
json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }

# same_as_preflight NAME NP LAYOUT ARGS...: the refused pre-flight's table (mem_limit 1M:
# nothing fits, so it prints every item, MB per rank) equals the planner's item maxima
# for --layout, every item but the runtime (which each process measures of itself), and
# so does the total less the runtime
same_as_preflight() {
    local name=$1 np=$2 layout=$3; shift 3
    local out plan
    IFS=x read -r dp tp pp <<<"$layout"
    out=$(timeout 120 mpirun --oversubscribe -np "$np" "$TRIDENT" "${BASE[@]}" \
          --run_dir="$TEST_TMP/pf_$name" "${MID[@]}" --dp="$dp" --tp="$tp" --pp="$pp" \
          --mem_limit=1M "$@" 2>&1)
    plan=$("$TRIDENT" "${PLAN[@]}" "${MID[@]}" --nodes 1 --ranks-per-node "$np" \
           --layout "$layout" --precision=fp32 --recompute=none --zero=0 --optim_state=fp32 \
           --micro_batch=4 --grad_accum=1 "$@" --json 2>/dev/null)
    local diff
    diff=$(python3 - "$out" "$plan" <<'PYEOF'
import json, re, sys
table, plan = sys.argv[1], json.loads(sys.argv[2])
c = plan["candidates"][0]
names = {"runtime (MPI, BLAS, HDF5)": "runtime", "weights": "weights", "gradients": "gradients",
         "optimizer state (AdamW m, v)": "optimizer", "activations": "activations",
         "workspace (backward, probe)": "workspace", "pipeline send buffers": "pipeline",
         "gradient reduction buffers": "reduction", "data buffers": "data", "total": "total"}
got = {}
for line in table.splitlines():
    m = re.match(r"\s+(.+?)\s{2,}([0-9.]+)\s+([0-9.]+)$", line)
    if not m: continue
    key = re.sub(r" \(\d+ micro-batch(es)?\)", "", m.group(1))
    if key in names: got[names[key]] = float(m.group(2))
if len(got) != len(names):
    print("pre-flight table not found:", table[-300:]); sys.exit(0)
mb = lambda b: b / 1048576.0
want = dict((k, mb(v)) for k, v in c["memory"]["item_max"].items())
bad = [f"{k}: pre-flight {got[k]:.1f}, plan {want[k]:.1f}" for k in want
       if k != "runtime" and abs(got[k] - want[k]) > 0.051]
t_plan = mb(c["memory"]["total"]) - mb(c["memory"]["runtime"])
t_pf = got["total"] - got["runtime"]
# (the table's total and runtime are each the largest over the ranks, maybe of two ranks
# whose runtimes differ by a fraction of a MB)
if abs(t_plan - t_pf) > 1.0: bad.append(f"total less runtime: pre-flight {t_pf:.1f}, plan {t_plan:.1f}")
print("; ".join(bad))
PYEOF
)
    if [ -z "$diff" ]; then pass "plan_memory_equals_preflight_$name"
    else fail "plan_memory_equals_preflight_$name" "$diff"; fi
}
same_as_preflight one_rank 1 1x1x1
same_as_preflight dp2 2 2x1x1
same_as_preflight tp2 2 1x2x1
same_as_preflight pp2_1f1b 2 1x1x2 --grad_accum=4
same_as_preflight pp2_gpipe 2 1x1x2 --grad_accum=4 --schedule=gpipe
same_as_preflight bf16_grad_reduce_dp2 2 2x1x1 --precision=bf16 --grad_reduce=bf16
same_as_preflight fp16_tp2 2 1x2x1 --precision=fp16
same_as_preflight bf16_pp2_tp2 4 1x2x2 --precision=bf16 --grad_accum=2
# switches the memory plan models: the planner takes its numbers (a switch given on the
# command line is fixed, the later one wins)
same_as_preflight recompute_full 1 1x1x1 --recompute=full
same_as_preflight recompute_selective_pp2 2 1x1x2 --grad_accum=4 --recompute=selective
same_as_preflight optim_int8_dp2 2 2x1x1 --optim_state=int8
same_as_preflight optim_bf16_bf16 1 1x1x1 --optim_state=bf16 --precision=bf16

# the run header's number: the same plan, up to what the two processes measure of their
# own runtime (a few MB: train has opened its data file and backend by then)
header_vs_plan() {
    local name=$1 np=$2 layout=$3; shift 3
    IFS=x read -r dp tp pp <<<"$layout"
    local out pred plan
    out=$(timeout 300 mpirun --oversubscribe -np "$np" "$TRIDENT" "${BASE[@]}" \
          --run_dir="$TEST_TMP/hd_$name" "${MID[@]}" --dp="$dp" --tp="$tp" --pp="$pp" "$@" 2>&1)
    pred=$(sed -n 's/^memory: \([0-9]*\) MB per rank predicted.*/\1/p' <<<"$out")
    plan=$("$TRIDENT" "${PLAN[@]}" "${MID[@]}" --nodes 1 --ranks-per-node "$np" --layout "$layout" \
           --precision=fp32 --recompute=none --zero=0 --optim_state=fp32 --micro_batch=4 \
           --grad_accum=1 "$@" --json 2>/dev/null | json 'print(round(d["candidates"][0]["memory"]["total"] / 1048576))')
    echo "  $name: pre-flight $pred MB per rank, plan $plan MB"
    if [ -n "$pred" ] && [ -n "$plan" ] && [ $((pred - plan)) -le 4 ] && [ $((plan - pred)) -le 4 ]
    then pass "plan_total_matches_run_header_$name"
    else fail "plan_total_matches_run_header_$name" "pre-flight '$pred', plan '$plan'"; fi
}
header_vs_plan one_rank 1 1x1x1
header_vs_plan pp2 2 1x1x2 --grad_accum=4

# refused: each bad argument names itself, exits 2, gives a HINT, prints no plan
refused() { # NAME PATTERN ARGS...
    local name=$1 pat=$2 out rc; shift 2
    out=$("$TRIDENT" "$@" 2>&1); rc=$?
    if [ $rc = 2 ] && grep -q -- "$pat" <<<"$out" && grep -q '^HINT: ' <<<"$out" &&
       ! grep -q '^trident plan:' <<<"$out"
    then pass "refused_$name"; else fail "refused_$name" "rc $rc: $(tail -n 3 <<<"$out")"; fi
}
refused no_nodes "give --nodes" "${PLAN[@]}" --ranks-per-node 2
refused no_config "no config file" plan --nodes 1 --ranks-per-node 2 --hardware "$HW"
refused zero_nodes "nodes" "${PLAN[@]}" --nodes 0 --ranks-per-node 2
refused layout_wrong_size "layout dp=3" "${PLAN[@]}" --nodes 1 --ranks-per-node 2 --layout 3x1x1
refused layout_not_a_layout "is not DPxTPxPP" "${PLAN[@]}" --nodes 1 --ranks-per-node 2 --layout 2by1
refused layout_tp_heads "does not divide n_head" "${PLAN[@]}" --nodes 1 --ranks-per-node 3 --layout 1x3x1
refused hardware_missing "cannot read hardware file" plan "$ROOT/inputs/tiny.conf" --hardware /nonexistent.hw --nodes 1 --ranks-per-node 1
refused mem_not_a_size "is not a size" "${PLAN[@]}" --nodes 1 --ranks-per-node 2 --mem-per-rank lots
refused more_ranks_than_devices "4 devices per node" "${PLAN[@]}" --nodes 1 --ranks-per-node 8
refused unknown_key "unknown config key" "${PLAN[@]}" --nodes 1 --ranks-per-node 1 --n_layers=3
bad_hw() { # NAME PATTERN SED-EXPRESSION: the test file changed by sed is refused
    local name=$1 pat=$2 f="$TEST_TMP/bad_$1.hw"
    sed "$3" "$HW" > "$f"
    refused "hardware_$name" "$pat" plan "$ROOT/inputs/tiny.conf" --hardware "$f" --nodes 1 --ranks-per-node 1
}
bad_hw unknown_key "unknown hardware key 'peak_tf32'" '$a peak_tf32 = 1e12'
bad_hw twice "given twice" '$a peak_fp32 = 1e12'
bad_hw missing "'mem_bandwidth'.*is missing" '/^mem_bandwidth/d'
bad_hw not_a_number "peak_fp32" 's/^peak_fp32 = .*/peak_fp32 = fast/'
bad_hw not_a_line "not a key = value line" '$a just words'
bad_hw size "mem_per_device" 's/^mem_per_device = .*/mem_per_device = lots/'
sed 's/^peak_bf16 = .*/peak_bf16 = 0/' "$HW" > "$TEST_TMP/nobf16.hw"
refused precision_unsupported "no bf16 arithmetic" plan "$ROOT/inputs/tiny.conf" --hardware "$TEST_TMP/nobf16.hw" \
    --nodes 1 --ranks-per-node 1 --precision=bf16

# --json: valid, best first among what fits, every field a script needs
out=$("$TRIDENT" "${PLAN[@]}" "${MID[@]}" --dp=2 --nodes 2 --ranks-per-node 4 --json 2>/dev/null)
check_json=$(json '
c = d["candidates"]
need = ["layout", "micro_batch", "grad_accum", "switches", "memory", "fits", "step_s",
        "tokens_per_s", "model_flops_per_device"]
ok = len(c) > 1 and all(all(k in x for k in need) for x in c) and all(x["fits"] for x in c)
ok = ok and all(c[i]["tokens_per_s"] >= 0.99 * c[i + 1]["tokens_per_s"] for i in range(len(c) - 1))
ok = ok and all(x["layout"]["dp"] * x["layout"]["tp"] * x["layout"]["pp"] == 8 for x in c)
ok = ok and all(x["micro_batch"] * x["grad_accum"] * x["layout"]["dp"] == d["global_batch"] for x in c)
ok = ok and all(x["memory"]["total"] <= d["mem_per_rank"] for x in c)
ok = ok and d["why_none"] is None and len(d["layouts"]) >= 1
print("ok" if ok else "bad")' <<<"$out" 2>&1)
if [ "$check_json" = ok ]; then pass "json_valid_sorted_complete"
else fail "json_valid_sorted_complete" "$check_json: $(head -c 300 <<<"$out")"; fi
# the text form names the choice and its reasons
out=$("$TRIDENT" "${PLAN[@]}" "${MID[@]}" --nodes 1 --ranks-per-node 2 2>&1)
if grep -q "^why #1" <<<"$out" && grep -q "exposed" <<<"$out" && grep -q "activations" <<<"$out"
then pass "text_explains_the_choice"; else fail "text_explains_the_choice" "$(head -n 5 <<<"$out")"; fi

# nothing fits: no candidate listed as fitting, the reason, exit 2 (text and JSON)
out=$("$TRIDENT" "${PLAN[@]}" "${MID[@]}" --nodes 1 --ranks-per-node 2 --mem-per-rank 20M 2>&1); rc=$?
if [ $rc = 2 ] && grep -q "^no candidate fits: the smallest candidate .* needs [0-9]* MB per rank, more than the 20 MB" <<<"$out"
then pass "impossible_config_says_why"; else fail "impossible_config_says_why" "rc $rc: $(head -n 4 <<<"$out")"; fi
out=$("$TRIDENT" "${PLAN[@]}" "${MID[@]}" --nodes 1 --ranks-per-node 2 --mem-per-rank 20M --json 2>/dev/null)
r=$(json 'print("ok" if d["why_none"] and not any(c["fits"] for c in d["candidates"]) else "bad")' <<<"$out" 2>&1)
if [ "$r" = ok ]; then pass "impossible_config_json_why_none"; else fail "impossible_config_json_why_none" "$r"; fi

# the pre-flight's refusal suggests what would fit, and the suggestion is right: a limit
# between the model with micro-batch 1 and with micro-batch 2 (activations grow linearly:
# micro-batch 2 needs need1 + (need4 - need1) / 3), so only micro-batch 1 fits
need4=$("$TRIDENT" "${PLAN[@]}" "${MID[@]}" --nodes 1 --ranks-per-node 1 --layout 1x1x1 --precision=fp32 \
        --recompute=none --zero=0 --optim_state=fp32 --micro_batch=4 --grad_accum=1 --json 2>/dev/null |
        json 'print(int(d["candidates"][0]["memory"]["total"] / 1048576))')
need1=$("$TRIDENT" "${PLAN[@]}" "${MID[@]}" --nodes 1 --ranks-per-node 1 --layout 1x1x1 --precision=fp32 \
        --recompute=none --zero=0 --optim_state=fp32 --micro_batch=1 --grad_accum=4 --json 2>/dev/null |
        json 'print(int(d["candidates"][0]["memory"]["total"] / 1048576))')
limit=$(( need1 + (need4 - need1) / 6 ))
out=$("$TRIDENT" "${BASE[@]}" --run_dir="$TEST_TMP/hint" "${MID[@]}" --mem_limit=${limit}M 2>&1); rc=$?
sugg=$(sed -n 's/^trident: it would fit .* with micro_batch = \([0-9]*\), grad_accum = \([0-9]*\) (same global batch).*/\1 \2/p' <<<"$out")
if [ $rc = 2 ] && [ -n "$sugg" ]; then
    read -r smb sga <<<"$sugg"
    out2=$("$TRIDENT" "${BASE[@]}" --run_dir="$TEST_TMP/hint2" "${MID[@]}" --mem_limit=${limit}M \
           --micro_batch="$smb" --grad_accum="$sga" 2>&1); rc2=$?
    if [ $rc2 = 0 ]; then pass "preflight_suggests_a_setting_that_fits"
    else fail "preflight_suggests_a_setting_that_fits" "micro_batch $smb grad_accum $sga: rc $rc2: $(tail -n 2 <<<"$out2")"; fi
else
    fail "preflight_suggests_a_setting_that_fits" "limit ${limit}M, rc $rc: $(grep -E '^trident: (it|no)' <<<"$out")"
fi
# the switches are suggested too (those memplan does not model yet marked "once built")
if grep -q "recompute = selective\|zero = 1\|recompute = full" <<<"$out"
then pass "preflight_names_switches"
else fail "preflight_names_switches" "$(grep '^trident: it' <<<"$out")"; fi

# ---- the step-time and memory model's terms, each against arithmetic written here ----
# one candidate's JSON for --layout with every switch fixed: HWFILE NP LAYOUT ARGS...
cand() {
    local hw=$1 np=$2 layout=$3; shift 3
    "$TRIDENT" plan "$ROOT/inputs/tiny.conf" --hardware "$hw" "${MID[@]}" --nodes 1 \
        --ranks-per-node "$np" --layout "$layout" --precision=fp32 --recompute=none --zero=0 \
        --optim_state=fp32 --micro_batch=4 --grad_accum=1 "$@" --json 2>/dev/null
}
# two nodes of 2 ranks (dp 4 spans them): the data-parallel terms
cand2() {
    local hw=$1; shift
    "$TRIDENT" plan "$ROOT/inputs/tiny.conf" --hardware "$hw" "${MID[@]}" --nodes 2 \
        --ranks-per-node 2 --layout 4x1x1 --precision=fp32 --recompute=none --zero=0 \
        --optim_state=fp32 --micro_batch=4 --grad_accum=1 "$@" --json 2>/dev/null
}
# value of a candidate's field (python expression on c = the first candidate)
val() { python3 -c "import json,sys; c=json.load(sys.stdin)['candidates'][0]; print($1)"; }
# ratio A / B within rel of want: NAME A B WANT REL
ratio_is() {
    local r
    r=$(awk -v a="$2" -v b="$3" -v w="$4" -v t="$5" 'BEGIN { if (b == 0) { print "b=0"; exit }
        q = a / b; print (q > w * (1 - t) && q < w * (1 + t)) ? "ok" : sprintf("ratio %.6g, want %.6g", q, w) }')
    if [ "$r" = ok ]; then pass "$1"; else fail "$1" "$r ($2 / $3)"; fi
}
hwvar() { # NAME LINES...: the test node plus these lines
    local f="$TEST_TMP/var_$1.hw"; shift
    { cat "$HW"; printf '%s\n' "$@"; } > "$f"
    echo "$f"
}
HW_NATIVE=$(hwvar native "kernels_16bit = native")
HW_FLASH=$(hwvar flash "kernels_16bit = native" "attention = flash")
HW_KBW=$(hwvar kbw "kernels_bw_fp32 = 2.5e9")
HW_OPT1=$(hwvar opt1 "optim_fp32 = 1e8")
HW_OPT2=$(hwvar opt2 "optim_fp32 = 2e8")

# widening: the CPU backend (the default, kernels_16bit = widened) runs 16-bit non-matmul
# kernels on fp32 copies: (8 + 2) / 2 = 5x the bf16 bytes, 2.5x what fp32 moves; native
# 16-bit kernels move half the fp32 bytes
o32=$(cand "$HW" 1 1x1x1 | val 'c["time"]["other_kernels"]')
obf=$(cand "$HW" 1 1x1x1 --precision=bf16 | val 'c["time"]["other_kernels"]')
onat=$(cand "$HW_NATIVE" 1 1x1x1 --precision=bf16 | val 'c["time"]["other_kernels"]')
ratio_is widened_bf16_kernels_cost_2.5x_fp32 "$obf" "$o32" 2.5 1e-4
ratio_is native_bf16_kernels_cost_half_fp32 "$onat" "$o32" 0.5 1e-4

# measured kernel bandwidth: kernels_bw_fp32 = mem_bandwidth / 4 quadruples the time of
# the other kernels, and the attention core's FLOPs (inside the measured attention
# kernel) leave the matmul term: 24 C^2 of 24 C^2 + 2 C (T + 1) per token and layer,
# the LM head (2 Vp C per token) unchanged
j1=$(cand "$HW" 1 1x1x1); j2=$(cand "$HW_KBW" 1 1x1x1)
ratio_is measured_kernel_bandwidth_used "$(val 'c["time"]["other_kernels"]' <<<"$j2")" \
    "$(val 'c["time"]["other_kernels"]' <<<"$j1")" 4 1e-4
vp=$(( (257 + 127) / 128 * 128 ))
want=$(awk -v C=512 -v T=128 -v L=8 -v V=$vp 'BEGIN { a = L * 24 * C * C + 2 * V * C;
    print a / (a + L * 2 * C * (T + 1)) }')
ratio_is measured_kernels_take_the_attention_flops "$(val 'c["time"]["matmul"]' <<<"$j2")" \
    "$(val 'c["time"]["matmul"]' <<<"$j1")" "$want" 1e-4

# the optimizer at a measured rate: twice the rate saves n / (2 rate) seconds, n = the
# model's parameters (8 layers of 12 C^2 + 13 C, the tied embedding, positions, final LN),
# the rate per device times the 4 devices the one rank of the node has
t1=$(cand "$HW_OPT1" 1 1x1x1 | val 'c["time"]["optimizer"]')
t2=$(cand "$HW_OPT2" 1 1x1x1 | val 'c["time"]["optimizer"]')
n=$(awk -v C=512 -v L=8 -v V=$vp 'BEGIN { print L * (12 * C * C + 13 * C) + V * C + 128 * C + 2 * C }')
ratio_is optimizer_at_measured_rate "$(awk -v a="$t1" -v b="$t2" 'BEGIN { print a - b }')" \
    "$(awk -v n="$n" 'BEGIN { print n / (2e8 * 4) }')" 1 0.001
# ... and each state form its own rate: an int8 rate changes only int8 runs
HW_OPT8=$(hwvar opt8 "optim_fp32 = 1e8" "optim_int8 = 2e8")
t8=$(cand "$HW_OPT8" 1 1x1x1 --optim_state=int8 | val 'c["time"]["optimizer"]')
t81=$(cand "$HW_OPT1" 1 1x1x1 --optim_state=int8 | val 'c["time"]["optimizer"]')
ratio_is int8_state_at_its_own_rate "$(awk -v a="$t1" -v b="$t8" 'BEGIN { print a - b }')" \
    "$(awk -v n="$n" 'BEGIN { print n / (2e8 * 4) }')" 1 0.001
if awk -v a="$t81" -v b="$t1" 'BEGIN { exit !(a != b) }'; then pass int8_without_rate_uses_bytes
else fail int8_without_rate_uses_bytes "int8 without optim_int8 took fp32's rate ($t81 s)"; fi

# flash attention (attention = flash): per layer and micro-batch in flight the
# [B*NH*T][T] probabilities (fp32 here) give way to [B*NH*T] fp32 log-sum-exps, and the
# backward's fp32 [B*NH*T][T] scratch goes
jp=$(cand "$HW_NATIVE" 1 1x1x1); jf=$(cand "$HW_FLASH" 1 1x1x1)
da=$(( $(val 'c["memory"]["activations"]' <<<"$jp") - $(val 'c["memory"]["activations"]' <<<"$jf") ))
dw=$(( $(val 'c["memory"]["workspace"]' <<<"$jp") - $(val 'c["memory"]["workspace"]' <<<"$jf") ))
rows=$(( 4 * 8 * 128 ))
if [ "$da" = $(( 8 * (4 * rows * 128 - 4 * rows) )) ] && [ "$dw" = $(( 4 * rows * 128 )) ]
then pass flash_attention_keeps_a_row_statistic
else fail flash_attention_keeps_a_row_statistic "activations -$da, workspace -$dw bytes; want -$(( 8 * (4 * rows * 128 - 4 * rows) )), -$(( 4 * rows * 128 ))"; fi
# native 16-bit kernels: no widening workspaces (bf16 smaller; fp32 has none anyway)
wbw=$(cand "$HW" 1 1x1x1 --precision=bf16 | val 'c["memory"]["workspace"]')
wbn=$(cand "$HW_NATIVE" 1 1x1x1 --precision=bf16 | val 'c["memory"]["workspace"]')
w32w=$(cand "$HW" 1 1x1x1 | val 'c["memory"]["workspace"]')
w32n=$(cand "$HW_NATIVE" 1 1x1x1 | val 'c["memory"]["workspace"]')
if [ "$wbn" -lt "$wbw" ] && [ "$w32w" = "$w32n" ]; then pass native_kernels_need_no_widening_workspace
else fail native_kernels_need_no_widening_workspace "bf16 $wbw -> $wbn, fp32 $w32w -> $w32n"; fi
# the choice keys are strict
bad_hw choice "kernels_16bit = 'half' is not one of native|widened" '$a kernels_16bit = half'

# ZeRO-1 with LAMB, int8 state, hierarchical reduction, bf16 on the wire: planned (not
# refused) with the state over dp = 4, the reduce-scatter half of the all-reduce, and the
# two-level form where asked
for sw in --optimizer=lamb --optim_state=int8 --allreduce=hier --grad_reduce=bf16; do
    name=zero_plans_${sw#--}; name=${name//=/_}
    z0=$(cand2 "$HW" "$sw"); z1=$(cand2 "$HW" "$sw" --zero=1)
    r=$(python3 -c '
import json, sys
a = json.loads(sys.argv[1])["candidates"][0]; b = json.loads(sys.argv[2])["candidates"][0]
ok = b["switches"]["zero"] == 1 and b["layout"]["dp"] == 4
q = b["memory"]["optimizer"] / a["memory"]["optimizer"]
ok = ok and 0.24 < q < 0.27 and b["time"]["zero_gather"] > 0
print("ok" if ok else "zero %s, state ratio %.3f, gather %g" % (b["switches"]["zero"], q, b["time"]["zero_gather"]))' "$z0" "$z1" 2>&1)
    if [ "$r" = ok ]; then pass "$name"; else fail "$name" "$r"; fi
done
# the reduce-scatter is half the flat all-reduce (ring: (n-1) steps of bytes/n instead of
# 2(n-1)); bf16 on the wire halves it again
ar=$(cand2 "$HW" --allreduce=flat | val 'c["time"]["dp_comm"]')
rs=$(cand2 "$HW" --allreduce=flat --zero=1 | val 'c["time"]["dp_comm"]')
rs16=$(cand2 "$HW" --allreduce=flat --zero=1 --grad_reduce=bf16 | val 'c["time"]["dp_comm"]')
ratio_is zero_reduce_scatter_half_the_allreduce "$rs" "$ar" 0.5 1e-4
ratio_is zero_bf16_wire_halves_the_bytes "$rs16" "$rs" 0.5 0.01
# hierarchical: inside the node (2 ranks, 5 GB/s each) then across (1.25 GB/s per node,
# 2 nodes): reduce-scatter n/2 bytes inside, n/4 across, against n·3/4 across flat
hs=$(cand2 "$HW" --allreduce=hier --zero=1 | val 'c["time"]["dp_comm"]')
gb=$(cand2 "$HW" --zero=1 | val 'c["memory"]["gradients"]')
want=$(awk -v g="$gb" 'BEGIN { print 1e-6 + g / 2 / 5e9 + 2e-5 + g / 4 / (1.25e9 / 2) }')
ratio_is zero_hierarchical_reduce_scatter "$hs" "$want" 1 0.01

# every shipped hardware file loads and gives a plan of GPT-2 124M on 2 nodes
for f in "$ROOT"/inputs/hardware/*.hw; do
    n=$(basename "$f" .hw)
    k=$(sed -n 's/^devices_per_node = //p' "$f")
    out=$("$TRIDENT" plan "$ROOT/inputs/gpt2-124m.conf" --hardware "$f" --nodes 2 --ranks-per-node "$k" \
          --json 2>/dev/null)
    r=$(json 'print("ok" if d["candidates"] and d["candidates"][0]["fits"] else "bad")' <<<"$out" 2>&1)
    if [ "$r" = ok ]; then pass "hardware_file_loads_$n"; else fail "hardware_file_loads_$n" "$r"; fi
done

# calibrate writes a file the planner reads (what it measures is not checked here)
out=$("$TRIDENT" calibrate --out "$TEST_TMP/cal.hw" 2>&1); rc=$?
if [ $rc = 0 ] && grep -q "^gemm_fp32 = " "$TEST_TMP/cal.hw" && grep -q "^# .*triad" "$TEST_TMP/cal.hw" &&
   "$TRIDENT" plan "$ROOT/inputs/tiny.conf" --hardware "$TEST_TMP/cal.hw" --nodes 1 --ranks-per-node 1 >/dev/null 2>&1
then pass "calibrate_writes_a_hardware_file"; else fail "calibrate_writes_a_hardware_file" "rc $rc: $out"; fi
refused calibrate_bad_argument "unknown argument" calibrate --outfile x

test_summary

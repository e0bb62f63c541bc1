#!/usr/bin/env bash
# test_backend.sh — the device a job computes on comes from the config (device = cpu |
# cuda); a device this build lacks is refused at start, on every rank, with the reason
# and the fix; device = cpu is the default and changes nothing.
source "$(dirname "$0")/lib.sh"
DATA=$(sample_data)
BASE=(train "$ROOT/inputs/tiny.conf" --data="$DATA" --resume=none --eval_every=0 --steps=2)

# refused NAME NP ARGS...: exit 2, the reason and a HINT line printed once, no run_dir
refused_cuda() {
    local name=$1 np=$2; shift 2
    local dir="$TEST_TMP/$name" out rc
    out=$(mpi "$np" "${BASE[@]}" --run_dir="$dir" "$@" 2>&1); rc=$?
    if [ "$rc" -eq 2 ] &&
       [ "$(grep -c 'error: trident was built without the CUDA backend' <<<"$out")" -eq 1 ] &&
       [ "$(grep -c '^HINT: .*set device = cpu' <<<"$out")" -eq 1 ] && [ ! -e "$dir" ]
    then pass "$name"
    else fail "$name" "exit $rc: $(tail -n 3 <<<"$out")"; fi
}
refused_cuda cuda_refused_without_the_cuda_build 1 --device=cuda
refused_cuda cuda_refused_on_every_rank 2 --device=cuda --dp=2

# the same key from a config file
printf 'device = cuda\n' > "$TEST_TMP/cuda.conf"
out=$("$TRIDENT" train "$TEST_TMP/cuda.conf" --data="$DATA" --run_dir="$TEST_TMP/cf" 2>&1); rc=$?
if [ "$rc" -eq 2 ] && grep -q 'built without the CUDA backend' <<<"$out"
then pass cuda_refused_from_a_config_file
else fail cuda_refused_from_a_config_file "exit $rc: $(tail -n 3 <<<"$out")"; fi

# a device that does not exist: the choices are listed
out=$("$TRIDENT" "${BASE[@]}" --run_dir="$TEST_TMP/tpu" --device=tpu 2>&1); rc=$?
if [ "$rc" -eq 2 ] && grep -q 'cpu' <<<"$out" && grep -q 'cuda' <<<"$out"
then pass unknown_device_lists_the_choices
else fail unknown_device_lists_the_choices "exit $rc: $(tail -n 3 <<<"$out")"; fi

# device = cpu is the default: the same weights and losses as a run that does not say
"$TRIDENT" "${BASE[@]}" --run_dir="$TEST_TMP/default" >/dev/null 2>&1
"$TRIDENT" "${BASE[@]}" --run_dir="$TEST_TMP/cpu" --device=cpu >/dev/null 2>&1
if grep -q '^device *= *"cpu"' "$TEST_TMP/default/config.txt" 2>/dev/null &&
   same_weights "$(last_ckpt "$TEST_TMP/default")" "$(last_ckpt "$TEST_TMP/cpu")" 0 >/dev/null &&
   [ "$(losses "$TEST_TMP/default")" = "$(losses "$TEST_TMP/cpu")" ] &&
   [ -n "$(losses "$TEST_TMP/cpu")" ]
then pass cpu_is_the_default_and_bit_identical
else fail cpu_is_the_default_and_bit_identical "weights, losses or config.txt differ"; fi

# the metrics report the backend's peak allocation: at least the weights, gradients and
# both AdamW moments (4 × 4 bytes per parameter), and no more than the process's peak RSS
n_params=$(sed -n 's/.*model: \([0-9.]*\)M parameters.*/\1/p' <<<"$("$TRIDENT" "${BASE[@]}" --run_dir="$TEST_TMP/mem" 2>&1)")
last=$(grep '"loss"' "$TEST_TMP/mem/metrics.jsonl" | tail -n 1)
dev=$(sed -n 's/.*"device_peak_mb_max":\([0-9.]*\).*/\1/p' <<<"$last")
rss=$(sed -n 's/.*"peak_mem_mb_max":\([0-9.]*\).*/\1/p' <<<"$last")
if [ -n "$dev" ] && [ -n "$n_params" ] &&
   awk -v d="$dev" -v r="$rss" -v n="$n_params" 'BEGIN { exit !(d >= n * 16 * 1e6 / 1048576 && d <= r) }'
then pass metrics_report_the_backend_peak_allocation
else fail metrics_report_the_backend_peak_allocation "device ${dev:-?} MB, rss ${rss:-?} MB, ${n_params:-?}M parameters"; fi

# sample takes the device too
out=$("$TRIDENT" sample --ckpt="$TEST_TMP/cpu" --length=4 --device=cuda 2>&1); rc=$?
if [ "$rc" -eq 2 ] && grep -q 'built without the CUDA backend' <<<"$out"
then pass sample_refuses_cuda_without_the_cuda_build
else fail sample_refuses_cuda_without_the_cuda_build "exit $rc: $(tail -n 3 <<<"$out")"; fi
out=$("$TRIDENT" sample --ckpt="$TEST_TMP/cpu" --length=4 --device=cpu --temperature=0 2>&1); rc=$?
if [ "$rc" -eq 0 ]
then pass sample_runs_on_cpu
else fail sample_runs_on_cpu "exit $rc: $(tail -n 3 <<<"$out")"; fi

test_summary

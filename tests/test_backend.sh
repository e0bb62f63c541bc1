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

# device = cuda: what the CUDA kernels are not built for (kernels/cuda/launch.c: head sizes
# 16/32/64/128; at most 65535 row chunks of 256 tokens per micro-batch) is refused by the
# config's validation, on every rank, before the device is opened. The CPU build runs that
# validation too, so its message comes here instead of "built without the CUDA backend".
refused_cuda_limit() { # NAME MESSAGE HINT ARGS...
    local name=$1 why=$2 hint=$3; shift 3
    local dir="$TEST_TMP/$name" out rc
    out=$(mpi 2 "${BASE[@]}" --run_dir="$dir" --device=cuda --dp=2 "$@" 2>&1); rc=$?
    if [ "$rc" -eq 2 ] && [ "$(grep -c -F -- "$why" <<<"$out")" -eq 1 ] &&
       [ "$(grep -c -F -- "HINT: $hint" <<<"$out")" -eq 1 ] &&
       ! grep -q 'built without the CUDA backend' <<<"$out" && [ ! -e "$dir" ]
    then pass "$name"
    else fail "$name" "exit $rc: $(tail -n 3 <<<"$out")"; fi
}
refused_cuda_limit cuda_refuses_head_size_8_on_every_rank \
    "device = cuda: head size n_embd / n_head = 64 / 8 = 8 is not one the CUDA attention kernels are built for (16, 32, 64, 128)" \
    "use n_head = 4 (head size 16)" --n_head=8
refused_cuda_limit cuda_refuses_head_size_256 \
    "device = cuda: head size n_embd / n_head = 512 / 2 = 256 is not one" \
    "use n_head = 4 (head size 128)" --n_embd=512 --n_head=2
refused_cuda_limit cuda_refuses_too_many_tokens_per_micro_batch \
    "device = cuda: micro_batch x seq_len = 65536 x 256 tokens is more than the CUDA kernels' 16776960 per micro-batch" \
    "use micro_batch <= 65535 with seq_len = 256" --micro_batch=65536 --seq_len=256 --block_size=256
# the same head size on the CPU is fine: the limit is the CUDA kernels' only
if "$TRIDENT" "${BASE[@]}" --run_dir="$TEST_TMP/hs8cpu" --n_head=8 --device=cpu >/dev/null 2>&1 &&
   [ -n "$(losses "$TEST_TMP/hs8cpu")" ]
then pass cpu_takes_head_size_8
else fail cpu_takes_head_size_8 "training with n_head = 8 (head size 8) on the CPU failed"; fi

# bench_train --device=cuda (tests/bench.sh section 11). The CPU build says in one line that
# the CUDA path is skipped, and exits 0; the CUDA build without a GPU says why, the same way.
out=$(cd "$ROOT" && bin/bench_train --device=cuda 2>&1); rc=$?
if [ "$rc" -eq 0 ] && [ "$(wc -l <<<"$out")" -eq 1 ] && grep -q 'device=cuda skipped: this is the CPU build' <<<"$out"
then pass bench_train_cuda_skipped_in_the_cpu_build
else fail bench_train_cuda_skipped_in_the_cpu_build "exit $rc: $out"; fi
# the peak comes from the hardware file the GPU's name maps to (the driver's names)
hw_for() { # NAME GPU EXPECTED...: bench_train --hw_for_gpu=GPU prints every EXPECTED
    local name=$1 gpu=$2 out e ok=1; shift 2
    out=$(cd "$ROOT" && bin/bench_train --hw_for_gpu="$gpu" 2>&1) || ok=0
    for e in "$@"; do grep -q -F -- "$e" <<<"$out" || ok=0; done
    if [ $ok -eq 1 ]; then pass "$name"; else fail "$name" "$out"; fi
}
hw_for bench_peak_h100_sxm "NVIDIA H100 80GB HBM3" "h100-sxm-8x.hw" "fp32 67.0, bf16 989.0"
hw_for bench_peak_h100_pcie "NVIDIA H100 PCIe" "h100-pcie-8x.hw" "fp32 51.0, bf16 756.0"
hw_for bench_peak_h200 "NVIDIA H200" "h200-sxm-8x.hw" "fp32 67.0, bf16 989.0"
hw_for bench_peak_a100_80gb "NVIDIA A100-SXM4-80GB" "a100-80gb-8x.hw" "fp32 19.5, bf16 312.0"
hw_for bench_peak_a100_40gb "NVIDIA A100-SXM4-40GB" "a100-40gb-8x.hw" "fp32 19.5, bf16 312.0"
out=$(cd "$ROOT" && bin/bench_train --hw_for_gpu="NVIDIA H100 NVL" 2>&1); rc=$?
if [ "$rc" -eq 1 ] && grep -q "no hardware file" <<<"$out" && grep -q '^HINT: give --peak_tflops=N or --hardware=FILE' <<<"$out"
then pass bench_peak_unknown_gpu_says_how_to_give_it
else fail bench_peak_unknown_gpu_says_how_to_give_it "exit $rc: $out"; fi
# the CUDA build: without a GPU the one "skipped" line; with one, a small real run whose
# numbers must be sane (GPU-only: skipped here)
if [ ! -x "$ROOT/bin-cuda/bench_train" ]; then
    skip bench_train_cuda_path "no CUDA build (bin-cuda/bench_train: make BACKEND=cuda tests)"
elif ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    out=$(cd "$ROOT" && bin-cuda/bench_train --device=cuda 2>&1); rc=$?
    if [ "$rc" -eq 0 ] && [ "$(wc -l <<<"$out")" -eq 1 ] && grep -q 'device=cuda skipped: no CUDA device' <<<"$out"
    then pass bench_train_cuda_skipped_without_a_gpu
    else fail bench_train_cuda_skipped_without_a_gpu "exit $rc: $out"; fi
    skip bench_train_cuda_runs_on_the_gpu "no CUDA device: nvidia-smi -L lists no GPU"
else
    out=$(cd "$ROOT" && timeout -k 5 600 bin-cuda/bench_train --device=cuda --n_layer=2 --steps=3 \
          --seq_len=256 --micro_batch=4 --precision=bf16 2>&1); rc=$?
    line=$(grep '^CUDA_BENCH ' <<<"$out")
    # tokens/s and the cuBLAS rate positive; the model cannot beat cuBLAS on its own GEMMs
    # by much (its GEMMs are most of its FLOPs): efficiency in (0, 1.5]; memory positive
    if [ "$rc" -eq 0 ] && awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] } }
           END { exit !(f["tokens_s"] > 0 && f["cublas_gflops"] > 0 && f["cublas_eff"] > 0 &&
                        f["cublas_eff"] <= 1.5 && f["device_peak_mib"] > 0) }' <<<"$line"
    then pass bench_train_cuda_runs_on_the_gpu
    else fail bench_train_cuda_runs_on_the_gpu "exit $rc: $(tail -n 3 <<<"$out")"; fi
fi

test_summary

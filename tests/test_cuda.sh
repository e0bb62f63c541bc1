#!/usr/bin/env bash
# test_cuda.sh — whole training steps on the GPU: bin-cuda/trident --device=cuda against
# the same binary's CPU backend (--device=cpu, the reference) on the tiny model, 20 steps,
# the loss of every step compared. 1 rank in fp32 and bf16; with 2 GPUs also dp = 2 (flat,
# hierarchical over two emulated nodes, zero = 1, bf16 on the wire), tp = 2 and pp = 2,
# which move device buffers by NCCL (src/comm_nccl.c) in every way the trainer does.
#
# Tolerances, relative to the CPU run's loss at each step:
#   fp32  2e-3: both sides compute in fp32 but sum in other orders (cuBLAS's GEMM tiling,
#         NCCL's ring against MPI's reduction), and the GPU may run fp32 GEMMs on TF32
#         tensor cores (10-bit mantissa, ~5e-4 relative per product sum); over 20 steps
#         the losses of the tiny model stay within 1e-3 of each other, so 2e-3 leaves
#         room, while a wrong kernel or a lost gradient bucket is off by far more (the
#         loss falls from 5.56 to 3.59 in those steps; a learning rate 10 % off already
#         moves it by 3e-3 by step 4).
#   bf16  3e-2: every activation is rounded to 8 bits of mantissa (~4e-3 relative), in
#         places that differ between the CPU kernels and the fused CUDA ones; the CPU's
#         own bf16 curve is within ~1 % of its fp32 one (test_mixed.sh), and the two bf16
#         curves are held to three times that (a doubled learning rate is 3.3 % off by
#         step 6).
#
# Without bin-cuda/trident (make BACKEND=cuda) or without a GPU (nvidia-smi lists none),
# every case is skipped by name; a case that needs 2 GPUs is skipped where there is one.
source "$(dirname "$0")/lib.sh"

CUDA_BIN="$ROOT/bin-cuda/trident"
CASES=(fp32_1rank bf16_1rank fp32_dp2 bf16_dp2 fp32_dp2_hier fp32_dp2_zero1 bf16_dp2_wire
       fp32_tp2 fp32_pp2)

n_gpus=0
why=""
if [ ! -x "$CUDA_BIN" ]; then
    why="bin-cuda/trident is not built (make BACKEND=cuda)"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
    why="no CUDA device: nvidia-smi is not installed"
else
    n_gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    [ "$n_gpus" -gt 0 ] || why="no CUDA device: nvidia-smi lists no GPU"
fi
if [ -n "$why" ]; then
    for c in "${CASES[@]}"; do skip "cuda_step_$c" "$why"; done
    test_summary
    exit
fi

# the data, prepared by whichever trident is built (the CPU one when both are)
[ -x "$TRIDENT" ] || TRIDENT=$CUDA_BIN
DATA=$(sample_data)
BASE=(train "$ROOT/inputs/tiny.conf" --data="$DATA" --resume=none --eval_every=0
      --steps=20 --log_every=1)

# run NAME DEVICE NP ARGS...: one run of bin-cuda/trident into $TEST_TMP/NAME.DEVICE
run() {
    local name=$1 dev=$2 np=$3
    shift 3
    timeout -k 5 "${TRIDENT_RUN_TIMEOUT:-300}" mpirun --oversubscribe -np "$np" "$CUDA_BIN" \
        "${BASE[@]}" --device="$dev" --run_dir="$TEST_TMP/$name.$dev" "$@" \
        >"$TEST_TMP/$name.$dev.log" 2>&1
}

# case NAME NP TOL ARGS...: the CUDA run's losses within TOL of the CPU run's
case_() {
    local name=$1 np=$2 tol=$3
    shift 3
    if [ "$np" -gt "$n_gpus" ]; then
        skip "cuda_step_$name" "needs $np GPUs, this machine has $n_gpus"
        return
    fi
    if ! run "$name" cpu "$np" "$@"; then
        fail "cuda_step_$name" "the CPU run failed: $(tail -n 3 "$TEST_TMP/$name.cpu.log")"
        return
    fi
    if ! run "$name" cuda "$np" "$@"; then
        if grep -qi "no CUDA device" "$TEST_TMP/$name.cuda.log"; then
            skip "cuda_step_$name" "no CUDA device: $(grep -i -m1 'no CUDA device' \
                "$TEST_TMP/$name.cuda.log")"
        else
            fail "cuda_step_$name" "the CUDA run failed: $(tail -n 3 "$TEST_TMP/$name.cuda.log")"
        fi
        return
    fi
    local diff
    if diff=$(same_losses "$TEST_TMP/$name.cuda" "$TEST_TMP/$name.cpu" "$tol"); then
        pass "cuda_step_$name"
    else
        fail "cuda_step_$name" "losses differ beyond $tol: $(head -n 3 <<<"$diff")"
    fi
}

case_ fp32_1rank 1 2e-3 --precision=fp32
case_ bf16_1rank 1 3e-2 --precision=bf16
case_ fp32_dp2 2 2e-3 --dp=2 --precision=fp32 --allreduce=flat
case_ bf16_dp2 2 3e-2 --dp=2 --precision=bf16 --allreduce=flat
# two emulated nodes of one rank: node-local reduce-scatter, cross-node all-reduce,
# node-local all-gather (dp_node, dp_cross)
TRIDENT_RANKS_PER_NODE=1 case_ fp32_dp2_hier 2 2e-3 --dp=2 --precision=fp32 --allreduce=hier
case_ fp32_dp2_zero1 2 2e-3 --dp=2 --precision=fp32 --zero=1
case_ bf16_dp2_wire 2 3e-2 --dp=2 --precision=fp32 --grad_reduce=bf16
case_ fp32_tp2 2 2e-3 --tp=2 --precision=fp32
case_ fp32_pp2 2 2e-3 --pp=2 --precision=fp32 --grad_accum=4 --micro_batch=2
test_summary

#!/usr/bin/env bash
# demo.sh — the main job end to end on one machine: install what is missing, build,
# turn Debian's fortunes into a token file, train the demo model (inputs/small.conf) on
# 8 MPI ranks as data 2 × tensor 2 × pipeline 2, then evaluate it and print a sample.
#
#   slurm/demo.sh [NP] [--key=value ...]      (NP = 8 by default; other counts get a
#                                              layout derived from the rank count)
set -euo pipefail
cd "$(dirname "$0")/.."
NP=8
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then NP=$1; shift; fi

slurm/install_deps.sh
make -j"$(nproc)" >/dev/null
if [ ! -f data/fortunes.h5 ]; then
    mkdir -p data
    bin/trident prep --out data/fortunes.h5 --split-on % /usr/share/games/fortunes
fi

# Layout: 2×2×2 on 8 ranks; otherwise let trident derive it (dp takes the rest).
LAYOUT=()
case "$NP" in
    8) LAYOUT=(--dp=2 --tp=2 --pp=2) ;;
    4) LAYOUT=(--dp=1 --tp=2 --pp=2) ;;
    2) LAYOUT=(--dp=1 --tp=1 --pp=2) ;;
esac
# More ranks than cores is fine for a demo (not for timing): ranks yield while waiting.
export OMPI_MCA_mpi_yield_when_idle=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) >= NP ? $(nproc) / NP : 1 ))}
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

# slurm/mpirun.sh: Ctrl-C finishes the step, writes a checkpoint and exits 75 (run the
# demo again to continue) instead of mpirun killing the ranks mid-step
slurm/mpirun.sh -np "$NP" bin/trident train inputs/small.conf "${LAYOUT[@]}" "$@"
RUN_DIR=runs/small
for a in "$@"; do case "$a" in --run_dir=*) RUN_DIR=${a#--run_dir=} ;; esac; done
echo
bin/trident eval --ckpt "$RUN_DIR"
echo
echo "--- a sample from the trained model (bin/trident sample --ckpt $RUN_DIR) ---"
bin/trident sample --ckpt "$RUN_DIR" --prompt "The " --length 400 --temperature 0.8

#!/usr/bin/env bash
# install_deps.sh — install the Debian/Ubuntu packages trident needs to build, test and
# run (with Slurm), if any is missing. As root it runs apt-get; otherwise it uses sudo
# when available, or prints the exact command to run.
set -euo pipefail
PACKAGES=(gcc g++ libc6-dev make pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev
          hdf5-tools libopenblas-openmp-dev libdnnl-dev fortunes gnuplot-nox slurm-wlm munge
          procps)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
line="apt-get install -y --no-install-recommends ${missing[*]}"
echo "trident: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then SUDO=""
elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"
else
    echo "trident: error: missing packages and no root rights." >&2
    echo "HINT: as root, run: apt-get update && $line" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive $line >/dev/null
echo "trident: packages installed"

#!/bin/bash
# GPU check (issue 13): on a machine with an NVIDIA GPU, runs `nvidia-smi -L` and a CUDA allocation,
# PTX module load and kernel launch (the driver API from ctypes: bench/gpu_check.py) inside a
# `proctor exec` experiment sandbox with `gpus = 1`, then times sandbox starts with and without
# `gpus`. Usage: bash bench/gpu_check.sh [-n RUNS]   (PROCTOR_BIN=... skips the build)
#
# Exit status: 0 every check passed; 1 a check failed; 77 no NVIDIA GPU here (nothing was checked,
# which it says on stdout).
set -euo pipefail
if [ ! -c /dev/nvidiactl ] || ! ls /dev/nvidia[0-9]* >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU on this machine (no /dev/nvidiactl or /dev/nvidiaN): nothing checked"
    exit 77
fi
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_build
exec python3 "$BENCH_DIR/gpu_check.py" "$@"

#!/bin/bash
# Scale benchmark: proctor's cost per iteration at 1,000 and 100,000 tracked files.
# Usage: bash bench/scale.sh [--files 1000,100000] [-n ITERATIONS] [--rounds R] [--data-mib M] [--check RATIO]
#   (PROCTOR_BIN=... skips the build)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_install
bench_build
exec python3 "$BENCH_DIR/scale.py" "$@"

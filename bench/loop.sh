#!/bin/bash
# Research-loop benchmark: proctor's overhead per iteration against an equivalent bash loop.
# Usage: bash bench/loop.sh [-n ITERATIONS] [--rounds R] [--warmup W]   (PROCTOR_BIN=... skips the build)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_install
bench_build
exec python3 "$BENCH_DIR/loop.py" "$@"

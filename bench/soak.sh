#!/bin/bash
# Reliability benchmark (issue 10), see bench/README.md.
# Usage: bash bench/soak.sh [ARGS of bench/soak.py]   (PROCTOR_BIN=... skips the build, e.g. a debug build in CI)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_install
bench_build
exec python3 "$BENCH_DIR/soak.py" "$@"

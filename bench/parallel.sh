#!/bin/bash
# Several experiments at once (issue 13), see bench/README.md.
# Usage: bash bench/parallel.sh [ARGS of bench/parallel.py]   (PROCTOR_BIN=... skips the build, e.g. a debug build in CI)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_install
bench_build
exec python3 "$BENCH_DIR/parallel.py" "$@"

#!/bin/bash
# Spawn benchmark: /bin/true under bare, bwrap, `proctor exec` and the launcher alone.
# Usage: bash bench/spawn.sh [-n RUNS] [--warmup ROUNDS] [--ablate] [-- CMD ARG...]   (PROCTOR_BIN=... skips the build)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_install
bench_build
exec python3 "$BENCH_DIR/spawn.py" "$@"

#!/bin/bash
# Bad input, fuzzed: malformed proctor.toml files, HTTP-agent answers and proctor-sandbox argv.
# Usage: bash bench/fuzz.sh [--seed S] [-n N] [--class toml|answer|argv|all]
# Uses the debug build with its tests (`swift build --build-tests`; PROCTOR_BIN=... skips the build,
# PROCTOR_XCTEST names the test bundle for the answer class).
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
if [ -z "${PROCTOR_BIN:-}" ]; then
    echo "fuzz: swift build --build-tests (debug, incremental)" >&2
    (cd "$REPO_DIR" && swift build --build-tests >&2)
    PROCTOR_BIN="$(cd "$REPO_DIR" && swift build --show-bin-path)/proctor"
fi
export PROCTOR_BIN
exec python3 "$BENCH_DIR/fuzz.py" "$@"

#!/bin/bash
# Research-memory benchmark: what the memory update (duplicate check, ResearchMemory.add, the three
# renders and the LOG.md entry, then the stored patch and the changed .md files) costs per iteration
# at 1,000 ledger rows, in a release build, against the loop's own overhead per iteration.
# Usage: bash bench/memory.sh [--rounds R] [-n ITERATIONS] [--loop-overhead-ms MS]
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
command -v swift >/dev/null 2>&1 || { echo "bench: swift is missing; run the README's set-up command first" >&2; exit 1; }
# The measurement is an opt-in case of the test target (MemoryTests.testBenchmarkMemoryUpdate), built
# in release with testing enabled, in a scratch path of its own so that .build stays a debug build.
echo "bench: swift build -c release --build-tests -Xswiftc -enable-testing --scratch-path .build-release (incremental)" >&2
(cd "$REPO_DIR" && swift build -c release --build-tests -Xswiftc -enable-testing --scratch-path "$REPO_DIR/.build-release" >&2)
exec python3 "$BENCH_DIR/memory.py" "$@"

#!/bin/bash
# Search benchmark: the search agent (tpe) against mutate and Optuna's TPESampler.
# Usage: bash bench/search.sh [--reps 5] [--budget 100] [--objectives bundled,smooth,noisy] [--bundled-budget N]
#   (PROCTOR_BIN=... skips the build; OPTUNA_VENV=... where Optuna is installed, by pip, for this bench only)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_install
bench_build
OPTUNA_VENV="${OPTUNA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/proctor-bench-optuna}"
if ! "$OPTUNA_VENV/bin/python" -c "import optuna" 2>/dev/null; then
    echo "bench: installing optuna into $OPTUNA_VENV" >&2
    python3 -m venv "$OPTUNA_VENV" >&2
    "$OPTUNA_VENV/bin/pip" install -q optuna >&2
fi
export OPTUNA_PYTHON="$OPTUNA_VENV/bin/python"
exec python3 "$BENCH_DIR/search.py" "$@"

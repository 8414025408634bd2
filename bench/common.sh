# Sourced by bench/spawn.sh and bench/loop.sh: installs what is missing (Debian 12, as root or
# with sudo) and builds proctor in release mode unless PROCTOR_BIN points at a build.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"

bench_install() {
    local missing=() cmd pkg
    for pair in bwrap:bubblewrap git:git python3:python3 timeout:coreutils strace:strace; do
        cmd=${pair%%:*} pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "bench: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
}

# Sets PROCTOR_BIN (and PROCTOR_SANDBOX_BIN) to release binaries.
bench_build() {
    if [ -n "${PROCTOR_BIN:-}" ]; then
        PROCTOR_SANDBOX_BIN="${PROCTOR_SANDBOX_BIN:-$(dirname "$PROCTOR_BIN")/proctor-sandbox}"
    else
        if ! command -v swift >/dev/null 2>&1; then
            echo "bench: swift is missing; run the README's set-up command first, or set PROCTOR_BIN" >&2
            exit 1
        fi
        # As shipped: the Swift runtime and Foundation linked statically (about half of proctor's
        # start-up was the dynamic linker and runtime look-ups across their shared libraries).
        # A scratch path of its own, so that switching with a plain `swift build -c release`
        # in .build does not rebuild everything each time.
        echo "bench: swift build -c release --static-swift-stdlib --scratch-path .build-static (incremental)" >&2
        (cd "$REPO_DIR" && swift build -c release --static-swift-stdlib --scratch-path "$REPO_DIR/.build-static" >&2)
        PROCTOR_BIN="$REPO_DIR/.build-static/release/proctor"
        PROCTOR_SANDBOX_BIN="$REPO_DIR/.build-static/release/proctor-sandbox"
    fi
    for b in "$PROCTOR_BIN" "$PROCTOR_SANDBOX_BIN"; do
        [ -x "$b" ] || { echo "bench: $b is missing" >&2; exit 1; }
    done
    export PROCTOR_BIN PROCTOR_SANDBOX_BIN
}

#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 machine or a developer's: installs what it
# needs (Debian's chromium and firefox-esr for the browser tests, nftables for the
# network fault tests, the Python test dependencies), builds the extension, then runs the Rust and Python lint, type checks
# and every test.
#
#   make test            # or: bash scripts/test.sh
#   PYTEST_ARGS="-k interop" make test
set -euo pipefail
cd "$(dirname "$0")/.."

# The project's venv (.venv/, created if missing) unless PYTHON names another interpreter.
PYTHON="$(bash scripts/python.sh)"
export PYTHON
# The interpreter's scripts (the `fastwt` command, maturin) come first on PATH, as in an
# activated venv: the CLI tests run the installed `fastwt` script.
PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
export PYTHONDONTWRITEBYTECODE=1

started=$SECONDS
step() { printf '\n==> [%4ss] %s\n' "$((SECONDS - started))" "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "need root for: $*" >&2; return 1; fi
}

step "system packages (chromium and firefox-esr for the browser tests, nftables, redis-server)"
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/firefox-esr ] || missing+=(firefox-esr)
# nft in a private network namespace drops packets for tests/robustness/test_network_faults.py
[ -x /usr/sbin/nft ] || missing+=(nftables)
# a real Redis for the cluster tests (tests/cluster: rooms across nodes, shared rate limits)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    echo "installed: ${missing[*]}"
elif [ ${#missing[@]} -gt 0 ]; then
    echo "no apt-get: the tests that need ${missing[*]} will be skipped (outside CI)"
fi
for browser in /usr/bin/chromium /usr/bin/firefox-esr; do
    if [ -x "$browser" ]; then
        echo "$browser: $("$browser" --version 2>/dev/null | head -n1)"
    fi
done
if [ -x /usr/sbin/nft ]; then
    echo "/usr/sbin/nft: $(/usr/sbin/nft --version 2>/dev/null | head -n1)"
fi
if [ -x /usr/bin/redis-server ]; then
    echo "/usr/bin/redis-server: $(/usr/bin/redis-server --version 2>/dev/null | head -n1)"
fi

step "python: test dependencies and the extension (release build, editable install)"
bash scripts/install.sh --test

step "interop peers: pywebtransport 0.21.1 and 0.20.1 (Python 3.12 venvs in .venv-peers/)"
if ! bash scripts/peers.sh; then
    echo "interop peers missing: their tests skip here and fail in CI" >&2
fi

# The checks below all run, even after one fails, so that one report shows every
# problem; the script fails at the end if any did. pytest runs last, so that its
# summary is the last line of the output.
failed=()
check() {
    local name=$1
    shift
    step "$name"
    if ! "$@"; then
        failed+=("$name")
        echo "FAILED: $name" >&2
    fi
}

check "rust: cargo fmt --check" cargo fmt --all --check -- --color never
check "rust: cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
check "rust: cargo test -p fastwt-core" cargo test -p fastwt-core
# the benchmark's own Rust (standalone crate): its fan-out client's counting has tests;
# release, so the suite's short mode reuses what this builds
check "rust: benches/rust-ceiling fmt + cargo test" bash -c \
    'cd benches/rust-ceiling && cargo fmt --check -- --color never && cargo test --release -q'
check "python: ruff check" "$PYTHON" -m ruff check .
check "python: ruff format --check" "$PYTHON" -m ruff format --check .
check "python: mypy --strict" "$PYTHON" -m mypy
if [ -f python/fastwt/_core.pyi ]; then
    check "python: stubtest fastwt._core" "$PYTHON" -m mypy.stubtest fastwt._core
fi

if [ ${#failed[@]} -gt 0 ]; then
    step "failed so far: ${failed[*]}"
fi
step "python: pytest tests (and the benchmark suite's short mode)"
# pytest-timeout (120 s a test, pyproject.toml) cannot interrupt a thread stuck in
# native code while holding the GIL; this outer limit can. SIGABRT makes Python's
# faulthandler (on under pytest) print every thread's stack before the process ends.
hard_limit="${PYTEST_HARD_TIMEOUT:-2700}"
set +e
# shellcheck disable=SC2086
timeout --signal=ABRT --kill-after=30 "$hard_limit" "$PYTHON" -m pytest tests benches/test_bench_quick.py ${PYTEST_ARGS:-}
rc=$?
set -e
if [ "$rc" = 124 ] || [ "$rc" = 134 ] || [ "$rc" = 137 ]; then
    echo "pytest did not finish within ${hard_limit}s (exit $rc): stacks above" >&2
fi
if [ "$rc" = 5 ]; then
    echo "warning: pytest collected no tests" >&2
    rc=0
fi
if [ "$rc" = 0 ] && [ ${#failed[@]} -gt 0 ]; then
    rc=1
fi
exit "$rc"

#!/usr/bin/env bash
# Prints the Python interpreter the project's scripts use, creating it first if needed.
#
# By default that is the project's own virtual environment, `.venv/` at the repository
# root, made from the system's `python3` (or $BASE_PYTHON). The system interpreter itself
# is never installed into: Debian 12 and Ubuntu mark it externally managed (PEP 668) and
# `pip install` into it fails. When `venv` is missing (Debian ships it as the separate
# `python3-venv` package), it is installed with apt-get, as the test script does for
# chromium. `PYTHON=/path/to/python` skips all of this and uses that interpreter as is.
#
#   PY="$(bash scripts/python.sh)"
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if [ -n "${PYTHON:-}" ]; then
    command -v "$PYTHON"
    exit 0
fi

venv="$root/.venv"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    echo "$venv/bin/python"
    exit 0
fi

say() { echo "scripts/python.sh: $*" >&2; }
base="${BASE_PYTHON:-python3}"
if ! command -v "$base" >/dev/null; then
    say "no $base on PATH: install Python 3.11 or newer (Debian: apt-get install python3)"
    exit 1
fi
if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "$base is $("$base" --version 2>&1); fastwt needs Python 3.11 or newer (BASE_PYTHON=...)"
    exit 1
fi

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else say "need root for: $*"; return 1; fi
}

make_venv() { rm -rf "$venv"; "$base" -m venv "$venv" >&2; }

if ! make_venv 2>/dev/null; then
    # Debian and Ubuntu split venv/ensurepip off into python3-venv (and python3.X-venv).
    if ! command -v apt-get >/dev/null; then
        say "$base -m venv failed and there is no apt-get: install your system's venv package"
        exit 1
    fi
    ver="$("$base" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    say "$base has no working venv module: installing python3-venv (python$ver-venv)"
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv "python$ver-venv" >&2 ||
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >&2
    make_venv
fi
say "created $venv from $(command -v "$base") ($("$base" --version 2>&1))"
echo "$venv/bin/python"

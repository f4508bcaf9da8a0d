#!/usr/bin/env bash
# The interop peers of tests/interop/test_pywebtransport.py, idempotently, in venvs under
# .venv-peers/ (git-ignored): pywebtransport 0.21.1 (draft-15) and 0.20.1, which need
# Python 3.12+ (PyPI offers Python 3.11 only 0.8.1). The interpreter is $PY312, else
# pyenv's 3.12 (e.g. /root/.pyenv/versions/3.12.1), else python3.12/python3.13 on PATH.
# Without one the script says so and fails; the tests then skip (and fail in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

find_py312() {
    local cand root
    if [ -n "${PY312:-}" ] && [ -x "${PY312}" ]; then echo "$PY312"; return 0; fi
    root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
    for cand in "$root"/versions/3.12*/bin/python3.12 "$root"/versions/3.13*/bin/python3.13; do
        if [ -x "$cand" ]; then echo "$cand"; return 0; fi
    done
    for cand in python3.12 python3.13; do
        if command -v "$cand" >/dev/null 2>&1; then command -v "$cand"; return 0; fi
    done
    return 1
}

if ! PY=$(find_py312); then
    echo "no Python 3.12+ found (set PY312=/path/to/python3.12): pywebtransport peers not made" >&2
    exit 1
fi
echo "peers: $PY ($("$PY" --version 2>&1))"
for spec in pwt021:0.21.1 pwt020:0.20.1; do
    name="${spec%%:*}"
    version="${spec#*:}"
    dir=".venv-peers/$name"
    have=$("$dir/bin/python" -c 'import pywebtransport; print(pywebtransport.__version__)' 2>/dev/null || true)
    if [ "$have" = "$version" ]; then
        echo "peers: $dir has pywebtransport $version"
        continue
    fi
    [ -x "$dir/bin/python" ] || "$PY" -m venv "$dir"
    "$dir/bin/python" -m pip install --disable-pip-version-check -q "pywebtransport==$version"
    echo "peers: $dir: pywebtransport $("$dir/bin/python" -c 'import pywebtransport; print(pywebtransport.__version__)')"
done

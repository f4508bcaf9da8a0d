#!/usr/bin/env bash
# Build the Rust extension and install fastwt into the project's virtual environment
# (`.venv/`, made by scripts/python.sh; `PYTHON=...` picks another interpreter),
# editable (python/fastwt is imported from the work tree; the compiled fastwt._core
# lands beside it). With --test, also install the test dependencies from pyproject.toml.
#
# Cargo's target directory is kept between runs (target/ or $CARGO_TARGET_DIR), so a
# rebuild after a small change takes seconds, not the minutes of a cold release build.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="$(bash scripts/python.sh)"
extras=""
if [ "${1:-}" = "--test" ]; then
    extras="[test]"
fi

echo "python: $PYTHON ($("$PYTHON" --version 2>&1))"
# maturin's build hook runs the `maturin` command: find the one installed below in the
# interpreter's own scripts directory, which is not on PATH when the venv is not active.
PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
pip_install() { "$PYTHON" -m pip install --disable-pip-version-check -q "$@"; }

# maturin must be importable by pip without build isolation, so that the build runs
# in this interpreter and reuses the warm cargo target directory.
if ! "$PYTHON" -c 'import maturin' 2>/dev/null; then
    pip_install 'maturin>=1.9,<2'
fi
pip_install --no-build-isolation -e ".${extras}"
"$PYTHON" -c 'import fastwt._core' >/dev/null

#!/usr/bin/env bash
# Set up the reference targets of the benchmark suite, idempotently, under benches/.venvs/
# (git-ignored):
#
#   .venvs/pwt020  pywebtransport, newest 0.20.x (Rust core; the reference)      Python 3.12+
#   .venvs/pwt011  pywebtransport, newest 0.11.x (last pure-Python, on aioquic)  Python 3.12+
#   .venvs/tools   matplotlib, cryptography, py-spy: plots, the test certificate, profiles (3.11+)
#   .venvs/cert.pem, .venvs/key.pem   self-signed ECDSA P-256 certificate for the references
#   .venvs/targets.txt                one line per target: "<name> ok <python>" or "<name> missing <why>"
#
# Both pywebtransport lines declare Requires-Python >=3.12 on PyPI (Python 3.11 is offered only
# 0.8.1), and 0.11.1 uses 3.12-only syntax, so both venvs need a 3.12+ interpreter. It is looked
# for in $PY312, then pyenv's versions, then python3.12/python3.13 on PATH. When there is none,
# the script says so, and run.py records "reference not available" instead of failing.
#
# Also builds the raw-Rust ceiling (benches/rust-ceiling) unless SKIP_CEILING=1.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENVS="$HERE/.venvs"
STATUS="$VENVS/targets.txt"
mkdir -p "$VENVS"
: > "$STATUS.tmp"

say() { printf '[setup] %s\n' "$*"; }

find_py312() {
  local cand
  if [[ -n "${PY312:-}" && -x "${PY312}" ]]; then echo "$PY312"; return 0; fi
  if command -v pyenv >/dev/null 2>&1; then
    local root
    root="$(pyenv root 2>/dev/null || true)"
    for cand in "$root"/versions/3.1[2-9]*/bin/python3.1[2-9]; do
      [[ -x "$cand" ]] && { echo "$cand"; return 0; }
    done
  fi
  for cand in python3.12 python3.13 python3.14; do
    if command -v "$cand" >/dev/null 2>&1; then command -v "$cand"; return 0; fi
  done
  return 1
}

# venv_with NAME PYTHON PIP-SPEC...: create (or reuse) a venv and install the specs into it.
venv_with() {
  local name="$1" py="$2"
  shift 2
  local dir="$VENVS/$name"
  if [[ ! -x "$dir/bin/python" ]]; then
    say "creating $dir with $py"
    "$py" -m venv "$dir" || return 1
  fi
  say "installing into $name: $*"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@" || return 1
}

# --- the two pywebtransport references ------------------------------------------------------
if PY=$(find_py312); then
  say "Python 3.12+ found: $PY ($("$PY" --version 2>&1))"
  for spec in "pwt020:pywebtransport>=0.20,<0.21" "pwt011:pywebtransport>=0.11,<0.12"; do
    name="${spec%%:*}"
    req="${spec#*:}"
    if venv_with "$name" "$PY" "$req" "cryptography>=42"; then
      ver=$("$VENVS/$name/bin/python" -c 'import importlib.metadata as m; print(m.version("pywebtransport"))' 2>/dev/null)
      if [[ -n "$ver" ]]; then
        say "$name: pywebtransport $ver"
        echo "$name ok $VENVS/$name/bin/python $ver" >> "$STATUS.tmp"
      else
        echo "$name missing pywebtransport-did-not-import" >> "$STATUS.tmp"
      fi
    else
      say "$name: install failed"
      echo "$name missing pip-install-failed" >> "$STATUS.tmp"
    fi
  done
else
  say "NO Python 3.12+ on this machine: pywebtransport 0.11.x/0.20.x need it (PyPI gives 3.11 only 0.8.1)."
  say "Set PY312=/path/to/python3.12 and re-run; the suite records 'reference not available'."
  echo "pwt020 missing no-python-3.12" >> "$STATUS.tmp"
  echo "pwt011 missing no-python-3.12" >> "$STATUS.tmp"
fi

# --- tools venv: plots and certificates --------------------------------------------------------
TOOLS_PY="$(command -v python3.11 || command -v python3)"
if venv_with tools "$TOOLS_PY" "matplotlib>=3.7" "cryptography>=42" "py-spy>=0.3"; then
  echo "tools ok $VENVS/tools/bin/python" >> "$STATUS.tmp"
else
  echo "tools missing pip-install-failed" >> "$STATUS.tmp"
fi

# --- certificate for the references ------------------------------------------------------------
if [[ ! -s "$VENVS/cert.pem" || -n "$(find "$VENVS/cert.pem" -mtime +5 2>/dev/null)" ]]; then
  for py in "$VENVS/tools/bin/python" "$VENVS/pwt020/bin/python" python3; do
    if "$py" "$HERE/targets/gen_cert.py" "$VENVS/cert.pem" "$VENVS/key.pem" > "$VENVS/cert.sha256" 2>/dev/null; then
      say "certificate written ($(cat "$VENVS/cert.sha256"))"
      break
    fi
  done
fi

# --- the raw-Rust ceiling ------------------------------------------------------------------------
if [[ "${SKIP_CEILING:-0}" != "1" ]]; then
  say "building benches/rust-ceiling (release)"
  if (cd "$HERE/rust-ceiling" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HERE/../target}" \
        cargo build --release -j 2 -q); then
    echo "rust ok" >> "$STATUS.tmp"
  else
    echo "rust missing cargo-build-failed" >> "$STATUS.tmp"
  fi
fi

mv "$STATUS.tmp" "$STATUS"
say "status:"
sed 's/^/[setup]   /' "$STATUS"

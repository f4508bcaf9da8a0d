"""Interop peers that run in venvs of their own: pywebtransport 0.21.1 (draft-15) and
0.20.1, which need Python 3.12+. ``scripts/test.sh`` makes the venvs under
``.venv-peers/`` (git-ignored); without them the tests skip, except in CI, where they
fail (like the browser tests)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

REPO = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).resolve().parent / "peers"
VENVS = REPO / ".venv-peers"

PWT = {"0.21.1": "pwt021", "0.20.1": "pwt020"}


def peer_python(version: str) -> str:
    """The interpreter of the venv that has pywebtransport ``version``; skips (fails in
    CI) when it is missing or holds another version."""
    python = VENVS / PWT[version] / "bin" / "python"
    problem = None
    if not python.exists():
        problem = f"{python} missing (scripts/test.sh creates it)"
    else:
        found = subprocess.run(
            [str(python), "-c", "import pywebtransport; print(pywebtransport.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if found != version:
            problem = f"{python} has pywebtransport {found or 'not installed'}, not {version}"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"interop peers must run in CI: {problem}", pytrace=False)
        pytest.skip(problem)
    return str(python)


async def run_json_script(python: str, script: str, *args: str) -> Any:
    """Runs ``peers/<script>`` (at most a minute) and parses the JSON object it prints
    last."""
    with anyio.fail_after(60):
        done = await anyio.run_process(
            [python, str(PEERS / script), *args], check=False, stderr=subprocess.STDOUT
        )
    output = done.stdout.decode(errors="replace")
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"{script} printed no JSON (exit {done.returncode}):\n{output}")

"""A Python snippet run in a fresh interpreter, for state that is made once per process
(the I/O runtime, its spin sites, who drives it): the snippet prints one line
``<MARKER> <json>`` and the caller gets the JSON back."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_reporting(script: str, env: dict[str, str], marker: str, timeout: float) -> dict[str, Any]:
    """Runs ``script`` with ``env``; the JSON of its last line starting with ``marker``.
    Fails the test with the child's stderr when it exits with an error."""
    p = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    line = [ln for ln in p.stdout.splitlines() if ln.startswith(marker + " ")][-1]
    result: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    return result

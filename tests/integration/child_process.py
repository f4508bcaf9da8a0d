"""A Python snippet run in a fresh interpreter, for state that is made once per process
(the I/O runtime, its spin sites, who drives it): the snippet prints one line
``<MARKER> <json>`` and the caller gets the JSON back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
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


def thread_cpu_ns(pid: int) -> dict[str, int]:
    """On-CPU nanoseconds of each thread of process ``pid``, summed by thread name
    (``/proc``: a test's child reports its own with ``os.getpid()``)."""
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            ns = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
        out[name] = out.get(name, 0) + ns
    return out

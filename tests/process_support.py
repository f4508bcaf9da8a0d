"""Subprocesses whose output tests wait on: ``python -m fastwt ...`` (the
``fastwt_cli`` fixture of tests/conftest.py) and the example scripts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import pytest

__all__ = ["CliProcess", "OutputProcess", "PythonScript"]


class OutputProcess:
    """A subprocess (stdin closed, stderr merged into stdout, Python unbuffered) whose
    output is collected line by line from a thread."""

    def __init__(self, argv: Sequence[str], *, label: str) -> None:
        self.label = label
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """The first output line matching ``pattern``; fails with the whole output if
        the process ends or ``timeout`` passes first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if match := regex.search(line):
                        return match
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._reader.is_alive():
                    pytest.fail(
                        f"{self.label}: no line matching {pattern!r} "
                        f"(exit status {self.proc.poll()}); output:\n{''.join(self.lines)}",
                        pytrace=False,
                    )
                self._changed.wait(min(remaining, 0.5))

    def stop(self, timeout: float = 20) -> int:
        """Ctrl-C, then the exit status (killed after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


class CliProcess(OutputProcess):
    """``python -m fastwt ARGS`` in a subprocess."""

    def __init__(self, *args: str) -> None:
        self.args = args
        super().__init__([sys.executable, "-m", "fastwt", *args], label=f"fastwt {' '.join(args)}")


class PythonScript(OutputProcess):
    """``python SCRIPT ARGS`` in a subprocess."""

    def __init__(self, script: str | os.PathLike[str], *args: str) -> None:
        super().__init__(
            [sys.executable, os.fspath(script), *args], label=f"{script} {' '.join(args)}"
        )

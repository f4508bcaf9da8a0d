"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test once on asyncio and once on trio."""
    return str(request.param)


class CliProcess:
    """``python -m fastwt ARGS`` in a subprocess, its output collected line by line."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastwt", *args],
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
                        f"fastwt {' '.join(self.args)}: no line matching {pattern!r} "
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


@pytest.fixture
def fastwt_cli() -> Iterator[Callable[..., CliProcess]]:
    """Start ``python -m fastwt ...`` processes; any still running at teardown are
    stopped."""
    started: list[CliProcess] = []

    def start(*args: str) -> CliProcess:
        process = CliProcess(*args)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()

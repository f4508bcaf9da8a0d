"""Helpers of the cluster tests: a real ``redis-server`` (Debian's package) on a Unix
socket, and cluster nodes as separate processes (``node_app.py``). The fixtures are in
this directory's conftest.py."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from process_support import OutputProcess

__all__ = ["NODE_APP", "Node", "RedisServer"]

NODE_APP = Path(__file__).with_name("node_app.py")


class RedisServer:
    """``redis-server`` on a Unix socket (``--port 0``: no TCP), no persistence. Can be
    stopped and started again on the same socket (a restart loses every key, as a
    Redis without persistence does)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start (exit status {self.proc.poll()})")
            time.sleep(0.01)

    def stop(self) -> None:
        """SIGKILL (an abrupt outage, not a shutdown), then wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.socket.unlink(missing_ok=True)


@dataclass
class Node:
    """A running ``node_app.py`` process."""

    process: OutputProcess
    port: int
    cert_hash: str
    node_id: str

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def kill(self) -> None:
        self.process.proc.send_signal(signal.SIGKILL)
        self.process.proc.wait(10)

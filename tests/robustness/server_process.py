"""The robustness suite's server in its own process (peers/flood_server.py), so that its
memory and file descriptors are measured alone, with a client for its ``/live`` echo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from fastwt import ClientConfig, WebTransportClient

PEER = Path(__file__).with_name("peers") / "flood_server.py"


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    port: int
    certificate_hash: str
    stats: dict[str, int] = field(default_factory=dict)

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"VmRSS:\s+(\d+) kB", status)
        assert found is not None
        return int(found.group(1)) * 1024

    def fds(self) -> int:
        """Open file descriptors of the server process."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def client(self) -> WebTransportClient:
        trust = ClientConfig(server_certificate_hashes=[self.certificate_hash])
        return WebTransportClient(config=trust)

    async def live_echo(self) -> bytes:
        async with self.client() as client:
            with anyio.fail_after(10):
                session = await client.connect(url=f"https://127.0.0.1:{self.port}/live")
                stream = await session.create_bidirectional_stream()
                await stream.write(data=b"live", end_stream=True)
                data = await stream.read_all()
            await session.close()
            return data


@contextmanager
def server_process(
    mode: str = "unread", request_timeout: float = 10.0, idle_timeout: float = 30.0
) -> Iterator[ServerProcess]:
    """Starts the server (``mode``: what it does with ``/flood`` sessions) and stops it."""
    proc = subprocess.Popen(
        [sys.executable, str(PEER), mode, str(request_timeout), str(idle_timeout)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline().split()
    assert ready and ready[0] == "READY", ready
    server = ServerProcess(proc, int(ready[1]), ready[2])

    def read_stats() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("STATS "):
                server.stats = json.loads(line[6:])

    threading.Thread(target=read_stats, daemon=True).start()
    try:
        yield server
    finally:
        proc.kill()
        proc.wait()

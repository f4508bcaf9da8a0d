"""Garbage on the wire and clients that vanish: random UDP datagrams, thousands of
connections that never send CONNECT, and sessions whose client disappears without a
word. The server (in its own process) keeps its memory bounded and live clients get in."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import AsyncExitStack

import anyio
import pytest
from raw_client import raw_connection
from robustness_figures import long_mode, record
from server_process import server_process

pytestmark = pytest.mark.anyio

MIB = 1 << 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the raw aioquic clients run on asyncio


def send_garbage(port: int, count: int, per_second: int) -> None:
    """``count`` random datagrams of 1-1500 bytes (some shaped like QUIC long headers)."""
    rng = random.Random(1234)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        started = time.monotonic()
        for i in range(count):
            size = rng.randint(1, 1500)
            data = bytearray(rng.getrandbits(8) for _ in range(min(size, 64)))
            data += bytes(size - len(data))
            if i % 3 == 0:
                data[0] = 0xC0 | (data[0] & 0x0F)  # long header: Initial-looking
                data[1:5] = b"\x00\x00\x00\x01"  # QUIC v1
            try:
                sock.sendto(bytes(data), ("127.0.0.1", port))
            except OSError:
                pass  # the socket buffer is full: a dropped datagram is garbage too
            if i % 1000 == 999:
                ahead = (i + 1) / per_second - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        sock.close()


async def test_random_datagrams_cost_nothing_and_real_clients_still_echo(
    request: pytest.FixtureRequest,
) -> None:
    count = 1_000_000 if long_mode(request.config) else 100_000
    with server_process() as server:
        await anyio.sleep(0.3)
        before = server.rss()
        started = time.monotonic()
        await anyio.to_thread.run_sync(send_garbage, server.port, count, 50_000)
        took = time.monotonic() - started
        assert await server.live_echo() == b"live"
        grown = server.rss() - before
    record(
        "garbage on the wire",
        f"{count} random datagrams in {took:.1f} s; then a real client echoed; "
        f"RSS +{grown / MIB:.1f} MiB",
    )
    assert grown < 16 * MIB


async def test_connections_that_never_send_connect_are_bounded_and_cut_off(
    request: pytest.FixtureRequest,
) -> None:
    count = 1000 if long_mode(request.config) else 200
    with server_process(request_timeout=8.0) as server:
        await anyio.sleep(0.3)
        before = server.rss()
        async with AsyncExitStack() as stack:
            started = time.monotonic()
            for _ in range(count):
                await stack.enter_async_context(raw_connection(server.port))
            opened = time.monotonic() - started
            await anyio.sleep(0.4)  # a STATS line
            held = server.stats.get("handshakes", -1)
            grown = server.rss() - before
            assert await server.live_echo() == b"live"  # a live client still gets in
            with anyio.fail_after(15):
                while server.stats.get("handshakes", -1) != 0:
                    await anyio.sleep(0.1)
            cut = time.monotonic() - started
    record(
        "connections that never send CONNECT",
        f"{count} opened in {opened:.1f} s, {held} held at once, RSS +{grown / MIB:.1f} MiB "
        f"({grown / max(count, 1) / 1024:.0f} KiB each); live client got in; "
        f"all cut off by request_timeout (8 s) after {cut:.1f} s",
    )
    assert held == count


VANISHING = textwrap.dedent(
    """
    import sys
    import anyio
    from fastwt import ClientConfig, WebTransportClient

    async def main(port: int, digest: str, count: int) -> None:
        config = ClientConfig(server_certificate_hashes=[digest], max_idle_timeout=600)
        async with WebTransportClient(config=config) as client:
            sessions = [
                await client.connect(url=f"https://127.0.0.1:{port}/flood")
                for _ in range(count)
            ]
            print("CONNECTED", len(sessions), flush=True)
            await anyio.sleep_forever()

    anyio.run(main, int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
    """
)


def start_vanishing_clients(port: int, digest: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", VANISHING, str(port), digest, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_sessions_whose_clients_vanish_expire_and_live_clients_get_in(
    request: pytest.FixtureRequest,
) -> None:
    count = 500 if long_mode(request.config) else 100
    with server_process(idle_timeout=3.0) as server:
        client = start_vanishing_clients(server.port, server.certificate_hash, count)
        assert client.stdout is not None
        line = await anyio.to_thread.run_sync(client.stdout.readline)
        assert line.split() == ["CONNECTED", str(count)], line
        await anyio.sleep(0.4)
        assert server.stats["sessions"] == count
        os.kill(client.pid, signal.SIGKILL)  # vanish: no CONNECTION_CLOSE, nothing
        client.wait()
        assert await server.live_echo() == b"live"
        started = time.monotonic()
        # The server's idle timeout (3 s) ends them: the dead clients send nothing.
        with anyio.fail_after(15):
            while server.stats.get("sessions", -1) > 0:
                await anyio.sleep(0.2)
        gone = time.monotonic() - started
    record(
        "connect-and-vanish",
        f"{count} sessions whose client was killed: live client got in at once; "
        f"all gone {gone:.1f} s later (idle timeout 3 s)",
    )

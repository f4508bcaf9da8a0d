"""Soak and capacity: mixed load for a while (40 s here, 10 minutes in long mode) with the
server's memory and file descriptors sampled as a series, flat after warm-up; and the
most sessions held at once in this run, with memory per session."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import anyio
import pytest
from robustness_figures import long_mode, record
from server_process import ServerProcess, server_process
from test_garbage_and_vanishing import start_vanishing_clients

from fastwt.errors import WebTransportError

MIB = 1 << 20
pytestmark = pytest.mark.anyio


async def one_round(server: ServerProcess, rng: random.Random) -> None:
    async with server.client() as client:
        session = await client.connect(url=f"https://127.0.0.1:{server.port}/live")
        for _ in range(rng.randint(1, 4)):
            payload = rng.randbytes(rng.randint(1, 64 * 1024))
            stream = await session.create_bidirectional_stream()
            await stream.write(data=payload, end_stream=True)
            assert await stream.read_all() == payload
        for _ in range(rng.randint(0, 20)):
            await session.send_datagram(data=rng.randbytes(rng.randint(1, 1000)))
        with anyio.move_on_after(0.2):
            await session.read_datagram()
        await session.close()


@pytest.mark.timeout(900)
async def test_soak_memory_and_descriptors_stay_flat(request: pytest.FixtureRequest) -> None:
    seconds = 600.0 if long_mode(request.config) else 40.0
    sample_every = 10.0 if long_mode(request.config) else 4.0
    rounds = failures = 0
    series: list[tuple[float, float, int]] = []
    with server_process() as server:
        started = time.monotonic()

        async def worker(seed: int) -> None:
            nonlocal rounds, failures
            rng = random.Random(seed)
            while time.monotonic() - started < seconds:
                try:
                    with anyio.fail_after(10):
                        await one_round(server, rng)
                    rounds += 1
                except (WebTransportError, TimeoutError, AssertionError):
                    failures += 1

        async def sampler() -> None:
            while time.monotonic() - started < seconds:
                series.append((time.monotonic() - started, server.rss() / MIB, server.fds()))
                await anyio.sleep(sample_every)

        async with anyio.create_task_group() as tg:
            for seed in range(8):
                tg.start_soon(worker, seed)
            tg.start_soon(sampler)
    warm = [s for s in series if s[0] >= seconds / 4]
    assert len(warm) >= 3, series
    text = ", ".join(f"{t:.0f}s {rss:.1f}MiB/{fds}fd" for t, rss, fds in series)
    record("soak", f"{rounds} sessions in {seconds:.0f} s, {failures} failed; series: {text}")
    assert failures == 0
    first_rss, first_fds = warm[0][1], warm[0][2]
    assert max(s[1] for s in warm) <= first_rss * 1.10 + 4, text
    assert max(s[2] for s in warm) <= first_fds + 8, text


def kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


async def test_concurrent_sessions_and_memory_per_session(request: pytest.FixtureRequest) -> None:
    # FASTWT_ROBUSTNESS_CAPACITY=N tries N sessions (the server's max_sessions raised to
    # fit); else 1,000, or 9,000 in long mode (under the default max_sessions, 10,000).
    count = int(os.environ.get("FASTWT_ROBUSTNESS_CAPACITY", 0)) or (
        9_000 if long_mode(request.config) else 1_000
    )
    os.environ["FLOOD_MAX_SESSIONS"] = str(max(10_000, count + 1))
    # Idle sessions must outlive the time it takes to open them all.
    with server_process(idle_timeout=600.0) as server:
        await anyio.sleep(0.3)
        before = server.rss()
        client = start_vanishing_clients(server.port, server.certificate_hash, count)
        assert client.stdout is not None
        try:
            with anyio.fail_after(600):
                line = await anyio.to_thread.run_sync(client.stdout.readline)
            assert line.split() == ["CONNECTED", str(count)], line
            await anyio.sleep(0.5)
            held = server.stats["sessions"]
            grown = server.rss() - before
            assert await server.live_echo() == b"live"
        finally:
            kill(client)
    assert held == count
    record(
        "concurrent sessions",
        f"{held} held at once (idle, one per connection): server RSS +{grown / MIB:.0f} MiB, "
        f"{grown / held / 1024:.1f} KiB per session; one more still echoes",
    )

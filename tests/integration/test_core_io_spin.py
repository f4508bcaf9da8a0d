"""The I/O thread's busy-poll window (``FASTWT_IO_SPIN_US``): read at start-up, and
streams and datagrams work with it off and on (each case in a fresh process, since the
runtime is made once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ECHO = textwrap.dedent(
    """
    import anyio, sys
    sys.path.insert(0, {tests!r})
    from fastwt._core import io_spin_us
    from integration.echo_server import echo_server

    async def main():
        async with echo_server() as echo, echo.client() as client:
            session = await client.connect(url=echo.url + "/echo")
            replies = []
            for i in range(50):
                stream = await session.create_bidirectional_stream()
                await stream.write(data=b"ping %d" % i, end_stream=True)
                replies.append(await stream.read_all())
            await session.send_datagram(data=b"dgram")
            with anyio.fail_after(5):
                dgram = await session.read_datagram()
            assert replies == [b"ping %d" % i for i in range(50)], replies
            assert dgram == b"dgram"
        print("SPIN", io_spin_us())

    anyio.run(main)
    """
)


def run_with(spin: str | None) -> int:
    env = dict(os.environ)
    env.pop("FASTWT_IO_SPIN_US", None)
    if spin is not None:
        env["FASTWT_IO_SPIN_US"] = spin
    tests = str(Path(__file__).resolve().parents[1])
    p = subprocess.run(
        [sys.executable, "-c", ECHO.format(tests=tests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("SPIN ")][-1]
    return int(line.split()[1])


@pytest.mark.parametrize(
    ("spin", "expected"),
    [(None, 200), ("0", 0), ("50", 50), ("999999", 10_000), ("not-a-number", 200)],
)
def test_spin_window_and_echo(spin: str | None, expected: int) -> None:
    assert run_with(spin) == expected


def test_notifier_spin_wait_sees_a_token_or_times_out() -> None:
    """The loop's short wait for a reply: true as soon as a token is ready, false after
    the window without one (it never sleeps past it)."""
    import time

    from fastwt._core import Notifier

    n = Notifier()
    start = time.perf_counter()
    assert n.spin_wait(2_000) is False
    assert 0.0015 < time.perf_counter() - start < 0.5
    n.notify(7)
    assert n.spin_wait(2_000) is True
    assert n.drain() == [7]

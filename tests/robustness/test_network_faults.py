"""Network faults: a bad path between client and server (50 ms each way with jitter that
reorders packets, 5% random loss each way, blackouts). The in-process echo server listens
on 127.0.0.1; the client connects through a user-space relay (udp_relay.py) that delays
and reorders, and whose packets cross a private network namespace where nft drops them
(netns.py). Nothing outside that namespace is changed; it ends with each test.

The lossy bulk transfer uses BBR: with 5% random loss and a 100 ms round trip a
loss-based controller (cubic, the default) keeps a few packets in flight and moves some
tens of KiB/s (Mathis et al.), which would make the case a matter of minutes; the long
mode also measures cubic on a smaller transfer. The jitter is independent per packet
(as netem's), so at bulk rates most packets are overtaken by a later one; quinn declares
a packet overtaken by 3 others lost and sends it again, which costs more than the loss
does: the "bbr-no-reordering" case measures the same loss without the jitter.

asyncio only: the faults are handled in the Rust core, the same under either backend.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import anyio
import pytest
from integration.echo_server import EchoServer, echo_server
from netns import unusable_reason
from robustness_figures import long_mode, record
from udp_relay import NftWire, UdpRelay

from fastwt import WebTransportError, WebTransportSession
from fastwt.testing import echo_once

pytestmark = pytest.mark.anyio

DELAY = 0.05  # one way
JITTER = 0.002  # ± uniform: packets sent less than twice this apart may swap places
LOSS = 0.05  # each way


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@cache
def _netns_problem() -> str | None:
    return unusable_reason()


@pytest.fixture
def require_netns() -> None:
    """Skip without network namespaces and nft, except in CI, where that fails."""
    problem = _netns_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"the network fault tests must run in CI: {problem}", pytrace=False)
        pytest.skip(problem)


@contextmanager
def bad_path(
    echo: EchoServer, *, loss: float = LOSS, jitter: float = JITTER
) -> Iterator[tuple[UdpRelay, NftWire]]:
    """The relay in front of ``echo`` with its nft wire; both end on exit."""
    wire = NftWire(loss=loss)
    try:
        server = ("127.0.0.1", port_of(echo))
        with UdpRelay(server, delay=DELAY, jitter=jitter, wire=wire) as relay:
            yield relay, wire
    finally:
        wire.close()


def port_of(echo: EchoServer) -> int:
    return echo.server.local_addresses[0][1]


def url_of(relay: UdpRelay) -> str:
    return f"https://127.0.0.1:{relay.address[1]}/echo"


def packet_loss(relay: UdpRelay) -> str:
    """The loss and reordering the path applied, from the relay's counters."""
    parts = []
    for name, d in (("c→s", relay.c2s), ("s→c", relay.s2c)):
        parts.append(
            f"{name} {d.lost / max(d.into_wire, 1):.1%} of {d.into_wire} packets dropped, "
            f"{d.reordered / max(d.delivered, 1):.0%} reordered"
        )
    return "; ".join(parts)


async def send_datagrams(session: WebTransportSession, count: int, size: int = 1000) -> None:
    """``count`` numbered datagrams, 10 every 10 ms (~1 MB/s at 1,000 bytes)."""
    for i in range(count):
        await session.send_datagram(data=i.to_bytes(4, "big") + bytes(size - 4))
        if i % 10 == 9:
            await anyio.sleep(0.01)


async def collect_datagrams(session: WebTransportSession, into: set[int]) -> None:
    async for d in session.datagrams():
        into.add(int.from_bytes(d[:4], "big"))


@pytest.mark.usefixtures("require_netns")
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("congestion", "jitter"),
    [("bbr", JITTER), ("bbr", 0.0), ("cubic", JITTER)],
    ids=["bbr", "bbr-no-reordering", "cubic"],  # the second tells loss's cost from reordering's
)
async def test_a_bulk_transfer_arrives_intact_over_a_lossy_reordering_path(
    request: pytest.FixtureRequest, congestion: str, jitter: float
) -> None:
    long = long_mode(request.config)
    if congestion == "cubic" and not long:
        pytest.skip("long mode only: cubic moves some tens of KiB/s at 5% loss")
    size = (64 if long else 8) * 1024 * 1024 if congestion == "bbr" else 4 * 1024 * 1024
    payload = os.urandom(size)
    cc = {"congestion_control_algorithm": congestion}
    async with echo_server(**cc) as echo, echo.client(**cc) as client:
        with bad_path(echo, jitter=jitter) as (relay, _):
            session = await client.connect(url=url_of(relay))
            started = time.monotonic()
            back = await echo_once(session, payload, timeout=800)
            took = time.monotonic() - started
            stats = session.stats()
            path = packet_loss(relay)
    assert len(back) == size
    assert hashlib.sha256(back).digest() == hashlib.sha256(payload).digest()
    assert not echo.errors
    record(
        f"bulk echo over 5% loss each way + {DELAY * 1000:.0f} ms ± {jitter * 1000:.0f} ms "
        f"each way ({congestion})",
        f"{size >> 20} MiB there and back intact (SHA-256) in {took:.1f} s, "
        f"{2 * size / took / 1e6:.2f} MB/s goodput; the client sent "
        f"{stats['bytes_sent'] / size:.2f} times the payload and declared "
        f"{stats['lost_packets']} packets lost (reordering included); path: {path}",
    )


@pytest.mark.usefixtures("require_netns")
async def test_datagrams_over_the_lossy_path_lose_about_the_path_loss(
    request: pytest.FixtureRequest,
) -> None:
    count = 20_000 if long_mode(request.config) else 2_000
    bbr = {"congestion_control_algorithm": "bbr"}
    async with echo_server(**bbr) as echo, echo.client(**bbr) as client:
        with bad_path(echo) as (relay, _):
            session = await client.connect(url=url_of(relay))
            await echo_once(session, b"warm up")  # the path's RTT is known before the burst
            got: set[int] = set()
            async with anyio.create_task_group() as tg:
                tg.start_soon(collect_datagrams, session, got)
                await send_datagrams(session, count)
                await anyio.sleep(4 * DELAY + 0.5)  # the last ones come back
                tg.cancel_scope.cancel()
            mine, theirs = session.stats(), echo.sessions[0].stats()
            path = packet_loss(relay)
    assert mine["datagrams_sent"] == count
    arrived = theirs["datagrams_received"]  # at the server, each echoed once
    there = 1 - arrived / count
    back = 1 - len(got) / max(theirs["datagrams_sent"], 1)
    record(
        "datagrams over the same path",
        f"{len(got)} of {count} came back: {there:.1%} lost client→server, {back:.1%} "
        f"server→client (path: {LOSS:.0%} each way); path: {path}",
    )
    # 2,000 datagrams: one standard deviation of the loss is about 0.5%.
    for lost in (there, back):
        assert LOSS / 2 < lost < LOSS * 2


@pytest.mark.usefixtures("require_netns")
async def test_a_session_survives_a_blackout_shorter_than_its_idle_timeout() -> None:
    blackout, timing = 2.0, {"max_idle_timeout": 5.0, "keep_alive_interval": 0.5}
    async with echo_server(**timing) as echo, echo.client(**timing) as client:
        with bad_path(echo, loss=0) as (relay, wire):
            session = await client.connect(url=url_of(relay))
            assert await echo_once(session, b"before") == b"before"
            got: set[int] = set()
            async with anyio.create_task_group() as tg:
                tg.start_soon(collect_datagrams, session, got)
                wire.blackout(blackout)
                ends = time.monotonic() + blackout
                await send_datagrams(session, 10)  # into the blackout: lost
                await anyio.sleep(0.5)
                # Started in the blackout, done after it (its packets are retransmitted).
                assert await echo_once(session, b"during", timeout=blackout + 5) == b"during"
                recovered = time.monotonic() - ends
                assert recovered > 0
                assert await echo_once(session, b"after") == b"after"
                survived = len(got)
                for i in range(100, 120):
                    await session.send_datagram(data=i.to_bytes(4, "big"))
                with anyio.fail_after(5):
                    while len(got) < survived + 20:
                        await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
            assert not session.is_closed and not echo.sessions[0].is_closed
            assert not echo.closes and not echo.errors
    record(
        f"{blackout:.0f} s blackout, max_idle_timeout 5 s, keep-alive 0.5 s",
        f"session survived; a stream echo started in it completed {recovered:.2f} s after "
        f"it ended; then 20 of 20 datagrams and a new stream echoed; "
        f"{10 - survived} of 10 datagrams sent into it lost (not retransmitted)",
    )


@pytest.mark.usefixtures("require_netns")
async def test_a_blackout_longer_than_the_idle_timeout_closes_both_sides_cleanly() -> None:
    blackout, timing = 3.0, {"max_idle_timeout": 1.0, "keep_alive_interval": 0.3}
    async with echo_server(**timing) as echo, echo.client(**timing) as client:
        with bad_path(echo, loss=0) as (relay, wire):
            session = await client.connect(url=url_of(relay))
            assert await echo_once(session, b"before") == b"before"
            await anyio.sleep(1.5)  # idle past the timeout: the keep-alives hold it
            assert not session.is_closed
            closed: dict[str, tuple[int, str, float]] = {}

            async def watch(side: str, s: WebTransportSession) -> None:
                code, reason = await s.wait_closed()
                closed[side] = (code, reason, time.monotonic() - started)

            started = time.monotonic()
            wire.blackout(blackout)
            with anyio.fail_after(blackout - 0.2):  # both before it ends (no close gets out)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(watch, "client", session)
                    tg.start_soon(watch, "server", echo.sessions[0])
            with pytest.raises(WebTransportError):
                await session.create_bidirectional_stream()
            with anyio.fail_after(2):
                while echo.server.session_count:
                    await anyio.sleep(0.01)
    for code, reason, _ in closed.values():
        assert code == 0 and "timed out" in reason
    assert not echo.errors
    record(
        f"{blackout:.0f} s blackout, max_idle_timeout 1 s, keep-alive 0.3 s",
        "both sides closed: "
        + ", ".join(
            f"{side} after {took:.2f} s ({reason!r})" for side, (_, reason, took) in closed.items()
        ),
    )

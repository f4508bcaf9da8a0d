"""Rooms across nodes: each node is its own process (``node_app.py``, a ServerApp with
the Redis broker), all on one real ``redis-server``; the test connects real clients to
the nodes over loopback. One node runs on trio, the others on asyncio."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from cluster_support import Node, RedisServer

from fastwt import ClientConfig, SessionRejectedError, WebTransportClient, WebTransportSession
from fastwt.framework.cluster import RedisBus

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the nodes cover both loops; the test side needs only one


@asynccontextmanager
async def connected(node: Node, path: str) -> AsyncIterator[WebTransportSession]:
    config = ClientConfig(server_certificate_hashes=[node.cert_hash])
    async with WebTransportClient(config=config) as client:
        session = await client.connect(url=node.url(path), timeout=10)
        try:
            yield session
        finally:
            if not session.is_closed:
                await session.close()


@asynccontextmanager
async def observer(redis: RedisServer) -> AsyncIterator[RedisBus]:
    """A bus of the test's own, to read presence as the nodes see it."""
    async with RedisBus(redis.url).running() as bus:
        yield bus


async def wait_presence(bus: RedisBus, room: str, count: int, within: float = 10) -> list[str]:
    with anyio.fail_after(within):
        while len(members := await bus.presence(room)) != count:
            await anyio.sleep(0.02)
    return members


async def test_a_broadcast_on_node_a_reaches_members_on_nodes_b_and_c(
    start_node: Callable[..., Node], redis_server: RedisServer
) -> None:
    a, b = start_node(), start_node()
    c = start_node("--backend", "trio")
    async with (
        observer(redis_server) as bus,
        connected(a, "/room/lobby") as on_a,
        connected(a, "/room/lobby") as on_a2,
        connected(b, "/room/lobby") as on_b,
        connected(c, "/room/lobby") as on_c,
        connected(c, "/room/attic") as elsewhere,
    ):
        members = await wait_presence(bus, "lobby", 4)
        assert {m.split(":")[0] for m in members} == {a.node_id, b.node_id, c.node_id}
        await on_a.send_datagram(data=b"tick from a")
        with anyio.fail_after(10):
            assert await on_a2.read_datagram() == b"tick from a"  # local member
            assert await on_b.read_datagram() == b"tick from a"
            assert await on_c.read_datagram() == b"tick from a"  # the trio node
        # Back the other way, from the trio node, and on streams.
        await on_c.send_datagram(data=b"S:" + b"snapshot " * 100)
        for member in (on_a, on_a2, on_b):
            with anyio.fail_after(10):
                stream = await member.accept_unidirectional_stream()
                assert await stream.read_all() == b"snapshot " * 100
        # Nobody got their own message back; the other room got nothing.
        for quiet in (on_a, on_c, elsewhere):
            with anyio.move_on_after(0.2):
                extra = await quiet.read_datagram()
                pytest.fail(f"unexpected datagram {extra!r}")


async def test_a_killed_node_leaves_the_room_within_the_presence_ttl(
    start_node: Callable[..., Node], redis_server: RedisServer
) -> None:
    ttl = 1.0
    a, b = start_node("--presence-ttl", str(ttl)), start_node("--presence-ttl", str(ttl))
    async with (
        observer(redis_server) as bus,
        connected(a, "/room/lobby") as on_a,
        connected(b, "/room/lobby"),
        connected(b, "/room/lobby"),
    ):
        await wait_presence(bus, "lobby", 3)
        b.kill()
        killed = time.monotonic()
        members = await wait_presence(bus, "lobby", 1, within=ttl + 5)
        gone_after = time.monotonic() - killed
        assert members[0].startswith(a.node_id + ":")
        assert gone_after <= ttl + 1.0, f"presence dropped the dead node after {gone_after:.2f}s"
        # A member that leaves normally is gone at once (not after the TTL).
        await on_a.close()
        await wait_presence(bus, "lobby", 0, within=2)


async def test_one_rate_limit_across_two_nodes(
    start_node: Callable[..., Node], redis_server: RedisServer
) -> None:
    a, b = start_node("--rate-limit", "3"), start_node("--rate-limit", "3")
    outcomes: list[int] = []
    retry_after: list[str] = []
    for node in (a, b, a, b, a, b):
        try:
            async with connected(node, "/hold"):
                outcomes.append(200)
        except SessionRejectedError as exc:
            outcomes.append(exc.status_code)
            retry_after.append(exc.headers.get("retry-after", ""))
    # Three sessions in the window for this client, whichever node it asked.
    assert outcomes == [200, 200, 200, 429, 429, 429]
    assert all(value.isdigit() and 1 <= int(value) <= 60 for value in retry_after)


async def test_redis_restarted_mid_test_nodes_keep_serving_and_reconnect(
    start_node: Callable[..., Node], redis_server: RedisServer
) -> None:
    a, b = start_node("--presence-ttl", "1.5"), start_node("--presence-ttl", "1.5")
    async with (
        connected(a, "/room/lobby") as sender,
        connected(a, "/room/lobby") as local,
        connected(b, "/room/lobby") as remote,
    ):
        async with observer(redis_server) as bus:
            await wait_presence(bus, "lobby", 3)
        redis_server.stop()
        # Redis is gone: local members still get broadcasts, nothing crashes.
        await sender.send_datagram(data=b"during the outage")
        with anyio.fail_after(10):
            assert await local.read_datagram() == b"during the outage"
        with anyio.move_on_after(0.3):
            extra = await remote.read_datagram()
            pytest.fail(f"remote member got {extra!r} with Redis down")
        redis_server.start()  # empty: no members, no node keys
        # Presence comes back by itself (heartbeats re-add the members)...
        async with observer(redis_server) as bus:
            await wait_presence(bus, "lobby", 3, within=15)
        # ... and broadcasts reach the other node again (the subscriber reconnected).
        with anyio.fail_after(15):
            while True:
                await sender.send_datagram(data=b"after the restart")
                with anyio.move_on_after(0.3):
                    if await remote.read_datagram() == b"after the restart":
                        break
        for node in (a, b):
            assert node.process.proc.poll() is None, node.process.output
            assert "Traceback" not in node.process.output, node.process.output

"""The cluster bus and the Redis rate limiter in this process, on a real redis-server:
a lagging fan-out drops the oldest messages (and counts them), the limiter keeps the
in-process limiter's answers across instances, Redis outages fail open (or closed),
and an unreachable broker is a clear error at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from cluster_support import RedisServer

from fastwt import ConfigurationError, ConnectionError, ServerConfig, WebTransportSession
from fastwt.cli import main
from fastwt.framework import MiddlewareRejected, ServerApp, create_rate_limit_middleware
from fastwt.framework.cluster import RedisBus
from fastwt.framework.ratelimit_redis import RedisRateLimiter
from fastwt.framework.rooms import DATAGRAM
from fastwt.testing import TestClient

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class StuckMember:
    """A room member (not a fastwt session) whose datagram sends wait until released:
    it holds up its node's fan-out, as a very slow fan-out would."""

    session_id = 1
    path = "/stuck"
    remote_address = ("127.0.0.1", 1)

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.release = anyio.Event()
        self.is_closed = False

    async def send_datagram(self, *, data: bytes) -> None:
        self.received.append(data)
        await self.release.wait()


async def test_a_lagging_fan_out_drops_the_oldest_messages_and_counts_them(
    redis_server: RedisServer,
) -> None:
    receiver = ServerApp(broker=RedisBus(redis_server.url, queue_size=4))
    bus = receiver.broker
    assert bus is not None
    member = StuckMember()
    async with bus.running(), RedisBus(redis_server.url).running() as sender:
        await receiver.room("lobby").join(member)  # type: ignore[arg-type]
        for n in range(20):
            await sender.publish("lobby", DATAGRAM, b"tick %d" % n)
        with anyio.fail_after(10):
            while bus.stats()["received"] < 20:
                await anyio.sleep(0.01)
        # The first message is stuck in the fan-out; of the 19 after it, the queue kept
        # the newest 4.
        assert member.received == [b"tick 0"]
        stats = bus.stats()
        assert stats["dropped"] == 15
        assert stats["queued"] == 4
        member.release.set()
        with anyio.fail_after(10):
            while len(member.received) < 5:
                await anyio.sleep(0.01)
        assert member.received == [b"tick 0", b"tick 16", b"tick 17", b"tick 18", b"tick 19"]
        assert bus.stats()["delivered"] == 5
        assert receiver.room("lobby").stats()["received"] == 5


async def test_redis_rate_limiter_shares_one_sliding_window(redis_server: RedisServer) -> None:
    one = create_rate_limit_middleware(max_requests=3, window_seconds=1, backend=redis_server.url)
    two = create_rate_limit_middleware(max_requests=3, window_seconds=1, backend=redis_server.url)
    assert isinstance(one, RedisRateLimiter) and isinstance(two, RedisRateLimiter)
    async with one.running(), two.running():
        assert await one.try_acquire(key="10.0.0.1") is None
        assert await two.try_acquire(key="10.0.0.1") is None
        assert await one.try_acquire(key="10.0.0.1") is None
        # Full for this key, whichever limiter asks; refusals are not counted.
        for limiter in (two, one, two):
            wait = await limiter.try_acquire(key="10.0.0.1")
            assert wait is not None and 0 < wait <= 1.0
        assert await two.try_acquire(key="10.0.0.2") is None  # another client
        await anyio.sleep(wait + 0.05)
        assert await one.try_acquire(key="10.0.0.1") is None  # the oldest left the window
        await one.reset(key="10.0.0.1")
        for _ in range(3):
            assert await two.try_acquire(key="10.0.0.1") is None
        await two.reset()
        assert await one.try_acquire(key="10.0.0.1") is None


async def test_redis_rate_limiter_through_the_app_and_the_apps_broker(
    redis_server: RedisServer,
) -> None:
    app = ServerApp(
        config=ServerConfig(bind_host="127.0.0.1", bind_port=0), broker=redis_server.url
    )
    limiter = create_rate_limit_middleware(max_requests=2, window_seconds=60, backend=app.broker)
    app.add_middleware(middleware=limiter)

    @app.route(path="/")
    async def hold(session: WebTransportSession) -> None:
        await session.wait_closed()

    async with TestClient(app) as client:
        for _ in range(2):
            await (await client.connect("/")).close()
        rejection = await client.rejection("/")
        assert rejection.status_code == 429
        assert 1 <= int(rejection.headers["retry-after"]) <= 60


class Peer:
    path = "/"
    remote_address = ("192.0.2.7", 5000)


async def test_redis_rate_limiter_fails_open_or_closed_while_redis_is_down(
    redis_server: RedisServer,
) -> None:
    open_limiter = RedisRateLimiter(backend=redis_server.url, max_requests=1, window_seconds=60)
    closed_limiter = RedisRateLimiter(
        backend=redis_server.url, max_requests=1, window_seconds=60, fail_open=False
    )
    peer: Any = Peer()
    async with open_limiter.running(), closed_limiter.running():
        await open_limiter(session=peer)
        with pytest.raises(MiddlewareRejected) as refused:
            await open_limiter(session=peer)
        assert refused.value.status_code == 429
        redis_server.stop()
        for _ in range(3):
            await open_limiter(session=peer)  # admitted: fail open
        assert open_limiter.backend_errors == 3
        with pytest.raises(MiddlewareRejected) as unavailable:
            await closed_limiter(session=peer)
        assert unavailable.value.status_code == 503
        redis_server.start()
        # Back: counting again (the restarted Redis is empty).
        await open_limiter(session=peer)
        with pytest.raises(MiddlewareRejected):
            await open_limiter(session=peer)


async def test_the_limiter_outside_a_running_app_is_a_clear_error(
    redis_server: RedisServer,
) -> None:
    limiter = RedisRateLimiter(backend=redis_server.url, max_requests=1, window_seconds=60)
    with pytest.raises(RuntimeError, match="not connected"):
        await limiter.try_acquire(key="x")


async def test_an_unreachable_broker_fails_the_start_clearly(tmp_path: Path) -> None:
    app = ServerApp(
        config=ServerConfig(bind_host="127.0.0.1", bind_port=0),
        broker=f"unix://{tmp_path}/no-redis.sock",
    )
    with anyio.fail_after(20), pytest.raises(ConnectionError, match="cannot reach the broker"):
        await app.serve()
    assert not app.server.is_serving


def test_fastwt_run_refuses_a_broker_that_is_not_a_redis_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "json:dumps", "--broker", "nats://localhost:4222"]) == 2
    err = capsys.readouterr().err
    assert "--broker" in err and "redis://" in err


async def test_rooms_with_a_broker_not_running_stay_local(redis_server: RedisServer) -> None:
    app = ServerApp(broker=redis_server.url)
    member = StuckMember()
    member.release.set()
    room = app.room("lobby")
    await room.join(member)  # type: ignore[arg-type]
    assert await room.broadcast(b"hi") == 1
    assert member.received == [b"hi"]
    assert app.broker is not None and app.broker.stats()["publish_errors"] == 1
    with pytest.raises(RuntimeError, match="not running"):
        await room.presence()


async def test_foreign_messages_on_the_room_channels_are_ignored(
    redis_server: RedisServer,
) -> None:
    from fastwt.framework.cluster import connect_redis

    receiver = ServerApp(broker=redis_server.url)
    bus = receiver.broker
    assert bus is not None
    member = StuckMember()
    member.release.set()
    async with bus.running(), connect_redis(redis_server.url) as raw:
        await receiver.room("lobby").join(member)  # type: ignore[arg-type]
        header = b"FW\x01"
        for junk in (
            b"",
            b"hello",
            header + b"\x07" + b"n" * 16 + b"unknown kind",
            b"FW\x09\x00" + b"n" * 16 + b"unknown version",
        ):
            await raw.publish("fastwt:room:lobby", junk)
        async with RedisBus(redis_server.url).running() as sender:
            await sender.publish("lobby", DATAGRAM, b"real")
        with anyio.fail_after(10):
            while member.received != [b"real"]:
                await anyio.sleep(0.01)
        assert bus.stats()["ignored"] == 4
        assert bus.stats()["delivered"] == 1


def test_broker_urls_are_shown_without_their_password() -> None:
    from fastwt.framework.cluster import redacted

    bus = RedisBus("redis://:s3cret@10.0.0.5:6379/0")
    assert "s3cret" not in repr(bus) and "s3cret" not in bus.display_url
    assert bus.display_url == "redis://:***@10.0.0.5:6379/0"
    assert redacted("redis://user:pw@host:1/2") == "redis://user:***@host:1/2"
    assert redacted("unix:///run/redis.sock") == "unix:///run/redis.sock"
    with pytest.raises(ConfigurationError) as bad:
        RedisBus("http://:hunter2@host")
    assert "hunter2" not in str(bad.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": "app*"}, "glob characters"),
        ({"presence_ttl": 0}, "presence_ttl"),
        ({"presence_ttl": True}, "presence_ttl"),
        ({"queue_size": 0}, "queue_size"),
        ({"node_id": "not hex"}, "node_id"),
        ({"node_id": "ab" * 8}, "node_id"),
    ],
)
def test_bad_bus_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisBus("redis://127.0.0.1:6379/0", **kwargs)
    assert RedisBus("redis://127.0.0.1:6379/0", node_id="ab" * 16).node_id == "ab" * 16

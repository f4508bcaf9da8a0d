"""Rooms without a broker (one process), through the real server on loopback: the Rust
fan-out, streams, leaving, presence, and the errors for misuse."""

from __future__ import annotations

import anyio
import pytest

from fastwt import (
    ClientConfig,
    ConfigurationError,
    ServerConfig,
    StreamError,
    WebTransportSession,
)
from fastwt.framework import ServerApp
from fastwt.testing import TestClient

pytestmark = pytest.mark.anyio


def room_app() -> ServerApp:
    """``/room/<name>``: joins; every datagram is broadcast to the others; ``STREAM``
    broadcasts 6000 bytes on streams, ``BIG`` 4000 bytes (too large for any datagram)."""
    app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0))

    @app.pattern_route(pattern=r"/room/(?P<name>\w+)")
    async def member(session: WebTransportSession, name: str) -> None:
        room = app.room(name)
        await room.join(session)
        async for data in session.datagrams():
            if data == b"BIG":
                await room.broadcast(b"x" * 4000)
            elif data == b"HUGE":  # more than a slow reader's window: its write stalls
                await room.broadcast(b"z" * (4 << 20), datagram=False, stream_timeout=0.5)
            elif data == b"STREAM":
                await room.broadcast(b"state " * 1000, datagram=False, exclude=session)
            else:
                await room.broadcast(data, exclude=session)

    return app


async def wait_members(app: ServerApp, name: str, count: int) -> None:
    with anyio.fail_after(10):
        while len(app.room(name).members()) != count:
            await anyio.sleep(0.01)


async def test_datagram_broadcast_reaches_every_other_member() -> None:
    app = room_app()
    async with TestClient(app) as client:
        ada, bob, cy = [await client.connect("/room/lobby") for _ in range(3)]
        eve = await client.connect("/room/attic")
        await wait_members(app, "lobby", 3)
        await wait_members(app, "attic", 1)
        await ada.send_datagram(data=b"tick 1")
        with anyio.fail_after(10):
            assert await bob.read_datagram() == b"tick 1"
            assert await cy.read_datagram() == b"tick 1"
        # The sender was excluded; the other room heard nothing.
        with anyio.move_on_after(0.3):
            extra = await ada.read_datagram()
            pytest.fail(f"the sender got its own broadcast {extra!r}")
        with anyio.move_on_after(0.05):
            extra = await eve.read_datagram()
            pytest.fail(f"another room got {extra!r}")
        stats = app.room("lobby").stats()
        assert stats["broadcasts"] == 1
        assert stats["sent"] == 2
        assert await app.room("lobby").presence() == sorted(f"local:{n}" for n in range(1, 4))


async def test_stream_broadcast_and_leaving_on_close() -> None:
    app = room_app()
    async with TestClient(app) as client:
        ada, bob, cy = [await client.connect("/room/lobby") for _ in range(3)]
        await wait_members(app, "lobby", 3)
        await ada.send_datagram(data=b"STREAM")
        for member in (bob, cy):
            with anyio.fail_after(10):
                stream = await member.accept_unidirectional_stream()
                assert await stream.read_all() == b"state " * 1000
        # A member that closes leaves every room by itself.
        await cy.close()
        await wait_members(app, "lobby", 2)
        assert len(await app.room("lobby").presence()) == 2
        await ada.send_datagram(data=b"after")
        with anyio.fail_after(10):
            assert await bob.read_datagram() == b"after"
        assert app.room("lobby").stats()["sent"] == 3


async def test_a_datagram_too_large_for_every_member_is_skipped_and_counted() -> None:
    app = room_app()
    async with TestClient(app) as client:
        ada, bob = [await client.connect("/room/lobby") for _ in range(2)]
        await wait_members(app, "lobby", 2)
        await ada.send_datagram(data=b"BIG")
        with anyio.fail_after(10):
            while app.room("lobby").stats()["skipped"] < 2:
                await anyio.sleep(0.01)
        assert app.room("lobby").stats()["sent"] == 0
        # The room still works, and nobody was dropped for it.
        await ada.send_datagram(data=b"small")
        with anyio.fail_after(10):
            assert await bob.read_datagram() == b"small"
        assert len(app.room("lobby").members()) == 2


async def test_join_leave_and_the_room_registry() -> None:
    app = room_app()
    async with TestClient(app) as client:
        ada = await client.connect("/room/lobby")
        await wait_members(app, "lobby", 1)
        (server_side,) = app.room("lobby").members()
        assert server_side in app.room("lobby")
        assert app.room("lobby") is app.room("lobby")
        assert set(app.rooms) == {"lobby"}
        # Joining twice is harmless; leaving twice too.
        await app.room("lobby").join(server_side)
        assert len(app.room("lobby")) == 1
        await app.room("lobby").leave(server_side)
        await app.room("lobby").leave(server_side)
        assert app.room("lobby").members() == []
        assert await app.room("lobby").presence() == []
        await ada.close()


async def test_bad_room_names_and_closed_sessions_are_refused() -> None:
    app = room_app()
    for bad in ("", "x" * 201, "tab\there", 7):
        with pytest.raises(ValueError, match="room name"):
            app.room(bad)  # type: ignore[arg-type]
    async with TestClient(app) as client:
        ada = await client.connect("/room/lobby")
        await wait_members(app, "lobby", 1)
        (server_side,) = app.room("lobby").members()
        await ada.close()
        with anyio.fail_after(10):
            while not server_side.is_closed:
                await anyio.sleep(0.01)
        with pytest.raises(ValueError, match="closed session"):
            await app.room("other").join(server_side)


def test_rooms_without_a_broker_refuse_several_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    app = ServerApp()
    monkeypatch.setenv("FASTWT_WORKER_COUNT", "4")
    with pytest.raises(ConfigurationError, match="split between 4 worker processes"):
        app.room("lobby")
    monkeypatch.setenv("FASTWT_WORKER_COUNT", "many")
    with pytest.raises(ConfigurationError, match="FASTWT_WORKER_COUNT"):
        app.room("lobby")
    monkeypatch.setenv("FASTWT_WORKER_COUNT", "1")
    assert app.room("lobby").name == "lobby"


def test_a_broker_url_that_is_not_redis_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="redis://"):
        ServerApp(broker="http://localhost:6379")


async def test_empty_rooms_are_forgotten_so_names_cost_no_memory() -> None:
    import gc

    app = room_app()
    async with TestClient(app) as client:
        for n in range(20):
            session = await client.connect(f"/room/match{n}")
            await wait_members(app, f"match{n}", 1)
            await session.close()
            with anyio.fail_after(10):
                while app.rooms:
                    await anyio.sleep(0.01)
        gc.collect()
        assert app.rooms == {}
        assert len(app._rooms._idle) == 0  # nothing holds an empty room: gone
        # A room held by the caller stays the same object while empty, and works again.
        lobby = app.room("lobby")
        assert app.room("lobby") is lobby and lobby.members() == []
        ada, bob = [await client.connect("/room/lobby") for _ in range(2)]
        await wait_members(app, "lobby", 2)
        assert app.rooms == {"lobby": lobby}
        await ada.send_datagram(data=b"again")
        with anyio.fail_after(10):
            assert await bob.read_datagram() == b"again"


async def test_a_stream_broadcast_a_member_does_not_read_is_reset_after_its_timeout() -> None:
    app = room_app()
    small_window = ClientConfig(stream_receive_window=64 * 1024, receive_window=64 * 1024)
    async with TestClient(app, client_config=small_window) as client:
        sender, slow = [await client.connect("/room/lobby") for _ in range(2)]
        await wait_members(app, "lobby", 2)
        await sender.send_datagram(data=b"HUGE")
        with anyio.fail_after(10):
            stream = await slow.accept_unidirectional_stream()
        await anyio.sleep(1.5)  # not reading: the server's write stalls, then gives up
        with anyio.fail_after(10), pytest.raises(StreamError) as reset:
            await stream.read_all()
        assert reset.value.error_code == 0x10B
        # The member is still in the room and gets what follows.
        await sender.send_datagram(data=b"after")
        with anyio.fail_after(10):
            assert await slow.read_datagram() == b"after"


async def test_rooms_on_the_pure_python_backend_send_to_each_member() -> None:
    pytest.importorskip("aioquic")
    app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0, backend="python"))

    @app.route(path="/room")
    async def member(session: WebTransportSession) -> None:
        room = app.room("lobby")
        await room.join(session)
        async for data in session.datagrams():
            await room.broadcast(data, exclude=session)
            await room.broadcast(b"stream:" + data, datagram=False, exclude=session)

    async with TestClient(app) as client:
        ada, bob, cy = [await client.connect("/room") for _ in range(3)]
        await wait_members(app, "lobby", 3)
        await ada.send_datagram(data=b"hi")
        for other in (bob, cy):
            with anyio.fail_after(10):
                assert await other.read_datagram() == b"hi"
                stream = await other.accept_unidirectional_stream()
                assert await stream.read_all() == b"stream:hi"
        assert app.room("lobby").stats()["sent"] == 4
        # A member that closes is dropped at the next broadcast that finds it closed;
        # without a broker nothing is queued for Redis.
        await cy.close()
        with anyio.fail_after(10):
            while len(app.room("lobby").members()) != 2:
                await anyio.sleep(0.01)
        assert app._rooms.stale == []


class FakeMember:
    session_id = 1

    def __init__(self) -> None:
        self.is_closed = False
        self.received: list[bytes] = []

    async def send_datagram(self, *, data: bytes) -> None:
        self.received.append(data)


async def test_pruning_closed_members_without_a_broker_queues_nothing() -> None:
    app = ServerApp()
    room = app.room("lobby")
    members = [FakeMember() for _ in range(3)]
    for member in members:
        await room.join(member)  # type: ignore[arg-type]
    members[0].is_closed = True
    assert await room.broadcast(b"x") == 2
    assert room.members() == members[1:]
    assert app._rooms.stale == []  # a queue for Redis would grow forever here
    assert [m.received for m in members] == [[], [b"x"], [b"x"]]


async def test_the_in_process_limiter_warns_when_it_is_one_of_several_workers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fastwt.framework import create_rate_limit_middleware

    limiter = create_rate_limit_middleware(max_requests=5, window_seconds=60)
    async with limiter:
        pass
    assert "counts alone" not in caplog.text
    monkeypatch.setenv("FASTWT_WORKER_COUNT", "3")
    async with limiter:
        pass
    assert "one of 3 workers and counts alone" in caplog.text
    assert "3 x 5 sessions per 60 s" in caplog.text

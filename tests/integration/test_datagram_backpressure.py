"""Datagram bursts (issue 14): ``await send_datagram()`` waits for room in the send buffer
instead of letting older queued datagrams be dropped, and the receive queue is bounded in
bytes, not at 4,096 entries. Real QUIC on loopback; counts only, no timing."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest

from fastwt import (
    ClientConfig,
    ServerConfig,
    WebTransportClient,
    WebTransportServer,
    WebTransportSession,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("backend")]

PAD = bytes(56)


@dataclass
class Counter:
    """A server that reads every datagram of its one session in batches, once
    ``reading`` is set, and counts them."""

    url: str
    certificate_hash: str
    reading: anyio.Event = field(default_factory=anyio.Event)
    received: set[int] = field(default_factory=set)
    session: WebTransportSession | None = None

    def client(self) -> WebTransportClient:
        return WebTransportClient(
            config=ClientConfig(server_certificate_hashes=[self.certificate_hash])
        )

    async def wait_for(self, count: int) -> None:
        await until(lambda: len(self.received), count)


async def until(current: Callable[[], float], target: float) -> None:
    """Waits until ``current()`` reaches ``target`` or stops growing for a second (then
    the caller's assertion says what is missing, instead of a test timeout)."""
    idle = 0
    while current() < target and idle < 50:
        before = current()
        await anyio.sleep(0.02)
        idle = idle + 1 if current() == before else 0


@asynccontextmanager
async def counting_server(*, read_at_once: bool = True, **config: object) -> AsyncIterator[Counter]:
    cfg = ServerConfig(bind_host="127.0.0.1", bind_port=0, **config)  # type: ignore[arg-type]
    async with WebTransportServer(config=cfg) as server, anyio.create_task_group() as tg:
        await server.listen()
        port = server.local_addresses[0][1]
        counter = Counter(f"https://127.0.0.1:{port}/count", server.certificate_hash)
        if read_at_once:
            counter.reading.set()

        async def serve() -> None:
            async for session in server.incoming_sessions():
                await session.accept()
                counter.session = session
                await counter.reading.wait()
                async for d in session.datagrams():
                    counter.received.add(struct.unpack_from("<Q", d)[0])

        tg.start_soon(serve)
        try:
            yield counter
        finally:
            await server.close()
            tg.cancel_scope.cancel()


async def _drained(session: WebTransportSession, count: int) -> dict[str, int | float]:
    """The client's stats once its queued datagrams left: on Rust, quinn's count of the
    DATAGRAM frames it put in packets reaches ``count`` or stops growing (the pure
    backend has no such count)."""
    stats = session.stats()
    if "datagram_frames_sent" not in stats:
        return stats
    while stats["datagram_frames_sent"] < count:
        before = stats["datagram_frames_sent"]
        await anyio.sleep(0.25)
        stats = session.stats()
        if stats["datagram_frames_sent"] == before:
            break  # stopped short: the caller's assertion reports it
    return stats


async def test_a_burst_awaited_one_by_one_loses_nothing_on_the_sending_side() -> None:
    # 40,000 datagrams of 64 bytes are about 4 MB in quinn's buffer (1 MiB): a loop
    # awaiting each send outruns the path at once, so before the fix quinn dropped the
    # oldest queued datagrams (tens of thousands here); now each await waits for room.
    total = 40_000
    async with counting_server() as counter, counter.client() as client:
        session = await client.connect(url=counter.url)
        with anyio.fail_after(120):
            for i in range(total):
                await session.send_datagram(data=struct.pack("<Q", i) + PAD)
            stats = await _drained(session, total)
            assert stats["datagrams_sent"] == total
            if "datagram_frames_sent" in stats:
                assert stats["datagram_frames_sent"] == total  # none dropped by quinn
            await counter.wait_for(total)
        assert counter.received == set(range(total))
        assert counter.session is not None
        server_stats = counter.session.stats()
        assert server_stats["datagrams_received"] == total
        assert server_stats["datagrams_dropped"] == 0


async def test_send_datagrams_batches_wait_for_room_too() -> None:
    total, batch = 40_000, 1_000
    async with counting_server() as counter, counter.client() as client:
        session = await client.connect(url=counter.url)
        with anyio.fail_after(120):
            for start in range(0, total, batch):
                payloads = (struct.pack("<Q", i) + PAD for i in range(start, start + batch))
                assert await session.send_datagrams(data=payloads) == batch
            stats = await _drained(session, total)
            assert stats["datagrams_sent"] == total
            if "datagram_frames_sent" in stats:
                assert stats["datagram_frames_sent"] == total
            await counter.wait_for(total)
        assert counter.received == set(range(total))


async def test_a_burst_waits_in_the_receive_queue_until_the_handler_reads() -> None:
    # The handler reads nothing until the whole burst was sent: 20,000 datagrams of 64
    # bytes (about 2.2 MB counted with their bookkeeping) fit in the default byte bound
    # (8 MiB); before, the queue dropped all but the newest 4,096.
    total = 20_000
    async with counting_server(read_at_once=False) as counter, counter.client() as client:
        session = await client.connect(url=counter.url)
        with anyio.fail_after(120):
            for i in range(total):
                await session.send_datagram(data=struct.pack("<Q", i) + PAD)
            while counter.session is None:
                await anyio.sleep(0.01)
            server_session = counter.session
            # Every datagram reached the server's session, and none was read yet.
            await until(lambda: server_session.stats()["datagrams_received"], total)
            assert server_session.stats()["datagrams_dropped"] == 0
            counter.reading.set()
            await counter.wait_for(total)
        assert counter.received == set(range(total))
        assert server_session.stats()["datagrams_dropped"] == 0


async def test_the_byte_bound_holds_empty_datagrams_too() -> None:
    # Each queued datagram counts its payload plus 48 bytes of bookkeeping, so even
    # datagrams of 8 bytes cannot pile up without bound: 5,600 bytes hold 100 of them.
    total = 1_000
    async with (
        counting_server(read_at_once=False, datagram_queue_bytes=5_600) as counter,
        counter.client() as client,
    ):
        session = await client.connect(url=counter.url)
        with anyio.fail_after(60):
            for i in range(total):
                await session.send_datagram(data=struct.pack("<Q", i))
            while counter.session is None:
                await anyio.sleep(0.01)
            server_session = counter.session
            await until(lambda: server_session.stats()["datagrams_received"], total)
            counter.reading.set()
            await counter.wait_for(100)
            await anyio.sleep(0.2)  # nothing more is queued
        assert counter.received == set(range(total - 100, total))  # the newest survive
        assert server_session.stats()["datagrams_dropped"] == total - 100


async def test_an_entry_cap_still_applies_when_configured() -> None:
    total = 500
    async with (
        counting_server(read_at_once=False, datagram_queue_size=50) as counter,
        counter.client() as client,
    ):
        session = await client.connect(url=counter.url)
        with anyio.fail_after(60):
            for i in range(total):
                await session.send_datagram(data=struct.pack("<Q", i) + PAD)
            while counter.session is None:
                await anyio.sleep(0.01)
            server_session = counter.session
            await until(lambda: server_session.stats()["datagrams_received"], total)
            counter.reading.set()
            await counter.wait_for(50)
            await anyio.sleep(0.2)
        assert counter.received == set(range(total - 50, total))
        assert server_session.stats()["datagrams_dropped"] == total - 50


async def test_sending_without_waiting_still_delivers() -> None:
    # wait=False is the fan-out path: it never waits (quinn drops its oldest queued
    # datagram when full). A few datagrams paced by their round trips all arrive.
    async with counting_server() as counter, counter.client() as client:
        session = await client.connect(url=counter.url)
        with anyio.fail_after(30):
            for i in range(20):
                await session.send_datagram(data=struct.pack("<Q", i) + PAD, wait=False)
                await counter.wait_for(i + 1)
            assert (
                await session.send_datagrams(
                    data=[struct.pack("<Q", i) + PAD for i in range(20, 40)], wait=False
                )
                == 20
            )
            await counter.wait_for(40)
        assert counter.received == set(range(40))
        assert session.stats()["datagrams_sent"] == 40


async def test_queue_size_none_is_accepted_and_zero_refused() -> None:
    from fastwt import ConfigurationError

    assert ServerConfig(datagram_queue_size=None).datagram_queue_size is None
    assert ServerConfig().datagram_queue_bytes == 8 * 1024 * 1024
    with pytest.raises(ConfigurationError, match="datagram_queue_size"):
        ServerConfig(datagram_queue_size=0)

"""Datagrams over real QUIC on loopback."""

from __future__ import annotations

import anyio
import pytest

from fastwt import DatagramError

from .echo_server import echo_server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("backend")]


async def test_ten_thousand_datagrams_echoed_with_counts() -> None:
    total = 10_000
    window = 50
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        received: set[int] = set()
        with anyio.fail_after(60):
            for start in range(0, total, window):
                batch = [i.to_bytes(4, "big") + b"x" * 60 for i in range(start, start + window)]
                assert await session.send_datagrams(data=batch) == window
                want = set(range(start, start + window))
                with anyio.move_on_after(2):
                    while not want <= received:
                        for d in await session.read_datagrams(max_count=window):
                            received.add(int.from_bytes(d[:4], "big"))
        stats = session.stats()
        assert stats["datagrams_sent"] == total
        assert stats["datagrams_received"] == len(received)
        assert len(received) >= total * 0.99, f"only {len(received)} of {total} echoed"
        server_session = echo.sessions[0]
        assert server_session.stats()["datagrams_received"] >= len(received)


async def test_oversize_datagram_is_a_clear_error() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        limit = session.max_datagram_size
        assert 1000 < limit < 65536
        # The limit only grows (path MTU discovery), so this size always fits.
        await session.send_datagram(data=b"x" * limit)
        with pytest.raises(DatagramError) as excinfo:
            await session.send_datagram(data=b"x" * 65536)
        assert excinfo.value.max_size is not None and excinfo.value.max_size >= limit
        assert "65536" in str(excinfo.value) and str(excinfo.value.max_size) in str(excinfo.value)


async def test_datagram_queue_drops_oldest_and_counts() -> None:
    async with echo_server() as echo, echo.client(datagram_queue_size=8) as client:
        session = await client.connect(url=f"{echo.url}/echo")
        for i in range(50):
            await session.send_datagram(data=bytes([i]))
            await anyio.sleep(0.002)
        await anyio.sleep(0.3)
        got = await session.read_datagrams(max_count=100)
        assert len(got) <= 8
        assert got[-1] == bytes([49])  # the newest survive
        assert session.stats()["datagrams_dropped"] >= 50 - 8 - 1


async def test_datagram_queue_is_bounded_in_bytes_too() -> None:
    # At most six 100-byte datagrams fit in 1000 bytes (each counts 48 bytes more).
    async with (
        echo_server() as echo,
        echo.client(datagram_queue_bytes=1000) as client,
    ):
        session = await client.connect(url=f"{echo.url}/echo")
        for i in range(40):
            await session.send_datagram(data=bytes([i]) * 100)
            await anyio.sleep(0.002)
        await anyio.sleep(0.3)
        got = await session.read_datagrams(max_count=100)
        assert 1 <= len(got) <= 6
        assert got[-1] == bytes([39]) * 100  # the newest survive
        assert session.stats()["datagrams_dropped"] >= 40 - 6 - 1


async def test_largest_allowed_datagram_arrives_and_so_do_the_next() -> None:
    """A datagram of ``max_datagram_size`` fits in a packet: it comes back, and does not
    hold up the ones after it (one that never fits would stay queued)."""
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        limit = session.max_datagram_size
        for payload in (b"L" * limit, b"small"):
            got = b""
            with anyio.fail_after(10):
                while got != payload:
                    await session.send_datagram(data=payload)
                    with anyio.move_on_after(0.5):
                        got = await session.read_datagram()

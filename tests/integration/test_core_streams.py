"""Streams over real QUIC on loopback, on asyncio and trio."""

from __future__ import annotations

import hashlib
import os

import anyio
import pytest

from fastwt import ServerConfig, StreamError, WebTransportSession

from .echo_server import echo_server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("backend")]


async def test_64_mib_bidirectional_echo_keeps_every_byte() -> None:
    payload = os.urandom(64 * 1024 * 1024)
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        stream = await session.create_bidirectional_stream()
        received = hashlib.sha256()
        total = 0

        async def reader() -> None:
            nonlocal total
            async for chunk in stream:
                received.update(chunk)
                total += len(chunk)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await stream.write_all(data=payload, chunk_size=256 * 1024)
        assert total == len(payload)
        assert received.hexdigest() == hashlib.sha256(payload).hexdigest()


@pytest.mark.rust_only("zero-copy writes are the Rust core's: aioquic copies what it sends")
async def test_large_write_is_shared_then_released() -> None:
    """A large ``bytes`` write is queued without a copy: the stream holds the object
    until QUIC has sent it, then lets it go (no reference is leaked)."""
    import sys

    payload = os.urandom(300_000)
    baseline = sys.getrefcount(payload)
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        for _ in range(3):
            stream = await session.create_bidirectional_stream()
            with anyio.fail_after(10):
                await stream.write(data=payload, end_stream=True)
                # Queued by reference: held until the peer acknowledges it.
                assert sys.getrefcount(payload) > baseline
                assert await stream.read_all() == payload
        # The last reference is dropped on the I/O thread without the GIL; pyo3 applies
        # it at the next call into the extension.
        with anyio.fail_after(5):
            while sys.getrefcount(payload) != baseline:
                await session.create_bidirectional_stream()
                await anyio.sleep(0.01)
    assert sys.getrefcount(payload) == baseline


async def test_unidirectional_streams_both_ways() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/push-uni")
        with anyio.fail_after(10):
            pushed = await session.accept_unidirectional_stream()
            assert pushed.is_peer_initiated
            assert await pushed.read_all() == b"from server"
            out = await session.create_unidirectional_stream()
            await out.write(data=b"client uni", end_stream=True)
            back = await session.accept_unidirectional_stream()
            assert await back.read_all() == b"client uni"


async def test_thousand_concurrent_streams_on_one_session() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        results: dict[int, bytes] = {}

        async def one(i: int) -> None:
            stream = await session.create_bidirectional_stream()
            await stream.write(data=f"msg-{i}".encode(), end_stream=True)
            results[i] = await stream.read_all()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(1000):
                    tg.start_soon(one, i)
        assert len(results) == 1000
        assert all(results[i] == f"msg-{i}".encode() for i in range(1000))


async def test_readline_readexactly_readuntil() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"line one\nline two\nXYZ--rest", end_stream=True)
        with anyio.fail_after(10):
            assert await stream.readline() == b"line one\n"
            assert await stream.readuntil(separator=b"\n") == b"line two\n"
            assert await stream.readexactly(size=3) == b"XYZ"
            assert await stream.readuntil(separator=b"--") == b"--"
            assert await stream.read() == b"rest"
            assert await stream.read() == b""


async def test_stream_reset_reaches_peer_with_code() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"partial")
        # A stream reset before the peer has read its WebTransport header is dropped by
        # the protocol (it never reaches the application), so let the header land first.
        await anyio.sleep(0.2)
        await stream.reset(error_code=77)
        with pytest.raises(StreamError, match="closed"):
            await stream.write(data=b"more")
        # The server's read of that stream fails with our code.
        with anyio.fail_after(5):
            while not any(isinstance(e, StreamError) for e in echo.errors):
                await anyio.sleep(0.01)
        codes = [e.error_code for e in echo.errors if isinstance(e, StreamError)]
        assert 77 in codes


async def test_framed_reads_across_pieces_keep_what_they_do_not_return() -> None:
    """``readuntil``/``readexactly`` complete messages that arrive in pieces (a
    separator split between two packets too); a limit overrun consumes nothing and an
    incomplete ``readexactly`` leaves its bytes readable."""
    from fastwt.framework import ServerApp
    from fastwt.testing import TestClient

    app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0))
    pieces = [b"hel", b"lo\r", b"\nab", b"cdef", b"ghij\r\n", b"x--E", b"ND-", b"-tail"]

    @app.route(path="/pieces")
    async def send_pieces(session: WebTransportSession) -> None:
        stream = await session.create_unidirectional_stream()
        for piece in pieces:
            await stream.write(data=piece)
            await anyio.sleep(0.05)
        await stream.write(data=b"", end_stream=True)
        await session.wait_closed()

    async with TestClient(app) as served:
        session = await served.connect("/pieces")
        with anyio.fail_after(10):
            stream = await session.accept_unidirectional_stream()
            assert await stream.readuntil(separator=b"\r\n") == b"hello\r\n"
            assert await stream.readexactly(size=4) == b"abcd"
            with pytest.raises(StreamError, match=r"separator not found within max_size=3"):
                await stream.readuntil(separator=b"\r\n", max_size=3)
            assert await stream.readuntil(separator=b"\r\n", max_size=8) == b"efghij\r\n"
            assert await stream.readuntil(separator=b"--END--") == b"x--END--"
            with pytest.raises(StreamError, match=r"stream ended after 4 of 10 bytes"):
                await stream.readexactly(size=10)
            assert not stream.at_eof
            assert await stream.read(max_size=2) == b"ta"
            assert await stream.readline() == b"il"
            assert stream.at_eof
            assert await stream.read() == b""

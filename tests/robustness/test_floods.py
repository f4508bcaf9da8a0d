"""Floods from one hostile client: streams full of data into a session the app has not
accepted, or whose app never takes a stream, and datagrams into a slow handler. Memory
must stay bounded by flow control and the documented queues, not grow with what the
client sends; live clients still get in. The server runs in its own process
(peers/flood_server.py) so that its memory is measured alone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import pytest
from raw_client import connect_request, raw_connection, response_status
from robustness_figures import long_mode, record
from server_process import ServerProcess, server_process

from fastwt import ClientConfig, WebTransportClient
from fastwt.errors import WebTransportError

pytestmark = pytest.mark.anyio

MIB = 1 << 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the raw aioquic client runs on asyncio


@pytest.fixture(params=["unaccepted", "unread", "slow"])
def flood_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    # An unaccepted session must stay unanswered for the whole flood.
    with server_process(request.param, request_timeout=60.0) as server:
        yield server


async def flood_streams(server: ServerProcess, seconds: float, accepted: bool) -> int:
    """Opens uni streams of 64 KiB (finished) and bidi streams of 1 MiB (never finished)
    for ``seconds``; returns the bytes handed to QUIC."""
    offered = 0
    async with raw_connection(server.port, max_data=64 * MIB) as client:
        assert client.http is not None
        session_id = connect_request(client, "/flood", port=server.port)
        if accepted:
            assert await response_status(client, session_id) == b"200"
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            unidirectional = n % 16 != 0
            stream_id = client.http.create_webtransport_stream(
                session_id, is_unidirectional=unidirectional
            )
            size = 64 * 1024 if unidirectional else MIB
            client._quic.send_stream_data(stream_id, b"f" * size, end_stream=unidirectional)
            client.transmit()
            offered += size
            n += 1
            await anyio.sleep(0.002)
        await anyio.sleep(0.5)  # let the server take what it will
    return offered


async def flood_uni_streams_fast(server: ServerProcess, seconds: float) -> tuple[int, int]:
    """Finished 64 KiB unidirectional streams as fast as a Rust client sends them (a
    stream read to its FIN frees QUIC credit, so only the server's queue bounds them)."""
    trust = ClientConfig(server_certificate_hashes=[server.certificate_hash])
    offered = refused = 0
    chunk = b"u" * (64 * 1024)
    async with WebTransportClient(config=trust) as client:
        session = await client.connect(url=f"https://127.0.0.1:{server.port}/flood")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                with anyio.fail_after(2):
                    stream = await session.create_unidirectional_stream()
                    await stream.write(data=chunk, end_stream=True)
                offered += len(chunk)
            except (WebTransportError, TimeoutError):
                refused += 1
        await anyio.sleep(0.5)
        await session.close()
    return offered, refused


async def test_floods_stay_bounded_and_live_clients_get_in(
    flood_server: ServerProcess, request: pytest.FixtureRequest
) -> None:
    mode = request.node.callspec.params["flood_server"]
    seconds = 20.0 if long_mode(request.config) else 3.0
    await anyio.sleep(0.3)
    before = flood_server.rss()
    if mode == "slow":
        trust = ClientConfig(server_certificate_hashes=[flood_server.certificate_hash])
        sent = 0
        async with WebTransportClient(config=trust) as client:
            session = await client.connect(url=f"https://127.0.0.1:{flood_server.port}/flood")
            deadline = time.monotonic() + seconds
            payload = b"d" * 1000
            while time.monotonic() < deadline:
                for _ in range(100):
                    await session.send_datagram(data=payload)
                sent += 100
                await anyio.sleep(0.001)
            await anyio.sleep(0.5)
            grown = flood_server.rss() - before
            stats = dict(flood_server.stats)
            await session.close()
        assert stats["dropped"] > 0, stats  # the slow handler could not keep up
        figure = (
            f"{sent} datagrams of 1000 B offered, {stats['read']} read, "
            f"{stats['dropped']} dropped (counted), RSS +{grown / MIB:.1f} MiB"
        )
        offered = sent * 1000
    elif mode == "unread":
        offered, refused = await flood_uni_streams_fast(flood_server, seconds)
        grown = flood_server.rss() - before
        figure = (
            f"{offered / MIB:.0f} MiB offered on 64 KiB streams ({refused} refused), "
            f"RSS +{grown / MIB:.1f} MiB"
        )
    else:
        offered = await flood_streams(flood_server, seconds, accepted=False)
        grown = flood_server.rss() - before
        figure = f"{offered / MIB:.0f} MiB offered on streams, RSS +{grown / MIB:.1f} MiB"
    record(f"flood into a {mode} session", figure)
    # Bounded by flow control (16 MiB connection window) and the queues, not the offer.
    assert grown < 48 * MIB, figure
    assert await flood_server.live_echo() == b"live"

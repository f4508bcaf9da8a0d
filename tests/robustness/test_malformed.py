"""Malformed HTTP/3 and WebTransport from a raw QUIC client (aioquic): each bad request is
refused or closed with the right error, and the server and every other session keep
working (a live session, opened before, echoes after each case)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from _aioquic_peer import bidi_echo
from aioquic.buffer import encode_uint_var
from integration.echo_server import EchoServer, echo_server
from raw_client import accepted_session, connect_request, raw_connection, response_status
from robustness_figures import record

from fastwt import WebTransportSession

pytestmark = pytest.mark.anyio

H3_FRAME_HEADERS = 0x01
H3_FRAME_DATA = 0x00


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the raw aioquic client runs on asyncio


@pytest.fixture
async def serving() -> AsyncIterator[tuple[EchoServer, WebTransportSession]]:
    async with echo_server(request_timeout=1.0) as echo, echo.client() as client:
        live = await client.connect(url=f"{echo.url}/echo")
        yield echo, live
        stream = await live.create_bidirectional_stream()
        await stream.write(data=b"still here", end_stream=True)
        with anyio.fail_after(5):
            assert await stream.read_all() == b"still here"


def base_fields(port: int) -> dict[bytes, bytes]:
    return {
        b":method": b"CONNECT",
        b":scheme": b"https",
        b":authority": f"127.0.0.1:{port}".encode(),
        b":path": b"/echo",
        b":protocol": b"webtransport",
    }


def frame(kind: int, payload: bytes) -> bytes:
    return encode_uint_var(kind) + encode_uint_var(len(payload)) + payload


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({b":method": b"GET"}, b"405"),
        ({b":protocol": b"websocket"}, b"400"),
        ({b":path": None}, b"400"),
        ({b":authority": None}, b"400"),
        ({b":protocol": None}, b"400"),
    ],
    ids=["method GET", "protocol websocket", "no path", "no authority", "no protocol"],
)
async def test_bad_pseudo_headers_get_an_error_status(
    serving: tuple[EchoServer, WebTransportSession],
    change: dict[bytes, bytes | None],
    status: bytes,
) -> None:
    echo, _live = serving
    port = echo.server.local_addresses[0][1]
    fields = {**base_fields(port), **change}
    async with raw_connection(port) as client:
        stream_id = connect_request(
            client, fields=[(k, v) for k, v in fields.items() if v is not None]
        )
        assert await response_status(client, stream_id) == status
    assert echo.server.session_count == 1  # only the live one


async def test_a_one_mebibyte_header_block_is_refused_without_buffering_it(
    serving: tuple[EchoServer, WebTransportSession],
) -> None:
    echo, _live = serving
    port = echo.server.local_addresses[0][1]
    async with raw_connection(port) as client:
        # 128 fields of 8 KiB: a 1 MiB block (one value that long is beyond aioquic's encoder).
        big = [(f"x-big-{i}".encode(), b"a" * 8192) for i in range(128)]
        connect_request(client, port=port, extra=big)
        with anyio.fail_after(5):
            await client.terminated.wait()
    record("1 MiB header block", "connection closed (frame over the 64 KiB limit)")


async def test_never_finished_headers_are_cut_off_at_the_deadline(
    serving: tuple[EchoServer, WebTransportSession],
) -> None:
    echo, _live = serving
    port = echo.server.local_addresses[0][1]
    async with raw_connection(port) as client:
        stream_id = client._quic.get_next_available_stream_id()
        # A HEADERS frame announcing 200 bytes, of which 3 ever arrive (slowloris).
        client._quic.send_stream_data(stream_id, encode_uint_var(H3_FRAME_HEADERS) + b"\x40\xc8abc")
        client.transmit()
        started = anyio.current_time()
        with anyio.fail_after(5):
            await client.terminated.wait()
        took = anyio.current_time() - started
    assert echo.server.handshake_count == 0
    record("never-finished HEADERS (request_timeout 1 s)", f"closed after {took:.2f} s")


async def test_unknown_frames_and_capsules_are_ignored(
    serving: tuple[EchoServer, WebTransportSession],
) -> None:
    echo, _live = serving
    port = echo.server.local_addresses[0][1]
    async with accepted_session(port) as client:
        session_id = client.session_id
        assert session_id is not None
        unknown_frame = frame(0x21 + 0x1F * 7, b"reserved frame type")
        unknown_capsule = encode_uint_var(0x17) + encode_uint_var(3) + b"abc"
        client._quic.send_stream_data(
            session_id, unknown_frame + frame(H3_FRAME_DATA, unknown_capsule)
        )
        client.transmit()
        with anyio.fail_after(5):
            assert await bidi_echo(client, b"after unknowns") == b"after unknowns"


async def test_a_stream_reset_mid_transfer_costs_only_that_stream(
    serving: tuple[EchoServer, WebTransportSession],
) -> None:
    echo, _live = serving
    port = echo.server.local_addresses[0][1]
    async with accepted_session(port) as client:
        session_id = client.session_id
        assert session_id is not None
        stream_id = client.open_bidi_stream()
        client._quic.send_stream_data(stream_id, b"x" * 50_000)
        client._quic.reset_stream(stream_id, 0x10C)
        client.transmit()
        with anyio.fail_after(5):
            assert await bidi_echo(client, b"next stream") == b"next stream"

"""A hostile or broken client for the robustness cases: aioquic's QUIC and HTTP/3 layers
(the interop tests' peer) with every knob open, so a case can send what a browser never
would: tiny flow-control windows, bad requests, resets, floods."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

from _aioquic_peer import WebTransportProtocol, session_close_data
from aioquic.asyncio import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration

__all__ = [
    "accepted_session",
    "connect_request",
    "raw_connection",
    "response_status",
    "session_close_data",
]


@contextlib.asynccontextmanager
async def raw_connection(
    port: int, *, host: str = "127.0.0.1", **quic: Any
) -> AsyncIterator[WebTransportProtocol]:
    """A QUIC + HTTP/3 connection whose SETTINGS exchange is done (``quic`` overrides
    ``QuicConfiguration`` fields, e.g. ``max_stream_data=1``)."""
    configuration = QuicConfiguration(
        alpn_protocols=H3_ALPN, is_client=True, max_datagram_frame_size=65536, **quic
    )
    configuration.verify_mode = ssl.CERT_NONE
    async with connect(
        host, port, configuration=configuration, create_protocol=WebTransportProtocol
    ) as client:
        assert isinstance(client, WebTransportProtocol) and client.http is not None
        for _ in range(500):
            if client.http.received_settings is not None:
                break
            await asyncio.sleep(0.01)
        yield client


def connect_request(
    client: WebTransportProtocol,
    path: str = "/",
    *,
    port: int = 443,
    extra: list[tuple[bytes, bytes]] | None = None,
    fields: list[tuple[bytes, bytes]] | None = None,
) -> int:
    """Sends a WebTransport CONNECT (or exactly ``fields``); returns its stream id."""
    assert client.http is not None
    stream_id = client._quic.get_next_available_stream_id()
    headers = fields or [
        (b":method", b"CONNECT"),
        (b":scheme", b"https"),
        (b":authority", f"127.0.0.1:{port}".encode()),
        (b":path", path.encode()),
        (b":protocol", b"webtransport"),
        (b"origin", b"https://robustness.test"),
        (b"sec-webtransport-http3-draft02", b"1"),
        *(extra or []),
    ]
    client.http.send_headers(stream_id, headers)
    client.transmit()
    client.session_id = stream_id
    return stream_id


async def response_status(client: WebTransportProtocol, stream_id: int, wait: float = 5) -> bytes:
    """The ``:status`` of the response on ``stream_id``."""

    async def status() -> bytes:
        while True:
            for event in client.events:
                if isinstance(event, HeadersReceived) and event.stream_id == stream_id:
                    return dict(event.headers).get(b":status", b"")
            await asyncio.sleep(0.005)

    return await asyncio.wait_for(status(), wait)


@contextlib.asynccontextmanager
async def accepted_session(
    port: int, path: str = "/", **quic: Any
) -> AsyncIterator[WebTransportProtocol]:
    """A raw connection whose CONNECT to ``path`` the server answered with 200
    (``client.session_id`` is set)."""
    async with raw_connection(port, **quic) as client:
        session_id = connect_request(client, path, port=port)
        assert await response_status(client, session_id) == b"200"
        yield client

"""An independent WebTransport peer built on aioquic's HTTP/3 layer (asyncio only).

aioquic speaks WebTransport draft-02 (SETTINGS_ENABLE_WEBTRANSPORT, H3_DATAGRAM,
WEBTRANSPORT_STREAM frames), which is what Chrome and Firefox negotiate too. This
module gives the interop tests an aioquic echo *server* and an aioquic *client*, and a
Safari-shaped client (:func:`safari_session`): the SETTINGS and CONNECT of drafts
07..14 as Safari sends them, and Safari's session flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.buffer import Buffer, BufferReadError, encode_uint_var
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    ProtocolNegotiated,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)

CLOSE_WEBTRANSPORT_SESSION = 0x2843

# Drafts 07..15 codepoints (draft-ietf-webtrans-http3).
SETTINGS_ENABLE_WEBTRANSPORT_DRAFT02 = 0x2B603742
SETTINGS_WEBTRANSPORT_MAX_SESSIONS_DRAFT07 = 0xC671706A
SETTINGS_WT_MAX_SESSIONS = 0x14E9CD29
SETTINGS_WT_ENABLED = 0x2C7CF000
SETTINGS_WT_INITIAL_MAX_DATA = 0x2B61
SETTINGS_WT_INITIAL_MAX_STREAMS_UNI = 0x2B64
SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI = 0x2B65
WT_MAX_DATA = 0x190B4D3D
WT_MAX_STREAMS_BIDI = 0x190B4D3F
WT_MAX_STREAMS_UNI = 0x190B4D40
WT_STREAMS_BLOCKED_BIDI = 0x190B4D43
WT_STREAMS_BLOCKED_UNI = 0x190B4D44


def close_capsule(code: int, reason: str) -> bytes:
    """A CLOSE_WEBTRANSPORT_SESSION capsule: 32-bit code, then the UTF-8 reason."""
    payload = code.to_bytes(4, "big") + reason.encode()
    return encode_uint_var(CLOSE_WEBTRANSPORT_SESSION) + encode_uint_var(len(payload)) + payload


def varint_capsule(kind: int, value: int) -> bytes:
    """A capsule whose body is one varint (WT_MAX_DATA, WT_MAX_STREAMS, ...)."""
    body = encode_uint_var(value)
    return encode_uint_var(kind) + encode_uint_var(len(body)) + body


def parse_capsules(data: bytes) -> list[tuple[int, bytes]]:
    """(type, body) of every whole capsule in ``data``."""
    buf = Buffer(data=data)
    out = []
    while not buf.eof():
        try:
            kind = buf.pull_uint_var()
            length = buf.pull_uint_var()
            body = buf.pull_bytes(length)
        except BufferReadError:
            break
        out.append((kind, body))
    return out


def capsule_value(body: bytes) -> int:
    value: int = Buffer(data=body).pull_uint_var()
    return value


def is_bidirectional(stream_id: int) -> bool:
    return stream_id & 0x2 == 0


class SafariH3Connection(H3Connection):
    """aioquic's HTTP/3 with the SETTINGS Safari sends: WT_MAX_SESSIONS (drafts 13..14)
    and draft-07's WEBTRANSPORT_MAX_SESSIONS, no draft-02 ENABLE_WEBTRANSPORT, and
    initial session flow-control limits (only 2 unidirectional streams: a server
    must wait for more credit before its third)."""

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings.pop(SETTINGS_ENABLE_WEBTRANSPORT_DRAFT02, None)
        settings[SETTINGS_WT_MAX_SESSIONS] = 1
        settings[SETTINGS_WEBTRANSPORT_MAX_SESSIONS_DRAFT07] = 1
        settings[SETTINGS_WT_INITIAL_MAX_DATA] = 1 << 20
        settings[SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI] = 16
        settings[SETTINGS_WT_INITIAL_MAX_STREAMS_UNI] = 2
        return settings


class WebTransportProtocol(QuicConnectionProtocol):
    """An aioquic connection with an H3 layer that has WebTransport enabled."""

    h3_class: type[H3Connection] = H3Connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http: H3Connection | None = None
        self.session_id: int | None = None
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self.buffers: dict[int, bytearray] = defaultdict(bytearray)
        self.ended: dict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self.events: list[H3Event] = []
        self.terminated = asyncio.Event()
        # Bidirectional streams this side opened: aioquic's H3 layer does not know the
        # replies on them are WebTransport data, so they bypass it.
        self.local_bidi: set[int] = set()
        # RESET_STREAM error codes the peer sent, by stream.
        self.resets: dict[int, int] = {}

    def open_bidi_stream(self) -> int:
        assert self.http is not None and self.session_id is not None
        stream_id = self.http.create_webtransport_stream(self.session_id)
        self.local_bidi.add(stream_id)
        return stream_id

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived) and event.stream_id in self.local_bidi:
            self.h3_event_received(
                WebTransportStreamDataReceived(
                    data=event.data,
                    session_id=self.session_id or 0,
                    stream_id=event.stream_id,
                    stream_ended=event.end_stream,
                )
            )
            return
        if isinstance(event, StreamReset):
            self.resets[event.stream_id] = event.error_code
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.http = self.h3_class(self._quic, enable_webtransport=True)
        elif isinstance(event, ConnectionTerminated):
            self.terminated.set()
        if self.http is not None:
            for h3_event in self.http.handle_event(event):
                self.events.append(h3_event)
                self.h3_event_received(h3_event)

    def h3_event_received(self, event: H3Event) -> None:
        if isinstance(event, WebTransportStreamDataReceived):
            self.buffers[event.stream_id] += event.data
            if event.stream_ended:
                self.ended[event.stream_id].set()
        elif isinstance(event, DatagramReceived):
            self.datagrams.put_nowait(event.data)

    async def read_stream(self, stream_id: int, wait: float = 5.0) -> bytes:
        """Everything received on ``stream_id`` once the peer ends it."""
        await asyncio.wait_for(self.ended[stream_id].wait(), wait)
        return bytes(self.buffers[stream_id])


class EchoServerProtocol(WebTransportProtocol):
    """Accepts WebTransport sessions on any path and echoes like ``fastwt dev``:
    bidirectional streams on themselves, unidirectional streams on a new one,
    datagrams back. A session on ``/close`` is closed by the server (code 7, reason
    "bye from aioquic") as soon as it is accepted."""

    CLOSE_CODE = 7
    CLOSE_REASON = "bye from aioquic"

    def h3_event_received(self, event: H3Event) -> None:
        assert self.http is not None
        if isinstance(event, HeadersReceived):
            headers = dict(event.headers)
            is_connect = headers.get(b":method") == b"CONNECT"
            if is_connect and headers.get(b":protocol") == b"webtransport":
                self.session_id = event.stream_id
                self.http.send_headers(
                    event.stream_id,
                    [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")],
                )
                if headers.get(b":path", b"").split(b"?")[0] == b"/close":
                    self.http.send_data(
                        event.stream_id,
                        close_capsule(self.CLOSE_CODE, self.CLOSE_REASON),
                        end_stream=True,
                    )
            else:
                self.http.send_headers(event.stream_id, [(b":status", b"404")], end_stream=True)
        elif isinstance(event, WebTransportStreamDataReceived):
            if is_bidirectional(event.stream_id):
                self._quic.send_stream_data(event.stream_id, event.data, event.stream_ended)
            else:
                self.buffers[event.stream_id] += event.data
                if event.stream_ended:
                    reply = self.http.create_webtransport_stream(
                        event.session_id, is_unidirectional=True
                    )
                    data = bytes(self.buffers.pop(event.stream_id))
                    self._quic.send_stream_data(reply, data, end_stream=True)
        elif isinstance(event, DatagramReceived):
            self.http.send_datagram(event.stream_id, event.data)
        self.transmit()


@contextlib.asynccontextmanager
async def aioquic_echo_server(
    *, host: str, port: int, certfile: str, keyfile: str
) -> AsyncIterator[int]:
    """Run an aioquic WebTransport echo server; yields its UDP port."""
    configuration = QuicConfiguration(
        alpn_protocols=H3_ALPN, is_client=False, max_datagram_frame_size=65536
    )
    configuration.load_cert_chain(certfile, keyfile)
    server = await serve(
        host, port, configuration=configuration, create_protocol=EchoServerProtocol
    )
    try:
        yield server._transport.get_extra_info("sockname")[1]
    finally:
        server.close()


@contextlib.asynccontextmanager
async def aioquic_session(
    *, host: str, port: int, path: str = "/echo", cafile: str | None = None
) -> AsyncIterator[WebTransportProtocol]:
    """Connect with aioquic and open a WebTransport session; yields the connection
    with ``session_id`` set once the server answered 200."""
    configuration = QuicConfiguration(
        alpn_protocols=H3_ALPN, is_client=True, max_datagram_frame_size=65536
    )
    if cafile is None:
        configuration.verify_mode = ssl.CERT_NONE
    else:
        configuration.load_verify_locations(cafile)
    async with connect(
        host, port, configuration=configuration, create_protocol=WebTransportProtocol
    ) as client:
        assert isinstance(client, WebTransportProtocol)
        assert client.http is not None
        # The server's SETTINGS must allow extended CONNECT before we send it.
        for _ in range(200):
            if client.http.received_settings is not None:
                break
            await asyncio.sleep(0.01)
        stream_id = client._quic.get_next_available_stream_id()
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        client.http.send_headers(
            stream_id,
            [
                (b":method", b"CONNECT"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
                (b":protocol", b"webtransport"),
                (b"origin", b"https://aioquic.test"),
                (b"sec-webtransport-http3-draft02", b"1"),
            ],
        )
        client.transmit()
        status = await asyncio.wait_for(_response_status(client, stream_id), 5.0)
        if status != b"200":
            raise ConnectionRefusedError(f"WebTransport session refused: {status!r}")
        client.session_id = stream_id
        yield client


async def _response_status(client: WebTransportProtocol, stream_id: int) -> bytes:
    return (await _response_headers(client, stream_id)).get(b":status", b"")


async def _response_headers(client: WebTransportProtocol, stream_id: int) -> dict[bytes, bytes]:
    while True:
        for event in client.events:
            if isinstance(event, HeadersReceived) and event.stream_id == stream_id:
                return dict(event.headers)
        await asyncio.sleep(0.005)


class SafariProtocol(WebTransportProtocol):
    h3_class = SafariH3Connection


@contextlib.asynccontextmanager
async def safari_session(
    *, host: str, port: int, path: str = "/echo"
) -> AsyncIterator[tuple[WebTransportProtocol, dict[int, int], dict[bytes, bytes]]]:
    """A session opened the way Safari opens one: :class:`SafariH3Connection`'s
    SETTINGS, then (once the server's SETTINGS are in) an extended CONNECT with
    ``:protocol webtransport-h3`` and no draft-02 header. Yields the connection, the
    server's SETTINGS and the response headers, once the server answered 200."""
    configuration = QuicConfiguration(
        alpn_protocols=H3_ALPN, is_client=True, max_datagram_frame_size=65536
    )
    configuration.verify_mode = ssl.CERT_NONE
    async with connect(
        host, port, configuration=configuration, create_protocol=SafariProtocol
    ) as client:
        assert isinstance(client, WebTransportProtocol)
        assert client.http is not None
        for _ in range(200):
            if client.http.received_settings is not None:
                break
            await asyncio.sleep(0.01)
        settings = client.http.received_settings
        assert settings is not None, "no SETTINGS from the server"
        stream_id = client._quic.get_next_available_stream_id()
        client.http.send_headers(
            stream_id,
            [
                (b":method", b"CONNECT"),
                (b":scheme", b"https"),
                (b":authority", f"{host}:{port}".encode()),
                (b":path", path.encode()),
                (b":protocol", b"webtransport-h3"),
                (b"origin", b"https://safari.test"),
            ],
        )
        client.transmit()
        headers = await asyncio.wait_for(_response_headers(client, stream_id), 5.0)
        if headers.get(b":status") != b"200":
            raise ConnectionRefusedError(f"WebTransport session refused: {headers!r}")
        client.session_id = stream_id
        yield client, settings, headers


async def pooled_connect(
    client: WebTransportProtocol, *, host: str, port: int, path: str
) -> tuple[int, dict[bytes, bytes] | int]:
    """Another Safari-shaped CONNECT on the connection of ``client`` (a session opened
    with :func:`safari_session`): returns its stream id and the response headers, or
    the error code the server reset the request stream with."""
    assert client.http is not None
    stream_id = client._quic.get_next_available_stream_id()
    client.http.send_headers(
        stream_id,
        [
            (b":method", b"CONNECT"),
            (b":scheme", b"https"),
            (b":authority", f"{host}:{port}".encode()),
            (b":path", path.encode()),
            (b":protocol", b"webtransport-h3"),
            (b"origin", b"https://safari.test"),
        ],
    )
    client.transmit()
    async with asyncio.timeout(5):
        while True:
            if stream_id in client.resets:
                return stream_id, client.resets[stream_id]
            for event in client.events:
                if isinstance(event, HeadersReceived) and event.stream_id == stream_id:
                    return stream_id, dict(event.headers)
            await asyncio.sleep(0.005)


def connect_stream_capsules(client: WebTransportProtocol) -> list[tuple[int, bytes]]:
    """Every capsule the server sent on the CONNECT stream so far."""
    return parse_capsules(session_close_data(client))


async def wait_for_capsule(client: WebTransportProtocol, kind: int) -> int:
    """The value of the first capsule of type ``kind`` (a varint body), once it came
    (at most 5 s)."""
    async with asyncio.timeout(5):
        while True:
            for k, body in connect_stream_capsules(client):
                if k == kind:
                    return capsule_value(body)
            await asyncio.sleep(0.005)


async def bidi_echo(client: WebTransportProtocol, payload: bytes) -> bytes:
    stream_id = client.open_bidi_stream()
    client._quic.send_stream_data(stream_id, payload, end_stream=True)
    client.transmit()
    return await client.read_stream(stream_id)


async def datagram_echo(client: WebTransportProtocol, payload: bytes, tries: int = 10) -> bytes:
    """Send ``payload`` as a datagram until one comes back (datagrams may be lost)."""
    assert client.http is not None and client.session_id is not None
    for _ in range(tries):
        client.http.send_datagram(client.session_id, payload)
        client.transmit()
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(client.datagrams.get(), 0.5)
    raise TimeoutError(f"no datagram came back after {tries} tries")


def session_close_data(client: WebTransportProtocol) -> bytes:
    """What the peer sent on the CONNECT stream after its response headers."""
    return b"".join(
        event.data
        for event in client.events
        if isinstance(event, DataReceived) and event.stream_id == client.session_id
    )

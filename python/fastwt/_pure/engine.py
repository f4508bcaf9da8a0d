"""The QUIC/HTTP/3 engine of the pure-Python backend: one ``Connection`` per QUIC
connection, driven on the event loop through its hub (``hub.py``).

aioquic gives the sans-IO parts: ``QuicConnection`` (packets, TLS, loss recovery,
congestion control) and ``H3Connection`` (SETTINGS, QPACK, HEADERS and DATA frames).
Everything WebTransport-specific is here, as in the Rust core's ``driver.rs``: streams
are routed by their WebTransport header *before* aioquic's HTTP/3 layer sees them (that
layer only announces a peer's stream once its first data byte arrives, and does not
know that the replies on streams this side opened are WebTransport data), so the
HTTP/3 layer only gets the CONNECT stream and HTTP/3's own streams. Datagrams, capsules
and session close follow the Rust core's rules, so the two backends agree on the wire
and report closes the same way.

Sending: aioquic buffers stream data without limit and its public API does not say how
much is still unsent, so each connection estimates it (bytes handed to aioquic minus
the payload of the packets that left, see ``WRITE_BUFFER``) and writers wait while the
estimate is over the limit.
"""

from __future__ import annotations

import itertools
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aioquic.h3.connection import H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    DatagramFrameReceived,
    HandshakeCompleted,
    PingAcknowledged,
    ProtocolNegotiated,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)

from ..errors import (
    ConnectionError,
    SessionClosedError,
    SessionError,
    StreamError,
)
from . import wire
from .wire import CloseInfo

if TYPE_CHECKING:
    from .hub import PureHub, TimerHandle

__all__ = ["Connection", "SessionState", "StreamState", "Waiters"]

logger = logging.getLogger("fastwt.pure")

# Bytes handed to aioquic and not yet sent (estimated) at which writers wait: the Rust
# backend's per-stream buffer is 1 MiB too.
WRITE_BUFFER = 1024 * 1024
# What a queued received datagram counts against ``datagram_queue_bytes`` beyond its
# payload (the Rust core's DATAGRAM_ENTRY_OVERHEAD: the same bound on both backends).
DATAGRAM_ENTRY_OVERHEAD = 48
# What a packet carries besides its frames' payload (short header with an 8-byte
# connection id, packet number, AEAD tag), for the unsent-bytes estimate.
_PACKET_OVERHEAD = 30
# The largest UDP payload aioquic sends (it has no path MTU discovery). A DATAGRAM frame
# must fit in one short-header packet: first byte, the peer's connection id (up to 20
# bytes; the length the peer uses once seen), packet number (aioquic sends 2 bytes,
# counted as 4), AEAD tag, then the frame's type and length. One that does not fit
# would stay queued in aioquic for good, and every datagram behind it.
UDP_PAYLOAD = 1200
_MAX_CID = 20


def _datagram_room(peer_cid_length: int) -> int:
    return UDP_PAYLOAD - (1 + peer_cid_length + 4 + 16) - (1 + 2)


# Peer-opened streams kept waiting for the CONNECT request they name.
_MAX_EARLY_STREAMS = 64
# How long a side that closed its session (or answered the peer's close) waits for the
# peer to acknowledge it, or to close the connection first, before closing it.
_ACK_GRACE = 2.0
_AFTER_ACK = 0.2
# Longest a close capsule waits for the stream data written before it to reach the
# peer (the Rust backend's CLOSE_LINGER).
_CLOSE_LINGER = 2.0
_PEER_CLOSE_GRACE = 0.5

_ping_ids = itertools.count(1)

CidHook = Callable[["Connection", ConnectionIdIssued | ConnectionIdRetired], None]


class Waiters:
    """Tokens of tasks waiting on one resource; ``wake`` notifies them all (the same
    contract as the Rust handles: every waiter re-polls)."""

    __slots__ = ("_tokens",)

    def __init__(self) -> None:
        self._tokens: dict[int, Any] = {}

    def add(self, notifier: Any, token: int) -> None:
        self._tokens[token] = notifier

    def wake(self) -> None:
        if self._tokens:
            tokens, self._tokens = self._tokens, {}
            for token, notifier in tokens.items():
                notifier.notify(token)

    def __bool__(self) -> bool:
        return bool(self._tokens)


def _is_bidi(stream_id: int) -> bool:
    return stream_id & 0x2 == 0


def _is_client_initiated(stream_id: int) -> bool:
    return stream_id & 0x1 == 0


class StreamState:
    """One WebTransport stream: the received chunks and the state of both halves. The
    handles (``handles.py``) are views on it; the connection keeps it for routing."""

    def __init__(self, conn: Connection, stream_id: int, session_id: int) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.session_id = session_id
        self.session: SessionState | None = None
        # receiving
        self.chunks: deque[bytes] = deque()
        self.fin = False
        self.reset_code: int | None = None
        self.stopped = False
        self.bytes_received = 0
        self.read_waiters = Waiters()
        # sending
        self.send_fin = False
        self.send_reset = False
        self.stopped_by_peer: int | None = None
        self.bytes_sent = 0

    # --- receive side -----------------------------------------------------------------
    def feed(self, data: bytes, end: bool) -> None:
        if self.stopped:
            return
        if data:
            self.chunks.append(data)
            self.bytes_received += len(data)
        if end:
            self.fin = True
            self.conn.forget_stream(self)
        if data or end:
            self.read_waiters.wake()

    def peer_reset(self, h3_code: int) -> None:
        if self.fin or self.stopped:
            return
        self.reset_code = wire.h3_code_to_wt(h3_code)
        self.read_waiters.wake()
        self.conn.forget_stream(self)

    def read(self, max_size: int) -> bytes | None:
        """Up to ``max_size`` bytes, ``b""`` at the end, ``None`` when nothing is ready;
        raises when the stream or its session failed."""
        chunks = self.chunks
        if chunks:
            first = chunks[0]
            if len(first) <= max_size:
                chunks.popleft()
                if not chunks or len(first) == max_size:
                    return first
                parts = [first]
                size = len(first)
                while chunks and size + len(chunks[0]) <= max_size:
                    nxt = chunks.popleft()
                    parts.append(nxt)
                    size += len(nxt)
                return b"".join(parts)
            chunks[0] = first[max_size:]
            return first[:max_size]
        if self.fin:
            return b""
        self.check_readable()
        return None

    def check_readable(self) -> None:
        """Raises what a read that finds nothing buffered must raise: the peer's reset,
        a stop, or the failure of the stream's session or connection."""
        if self.reset_code is not None:
            code = self.reset_code
            raise StreamError(f"stream reset by peer with code {code}", error_code=code)
        if self.stopped:
            raise StreamError("stream is closed")
        failure = self.conn.failure(self.session)
        if failure is not None:
            raise failure

    def stop(self, code: int) -> None:
        if self.stopped or self.reset_code is not None:
            raise StreamError("stream is closed")
        self.stopped = True
        self.chunks.clear()
        if not self.fin:
            self.conn.stop_stream(self.stream_id, wire.wt_code_to_h3(code))
        self.conn.forget_stream(self)

    # --- send side --------------------------------------------------------------------
    def check_writable(self) -> None:
        failure = self.conn.failure(self.session)
        if failure is not None:
            raise failure
        if self.stopped_by_peer is not None:
            code = self.stopped_by_peer
            raise StreamError(f"stream stopped by peer with code {code}", error_code=code)
        if self.send_fin or self.send_reset:
            raise StreamError("stream is closed")

    def write(self, data: bytes, finish: bool) -> None:
        self.conn.send_stream_data(self.stream_id, data, finish)
        self.bytes_sent += len(data)
        if finish:
            self.send_fin = True
            self.conn.forget_stream(self)

    def finish(self) -> None:
        if self.send_fin or self.send_reset:
            raise StreamError("stream is closed")
        self.send_fin = True
        if self.stopped_by_peer is None and self.conn.failure(self.session) is None:
            self.conn.send_stream_data(self.stream_id, b"", True)
        self.conn.forget_stream(self)

    def reset(self, code: int) -> None:
        if self.send_reset:
            raise StreamError("stream is closed")
        self.send_reset = True
        if self.conn.failure(self.session) is None:
            self.conn.reset_stream(self.stream_id, wire.wt_code_to_h3(code))
        self.conn.forget_stream(self)

    def peer_stopped(self, h3_code: int) -> None:
        self.stopped_by_peer = wire.h3_code_to_wt(h3_code)
        self.conn.write_waiters.wake()
        self.conn.forget_stream(self)


class SessionState:
    """One WebTransport session (one per connection, as browsers use it)."""

    def __init__(
        self,
        conn: Connection,
        session_id: int,
        *,
        is_server: bool,
        path: str,
        authority: str,
        headers: list[tuple[str, str]],
    ) -> None:
        self.conn = conn
        self.session_id = session_id
        self.is_server = is_server
        self.path = path
        self.authority = authority
        self.headers = headers
        self.phase = "requested" if is_server else "accepted"
        self.close: CloseInfo | None = None
        self.incoming_bi: deque[StreamState] = deque()
        self.incoming_uni: deque[StreamState] = deque()
        self.datagrams: deque[bytes] = deque()
        self.datagram_bytes = 0
        self.datagrams_dropped = 0
        # Sends with wait=False refused while the connection's send buffer was full.
        self.datagrams_send_dropped = 0
        self.datagrams_sent = 0
        self.datagrams_received = 0
        self.bi_waiters = Waiters()
        self.uni_waiters = Waiters()
        self.datagram_waiters = Waiters()
        self.close_waiters = Waiters()
        self.capsules = bytearray()
        self.datagram_header = wire.encode_varint(session_id // 4)
        # The application protocol agreed through wt-available-protocols / wt-protocol.
        self.protocol: str | None = None
        # The peer asked to wind down (DRAIN_WEBTRANSPORT_SESSION).
        self.draining = False

    def mark_closed(self, info: CloseInfo) -> bool:
        """Records the end once and wakes everyone waiting on the session."""
        if self.close is not None:
            return False
        if self.phase != "rejected":
            self.phase = "closed"
        self.close = info
        for w in (self.bi_waiters, self.uni_waiters, self.datagram_waiters, self.close_waiters):
            w.wake()
        self.conn.session_ended(self)
        return True

    def closed_error(self) -> SessionClosedError:
        assert self.close is not None
        err = SessionClosedError(str(self.close), error_code=self.close.code)
        err.reason = self.close.reason
        return err

    def push_datagram(self, payload: bytes) -> None:
        self.datagrams_received += 1
        queue = self.datagrams
        queue.append(payload)
        self.datagram_bytes += len(payload) + DATAGRAM_ENTRY_OVERHEAD
        limits = self.conn.limits
        while len(queue) > 1 and (
            len(queue) > limits.datagram_queue_size
            or self.datagram_bytes > limits.datagram_queue_bytes
        ):
            self.datagram_bytes -= len(queue.popleft()) + DATAGRAM_ENTRY_OVERHEAD
            self.datagrams_dropped += 1
        self.datagram_waiters.wake()

    def ensure_open(self) -> None:
        if self.close is not None:
            raise self.closed_error()
        if self.phase != "accepted":
            raise SessionError(f"invalid state: session is {self.phase}, not accepted")


class Limits:
    """The knobs a connection needs from the configuration."""

    def __init__(
        self,
        *,
        datagram_queue_size: int,
        datagram_queue_bytes: int,
        keep_alive_interval: float | None,
        max_datagram_size: int = 65535,
    ) -> None:
        self.datagram_queue_size = datagram_queue_size
        self.datagram_queue_bytes = datagram_queue_bytes
        self.keep_alive_interval = keep_alive_interval
        self.max_datagram_size = max_datagram_size


class Connection:
    """One QUIC connection with its HTTP/3 layer and its WebTransport session."""

    def __init__(
        self,
        hub: PureHub,
        quic: QuicConnection,
        *,
        sock: socket.socket,
        addr: Any,
        is_server: bool,
        limits: Limits,
        on_terminated: Callable[[Connection], None],
    ) -> None:
        self.hub = hub
        self.quic = quic
        self.sock = sock
        self.addr = addr
        self.is_server = is_server
        self.limits = limits
        self.on_terminated = on_terminated
        self.h3: H3Connection | None = None
        self.session: SessionState | None = None
        self.connect_stream_id: int | None = None
        self.streams: dict[int, StreamState] = {}
        self.h3_streams: set[int] = set()
        self.preambles: dict[int, bytearray] = {}
        self._done = _DoneIds()
        self.early: list[StreamState] = []
        self.terminated: ConnectionTerminated | None = None
        self.closed_locally = False
        self.write_waiters = Waiters()
        self.state_waiters = Waiters()
        self.handshake_done = False
        # Hooks of the server (a new session request) and the client (the response).
        self.on_request: Callable[[SessionState], None] | None = None
        self.on_response: Callable[[HeadersReceived], None] | None = None
        self.on_handshake: Callable[[], None] | None = None
        self.on_datagram_in: Callable[[bytes], None] | None = None
        self.on_cid: CidHook | None = None
        # counters
        self.udp_bytes_sent = 0
        self.peer_cid_length: int | None = None
        self.udp_bytes_received = 0
        self._queued = 0
        self._sent_estimate = 0
        # pings: uid -> (send time, purpose)
        self._pings: dict[int, tuple[float, str]] = {}
        self.rtt = 0.0
        self._rtt_at = 0.0
        self._created_at = hub.time()
        self._close_after_ack: int | None = None
        # Close capsules held back until a PING sent after the streams' data is acked.
        self._lingering: dict[int, tuple[SessionState, bytes]] = {}
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self._transmit_scheduled = False
        self._grace_timers: list[TimerHandle] = []
        # Client side: the certificate catcher of hash trust, and why the server's
        # certificate was refused.
        self.catcher: Any = None
        self.refusal: str | None = None
        if limits.keep_alive_interval is not None:
            self._schedule_keep_alive()

    # --- I/O --------------------------------------------------------------------------
    def receive(self, data: bytes, addr: Any) -> None:
        """A datagram from the socket; events are handled by ``process`` after the batch."""
        self.udp_bytes_received += len(data)
        if self.peer_cid_length is None and data and data[0] & 0x80:
            # A long header: version (4 bytes), then our id's length and id, then theirs.
            if len(data) > 6:
                at = 6 + data[5]
                if at < len(data):
                    self.peer_cid_length = data[at]
        self.quic.receive_datagram(data, addr, self.hub.time())
        if self.on_datagram_in is not None:
            self.on_datagram_in(data)

    def process(self) -> None:
        quic = self.quic
        while True:
            event = quic.next_event()
            if event is None:
                return
            try:
                self._handle_event(event)
            except Exception:
                logger.exception("fastwt pure backend: handling %r failed", event)

    def transmit(self) -> None:
        """Sends what aioquic has ready and re-arms its timer."""
        self._transmit_scheduled = False
        if self.terminated is not None and self._timer is None:
            return
        quic = self.quic
        sock = self.sock
        sent = 0
        for data, addr in quic.datagrams_to_send(self.hub.time()):
            try:
                sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                pass  # a full socket buffer: QUIC's loss recovery resends
            except OSError as e:
                logger.debug("sendto %s failed: %s", addr, e)
            size = len(data)
            self.udp_bytes_sent += size
            if size > _PACKET_OVERHEAD:
                sent += size - _PACKET_OVERHEAD
        if sent:
            self._sent_estimate = min(self._queued, self._sent_estimate + sent)
            if self.write_waiters and self.unsent() < WRITE_BUFFER:
                self.write_waiters.wake()
        when = quic.get_timer()
        if when != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = when
            if when is not None:
                self._timer = self.hub.call_at(when, self._on_timer)

    def schedule_transmit(self) -> None:
        """Coalesces the sends of one loop turn into one transmit (a reply's data and
        FIN, many datagrams) at its end."""
        if not self._transmit_scheduled:
            self._transmit_scheduled = True
            self.hub.call_soon(self._deferred_transmit)

    def _deferred_transmit(self) -> None:
        self.process()
        self.transmit()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.quic.handle_timer(self.hub.time())
        self.process()
        self.transmit()

    def _schedule_keep_alive(self) -> None:
        interval = self.limits.keep_alive_interval
        assert interval is not None

        def fire() -> None:
            if self.terminated is None and not self.closed_locally:
                self.ping("keep-alive")
                self._schedule_keep_alive()

        self._grace_timers.append(self.hub.call_at(self.hub.time() + interval, fire))

    def unsent(self) -> int:
        """Estimated bytes handed to aioquic that have not left yet."""
        return self._queued - self._sent_estimate

    # --- calls into aioquic from the handles ------------------------------------------
    def send_stream_data(self, stream_id: int, data: bytes, end: bool) -> None:
        try:
            self.quic.send_stream_data(stream_id, data, end)
        except (ValueError, RuntimeError) as e:
            raise StreamError(f"stream is closed ({e})") from None
        self._queued += len(data)
        self.schedule_transmit()

    def reset_stream(self, stream_id: int, h3_code: int) -> None:
        try:
            self.quic.reset_stream(stream_id, h3_code)
        except (ValueError, RuntimeError):
            return
        self.schedule_transmit()

    def stop_stream(self, stream_id: int, h3_code: int) -> None:
        try:
            self.quic.stop_stream(stream_id, h3_code)
        except (ValueError, RuntimeError):
            return
        self.schedule_transmit()

    def send_datagram(self, session: SessionState, payload: bytes) -> None:
        frame = session.datagram_header + payload
        self.quic.send_datagram_frame(frame)
        self._queued += len(frame)
        self.schedule_transmit()

    def max_datagram_payload(self, session: SessionState) -> int | None:
        """The largest datagram payload that fits in one packet, or ``None`` when the peer
        does not accept HTTP/3 datagrams."""
        settings = self.h3.received_settings if self.h3 is not None else None
        if not settings or settings.get(0x33) != 1:
            return None
        room = _datagram_room(self.peer_cid_length or _MAX_CID) - len(session.datagram_header)
        return min(room, self.limits.max_datagram_size)

    def failure(self, session: SessionState | None) -> Exception | None:
        """Why stream calls must fail now: the session's close, or the lost connection."""
        if session is not None and session.close is not None:
            return session.closed_error()
        if self.terminated is not None or self.closed_locally:
            return ConnectionError("connection error: the connection is closed")
        return None

    def open_stream(self, session: SessionState, *, bidi: bool) -> StreamState:
        session.ensure_open()
        h3 = self.h3
        assert h3 is not None
        stream_id = h3.create_webtransport_stream(session.session_id, is_unidirectional=not bidi)
        state = StreamState(self, stream_id, session.session_id)
        state.session = session
        if not bidi:
            state.fin = True  # nothing to receive on our own unidirectional stream
        # Kept for routing: the peer's data (bidirectional) and its STOP_SENDING.
        self.streams[stream_id] = state
        self.schedule_transmit()
        return state

    def ping(self, purpose: str) -> int:
        uid = next(_ping_ids)
        self._pings[uid] = (self.hub.time(), purpose)
        self.quic.send_ping(uid)
        self.schedule_transmit()
        return uid

    def sample_rtt(self) -> float:
        """The last PING round trip (it includes the peer's ACK delay); starts a new
        sample when the last is over a second old."""
        now = self.hub.time()
        if self.terminated is None and now - self._rtt_at > 1.0:
            self._rtt_at = now
            self.ping("rtt")
        return self.rtt

    # --- closing ------------------------------------------------------------------------
    def close_now(
        self, code: int = wire.H3_NO_ERROR, reason: str = "", *, transport: bool = False
    ) -> None:
        """Closes the QUIC connection (CONNECTION_CLOSE goes out at once). ``transport``
        sends a transport error code (CONNECTION_REFUSED) instead of an HTTP/3 one: in the
        handshake an application close reaches the peer only as APPLICATION_ERROR."""
        if self.terminated is None and not self.closed_locally:
            self.closed_locally = True
            # frame_type 0 (PADDING): what aioquic takes for "a transport close".
            self.quic.close(
                error_code=code, frame_type=0 if transport else None, reason_phrase=reason
            )
            self.write_waiters.wake()
            self.state_waiters.wake()
            self.schedule_transmit()

    def close_when_acknowledged(self) -> None:
        """After this side's last message on the CONNECT stream (a close capsule, a
        rejection): close the connection once the peer has it, so that it is not lost
        to an abrupt CONNECTION_CLOSE. aioquic reports no stream acknowledgements; a
        PING sent right after the message rides in the same packet, and its
        acknowledgement says the peer has both."""
        if self.terminated is not None or self.closed_locally:
            return
        self._close_after_ack = self.ping("close")
        self._grace_timers.append(self.hub.call_at(self.hub.time() + _ACK_GRACE, self.close_now))

    def close_after_unless_requested(self, timeout: float) -> None:
        """Server side: a client has ``timeout`` seconds from its first packet to send
        its CONNECT request (``request_timeout``)."""

        def check() -> None:
            if self.session is None and self.terminated is None:
                self.close_now(wire.H3_GENERAL_PROTOCOL_ERROR, "no CONNECT request")

        self._grace_timers.append(self.hub.call_at(self.hub.time() + timeout, check))

    def close_after(self, delay: float) -> None:
        self._grace_timers.append(self.hub.call_at(self.hub.time() + delay, self.close_now))

    def abort(self, info: CloseInfo) -> None:
        """Ends the connection without waiting (client or server closing its sockets):
        CONNECTION_CLOSE goes out once, the session ends with ``info``."""
        if self.session is not None:
            self.session.mark_closed(info)
        if self.terminated is None:
            if not self.closed_locally:
                self.closed_locally = True
                self.quic.close(error_code=wire.H3_NO_ERROR, reason_phrase=info.reason)
            self.process()
            self.transmit()
        self._terminate()

    def session_ended(self, session: SessionState) -> None:
        """Streams waiting on the session fail now (they re-poll and see its close)."""
        self.write_waiters.wake()
        self.state_waiters.wake()
        for stream in list(self.streams.values()):
            if stream.session is session:
                stream.read_waiters.wake()

    def _terminate(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in self._grace_timers:
            t.cancel()
        self._grace_timers.clear()
        self.write_waiters.wake()
        self.state_waiters.wake()
        for stream in self.streams.values():
            stream.read_waiters.wake()
        callback, self.on_terminated = self.on_terminated, _nothing
        callback(self)

    # --- events -------------------------------------------------------------------------
    def _handle_event(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, DatagramFrameReceived):
            self._datagram(event.data)
        elif isinstance(event, StreamReset):
            self._stream_reset(event)
        elif isinstance(event, StopSendingReceived):
            self._stop_sending(event)
        elif isinstance(event, PingAcknowledged):
            self._ping_acked(event.uid)
        elif isinstance(event, ProtocolNegotiated):
            if event.alpn_protocol == "h3" and self.h3 is None:
                self.h3 = H3Connection(self.quic, enable_webtransport=True)
                self.schedule_transmit()
        elif isinstance(event, HandshakeCompleted):
            self.handshake_done = True
            # A first round-trip figure (the handshake's flight, processing included),
            # refined by a PING right away and by stats() later.
            if not self.rtt:
                self.rtt = max(self.hub.time() - self._created_at, 1e-6)
            self._rtt_at = self.hub.time()
            self.ping("rtt")
            if self.on_handshake is not None:
                self.on_handshake()
            self.state_waiters.wake()
        elif isinstance(event, ConnectionTerminated):
            self._connection_terminated(event)
        elif isinstance(event, ConnectionIdIssued | ConnectionIdRetired):
            self._cid_event(event)

    def _cid_event(self, event: ConnectionIdIssued | ConnectionIdRetired) -> None:
        """Connection ids the server's demultiplexer must route (see ``server.py``)."""
        if self.on_cid is not None:
            self.on_cid(self, event)

    def _connection_terminated(self, event: ConnectionTerminated) -> None:
        self.terminated = event
        session = self.session
        if session is not None and session.close is None:
            if self.closed_locally:
                info = CloseInfo(0, "", True)
            else:
                idle = event.reason_phrase == "Idle timeout" and event.frame_type == 0
                info = wire.close_info_of_connection(
                    event.error_code,
                    event.reason_phrase,
                    transport=event.frame_type is not None,
                    idle=idle,
                )
            session.mark_closed(info)
        self._terminate()

    def _ping_acked(self, uid: int) -> None:
        sent = self._pings.pop(uid, None)
        if sent is None:
            return
        self.rtt = self.hub.time() - sent[0]
        if uid == self._close_after_ack:
            self.close_after(_AFTER_ACK)
        self._release_close(uid)

    def _datagram(self, data: bytes) -> None:
        session = self.session
        if session is None or session.close is not None:
            return
        header = session.datagram_header
        if data.startswith(header):
            session.push_datagram(data[len(header) :])
        else:
            logger.debug("datagram for another session dropped")

    # --- streams ------------------------------------------------------------------------
    def _stream_data(self, event: StreamDataReceived) -> None:
        stream_id = event.stream_id
        state = self.streams.get(stream_id)
        if state is not None:
            state.feed(event.data, event.end_stream)
            return
        if stream_id in self.h3_streams:
            self._to_h3(event)
            return
        if _is_client_initiated(stream_id) != self.is_server or self._done.contains(stream_id):
            return  # a stream of ours, or one both sides are done with: late data
        # A peer-opened stream: its first bytes say whose it is.
        buf = self.preambles.get(stream_id)
        if buf is None:
            buf = self.preambles[stream_id] = bytearray()
        buf += event.data
        self._route_new_stream(stream_id, buf, event.end_stream)

    def _route_new_stream(self, stream_id: int, buf: bytearray, end: bool) -> None:
        bidi = _is_bidi(stream_id)
        first = wire.decode_varint(buf)
        if first is None:
            if end:
                del self.preambles[stream_id]
                self._done.add(stream_id)
            return
        kind, used = first
        wt_kind = wire.FRAME_WT_BIDI if bidi else wire.STREAM_WT_UNI
        if kind != wt_kind:
            # HTTP/3's own: the CONNECT request, the control and QPACK streams.
            del self.preambles[stream_id]
            self.h3_streams.add(stream_id)
            self._done.add(stream_id)  # routed by h3_streams from now on
            self._to_h3(StreamDataReceived(data=bytes(buf), end_stream=end, stream_id=stream_id))
            return
        second = wire.decode_varint(buf, used)
        if second is None:
            if end:
                del self.preambles[stream_id]
                self._done.add(stream_id)
            return
        session_id, used2 = second
        del self.preambles[stream_id]
        state = StreamState(self, stream_id, session_id)
        if not bidi:
            state.send_fin = True  # the peer's unidirectional stream: nothing to send
        self.streams[stream_id] = state
        state.feed(bytes(buf[used + used2 :]), end)
        session = self.session
        if session is None and len(self.early) < _MAX_EARLY_STREAMS:
            # For a CONNECT request (server) or its response (client) still on its way.
            self.early.append(state)
            return
        self._attach(state, bidi)

    def _attach(self, state: StreamState, bidi: bool) -> None:
        session = self.session
        if session is None or session.session_id != state.session_id or session.close is not None:
            self._refuse(state, bidi, wire.WT_SESSION_GONE)
            return
        state.session = session
        if bidi:
            session.incoming_bi.append(state)
            session.bi_waiters.wake()
        else:
            session.incoming_uni.append(state)
            session.uni_waiters.wake()

    def adopt_early_streams(self) -> None:
        """The session exists now: the streams that came before it are its (or refused)."""
        early, self.early = self.early, []
        for state in early:
            self._attach(state, _is_bidi(state.stream_id))

    def _refuse(self, state: StreamState, bidi: bool, code: int) -> None:
        self.streams.pop(state.stream_id, None)
        self._done.add(state.stream_id)
        state.stopped = True
        if not state.fin:
            self.stop_stream(state.stream_id, code)
        if bidi:
            self.reset_stream(state.stream_id, code)

    def _stream_reset(self, event: StreamReset) -> None:
        stream_id = event.stream_id
        state = self.streams.get(stream_id)
        if state is not None:
            state.peer_reset(event.error_code)
            return
        if self.preambles.pop(stream_id, None) is not None:
            self._done.add(stream_id)
        if stream_id in self.h3_streams:
            session = self.session
            if session is not None and stream_id == session.session_id:
                self.peer_closed(0, f"CONNECT stream reset by peer (code {event.error_code:#x})")
            self._to_h3(event)

    def _stop_sending(self, event: StopSendingReceived) -> None:
        stream_id = event.stream_id
        state = self.streams.get(stream_id)
        if state is not None:
            state.peer_stopped(event.error_code)
            return
        if stream_id in self.h3_streams:
            session = self.session
            if session is not None and stream_id == session.session_id:
                self.peer_closed(0, f"CONNECT stream stopped by peer (code {event.error_code:#x})")
            self._to_h3(event)

    def forget_stream(self, state: StreamState) -> None:
        """A stream both sides are done with leaves the routing table (late data for it
        is then ignored, see ``_DoneIds``)."""
        if state.fin or state.stopped or state.reset_code is not None:
            if state.send_fin or state.send_reset or state.stopped_by_peer is not None:
                if self.streams.pop(state.stream_id, None) is not None:
                    if _is_client_initiated(state.stream_id) == self.is_server:
                        self._done.add(state.stream_id)

    # --- HTTP/3 -------------------------------------------------------------------------
    def _to_h3(self, event: QuicEvent) -> None:
        h3 = self.h3
        if h3 is None:
            return
        for h3_event in h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            if self.is_server:
                self._request(event)
            elif event.stream_id == self.connect_stream_id and self.on_response is not None:
                self.on_response(event)
                self.state_waiters.wake()
        elif isinstance(event, DataReceived):
            session = self.session
            if session is not None and event.stream_id == session.session_id:
                self._connect_stream_data(session, event.data, event.stream_ended)

    def _request(self, event: HeadersReceived) -> None:
        """A HEADERS frame on a request stream (server side): the CONNECT request."""
        h3 = self.h3
        assert h3 is not None
        stream_id = event.stream_id
        if self.session is not None or not _is_client_initiated(stream_id):
            # One session per connection: a second CONNECT is refused.
            self.stop_stream(stream_id, wire.H3_REQUEST_REJECTED)
            self.reset_stream(stream_id, wire.H3_REQUEST_REJECTED)
            return
        pseudo: dict[str, str] = {}
        headers: list[tuple[str, str]] = []
        for k, v in event.headers:
            name, value = k.decode("latin-1").lower(), v.decode("latin-1")
            if name.startswith(":"):
                pseudo.setdefault(name, value)
            else:
                headers.append((name, value))
        status = 0
        if pseudo.get(":method") != "CONNECT":
            status = 405
        elif pseudo.get(":protocol") != "webtransport":
            status = 400
        elif ":path" not in pseudo or ":authority" not in pseudo:
            status = 400
        if status:
            h3.send_headers(stream_id, [(b":status", str(status).encode())], end_stream=True)
            self.h3_streams.add(stream_id)
            self.close_after(1.0)
            self.schedule_transmit()
            return
        session = SessionState(
            self,
            stream_id,
            is_server=True,
            path=pseudo[":path"],
            authority=pseudo[":authority"],
            headers=headers,
        )
        self.session = session
        self.connect_stream_id = stream_id
        self.adopt_early_streams()
        if event.stream_ended:
            self.peer_closed(0, "")
        if self.on_request is not None:
            self.on_request(session)

    def _connect_stream_data(self, session: SessionState, data: bytes, ended: bool) -> None:
        session.capsules += data
        try:
            for kind, payload in wire.parse_capsules(session.capsules):
                if kind == wire.CAPSULE_CLOSE_SESSION:
                    code, reason = wire.parse_close_capsule(payload)
                    self.peer_closed(code, reason)
                    return
                if kind == wire.CAPSULE_DRAIN_SESSION:
                    session.draining = True
        except wire.CapsuleError as e:
            self._protocol_violation(session, f"bad capsule: {e}")
            return
        if ended:
            # A FIN without a capsule ends the session with code 0.
            self.peer_closed(0, "")

    def _protocol_violation(self, session: SessionState, what: str) -> None:
        logger.warning("session %d: protocol error: %s", session.session_id, what)
        reason = f"protocol error: {what}"
        session.mark_closed(CloseInfo(0, reason, False))
        self.close_now(wire.H3_MESSAGE_ERROR, reason[:256])

    def peer_closed(self, code: int, reason: str) -> None:
        session = self.session
        if session is not None and session.mark_closed(CloseInfo(code, reason, False)):
            # One session per connection: the connection goes with it, after a short
            # grace period for the peer to close it first.
            self.close_after(_PEER_CLOSE_GRACE)

    def send_capsule(self, session: SessionState, capsule: bytes) -> None:
        """A capsule on the CONNECT stream that leaves it open (a drain)."""
        h3 = self.h3
        if h3 is None or self.terminated is not None or self.closed_locally:
            return
        try:
            h3.send_data(session.session_id, capsule, end_stream=False)
        except Exception as e:  # the stream is already finished or reset
            logger.debug("CONNECT stream write failed: %s", e)
            return
        self.schedule_transmit()

    def close_session(self, session: SessionState, capsule: bytes) -> None:
        """Sends the close capsule once the stream data written before it has reached
        the peer. aioquic writes the CONNECT stream (the connection's first) first in a
        packet and reports no stream acknowledgements, so a capsule sent at once would
        overtake a reply finished just before it, and the peer drops a stream that
        arrives after its session ended. The pending writes go out now, then a PING;
        its acknowledgement (or ``_CLOSE_LINGER``) lets the capsule go. Approximate
        where the Rust backend is exact: stream data lost before the PING may still be
        retransmitted after the capsule."""
        if self.terminated is not None or self.closed_locally:
            return
        self.transmit()
        uid = self.ping("close-linger")
        self._lingering[uid] = (session, capsule)
        self._grace_timers.append(
            self.hub.call_at(self.hub.time() + _CLOSE_LINGER, lambda: self._release_close(uid))
        )

    def _release_close(self, uid: int) -> None:
        held = self._lingering.pop(uid, None)
        if held is not None:
            self.send_on_connect_stream(held[0], None, held[1])

    def send_on_connect_stream(
        self, session: SessionState, headers: list[tuple[bytes, bytes]] | None, data: bytes | None
    ) -> None:
        """This side's last message on the CONNECT stream (a rejection or a close
        capsule), with FIN; the connection closes once the peer has it."""
        h3 = self.h3
        if h3 is None or self.terminated is not None or self.closed_locally:
            return
        try:
            if headers is not None:
                h3.send_headers(session.session_id, headers, end_stream=True)
            elif data is not None:
                h3.send_data(session.session_id, data, end_stream=True)
        except Exception as e:  # the stream is already finished or reset
            logger.debug("CONNECT stream write failed: %s", e)
            self.close_after(0.0)
            return
        self.close_when_acknowledged()
        self.schedule_transmit()


class _DoneIds:
    """Peer-opened stream ids that are done, so that late data for one is not taken for
    a new stream. Streams of a kind mostly end in the order they were opened: ids below
    a watermark per kind are all done, and only the ones above it are kept in a set."""

    __slots__ = ("_above", "_next")

    def __init__(self) -> None:
        self._next = [0, 0, 0, 0]  # per stream kind (id & 3): the lowest not-done index
        self._above: set[int] = set()

    def add(self, stream_id: int) -> None:
        kind, index = stream_id & 3, stream_id >> 2
        if index < self._next[kind]:
            return
        self._above.add(stream_id)
        nxt = self._next[kind]
        while (nxt << 2 | kind) in self._above:
            self._above.discard(nxt << 2 | kind)
            nxt += 1
        self._next[kind] = nxt

    def contains(self, stream_id: int) -> bool:
        return (stream_id >> 2) < self._next[stream_id & 3] or stream_id in self._above


def _nothing(conn: Connection) -> None:
    """The terminated-callback after it ran once."""

"""A WebTransport session: on a server it begins as a request to accept or reject."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from . import _bridge
from ._core import Op, SessionHandle, spin_stats
from ._stream_handlers import serve_streams, wait_for_stream
from ._types import Buffer, SessionObserver
from .errors import SessionClosedError, SessionError
from .stream import (
    WebTransportBidirectionalStream,
    WebTransportReceiveStream,
    WebTransportSendStream,
)

__all__ = ["WebTransportSession"]

logger = logging.getLogger("fastwt.session")

# What the core answers a request that is closed before it was answered.
_UNANSWERED_STATUS = 404


def _spin_counters(hub: Any) -> dict[str, Any] | None:
    """The busy-poll counters of the I/O thread and of ``hub``'s event loop; None on the
    pure-Python backend, which does not spin."""
    loop_stats = getattr(hub.notifier, "spin_stats", None)
    if loop_stats is None:
        return None
    return {"io": spin_stats()["io"], "loop": loop_stats()}


class WebTransportSession:
    """One session. Obtained from ``WebTransportServer.incoming_sessions()`` (to accept
    or reject) or from ``WebTransportClient.connect()`` (already established).

    Must be used from the event loop it was created on.
    """

    def __init__(
        self,
        handle: SessionHandle,
        *,
        hub: _bridge.Hub,
        is_client: bool,
        observers: tuple[SessionObserver, ...] = (),
    ) -> None:
        self._handle = handle
        self._observers = observers
        self._hub = hub
        self._is_client = is_client
        self._bi_token = _bridge.new_token()
        self._uni_token = _bridge.new_token()
        self._dgram_token = _bridge.new_token()
        self._closed_token = _bridge.new_token()
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None

    # --- identity -----------------------------------------------------------------
    @property
    def session_id(self) -> int:
        return self._handle.session_id

    @property
    def path(self) -> str:
        """The request's ``:path`` as sent, with any query string."""
        return self._handle.path

    @property
    def path_without_query(self) -> str:
        """The ``:path`` up to its first ``?``: what the framework's router matches."""
        return self._handle.path.partition("?")[0]

    @property
    def query(self) -> dict[str, str]:
        """The query string parsed (the last value wins for repeated keys)."""
        if self._query is None:
            # Everything after the first "?" (a ":path" is never a full URL: urlsplit would
            # read "//host/..." as an authority and refuse "//[x" outright).
            self._query = dict(parse_qsl(self._handle.path.partition("?")[2]))
        return self._query

    @property
    def authority(self) -> str:
        return self._handle.authority

    @property
    def headers(self) -> dict[str, str]:
        """Request headers (server side) or response headers (client side), lower-case
        names."""
        if self._headers is None:
            self._headers = self._handle.headers
        return self._headers

    @property
    def origin(self) -> str | None:
        return self.headers.get("origin")

    @property
    def remote_address(self) -> tuple[str, int]:
        return self._handle.remote_address

    @property
    def peer_certificate(self) -> bytes | None:
        """The peer's certificate (DER), or None when it presented none. On a server
        that asks for client certificates (``ServerConfig(verify_mode=...)``) it is the
        client's, already checked against ``ca_certs``; on a client, the server's."""
        chain = self._handle.peer_certificates
        return chain[0] if chain else None

    @property
    def peer_certificate_chain(self) -> list[bytes]:
        """The peer's whole chain as presented (DER, leaf first; empty without one)."""
        return list(self._handle.peer_certificates)

    @property
    def state(self) -> str:
        """``"requested"`` (a server's request not yet answered), ``"accepted"``,
        ``"rejected"`` or ``"closed"``."""
        return self._handle.phase

    @property
    def is_closed(self) -> bool:
        return self._handle.phase in ("closed", "rejected")

    @property
    def close_code(self) -> int | None:
        info = self._handle.close_info
        return None if info is None else info[0]

    @property
    def close_reason(self) -> str | None:
        info = self._handle.close_info
        return None if info is None else info[1]

    @property
    def protocol(self) -> str | None:
        """The application protocol agreed through ``wt-available-protocols`` /
        ``wt-protocol`` (server: what :meth:`accept` chose; client: the server's
        answer), or ``None``."""
        return self._handle.protocol

    @property
    def draft(self) -> str:
        """The WebTransport draft this session speaks: ``"draft-02"`` (Chrome,
        Firefox), ``"draft-07..14"`` (Safari) or ``"draft-15"``."""
        return self._handle.draft

    @property
    def draining(self) -> bool:
        """Whether the peer asked to wind the session down (HTTP/3 GOAWAY or
        DRAIN_WEBTRANSPORT_SESSION): finish what is under way and close."""
        return self._handle.draining

    @property
    def max_datagram_size(self) -> int:
        """The largest datagram payload that can be sent now (0 if none)."""
        return self._handle.max_datagram_size or 0

    def __repr__(self) -> str:
        host, port = self.remote_address
        return (
            f"<WebTransportSession id={self.session_id} path={self.path!r} "
            f"peer={host}:{port} state={self.state}>"
        )

    # --- accept / reject / close -------------------------------------------------
    async def accept(
        self, *, headers: dict[str, str] | None = None, wt_protocol: str | None = None
    ) -> None:
        """Accepts the request (200). ``wt_protocol`` answers the client's
        ``wt-available-protocols`` (it must be one of them; sent as an RFC 8941 string in
        ``wt-protocol``) and becomes :attr:`protocol`."""
        fields = list((headers or {}).items())
        try:
            done = self._handle.accept(fields, wt_protocol)
        except ValueError as e:
            raise SessionError(str(e)) from None
        if isinstance(done, Op):
            await _bridge.run_op(self._hub, done)
        self._answered(200)

    async def reject(
        self, *, headers: dict[str, str] | None = None, status_code: int = 403
    ) -> None:
        """Refuses the request with an HTTP status and headers; the client sees both."""
        try:
            done = self._handle.reject(status_code, list((headers or {}).items()))
        except ValueError as e:
            raise SessionError(str(e)) from None
        if isinstance(done, Op):
            await _bridge.run_op(self._hub, done)
        self._answered(status_code)

    async def close(self, *, error_code: int = 0, reason: str | None = None) -> None:
        """Closes the session; the peer sees ``error_code`` and ``reason``
        (CLOSE_WEBTRANSPORT_SESSION). The session is closed for this side at once; the
        close goes out once the peer has every stream finished before it (at most 2 s
        later), so that it does not overtake a last reply. An unanswered request is
        refused with 404."""
        if not 0 <= error_code <= 0xFFFFFFFF:
            raise SessionError(f"error_code must fit in 32 bits, got {error_code}")
        unanswered = self._observers and self._handle.phase == "requested"
        try:
            done = self._handle.close(error_code, reason or "")
        except ValueError as e:  # a reason over the protocol's 1024 bytes
            raise SessionError(str(e)) from None
        if isinstance(done, Op):
            await _bridge.run_op(self._hub, done)
        if unanswered:
            self._answered(_UNANSWERED_STATUS)

    def _answered(self, status: int) -> None:
        """Tells the server's observers how this request was answered (once)."""
        observers, self._observers = self._observers, ()
        for observer in observers:
            try:
                observer.session_answered(self, status)
            except Exception:  # an observer's bug must not fail the answer
                logger.exception("session observer %r failed", observer)

    async def drain(self) -> None:
        """Asks the peer to wind the session down (DRAIN_WEBTRANSPORT_SESSION): its
        :attr:`draining` becomes true; the session stays usable until either side
        closes it."""
        self._handle.drain()

    async def wait_closed(self) -> tuple[int, str]:
        """Waits until the session ends; returns (code, reason)."""
        info = await _bridge.wait(self._hub, self._handle.poll_closed, self._closed_token)
        return info[0], info[1]

    async def __aenter__(self) -> WebTransportSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.is_closed:
            await self.close()

    # --- streams -----------------------------------------------------------------
    async def create_bidirectional_stream(self) -> WebTransportBidirectionalStream:
        hub = self._hub
        opened = self._handle.open_bi(hub.notifier)
        hub.flush_soon()
        if isinstance(opened, Op):
            opened = await _bridge.run_op(self._hub, opened)
        send, recv = opened
        return WebTransportBidirectionalStream(
            session=self, send=send, recv=recv, peer_initiated=False
        )

    async def create_unidirectional_stream(self) -> WebTransportSendStream:
        hub = self._hub
        opened = self._handle.open_uni(hub.notifier)
        hub.flush_soon()
        send = await _bridge.run_op(self._hub, opened) if isinstance(opened, Op) else opened
        return WebTransportSendStream(session=self, send=send)

    async def accept_bidirectional_stream(self) -> WebTransportBidirectionalStream:
        """The next peer-opened bidirectional stream; raises when the session closes."""
        stream = self._poll_bidirectional_stream()
        if stream is None:
            stream = await wait_for_stream(self._poll_bidirectional_stream, self._park_bi)
        return stream

    async def accept_unidirectional_stream(self) -> WebTransportReceiveStream:
        """The next peer-opened unidirectional stream; raises when the session closes."""
        stream = self._poll_unidirectional_stream()
        if stream is None:
            stream = await wait_for_stream(self._poll_unidirectional_stream, self._park_uni)
        return stream

    def _poll_bidirectional_stream(self) -> WebTransportBidirectionalStream | None:
        """The next peer-opened bidirectional stream if one is ready, else ``None`` (the
        caller parks on ``_bi_token``); raises when the session closes."""
        opened = self._handle.poll_accept_bi(self._hub.notifier, self._bi_token)
        if opened is None:
            return None
        send, recv = opened
        return WebTransportBidirectionalStream(
            session=self, send=send, recv=recv, peer_initiated=True
        )

    def _park_bi(self) -> Awaitable[None]:
        """The wait between two ``_poll_bidirectional_stream`` (a plain method returning
        the hub's park: no coroutine frame of its own)."""
        return self._hub.park(self._bi_token)

    def _park_uni(self) -> Awaitable[None]:
        return self._hub.park(self._uni_token)

    def _poll_unidirectional_stream(self) -> WebTransportReceiveStream | None:
        """``_poll_bidirectional_stream`` for unidirectional streams."""
        recv = self._handle.poll_accept_uni(self._hub.notifier, self._uni_token)
        return None if recv is None else WebTransportReceiveStream(session=self, recv=recv)

    async def incoming_bidirectional_streams(
        self,
    ) -> AsyncIterator[WebTransportBidirectionalStream]:
        """Peer-opened bidirectional streams until the session closes."""
        while True:
            try:
                yield await self.accept_bidirectional_stream()
            except SessionClosedError:
                return

    async def handle_bidirectional_streams(
        self, handler: Callable[[WebTransportBidirectionalStream], Awaitable[None]]
    ) -> None:
        """Calls ``handler(stream)`` on every peer-opened bidirectional stream, each
        concurrently with the others, until the session closes; then cancels the
        handlers still running and returns once they have ended.

        The per-stream form of ``incoming_bidirectional_streams()`` with a task per
        stream, at less cost: on asyncio a handler starts at once in the task that
        accepted its stream, so a request answered without waiting (read, write,
        return) costs no task and no extra loop turns; a handler that waits keeps that
        task to its end (a deadline it entered is its own) and another task takes over
        accepting. When the session closes, this returns (in the task that called it).
        A handler's exception is logged and resets its stream with
        ``ErrorCodes.HANDLER_ERROR``; the other streams go on."""
        await serve_streams(self._poll_bidirectional_stream, self._park_bi, handler)

    async def handle_unidirectional_streams(
        self, handler: Callable[[WebTransportReceiveStream], Awaitable[None]]
    ) -> None:
        """``handle_bidirectional_streams`` for peer-opened unidirectional streams."""
        await serve_streams(self._poll_unidirectional_stream, self._park_uni, handler)

    async def incoming_unidirectional_streams(self) -> AsyncIterator[WebTransportReceiveStream]:
        """Peer-opened unidirectional streams until the session closes."""
        while True:
            try:
                yield await self.accept_unidirectional_stream()
            except SessionClosedError:
                return

    # --- datagrams ---------------------------------------------------------------
    async def send_datagram(self, *, data: Buffer, wait: bool = True) -> None:
        """Sends one datagram. Raises :class:`DatagramError` when it is larger than
        :attr:`max_datagram_size`.

        Returns as soon as the datagram is queued for sending, at once while the send
        buffer has room (no trip through the event loop). When it is full (the sender
        is faster than the path or the peer), the await waits for room: a sender that
        awaits every call is slowed to the path's pace and never loses datagrams on its
        own side. Cancelling the await abandons its datagram (it goes out only if room
        came before the wait was dropped). ``wait=False`` never waits: with a full
        buffer the oldest queued datagram is dropped to make room (fresh data wins; for
        fan-out loops where a slow peer must not hold up the others; rooms'
        ``broadcast`` does this in Rust). Datagrams stay unreliable either way: the
        path and the peer's receive queue may still drop them."""
        pending = self._handle.send_datagram(data, wait)
        if pending is not None:
            await _bridge.run_op(self._hub, pending)

    async def send_datagrams(self, *, data: Iterable[Buffer], wait: bool = True) -> int:
        """Sends many datagrams with one call to Rust per run that fits in the send
        buffer; returns how many were sent. Waits for room like :meth:`send_datagram`
        (``wait=False``: never waits, the oldest queued are dropped instead). An error
        stops the batch: what came before it was sent."""
        items = iter(data)
        total = 0
        while True:
            sent, pending = self._handle.send_datagrams(items, wait)
            total += sent
            if pending is None:
                return total
            await _bridge.run_op(self._hub, pending)
            total += 1

    async def read_datagram(self) -> bytes:
        """The next received datagram; raises when the session closes."""
        return await _bridge.wait(self._hub, self._handle.poll_datagram, self._dgram_token)

    async def read_datagrams(self, *, max_count: int = 64) -> list[bytes]:
        """Between 1 and ``max_count`` received datagrams, in one call to Rust."""
        handle = self._handle
        return await _bridge.wait(
            self._hub,
            lambda n, t: handle.poll_datagrams(max_count, n, t),
            self._dgram_token,
        )

    async def datagrams(self) -> AsyncIterator[bytes]:
        """Received datagrams until the session closes (batched under the hood)."""
        while True:
            try:
                batch = await self.read_datagrams(max_count=256)
            except SessionClosedError:
                return
            for d in batch:
                yield d

    # --- misc --------------------------------------------------------------------
    async def export_keying_material(self, *, label: str, context: Buffer, length: int) -> bytes:
        return self._handle.export_keying_material(label.encode(), bytes(context), length)

    def stats(self) -> dict[str, Any]:
        """Counters: ``datagrams_sent`` (queued for sending), ``datagrams_received``,
        ``datagrams_dropped`` (by the receive queue, see ``datagram_queue_bytes``),
        ``bytes_sent``/``bytes_received`` (UDP), ``rtt`` (s), ``lost_packets``, and on
        the Rust backend ``datagram_frames_sent``/``datagram_frames_received`` (DATAGRAM
        frames that left / arrived on the connection: what ``wait=False`` sends
        dropped, or quinn's receive buffer, shows as a difference)."""
        return dict(self._handle.stats())

    async def diagnose(self) -> dict[str, Any]:
        """A snapshot: state, path, headers, close code/reason, byte and datagram counts,
        and the busy-poll counters (``spin``)."""
        info: dict[str, Any] = {
            "session_id": self.session_id,
            "state": self.state,
            "path": self.path,
            "headers": dict(self.headers),
            "remote_address": self.remote_address,
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "is_client": self._is_client,
            "draft": self.draft,
            "protocol": self.protocol,
            "draining": self.draining,
            "flow_control": self._handle.flow_control(),
            # The busy-poll sites this session's I/O goes through (docs/bridge.md): the
            # I/O thread's and this event loop's spins, hits and measured waits.
            "spin": _spin_counters(self._hub),
        }
        info.update(self.stats())
        return info

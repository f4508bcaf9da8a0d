"""The handles of the pure-Python backend: the same methods, arguments, results and
errors as the Rust extension's ``SessionHandle``, ``SendStreamHandle``,
``RecvStreamHandle`` and ``Op`` (``fastwt/_core.pyi``), so that ``session.py`` and
``stream.py`` drive either backend unchanged. ``notifier`` is the pure hub
(``hub.PureHub``); a poll that is not ready registers ``token`` with it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from .._core import REJECTION_STATUS
from ..errors import ConfigurationError, DatagramError, SessionError, StreamError
from . import wire
from .engine import DATAGRAM_ENTRY_OVERHEAD, WRITE_BUFFER, SessionState, StreamState, Waiters
from .hub import PureHub

__all__ = ["PendingDatagram", "PureOp", "RecvStreamHandle", "SendStreamHandle", "SessionHandle"]

logger = logging.getLogger("fastwt.pure")

_DEFAULT_READ_CHUNK = 64 * 1024
_MAX_READ = 16 * 1024 * 1024

Buffer = bytes | bytearray | memoryview


class PureOp:
    """A background operation (connect, server close) polled like the Rust ``Op``:
    ``poll`` returns the result (``True`` when there is none), raises its error, or
    returns ``None`` after registering the token."""

    def __init__(self, hub: PureHub, fn: Callable[[], Awaitable[Any]], name: str) -> None:
        self._done = False
        self._result: Any = None
        self._error: BaseException | None = None
        self._waiters = Waiters()
        self._fn = fn
        hub.spawn(self._run, name)

    async def _run(self) -> None:
        try:
            self._result = await self._fn()
        except Exception as e:
            self._error = e
        finally:
            self._done = True
            self._waiters.wake()

    def poll(self, notifier: PureHub, token: int) -> Any | None:
        if not self._done:
            self._waiters.add(notifier, token)
            return None
        if self._error is not None:
            raise self._error
        return True if self._result is None else self._result


class PendingDatagram:
    """A datagram waiting for room in the connection's send buffer, polled like the
    Rust ``Op`` of a waiting ``send_datagram``: ``True`` once it is queued, ``None``
    (token registered) while the buffer is full; raises when the session closed."""

    __slots__ = ("_handle", "_payload")

    def __init__(self, handle: SessionHandle, payload: bytes) -> None:
        self._handle = handle
        self._payload = payload

    def poll(self, notifier: PureHub, token: int) -> bool | None:
        handle = self._handle
        conn = handle._s.conn
        handle._s.ensure_open()
        if conn.unsent() >= WRITE_BUFFER:
            conn.write_waiters.add(notifier, token)
            return None
        handle._queue_datagram(self._payload)
        return True


class SendStreamHandle:
    """The sending half of a stream."""

    __slots__ = ("__weakref__", "_state")

    def __init__(self, state: StreamState) -> None:
        self._state = state

    @property
    def stream_id(self) -> int:
        return self._state.stream_id

    @property
    def bytes_sent(self) -> int:
        return self._state.bytes_sent

    def poll_write(
        self, data: Buffer, offset: int, notifier: PureHub, token: int, finish: bool = False
    ) -> int:
        """Writes from ``data[offset:]`` what the send buffer takes; with ``finish`` ends
        the stream once everything is written. Returns the count; when it is less than
        what was left, ``token`` waits for room."""
        state = self._state
        total = len(data)
        left = total - offset
        try:
            state.check_writable()
        except StreamError:
            raise
        conn = state.conn
        room = WRITE_BUFFER - conn.unsent()
        if left > 0 and room <= 0:
            conn.write_waiters.add(notifier, token)
            return 0
        n = left if room >= left else room
        chunk = data[offset : offset + n] if (offset or n != total) else data
        state.write(bytes(chunk) if not isinstance(chunk, bytes) else chunk, finish and n == left)
        if n < left:
            conn.write_waiters.add(notifier, token)
        return n

    def finish(self) -> None:
        self._state.finish()

    def reset(self, code: int) -> None:
        self._state.reset(code)

    def __del__(self) -> None:
        # As with the Rust handle: a send half dropped unfinished ends after what was
        # written.
        state = getattr(self, "_state", None)
        if state is None or state.send_fin or state.send_reset:
            return
        try:
            if state.stopped_by_peer is None and state.conn.failure(state.session) is None:
                state.finish()
        except Exception:
            pass


class RecvStreamHandle:
    """The receiving half of a stream."""

    __slots__ = ("__weakref__", "_state")

    def __init__(self, state: StreamState) -> None:
        self._state = state

    @property
    def stream_id(self) -> int:
        return self._state.stream_id

    @property
    def is_finished(self) -> bool:
        """Whether the peer ended the stream and every byte was read (this handle holds
        nothing back apart from the stream's chunks, so this is ``at_eof`` too)."""
        return self._state.fin and not self._state.chunks

    @property
    def bytes_received(self) -> int:
        return self._state.bytes_received

    def poll_read(self, max_size: int, notifier: PureHub, token: int) -> bytes | None:
        want = _DEFAULT_READ_CHUNK if max_size < 0 else min(max_size, _MAX_READ)
        if want == 0:
            return b""
        state = self._state
        data = state.read(want)
        if data is None:
            state.read_waiters.add(notifier, token)
        return data

    def poll_read_exactly(self, size: int, notifier: PureHub, token: int) -> bytes | None:
        """Exactly ``size`` bytes, or ``None`` with ``token`` waiting until they are all
        there; :class:`StreamError` when the stream ends first (what arrived stays
        readable)."""
        if size < 0:
            raise OverflowError("can't convert negative int to unsigned")
        if size == 0:
            return b""
        state = self._state
        have = sum(map(len, state.chunks))
        if have >= size:
            return _take(state.chunks, size)
        if state.fin:
            raise StreamError(f"stream ended after {have} of {size} bytes")
        state.check_readable()
        state.read_waiters.add(notifier, token)
        return None

    def poll_read_until(
        self, separator: bytes, max_size: int, notifier: PureHub, token: int
    ) -> bytes | None:
        """The bytes up to and including the first ``separator`` (what is left at the
        end of the stream), or ``None`` with ``token`` waiting; :class:`StreamError`
        when it does not end within ``max_size`` bytes (no limit when negative)."""
        if not separator:
            raise ValueError("separator must not be empty")
        state = self._state
        chunks = state.chunks
        if len(chunks) > 1:
            # The buffered chunks as one, so the separator is found across their edges.
            joined = b"".join(chunks)
            chunks.clear()
            chunks.append(joined)
        data = chunks[0] if chunks else b""
        at = data.find(separator)
        if at >= 0:
            end = at + len(separator)
            if 0 <= max_size < end:
                raise StreamError(f"separator not found within max_size={max_size}")
            return _take(chunks, end)
        if 0 <= max_size < len(data):
            raise StreamError(f"separator not found within max_size={max_size}")
        if state.fin:
            chunks.clear()
            return data
        state.check_readable()
        state.read_waiters.add(notifier, token)
        return None

    @property
    def at_eof(self) -> bool:
        return self.is_finished

    def stop(self, code: int) -> None:
        self._state.stop(code)

    def __del__(self) -> None:
        # As with the Rust handle: a receive half dropped before its end stops the stream.
        state = getattr(self, "_state", None)
        if state is None or state.fin or state.stopped or state.reset_code is not None:
            return
        try:
            if state.conn.failure(state.session) is None:
                state.stop(0)
        except Exception:
            pass


def _take(chunks: deque[bytes], size: int) -> bytes:
    """The first ``size`` bytes of ``chunks`` (which hold at least that many)."""
    first = chunks[0]
    if len(first) >= size:
        if len(first) == size:
            chunks.popleft()
            return first
        chunks[0] = first[size:]
        return first[:size]
    parts = []
    left = size
    while left:
        chunk = chunks.popleft()
        if len(chunk) > left:
            chunks.appendleft(chunk[left:])
            chunk = chunk[:left]
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _check_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in headers]


class SessionHandle:
    """One session, server or client side."""

    __slots__ = ("__weakref__", "_s")

    def __init__(self, state: SessionState) -> None:
        self._s = state

    @property
    def session_id(self) -> int:
        return self._s.session_id

    @property
    def path(self) -> str:
        return self._s.path

    @property
    def authority(self) -> str:
        return self._s.authority

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._s.headers)

    @property
    def remote_address(self) -> tuple[str, int]:
        addr = self._s.conn.addr
        host = str(addr[0])
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        return host, int(addr[1])

    @property
    def phase(self) -> str:
        return self._s.phase

    @property
    def close_info(self) -> tuple[int, str, bool] | None:
        info = self._s.close
        return None if info is None else info.as_tuple()

    @property
    def max_datagram_size(self) -> int | None:
        return self._s.conn.max_datagram_payload(self._s)

    @property
    def peer_certificates(self) -> list[bytes]:
        """On a client, the server's leaf certificate (read from the handshake: aioquic
        hands out no chain); on a server, none (client certificates are refused in
        ``options.check_supported``)."""
        catcher = self._s.conn.catcher
        cert = None if catcher is None else catcher.certificate
        return [cert] if cert is not None else []

    @property
    def draft(self) -> str:
        # The only draft this backend speaks (Chrome's and Firefox's).
        return "draft-02"

    @property
    def protocol(self) -> str | None:
        return self._s.protocol

    @property
    def draining(self) -> bool:
        return self._s.draining

    def flow_control(self) -> dict[str, int | None] | None:
        # Session flow control exists from draft 13 on; draft-02 has none.
        return None

    def drain(self) -> None:
        s = self._s
        s.ensure_open()
        s.conn.send_capsule(s, wire.encode_drain_capsule())

    def accept(
        self,
        headers: list[tuple[str, str]] = [],  # noqa: B006 (as _core)
        wt_protocol: str | None = None,
    ) -> bool:
        s = self._s
        if s.phase != "requested":
            raise SessionError(f"invalid state: cannot accept a session in phase {s.phase}")
        conn = s.conn
        if s.close is not None:
            raise s.closed_error()
        fields = [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")]
        extra = _check_headers(headers)
        if wt_protocol is not None:
            offered_field = dict(s.headers).get("wt-available-protocols")
            offered = (
                wire.parse_sf_string_list(offered_field) if offered_field is not None else None
            ) or []
            if wt_protocol not in offered:
                raise ConfigurationError(
                    f"invalid argument: wt_protocol {wt_protocol!r} is not among the "
                    f"protocols the client offered: {offered!r}"
                )
            try:
                answer = wire.sf_string(wt_protocol)
            except ValueError as e:
                raise ConfigurationError(f"configuration error: {e}") from None
            fields.append((b"wt-protocol", answer.encode()))
            extra = [(k, v) for k, v in extra if k != b"wt-protocol"]
            s.protocol = wt_protocol
        s.phase = "accepted"
        fields += extra
        assert conn.h3 is not None
        conn.h3.send_headers(s.session_id, fields)
        conn.schedule_transmit()
        return True

    def reject(self, status_code: int, headers: list[tuple[str, str]] = []) -> bool:  # noqa: B006
        s = self._s
        low, high = REJECTION_STATUS
        if not low <= status_code <= high:
            raise ConfigurationError(
                f"invalid argument: {status_code} is not a rejection status (use {low}-{high})"
            )
        if s.phase != "requested":
            raise SessionError(f"invalid state: cannot reject a session in phase {s.phase}")
        s.phase = "rejected"
        fields = [(b":status", str(status_code).encode()), *_check_headers(headers)]
        s.conn.send_on_connect_stream(s, fields, None)
        s.mark_closed(wire.CloseInfo(0, f"rejected with status {status_code}", True))
        return True

    def close(self, code: int = 0, reason: str = "") -> bool:
        s = self._s
        if len(reason.encode()) > wire.MAX_CLOSE_REASON:
            raise ConfigurationError(
                f"invalid argument: close reason of {len(reason.encode())} bytes is over the "
                f"{wire.MAX_CLOSE_REASON} bytes the protocol allows"
            )
        if s.phase == "accepted":
            if s.mark_closed(wire.CloseInfo(code, reason, True)):
                s.conn.close_session(s, wire.encode_close_capsule(code, reason))
        elif s.phase == "requested":
            return self.reject(404)
        return True

    def open_bi(self, notifier: PureHub) -> tuple[SendStreamHandle, RecvStreamHandle]:
        state = self._s.conn.open_stream(self._s, bidi=True)
        return SendStreamHandle(state), RecvStreamHandle(state)

    def open_uni(self, notifier: PureHub) -> SendStreamHandle:
        return SendStreamHandle(self._s.conn.open_stream(self._s, bidi=False))

    def poll_closed(self, notifier: PureHub, token: int) -> tuple[int, str, bool] | None:
        info = self._s.close
        if info is None:
            self._s.close_waiters.add(notifier, token)
            return None
        return info.as_tuple()

    def poll_accept_bi(
        self, notifier: PureHub, token: int
    ) -> tuple[SendStreamHandle, RecvStreamHandle] | None:
        s = self._s
        if s.incoming_bi:
            state = s.incoming_bi.popleft()
            return SendStreamHandle(state), RecvStreamHandle(state)
        if s.close is not None:
            raise s.closed_error()
        s.bi_waiters.add(notifier, token)
        return None

    def poll_accept_uni(self, notifier: PureHub, token: int) -> RecvStreamHandle | None:
        s = self._s
        if s.incoming_uni:
            return RecvStreamHandle(s.incoming_uni.popleft())
        if s.close is not None:
            raise s.closed_error()
        s.uni_waiters.add(notifier, token)
        return None

    def poll_datagram(self, notifier: PureHub, token: int) -> bytes | None:
        s = self._s
        if s.datagrams:
            d = s.datagrams.popleft()
            s.datagram_bytes -= len(d) + DATAGRAM_ENTRY_OVERHEAD
            return d
        if s.close is not None:
            raise s.closed_error()
        s.datagram_waiters.add(notifier, token)
        return None

    def poll_datagrams(self, max_count: int, notifier: PureHub, token: int) -> list[bytes] | None:
        s = self._s
        queue = s.datagrams
        if queue:
            n = min(max(max_count, 1), len(queue))
            out = [queue.popleft() for _ in range(n)]
            s.datagram_bytes -= sum(map(len, out)) + n * DATAGRAM_ENTRY_OVERHEAD
            return out
        if s.close is not None:
            raise s.closed_error()
        s.datagram_waiters.add(notifier, token)
        return None

    def _checked_datagram(self, data: Buffer) -> bytes:
        """``data`` as bytes, after the checks every send makes (session open, the peer
        takes datagrams, the size fits)."""
        s = self._s
        s.ensure_open()
        limit = s.conn.max_datagram_payload(s)
        if limit is None:
            raise DatagramError(
                "datagrams are not supported on this session: the peer does not accept datagrams"
            )
        size = len(data)
        if size > limit:
            err = DatagramError(f"datagram of {size} bytes exceeds the maximum of {limit} bytes")
            err.max_size = limit
            err.size = size
            raise err
        return bytes(data)

    def _queue_datagram(self, payload: bytes) -> None:
        s = self._s
        s.conn.send_datagram(s, payload)
        s.datagrams_sent += 1

    def send_datagram(self, data: Buffer, wait: bool = True) -> PendingDatagram | None:
        """``None`` when the datagram was queued at once. While more than
        ``WRITE_BUFFER`` bytes (streams and datagrams) wait in aioquic, the datagram waits
        in the returned ``PendingDatagram`` (``wait``), or is dropped (``wait=False``:
        unlike quinn, which drops its oldest queued datagram, aioquic's queue cannot be
        trimmed from outside, so the new one goes, counted in ``stats()``'s
        ``datagrams_send_dropped``)."""
        payload = self._checked_datagram(data)
        if self._s.conn.unsent() < WRITE_BUFFER:
            self._queue_datagram(payload)
            return None
        if wait:
            return PendingDatagram(self, payload)
        self._s.datagrams_send_dropped += 1
        return None

    def send_datagrams(
        self, data: Iterator[Buffer], wait: bool = True
    ) -> tuple[int, PendingDatagram | None]:
        sent = 0
        for item in data:
            pending = self.send_datagram(item, wait)
            if pending is not None:
                return sent, pending
            sent += 1
        return sent, None

    def export_keying_material(self, label: bytes, context: bytes, length: int) -> bytes:
        raise SessionError(
            "export_keying_material is not supported by the pure-Python backend: aioquic "
            "exposes no TLS exporter (use backend='rust')"
        )

    def stats(self) -> dict[str, int | float]:
        s = self._s
        conn = s.conn
        return {
            "datagrams_sent": s.datagrams_sent,
            "datagrams_received": s.datagrams_received,
            "datagrams_dropped": s.datagrams_dropped,
            "datagrams_send_dropped": s.datagrams_send_dropped,
            "bytes_sent": conn.udp_bytes_sent,
            "bytes_received": conn.udp_bytes_received,
            "rtt": conn.sample_rtt(),
        }

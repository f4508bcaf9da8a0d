"""WebTransport streams: the receive side, the send side, and both together.

Reads and writes go straight to the Rust stream with no event-loop hop when data or
send window is available; they park on the stream's own token otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal

from . import _bridge
from ._core import RecvStreamHandle, SendStreamHandle
from ._types import Buffer
from .errors import StreamError

if TYPE_CHECKING:
    from .session import WebTransportSession

__all__ = [
    "StreamDirection",
    "WebTransportBidirectionalStream",
    "WebTransportReceiveStream",
    "WebTransportSendStream",
    "WebTransportStream",
]

StreamDirection = Literal["bidirectional", "receive", "send"]


class WebTransportStream:
    """What every stream has: its id, its session, its direction and state."""

    direction: StreamDirection

    def __init__(self, *, session: WebTransportSession, stream_id: int, peer_initiated: bool):
        self._session = session
        self._stream_id = stream_id
        self._peer_initiated = peer_initiated
        self._hub = session._hub

    @property
    def stream_id(self) -> int:
        return self._stream_id

    @property
    def session(self) -> WebTransportSession:
        return self._session

    @property
    def is_peer_initiated(self) -> bool:
        return self._peer_initiated

    @property
    def is_closed(self) -> bool:
        raise NotImplementedError

    async def diagnose(self) -> dict[str, Any]:
        """A snapshot of the stream's state and byte counts."""
        info: dict[str, Any] = {
            "stream_id": self._stream_id,
            "direction": self.direction,
            "is_peer_initiated": self._peer_initiated,
            "is_closed": self.is_closed,
            "session_id": self._session.session_id,
        }
        if isinstance(self, _Receiving):
            info["bytes_received"] = self._recv.bytes_received
            info["at_eof"] = self._recv.is_finished
        if isinstance(self, _Sending):
            info["bytes_sent"] = self._send.bytes_sent
            info["write_closed"] = self._write_closed
        return info

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self._stream_id} closed={self.is_closed}>"

    async def __aenter__(self) -> WebTransportStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        raise NotImplementedError


class _Receiving(WebTransportStream):
    """The reading half: a thin layer over the receive handle, which keeps all of the
    stream's receive state (what arrived, what a partial ``readexactly``/``readuntil``
    holds back, the end of the stream); this class keeps none of its own."""

    _recv: RecvStreamHandle
    _read_token: int
    _read_closed: bool

    def _init_receiving(self, recv: RecvStreamHandle) -> None:
        self._recv = recv
        self._read_closed = False
        self._read_token = _bridge.new_token()

    async def _until_ready(self, poll: Callable[..., bytes | None], *args: Any) -> bytes:
        """Calls ``poll(*args, notifier, token)`` until it returns bytes, parking on the
        stream's token while it returns ``None``."""
        hub = self._hub
        token = self._read_token
        data = poll(*args, hub.notifier, token)
        while data is None:
            await hub.park(token)
            data = poll(*args, hub.notifier, token)
        return data

    async def read(self, *, max_size: int = -1, max_bytes: int | None = None) -> bytes:
        """Up to ``max_size`` bytes as soon as any are available (any amount when
        negative); ``b""`` at the end of the stream. ``max_bytes`` is an alias kept for
        code written for pywebtransport 0.20."""
        if max_bytes is not None:
            max_size = max_bytes
        if max_size == 0:
            return b""
        # Written out rather than through _until_ready: the hot path of every reader.
        recv = self._recv
        token = self._read_token
        hub = self._hub
        data = recv.poll_read(max_size, hub.notifier, token)
        while data is None:
            await hub.park(token)
            data = recv.poll_read(max_size, hub.notifier, token)
        return data

    async def read_all(self, *, max_size: int | None = None) -> bytes:
        """Everything until the end of the stream. With ``max_size``, raises
        :class:`StreamError` (after stopping the stream) once more arrives."""
        parts: list[bytes] = []
        total = 0
        while True:
            chunk = await self.read()
            if not chunk:
                return b"".join(parts)
            total += len(chunk)
            if max_size is not None and total > max_size:
                await self.stop_receiving(error_code=0)
                raise StreamError(f"stream data exceeds max_size={max_size}")
            parts.append(chunk)

    async def readexactly(self, *, size: int | None = None, n: int | None = None) -> bytes:
        """Exactly ``size`` bytes; :class:`StreamError` if the stream ends first
        (the bytes read so far stay readable). ``n`` is the pywebtransport 0.20 alias."""
        if size is None:
            size = n
        if size is None or size < 0:
            raise ValueError("readexactly needs size >= 0")
        return await self._until_ready(self._recv.poll_read_exactly, size)

    async def readuntil(
        self, *, separator: bytes = b"\n", max_size: int = -1, limit: int | None = None
    ) -> bytes:
        """Bytes up to and including ``separator``. At the end of the stream returns
        what is left; raises :class:`StreamError` past ``max_size`` bytes (nothing is
        consumed then)."""
        if limit is not None:
            max_size = limit
        if not separator:
            raise ValueError("separator must not be empty")
        return await self._until_ready(self._recv.poll_read_until, bytes(separator), max_size)

    async def readline(self, *, max_size: int = -1, limit: int | None = None) -> bytes:
        """One line including ``b"\\n"`` (or the rest at the end of the stream)."""
        return await self.readuntil(separator=b"\n", max_size=max_size, limit=limit)

    async def stop_receiving(self, *, error_code: int = 0) -> None:
        """Asks the peer to stop sending (STOP_SENDING with a WebTransport code)."""
        if not self._read_closed and not self._recv.is_finished:
            self._read_closed = True
            try:
                self._recv.stop(error_code)
            except StreamError:
                pass
        self._read_closed = True

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.read()
            if not chunk:
                return
            yield chunk

    @property
    def at_eof(self) -> bool:
        """Whether the stream ended and everything in it was read."""
        return self._recv.at_eof


class _Sending(WebTransportStream):
    _send: SendStreamHandle
    _write_token: int
    _write_closed: bool

    def _init_sending(self, send: SendStreamHandle) -> None:
        self._send = send
        self._write_token = _bridge.new_token()
        self._write_closed = False

    async def write(self, *, data: Buffer, end_stream: bool = False) -> None:
        """Writes all of ``data``, waiting for flow-control room when needed; with
        ``end_stream`` the stream is finished after it (without waiting for the peer's
        acknowledgement)."""
        if self._write_closed:
            raise StreamError("stream is closed for writing")
        payload = data if isinstance(data, bytes) else bytes(data)
        total = len(payload)
        send = self._send
        hub = self._hub
        token = self._write_token
        if end_stream:
            self._write_closed = True
        # One call writes what fits and, with end_stream, finishes the stream too.
        offset = send.poll_write(payload, 0, hub.notifier, token, end_stream)
        hub.flush_soon()
        while offset < total:
            await hub.park(token)
            offset += send.poll_write(payload, offset, hub.notifier, token, end_stream)
            hub.flush_soon()

    async def write_all(
        self, *, data: Buffer, chunk_size: int = 65536, end_stream: bool = True
    ) -> None:
        """Writes ``data`` (in chunks, so others get a turn) and by default ends the
        stream."""
        view = memoryview(data).cast("B")
        for start in range(0, len(view), chunk_size):
            await self.write(data=view[start : start + chunk_size])
        if end_stream:
            await self.write(data=b"", end_stream=True)

    async def reset(self, *, error_code: int = 0) -> None:
        """Abandons the stream (RESET_STREAM with a WebTransport code)."""
        if not self._write_closed:
            self._write_closed = True
            try:
                self._send.reset(error_code)
            except StreamError:
                pass

    async def stop_sending(self, *, error_code: int = 0) -> None:
        """pywebtransport 0.20's name for :meth:`reset`."""
        await self.reset(error_code=error_code)

    async def _finish(self) -> None:
        if not self._write_closed:
            self._write_closed = True
            try:
                self._send.finish()
            except StreamError:
                pass


class WebTransportReceiveStream(_Receiving):
    """A unidirectional stream opened by the peer."""

    direction: StreamDirection = "receive"

    def __init__(self, *, session: WebTransportSession, recv: RecvStreamHandle) -> None:
        super().__init__(session=session, stream_id=recv.stream_id, peer_initiated=True)
        self._init_receiving(recv)

    @property
    def is_closed(self) -> bool:
        return self._read_closed or self.at_eof

    async def close(self) -> None:
        """Stops receiving if the stream has not ended."""
        await self.stop_receiving()


class WebTransportSendStream(_Sending):
    """A unidirectional stream opened by this side."""

    direction: StreamDirection = "send"

    def __init__(self, *, session: WebTransportSession, send: SendStreamHandle) -> None:
        super().__init__(session=session, stream_id=send.stream_id, peer_initiated=False)
        self._init_sending(send)

    @property
    def is_closed(self) -> bool:
        return self._write_closed

    async def close(self) -> None:
        """Ends the stream gracefully (FIN)."""
        await self._finish()


class WebTransportBidirectionalStream(_Receiving, _Sending):
    """A stream both sides read and write."""

    direction: StreamDirection = "bidirectional"

    def __init__(
        self,
        *,
        session: WebTransportSession,
        send: SendStreamHandle,
        recv: RecvStreamHandle,
        peer_initiated: bool,
    ) -> None:
        WebTransportStream.__init__(
            self, session=session, stream_id=send.stream_id, peer_initiated=peer_initiated
        )
        self._init_receiving(recv)
        self._init_sending(send)

    @property
    def is_closed(self) -> bool:
        return self._write_closed and (self._read_closed or self.at_eof)

    async def close(self) -> None:
        """Ends the sending side gracefully; the peer may still send until it ends."""
        await self._finish()

"""Messages on streams, not only bytes: length-prefixed framing with pluggable codecs.

A QUIC stream is a byte stream: one ``write`` may arrive as several reads, several
writes as one. Applications that exchange messages need framing; hand-written JSON
lines break on a newline inside a value, on a line split across reads, or grow without
bound when the peer never sends the newline. :class:`MessageStream` frames each message
as a 4-byte big-endian length followed by that many bytes, encoded by a codec
(:class:`JsonCodec` built in; :class:`MsgpackCodec` when ``msgpack`` is installed,
``pip install 'fastwt[msgpack]'``; :class:`BytesCodec` for raw payloads). The limit
``max_message_size`` is checked on the length *before* the body is read, so a peer
cannot make the receiver buffer more than that.

The format is easy to speak from a browser: ``DataView.setUint32(0, length)`` then the
UTF-8 JSON (see docs/messages.md)::

    from fastwt.messages import MessageStream

    stream = await session.create_bidirectional_stream()
    messages = MessageStream(stream)  # JsonCodec
    await messages.send({"op": "subscribe", "topic": "prices"})
    async for message in messages:
        print(message)
"""

from __future__ import annotations

import importlib
import json
from typing import Any, Generic, Protocol, TypeVar, cast, overload, runtime_checkable

from .errors import StreamError, WebTransportError
from .stream import (
    WebTransportBidirectionalStream,
    WebTransportReceiveStream,
    WebTransportSendStream,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "BytesCodec",
    "Codec",
    "JsonCodec",
    "MessageDecodeError",
    "MessageError",
    "MessageStream",
    "MessageTooLargeError",
    "MsgpackCodec",
    "TruncatedMessageError",
]

T = TypeVar("T")

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
"""1 MiB: the default bound on one encoded message, sent or received."""
_HEADER = 4
_MAX_FRAME = 2**32 - 1


class MessageError(WebTransportError):
    """A message could not be framed, sent or decoded."""


class MessageTooLargeError(MessageError):
    """A message is over ``max_message_size`` (``size`` bytes, ``limit``). Raised on
    sending before anything is written, and on receiving before the body is read (the
    stream is then stopped: what follows cannot be framed)."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class TruncatedMessageError(MessageError):
    """The stream ended inside a message (its length or its body)."""


class MessageDecodeError(MessageError):
    """The codec could not decode a message's bytes (``data`` holds them)."""

    def __init__(self, message: str, *, data: bytes) -> None:
        super().__init__(message)
        self.data = data


@runtime_checkable
class Codec(Protocol[T]):
    """Turns messages into bytes and back. ``decode`` raises ``ValueError`` (or a
    subclass) for bytes it cannot read; that becomes :class:`MessageDecodeError`."""

    def encode(self, message: T) -> bytes: ...

    def decode(self, data: bytes) -> T: ...


class JsonCodec:
    """UTF-8 JSON, compact. NaN and infinities are refused both ways (they are not
    JSON, and other languages' parsers reject them)."""

    def encode(self, message: Any) -> bytes:
        return json.dumps(
            message, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class MsgpackCodec:
    """MessagePack through the ``msgpack`` package (``pip install 'fastwt[msgpack]'``):
    smaller and faster than JSON, and carries ``bytes``."""

    def __init__(self) -> None:
        try:
            # Typed as Any: msgpack ships no type information.
            self._msgpack: Any = importlib.import_module("msgpack")
        except ImportError as exc:
            raise ImportError(
                "MsgpackCodec needs msgpack: pip install 'fastwt[msgpack]' "
                "(or: pip install msgpack)"
            ) from exc

    def encode(self, message: Any) -> bytes:
        data: bytes = self._msgpack.packb(message, use_bin_type=True)
        return data

    def decode(self, data: bytes) -> Any:
        try:
            return self._msgpack.unpackb(data, raw=False)
        except (self._msgpack.UnpackException, ValueError, TypeError) as exc:
            raise ValueError(f"not MessagePack: {exc}") from exc


class BytesCodec:
    """Each message is its bytes, as they are."""

    def encode(self, message: bytes) -> bytes:
        return bytes(message)

    def decode(self, data: bytes) -> bytes:
        return data


_Stream = WebTransportBidirectionalStream | WebTransportSendStream | WebTransportReceiveStream


class MessageStream(Generic[T]):
    """Length-prefixed messages over one WebTransport stream.

    ``stream`` may be bidirectional (send and receive), a send stream (``send`` only)
    or a receive stream (``recv`` and iteration only). ``initial`` is bytes already
    read from the stream (e.g. when its first bytes were looked at to tell formats
    apart); they are read first. One task should receive and one send at a time.
    """

    @overload
    def __init__(
        self: MessageStream[Any],
        stream: _Stream,
        codec: None = None,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        initial: bytes = b"",
    ) -> None: ...

    @overload
    def __init__(
        self,
        stream: _Stream,
        codec: Codec[T],
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        initial: bytes = b"",
    ) -> None: ...

    def __init__(
        self,
        stream: _Stream,
        codec: Codec[T] | None = None,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        initial: bytes = b"",
    ) -> None:
        if not 0 < max_message_size <= _MAX_FRAME:
            raise ValueError(f"max_message_size must be in 1..{_MAX_FRAME}")
        self.stream = stream
        self.codec: Codec[T] = codec if codec is not None else cast("Codec[T]", JsonCodec())
        self.max_message_size = max_message_size
        self._pending = bytes(initial)

    # --- sending -------------------------------------------------------------------
    async def send(self, message: T, *, end_stream: bool = False) -> None:
        """Encode and send one message (its length and body in one write);
        ``end_stream`` ends the stream after it."""
        stream = self.stream
        if isinstance(stream, WebTransportReceiveStream):
            raise MessageError("cannot send on a receive-only stream")
        data = self.codec.encode(message)
        if len(data) > self.max_message_size:
            raise MessageTooLargeError(
                f"message of {len(data)} bytes is over max_message_size={self.max_message_size}",
                size=len(data),
                limit=self.max_message_size,
            )
        await stream.write(data=len(data).to_bytes(_HEADER, "big") + data, end_stream=end_stream)

    async def close(self) -> None:
        """End the sending side (the peer's iteration ends after the last message)."""
        if isinstance(self.stream, WebTransportReceiveStream):
            raise MessageError("cannot close the sending side of a receive-only stream")
        await self.stream.close()

    # --- receiving -----------------------------------------------------------------
    async def recv(self) -> T:
        """The next message. Raises ``EOFError`` when the stream ended cleanly between
        messages, :class:`TruncatedMessageError` inside one,
        :class:`MessageTooLargeError` for a length over ``max_message_size``, and
        :class:`MessageDecodeError` when the codec refuses the bytes (the stream stays
        usable: the next message is framed independently)."""
        message = await self._recv_or_none()
        if message is None:
            raise EOFError("the stream ended")
        return message[0]

    def __aiter__(self) -> MessageStream[T]:
        return self

    async def __anext__(self) -> T:
        """Messages until the stream ends cleanly (errors are raised as by ``recv``)."""
        message = await self._recv_or_none()
        if message is None:
            raise StopAsyncIteration
        return message[0]

    async def _recv_or_none(self) -> tuple[T] | None:
        stream = self.stream
        if isinstance(stream, WebTransportSendStream):
            raise MessageError("cannot receive on a send-only stream")
        header = await self._read(stream, _HEADER, boundary=True)
        if header is None:
            return None
        size = int.from_bytes(header, "big")
        if size > self.max_message_size:
            # What follows cannot be skipped without reading it: tell the peer to stop.
            try:
                await stream.stop_receiving(error_code=0)
            except WebTransportError:
                pass
            raise MessageTooLargeError(
                f"peer sent a message of {size} bytes, over max_message_size="
                f"{self.max_message_size}",
                size=size,
                limit=self.max_message_size,
            )
        body = await self._read(stream, size, boundary=False)
        assert body is not None
        try:
            return (self.codec.decode(body),)
        except (ValueError, TypeError) as exc:
            raise MessageDecodeError(f"cannot decode a message: {exc}", data=body) from exc

    async def _read(
        self,
        stream: WebTransportBidirectionalStream | WebTransportReceiveStream,
        size: int,
        *,
        boundary: bool,
    ) -> bytes | None:
        """``size`` bytes; ``None`` when the stream ends right here and ``boundary``."""
        head = self._pending[:size]
        self._pending = self._pending[size:]
        if len(head) == size:
            return head
        if boundary and not head:
            first = await stream.read(max_size=size)
            if not first:
                return None
            head = first
            if len(head) == size:
                return head
        try:
            return head + await stream.readexactly(size=size - len(head))
        except StreamError as exc:
            # A reset carries the peer's code; a plain end of stream does not.
            if exc.error_code is None:
                where = "length" if boundary else "body"
                raise TruncatedMessageError(
                    f"the stream ended inside a message ({where} of {size} bytes)"
                ) from exc
            raise

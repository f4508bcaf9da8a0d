"""fastwt.messages: length-prefixed messages over real streams (asyncio and trio)."""

from __future__ import annotations

import math

import anyio
import pytest

from fastwt import WebTransportSession
from fastwt.framework import ServerApp
from fastwt.messages import (
    BytesCodec,
    JsonCodec,
    MessageDecodeError,
    MessageError,
    MessageStream,
    MessageTooLargeError,
    MsgpackCodec,
    TruncatedMessageError,
)
from fastwt.testing import TestClient

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

# What /raw/<case> writes on a stream it opens: crafted frames a receiver must handle.
RAW = {
    # A length of 4 GiB - 1 and no body: a receiver that buffered it would wait forever.
    "huge": b"\xff\xff\xff\xff",
    "truncated": b"\x00\x00\x00\x10abc",
    "half-header": b"\x00\x00",
    "garbage-then-good": b"\x00\x00\x00\x04nope" + b"\x00\x00\x00\x08" + b'{"ok":1}',
}


def make_app() -> ServerApp:
    app = ServerApp()

    @app.route(path="/echo")
    async def echo(session: WebTransportSession) -> None:
        codec = MsgpackCodec() if session.query.get("codec") == "msgpack" else JsonCodec()
        async for stream in session.incoming_bidirectional_streams():
            messages = MessageStream(stream, codec)
            async for message in messages:
                await messages.send({"echo": message})
            await messages.close()

    @app.route(path="/uni")
    async def uni(session: WebTransportSession) -> None:
        # Messages on a client stream are answered on a server stream.
        incoming = await session.accept_unidirectional_stream()
        outgoing = MessageStream(await session.create_unidirectional_stream())
        async for message in MessageStream(incoming):
            await outgoing.send(message * 2)
        await outgoing.close()
        # Returning closes the session; the close waits until the client has the reply.

    @app.pattern_route(pattern=r"/raw/(?P<case>[a-z-]+)")
    async def raw(session: WebTransportSession, case: str) -> None:
        stream = await session.create_unidirectional_stream()
        await stream.write(data=RAW[case], end_stream=case != "huge")
        await session.wait_closed()

    return app


async def test_json_messages_round_trip_whatever_the_write_boundaries() -> None:
    async with TestClient(make_app()) as client:
        session = await client.connect("/echo")
        stream = await session.create_bidirectional_stream()
        messages = MessageStream(stream)
        sent = [{"n": i, "text": "line\nbreak é", "list": [1, 2.5, None]} for i in range(50)]
        for message in sent:
            await messages.send(message)
        # Frames written byte by byte, and two frames in one write, arrive whole.
        framed = b"".join(
            len(body).to_bytes(4, "big") + body for body in (b'"split"', b'"two"', b'"in one"')
        )
        for i in range(11):
            await stream.write(data=framed[i : i + 1])
        await stream.write(data=framed[11:])
        await messages.close()
        with anyio.fail_after(10):
            received = [message async for message in messages]
        expected = [*sent, "split", "two", "in one"]
        assert received == [{"echo": message} for message in expected]
        with pytest.raises(EOFError):
            await messages.recv()


async def test_messages_on_unidirectional_streams_and_the_wrong_direction() -> None:
    async with TestClient(make_app()) as client:
        session = await client.connect("/uni")
        outgoing = MessageStream(await session.create_unidirectional_stream())
        for word in ("ab", "cd"):
            await outgoing.send(word)
        await outgoing.close()
        with anyio.fail_after(10):
            incoming = MessageStream(await session.accept_unidirectional_stream())
            assert [m async for m in incoming] == ["abab", "cdcd"]
        with pytest.raises(MessageError, match="receive-only"):
            await incoming.send("x")
        with pytest.raises(MessageError, match="send-only"):
            await outgoing.recv()


async def test_max_message_size_is_enforced_before_anything_is_buffered() -> None:
    async with TestClient(make_app()) as client:
        session = await client.connect("/echo")
        small = MessageStream(await session.create_bidirectional_stream(), max_message_size=16)
        with pytest.raises(MessageTooLargeError) as too_big:
            await small.send("x" * 100)
        assert (too_big.value.size, too_big.value.limit) == (102, 16)
        await small.send("fits")  # nothing of the refused message was written
        await small.close()
        with anyio.fail_after(10):
            assert [m async for m in small] == [{"echo": "fits"}]

        session = await client.connect("/raw/huge")
        with anyio.fail_after(10):
            stream = MessageStream(await session.accept_unidirectional_stream())
            with pytest.raises(MessageTooLargeError, match="4294967295 bytes") as caught:
                await stream.recv()
        assert caught.value.limit == 1024 * 1024


async def test_truncated_and_undecodable_messages() -> None:
    async with TestClient(make_app()) as client:
        for case in ("truncated", "half-header"):
            session = await client.connect(f"/raw/{case}")
            with anyio.fail_after(10):
                stream = MessageStream(await session.accept_unidirectional_stream())
                with pytest.raises(TruncatedMessageError):
                    await stream.recv()

        session = await client.connect("/raw/garbage-then-good")
        with anyio.fail_after(10):
            stream = MessageStream(await session.accept_unidirectional_stream())
            with pytest.raises(MessageDecodeError) as caught:
                await stream.recv()
            assert caught.value.data == b"nope"
            assert await stream.recv() == {"ok": 1}  # the next frame is read on its own
            assert [m async for m in stream] == []


async def test_msgpack_codec_carries_bytes() -> None:
    pytest.importorskip("msgpack")
    async with TestClient(make_app()) as client:
        session = await client.connect("/echo?codec=msgpack")
        messages = MessageStream(await session.create_bidirectional_stream(), MsgpackCodec())
        await messages.send({"blob": b"\x00\xff", "n": 2**40})
        await messages.close()
        with anyio.fail_after(10):
            assert [m async for m in messages] == [{"echo": {"blob": b"\x00\xff", "n": 2**40}}]


def test_codecs() -> None:
    json_codec = JsonCodec()
    assert json_codec.encode({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    for bad in (b"NaN", b"[Infinity]", b"not json", b"\xff"):
        with pytest.raises(ValueError):
            json_codec.decode(bad)
    with pytest.raises(ValueError):
        json_codec.encode(math.nan)
    assert BytesCodec().decode(BytesCodec().encode(b"raw")) == b"raw"
    if pytest.importorskip("msgpack"):
        with pytest.raises(ValueError):
            MsgpackCodec().decode(b"\xc1")
    with pytest.raises(ValueError):
        MessageStream(None, max_message_size=0)  # type: ignore[arg-type]

"""A chat room over WebTransport streams.

Each member connects to ``/chat/<room>?nick=<name>`` and opens **one bidirectional
stream**. Everything the member writes on it is read as newline-delimited UTF-8 lines;
each line is sent to every *other* member of the same room as ``"<nick>: <text>\\n"``
on their own stream. The server also writes notices on the stream:

- to the newcomer: ``"* welcome <nick>, in <room>: <nick>, <nick>\\n"`` (the members
  already present), as soon as the server sees the stream (browsers may announce a
  stream only once it carries data: an empty line joins without saying anything);
- to the others: ``"* <nick> joined\\n"`` and ``"* <nick> left\\n"``.

A member leaves by ending its stream (FIN) or closing the session. A member whose
outgoing queue fills up (it does not read) is disconnected rather than allowed to slow
down the room: its session is closed with code :data:`SLOW_READER` and the others see
``"* <nick> was disconnected (not reading)\\n"``.

Run it (a development certificate is generated; its SHA-256 is printed for browsers'
``serverCertificateHashes``)::

    python examples/chat_room.py --port 4433

and join from a browser console on a secure-context page::

    const wt = new WebTransport("https://127.0.0.1:4433/chat/lobby?nick=ada",
        {serverCertificateHashes: [{algorithm: "sha-256", value: <hash bytes>}]});
    await wt.ready;
    const s = await wt.createBidirectionalStream();
    const w = s.writable.getWriter();
    await w.write(new TextEncoder().encode("hello\\n"));
"""

from __future__ import annotations

import argparse
import functools
import logging
import re
import signal
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from fastwt import ServerConfig, WebTransportError, WebTransportSession
from fastwt.framework import ServerApp
from fastwt.stream import WebTransportBidirectionalStream

__all__ = ["ChatRoom", "ChatServer", "create_app", "main"]

logger = logging.getLogger("chat_room")

MAX_LINE = 4096
"""Longest line a member may send (bytes, newline included); longer closes its stream."""
OUTBOX_SIZE = 256
"""Lines queued for one member before it is considered stuck and disconnected."""
SLOW_READER = 0x10
"""Session close code for a member disconnected because it did not read."""
STREAM_WAIT = 10.0
"""Seconds a member has after connecting to open its stream."""

_NICK = re.compile(r"[^\w.-]")


@dataclass(eq=False)
class Member:
    """One connected member: its nickname, the queue its writer task drains, and the
    scope of its tasks (cancelled to disconnect it)."""

    nick: str
    outbox: MemoryObjectSendStream[bytes]
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    dropped: bool = False

    def drop(self) -> None:
        """Disconnect a member that does not keep up: its writer may be stuck in a
        write that flow control holds forever, so cancel rather than wait."""
        self.dropped = True
        self.outbox.close()
        self.scope.cancel()


@dataclass
class ChatRoom:
    """The members of one room. Only touched from the event loop, so no lock."""

    name: str
    members: list[Member] = field(default_factory=list)

    def broadcast(self, line: str, *, exclude: Member | None = None) -> None:
        """Queue ``line`` for every member but ``exclude``; never blocks. A member
        whose queue is full is dropped from the room (its writer then ends)."""
        data = line.encode()
        for member in list(self.members):
            if member is exclude:
                continue
            try:
                member.outbox.send_nowait(data)
            except anyio.WouldBlock:
                logger.warning("%s in %s is not reading; disconnecting", member.nick, self.name)
                self.members.remove(member)
                member.drop()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass


class ChatServer:
    """All rooms; rooms exist while they have members."""

    def __init__(self) -> None:
        self.rooms: dict[str, ChatRoom] = {}

    def room(self, name: str) -> ChatRoom:
        return self.rooms.setdefault(name, ChatRoom(name))

    def members(self, room: str) -> list[str]:
        """Nicknames in ``room`` (for tests and monitoring)."""
        found = self.rooms.get(room)
        return [m.nick for m in found.members] if found else []

    async def serve_member(self, session: WebTransportSession, room_name: str) -> None:
        """The whole life of one member, from its stream to its departure."""
        nick = _NICK.sub("", session.query.get("nick", ""))[:32] or f"guest{session.session_id}"
        try:
            with anyio.fail_after(STREAM_WAIT):
                stream = await session.accept_bidirectional_stream()
        except (TimeoutError, WebTransportError):
            return
        send, receive = anyio.create_memory_object_stream[bytes](OUTBOX_SIZE)
        member = Member(nick, send)
        room = self.room(room_name)
        present = ", ".join(m.nick for m in room.members) or "nobody else"
        send.send_nowait(f"* welcome {nick}, in {room_name}: {present}\n".encode())
        room.members.append(member)
        room.broadcast(f"* {nick} joined\n", exclude=member)
        logger.info("%s joined %s", nick, room_name)
        try:
            with member.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_write_lines, stream, receive, member.scope)
                    await _read_lines(stream, room, member)
                    # The member ended its stream: stop writing to it as well.
                    member.scope.cancel()
        finally:
            if member in room.members:
                room.members.remove(member)
            if not member.dropped:
                room.broadcast(f"* {nick} left\n")
            if not room.members and self.rooms.get(room_name) is room:
                del self.rooms[room_name]
            send.close()
            logger.info("%s left %s", nick, room_name)
        if member.dropped:
            room.broadcast(f"* {nick} was disconnected (not reading)\n")
            await session.close(error_code=SLOW_READER, reason="not reading fast enough")


async def _read_lines(
    stream: WebTransportBidirectionalStream, room: ChatRoom, member: Member
) -> None:
    try:
        while line := await stream.readline(max_size=MAX_LINE):
            text = line.decode("utf-8", errors="replace").rstrip("\r\n")
            if text:  # empty lines are not relayed
                room.broadcast(f"{member.nick}: {text}\n", exclude=member)
    except WebTransportError as exc:  # reset, session gone, or line too long
        logger.debug("%s: stream ended: %r", member.nick, exc)


async def _write_lines(
    stream: WebTransportBidirectionalStream,
    outbox: MemoryObjectReceiveStream[bytes],
    scope: anyio.CancelScope,
) -> None:
    try:
        async with outbox:
            async for data in outbox:
                await stream.write(data=data)
    except WebTransportError as exc:
        logger.debug("write failed: %r", exc)
    # The outbox closed (the member was dropped) or the peer is gone: end the member.
    scope.cancel()


def create_app(*, config: ServerConfig | None = None, chat: ChatServer | None = None) -> ServerApp:
    """The chat app. Pass your own ``chat`` to look at its rooms and members."""
    app = ServerApp(config=config)
    chat = chat if chat is not None else ChatServer()

    @app.pattern_route(pattern=r"/chat/(?P<room>\w+)")
    async def chat_room(session: WebTransportSession, room: str) -> None:
        await chat.serve_member(session, room)

    return app


async def serve_until_signal(app: ServerApp, host: str, port: int) -> None:
    """Serve ``app``, print where and how to trust it, stop cleanly on SIGINT/SIGTERM."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            addresses = await tg.start(functools.partial(app.serve, host=host, port=port))
            bound_host, bound_port = addresses[0]
            if bound_host in ("0.0.0.0", "::"):
                bound_host = "127.0.0.1"
            authority = (
                f"[{bound_host}]:{bound_port}"
                if ":" in bound_host
                else f"{bound_host}:{bound_port}"
            )
            print(f"chat room listening on {addresses}", flush=True)
            print(f"  URL:                 https://{authority}/chat/lobby?nick=YOU", flush=True)
            print(f"  certificate SHA-256: {app.server.certificate_hash}", flush=True)
            async for _ in signals:
                break
            tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="WebTransport chat room (streams)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    parser.add_argument("--certfile", help="PEM certificate (default: a development one)")
    parser.add_argument("--keyfile", help="PEM private key")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = ServerConfig(
        bind_host=args.host, bind_port=args.port, certfile=args.certfile, keyfile=args.keyfile
    )
    anyio.run(serve_until_signal, create_app(config=config), args.host, args.port)


if __name__ == "__main__":
    main()

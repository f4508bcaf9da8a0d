"""Rooms that span processes and machines: run this app on several nodes with one Redis.

Each client connects to ``/room/<name>?nick=<nick>`` on any node and:

- gets, on a first unidirectional stream, a JSON welcome:
  ``{"room": ..., "nick": ..., "node": <this node's id>, "present": <members on every node>}``;
- sends **datagrams** (position updates, ticks): each is relayed to every other member of
  the room, on every node, prefixed with the sender's nick and a colon (``b"ada:" +
  data``) — at most once, as datagrams are;
- sends **unidirectional streams** (a chat line, a snapshot, up to 64 KiB): each is
  relayed as a stream holding ``b"ada:" + data`` to every other member, on every node.

With no broker the rooms are local to the process (fine for one process). With one,
every node using the same Redis shares them::

    redis-server --port 6379 --save '' --appendonly no
    fastwt run examples.cluster_room:app --port 4433 --broker redis://127.0.0.1:6379/0
    fastwt run examples.cluster_room:app --port 4434 --broker redis://127.0.0.1:6379/0

or ``python examples/cluster_room.py --port 4433 --broker redis://127.0.0.1:6379/0``.
The room broadcasts go through Redis pub/sub; the fan-out to each node's own members
is done by the Rust core in one call (see docs/rooms.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import re
import signal

import anyio

from fastwt import ServerConfig, WebTransportError, WebTransportSession
from fastwt.framework import Room, ServerApp
from fastwt.stream import WebTransportReceiveStream

__all__ = ["MAX_MESSAGE", "app", "create_app", "main"]

logger = logging.getLogger("cluster_room")

MAX_MESSAGE = 64 * 1024
"""Longest stream message a member may send (bytes); longer ones are refused."""

_NICK = re.compile(r"[^\w.-]")


def _nick(session: WebTransportSession) -> str:
    nick = _NICK.sub("", session.query.get("nick", ""))[:32]
    return nick or f"guest{session.session_id}"


async def _relay_streams(room: Room, session: WebTransportSession, prefix: bytes) -> None:
    """Every unidirectional stream the member sends, to the others as a stream."""
    async with anyio.create_task_group() as tg:
        async for stream in session.incoming_unidirectional_streams():
            tg.start_soon(_relay_one, room, session, prefix, stream)


async def _relay_one(
    room: Room, session: WebTransportSession, prefix: bytes, stream: WebTransportReceiveStream
) -> None:
    data = b""
    try:
        with anyio.fail_after(10):
            while len(data) <= MAX_MESSAGE:
                chunk = await stream.read(max_size=MAX_MESSAGE + 1 - len(data))
                if not chunk:
                    break
                data += chunk
    except (WebTransportError, TimeoutError):
        return
    if len(data) > MAX_MESSAGE:
        await stream.stop_receiving(error_code=1)
        return
    await room.broadcast(prefix + data, datagram=False, exclude=session)


def create_app(*, config: ServerConfig | None = None, broker: str | None = None) -> ServerApp:
    """The app: ``/room/<name>`` (see the module doc). ``broker`` defaults to
    ``FASTWT_BROKER`` (``fastwt run --broker`` sets it); none: rooms in this process."""
    app = ServerApp(config=config, broker=broker)

    @app.pattern_route(pattern=r"/room/(?P<name>\w{1,64})")
    async def member(session: WebTransportSession, name: str) -> None:
        room = app.room(name)
        nick = _nick(session)
        await room.join(session)
        welcome = {
            "room": name,
            "nick": nick,
            "node": app.broker.node_id if app.broker is not None else "local",
            "present": await _presence(room),
        }
        stream = await session.create_unidirectional_stream()
        await stream.write(data=json.dumps(welcome).encode(), end_stream=True)
        prefix = nick.encode() + b":"
        async with anyio.create_task_group() as tg:
            tg.start_soon(_relay_streams, room, session, prefix)
            try:
                async for data in session.datagrams():
                    await room.broadcast(prefix + data, exclude=session)
            except WebTransportError:
                pass
            tg.cancel_scope.cancel()

    return app


async def _presence(room: Room) -> int:
    """How many members the room has on every node (0 if Redis cannot say now)."""
    try:
        return len(await room.presence())
    except Exception as exc:
        logger.warning("presence of %r unavailable: %r", room.name, exc)
        return 0


app = create_app()
"""The app for ``fastwt run examples.cluster_room:app [--broker URL]``."""


async def serve_until_signal(served: ServerApp, host: str, port: int) -> None:
    """Serve, print where, stop cleanly on SIGINT/SIGTERM."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            addresses = await tg.start(functools.partial(served.serve, host=host, port=port))
            bound_host, bound_port = addresses[0]
            authority = f"[{bound_host}]" if ":" in bound_host else bound_host
            print(f"cluster room listening on {addresses}", flush=True)
            print(f"  URL:                 https://{authority}:{bound_port}/room/lobby", flush=True)
            print(f"  certificate SHA-256: {served.server.certificate_hash}", flush=True)
            bus = served.broker
            print(
                f"  broker:              {bus.display_url if bus else 'none (one process)'}",
                flush=True,
            )
            async for _ in signals:
                break
            tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rooms across nodes on Redis")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    parser.add_argument("--broker", help="Redis URL (default: FASTWT_BROKER, else none)")
    parser.add_argument("--certfile", help="PEM certificate (default: a development one)")
    parser.add_argument("--keyfile", help="PEM private key")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = ServerConfig(
        bind_host=args.host, bind_port=args.port, certfile=args.certfile, keyfile=args.keyfile
    )
    served = create_app(config=config, broker=args.broker)
    anyio.run(serve_until_signal, served, args.host, args.port)


if __name__ == "__main__":
    main()

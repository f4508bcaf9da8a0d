"""The echo server of the benchmarks, on either backend.

    python -m fastwt.bench.server [--backend rust|python] [--mode bare|app|app-plain]
        [--host 127.0.0.1] [--port 0] [--seconds N] [--stream-tasks]

(also ``fastwt bench --serve``, to run it on another machine for ``fastwt bench
--target``.) ``bare``: ``WebTransportServer`` and ``incoming_sessions()`` directly (the
default). ``app``: ``fastwt.framework.ServerApp`` with auth + CORS + rate-limit
middleware (clients must send ``authorization: Bearer bench`` and ``origin:
https://bench.example``). ``app-plain``: ``ServerApp`` without middleware. Streams are
echoed through ``session.handle_bidirectional_streams``; ``--stream-tasks`` echoes each
in a task of its own instead (``incoming_bidirectional_streams()``, the reference API).

Prints ``PORT <n>`` and ``HASH <hex>`` once listening. Routes, as for every target of the
repository's suite: ``/echo`` echoes every bidirectional stream and every datagram,
``/fanout`` gets a 64-byte datagram per tick (20 Hz by default; the tick number in the
first 8 bytes, little endian), ``/idle`` does nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastwt import ServerConfig, WebTransportServer, WebTransportSession
from fastwt.framework.rooms import Room, RoomRegistry

READ_MAX = 1 << 20
"""The most an echo read takes at once: whatever the stream has buffered up to 1 MiB, so
a bulk transfer costs one Python read and write per arrival, not one per 64 KiB."""
AUTH_TOKEN = "Bearer bench"
ORIGIN = "https://bench.example"


def server_config(backend: str = "rust", host: str = "127.0.0.1", port: int = 0) -> ServerConfig:
    return ServerConfig(bind_host=host, bind_port=port, max_sessions=20_000, backend=backend)


async def echo_stream(stream: Any) -> None:
    try:
        while True:
            chunk = await stream.read(max_size=READ_MAX)
            if not chunk:
                break
            await stream.write(data=chunk)
        await stream.write(data=b"", end_stream=True)
    except Exception:
        pass


async def echo_datagrams(session: WebTransportSession) -> None:
    try:
        while True:
            batch = await session.read_datagrams(max_count=256)
            await session.send_datagrams(data=batch)
    except Exception:
        pass


async def serve_echo(session: WebTransportSession) -> None:
    """Echoes the session's streams through ``handle_bidirectional_streams`` (a stream
    answered without waiting costs no task) and its datagrams."""
    dg = asyncio.create_task(echo_datagrams(session))
    try:
        await session.handle_bidirectional_streams(echo_stream)
    except Exception:
        pass
    finally:
        dg.cancel()
        report_datagram_stats(session)


async def serve_echo_with_tasks(session: WebTransportSession) -> None:
    """``serve_echo`` in the reference API's form: a task per incoming stream."""
    tasks: set[asyncio.Task[None]] = set()
    dg = asyncio.create_task(echo_datagrams(session))
    try:
        async for stream in session.incoming_bidirectional_streams():
            t = asyncio.create_task(echo_stream(stream))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
    except Exception:
        pass
    finally:
        dg.cancel()
        for t in list(tasks):
            t.cancel()
        report_datagram_stats(session)


def report_datagram_stats(session: WebTransportSession) -> None:
    stats = session.stats()
    if stats.get("datagrams_received"):
        # Where a datagram workload lost what it lost (the suite keeps stderr in its
        # raw/bench.log): the receive queue's drops, what left and arrived in frames.
        print(f"session stats {json.dumps(stats)}", file=sys.stderr, flush=True)


class Handlers:
    """The three routes, shared by the bare server and the ServerApp variants."""

    def __init__(self, *, room: bool = False, stream_tasks: bool = False) -> None:
        self.echo = serve_echo_with_tasks if stream_tasks else serve_echo
        self.fanout: set[WebTransportSession] = set()
        # With ``room``, fan-out sessions join a room and each tick is one
        # ``room.broadcast`` (the Rust fan-out: no Python code per recipient) instead of
        # one ``send_datagram`` per session.
        self.room: Room | None = RoomRegistry().room("fanout") if room else None

    async def route(self, session: WebTransportSession) -> None:
        path = session.path.split("?", 1)[0]
        if path == "/fanout":
            await self.fan(session)
        elif path == "/idle":
            await self.idle(session)
        else:
            await self.echo(session)

    async def fan(self, session: WebTransportSession) -> None:
        self.fanout.add(session)
        if self.room is not None:
            await self.room.join(session)
        try:
            await session.wait_closed()
        except Exception:
            pass
        finally:
            self.fanout.discard(session)
            if self.room is not None:
                await self.room.leave(session)

    async def idle(self, session: WebTransportSession) -> None:
        with contextlib.suppress(Exception):
            await session.wait_closed()

    async def ticker(self, hz: float) -> None:
        period = 1.0 / hz
        start = time.monotonic()
        tick = 0
        pad = bytes(56)
        while True:
            # Tick k is due at start + k*period. A tick more than a period late is skipped:
            # its number never goes out, and the client counts the gap as undelivered.
            tick += 1
            delay = start + tick * period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > period:
                tick = int((time.monotonic() - start) / period)
            payload = struct.pack("<Q", tick) + pad
            if self.room is not None:
                await self.room.broadcast(payload, datagram=True)
                continue
            for s in list(self.fanout):
                try:
                    # A tick never waits for one slow session (fan-out semantics).
                    await s.send_datagram(data=payload, wait=False)
                except Exception:
                    self.fanout.discard(s)


async def run_bare(h: Handlers, seconds: float, hz: float, config: ServerConfig) -> None:
    async with WebTransportServer(config=config) as server:
        await server.listen()
        port = server.local_addresses[0][1]
        print(f"PORT {port}", flush=True)
        print(f"HASH {server.certificate_hash}", flush=True)
        tasks: set[asyncio.Task[None]] = set()
        tick = asyncio.create_task(h.ticker(hz))

        async def handle(session: WebTransportSession) -> None:
            try:
                await session.accept()
            except Exception:
                return
            await h.route(session)

        async def accept_loop() -> None:
            async for session in server.incoming_sessions():
                t = asyncio.create_task(handle(session))
                tasks.add(t)
                t.add_done_callback(tasks.discard)

        try:
            await asyncio.wait_for(accept_loop(), timeout=seconds)
        except TimeoutError:
            pass
        finally:
            tick.cancel()


async def run_app(
    h: Handlers, seconds: float, hz: float, middleware: bool, config: ServerConfig
) -> None:
    from fastwt.framework import (
        ServerApp,
        create_auth_middleware,
        create_cors_middleware,
        create_rate_limit_middleware,
    )

    app = ServerApp(config=config)
    if middleware:

        async def check_token(*, headers: Any) -> bool:
            return bool(headers.get("authorization") == AUTH_TOKEN)

        app.add_middleware(middleware=create_auth_middleware(auth_handler=check_token))
        app.add_middleware(middleware=create_cors_middleware(allowed_origins=[ORIGIN]))
        app.add_middleware(
            middleware=create_rate_limit_middleware(max_requests=10_000_000, window_seconds=60)
        )

    handler_for: dict[str, Callable[[WebTransportSession], Awaitable[None]]] = {
        "/echo": h.echo,
        "/fanout": h.fan,
        "/idle": h.idle,
    }
    for path, fn in handler_for.items():
        app.route(path=path)(fn)

    import anyio

    async with app, anyio.create_task_group() as tg:
        addresses = await tg.start(app.serve)
        port = addresses[0][1]
        print(f"PORT {port}", flush=True)
        print(f"HASH {app.server.certificate_hash}", flush=True)
        tick = asyncio.create_task(h.ticker(hz))
        await anyio.sleep(seconds)
        tick.cancel()
        tg.cancel_scope.cancel()


def add_arguments(ap: Any) -> None:
    """The server's options (shared with ``fastwt bench --serve``)."""
    ap.add_argument(
        "--stream-tasks",
        action="store_true",
        help="echo each stream in a task of its own (the reference API's form) instead of"
        " through handle_bidirectional_streams",
    )
    ap.add_argument("--mode", choices=["bare", "app", "app-plain"], default="bare")
    ap.add_argument("--seconds", type=float, default=600.0, help="lifetime (default 600)")
    ap.add_argument("--hz", type=float, default=20.0, help="fan-out ticks per second")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="UDP port (default 0: any free one)")
    ap.add_argument(
        "--fanout-room",
        action="store_true",
        help="fan-out ticks as one room broadcast (Rust fan-out) instead of a send per session",
    )


async def serve(args: argparse.Namespace, backend: str) -> None:
    h = Handlers(room=args.fanout_room, stream_tasks=args.stream_tasks)
    config = server_config(backend, args.host, args.port)
    if args.mode == "bare":
        await run_bare(h, args.seconds, args.hz, config)
    else:
        await run_app(h, args.seconds, args.hz, args.mode == "app", config)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m fastwt.bench.server")
    add_arguments(ap)
    ap.add_argument("--backend", choices=["rust", "python"], default="rust")
    args = ap.parse_args(argv)
    try:
        asyncio.run(serve(args, args.backend))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

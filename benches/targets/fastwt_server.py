"""Echo server for the fastwt target (run with the Python that has fastwt installed).

    python targets/fastwt_server.py [--mode bare|app|app-plain] [--seconds N]

``bare``: ``WebTransportServer`` and ``incoming_sessions()`` directly (the default target).
``app``: ``fastwt.framework.ServerApp`` with auth + CORS + rate-limit middleware (issue 3's
comparison; clients must send ``authorization: Bearer bench`` and
``origin: https://bench.example``). ``app-plain``: ``ServerApp`` without middleware.

Prints ``PORT <n>`` and ``HASH <hex>`` once listening on 127.0.0.1. Routes as for every
target of the suite: ``/echo`` echoes every bidirectional stream and every datagram,
``/fanout`` gets a 64-byte datagram per 20 Hz tick (tick number in the first 8 bytes,
little endian), ``/idle`` does nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastwt import ServerConfig, WebTransportServer, WebTransportSession

CHUNK = 65536
AUTH_TOKEN = "Bearer bench"
ORIGIN = "https://bench.example"


def server_config() -> ServerConfig:
    return ServerConfig(bind_host="127.0.0.1", bind_port=0, max_sessions=20_000)


async def echo_stream(stream: Any) -> None:
    try:
        while True:
            chunk = await stream.read(max_size=CHUNK)
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


class Handlers:
    """The three routes, shared by the bare server and the ServerApp variants."""

    def __init__(self) -> None:
        self.fanout: set[WebTransportSession] = set()

    async def route(self, session: WebTransportSession) -> None:
        path = session.path.split("?", 1)[0]
        if path == "/fanout":
            await self.fan(session)
        elif path == "/idle":
            await self.idle(session)
        else:
            await serve_echo(session)

    async def fan(self, session: WebTransportSession) -> None:
        self.fanout.add(session)
        try:
            await session.wait_closed()
        except Exception:
            pass
        finally:
            self.fanout.discard(session)

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
            for s in list(self.fanout):
                try:
                    await s.send_datagram(data=payload)
                except Exception:
                    self.fanout.discard(s)


async def run_bare(h: Handlers, seconds: float, hz: float) -> None:
    async with WebTransportServer(config=server_config()) as server:
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


async def run_app(h: Handlers, seconds: float, hz: float, middleware: bool) -> None:
    from fastwt.framework import (
        ServerApp,
        create_auth_middleware,
        create_cors_middleware,
        create_rate_limit_middleware,
    )

    app = ServerApp(config=server_config())
    if middleware:

        async def check_token(*, headers: Any) -> bool:
            return bool(headers.get("authorization") == AUTH_TOKEN)

        app.add_middleware(middleware=create_auth_middleware(auth_handler=check_token))
        app.add_middleware(middleware=create_cors_middleware(allowed_origins=[ORIGIN]))
        app.add_middleware(
            middleware=create_rate_limit_middleware(max_requests=10_000_000, window_seconds=60)
        )

    handler_for: dict[str, Callable[[WebTransportSession], Awaitable[None]]] = {
        "/echo": serve_echo,
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


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["bare", "app", "app-plain"], default="bare")
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--hz", type=float, default=20.0)
    args = ap.parse_args()
    h = Handlers()
    if args.mode == "bare":
        await run_bare(h, args.seconds, args.hz)
    else:
        await run_app(h, args.seconds, args.hz, middleware=args.mode == "app")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)

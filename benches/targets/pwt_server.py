"""Echo server for the reference targets: pywebtransport 0.20.x and 0.11.x, both with ServerApp.

Run with the interpreter of the venv that has the version to measure:

    .venvs/pwt020/bin/python targets/pwt_server.py --cert C --key K [--seconds N]

Prints ``PORT <n>`` once listening on 127.0.0.1. Routes (same for every target of the suite):
``/echo`` echoes every bidirectional stream and every datagram; ``/fanout`` receives a
64-byte datagram per 20 Hz tick (tick number, wall-clock based, in the first 8 bytes, little
endian); ``/idle`` holds the session open and does nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pywebtransport
from pywebtransport import ServerApp, ServerConfig, WebTransportSession
from pywebtransport.types import EventType

VERSION = tuple(int(x) for x in pywebtransport.__version__.split(".")[:2])
CHUNK = 65536


def free_udp_port() -> int:
    """pywebtransport's config rejects port 0: take a free UDP port from the kernel instead."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_config(cert: str, key: str) -> ServerConfig:
    wanted: dict[str, Any] = {
        "bind_host": "127.0.0.1",
        "bind_port": free_udp_port(),
        "certfile": cert,
        "keyfile": key,
        # room for the 1,000-session workloads and 32 concurrent requests
        "max_connections": 5000,
        "max_sessions": 5000,
        "initial_max_streams_bidi": 1000,
        "max_event_listeners": 1000,
        "keep_alive_interval": 5.0,
    }
    names = {f.name for f in dataclasses.fields(ServerConfig)}
    return ServerConfig(**{k: v for k, v in wanted.items() if k in names})


async def wait_closed(session: WebTransportSession) -> None:
    closed = asyncio.Event()
    session.events.on(event_type=EventType.SESSION_CLOSED, handler=lambda _e: closed.set())
    if session.is_closed:
        return
    await closed.wait()


async def echo_stream(stream: Any) -> None:
    try:
        while True:
            chunk = await stream.read(max_bytes=CHUNK)
            if not chunk:
                break
            await stream.write(data=chunk)
        await stream.write(data=b"", end_stream=True)
    except Exception:
        pass


def on_event(
    session: WebTransportSession, event_type: EventType, fn: Callable[[Any], Awaitable[None]]
) -> None:
    async def handler(event: Any) -> None:
        await fn(event.data)

    session.events.on(event_type=event_type, handler=handler)


def build_app(cert: str, key: str, hz: float) -> tuple[ServerApp, set[WebTransportSession]]:
    app = ServerApp(config=make_config(cert, key))
    fanout: set[WebTransportSession] = set()
    tasks: set[asyncio.Task[None]] = set()

    @app.route(path="/echo")
    async def echo(session: WebTransportSession) -> None:
        async def on_datagram(data: dict[str, Any]) -> None:
            try:
                await session.send_datagram(data=data["data"])
            except Exception:
                pass

        on_event(session, EventType.DATAGRAM_RECEIVED, on_datagram)
        if VERSION >= (0, 20):
            async for stream in session.incoming_bidirectional_streams():
                t = asyncio.create_task(echo_stream(stream))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        else:

            async def on_stream(data: dict[str, Any]) -> None:
                stream = data.get("stream")
                if stream is not None and hasattr(stream, "write"):
                    await echo_stream(stream)

            on_event(session, EventType.STREAM_OPENED, on_stream)
            await wait_closed(session)

    @app.route(path="/fanout")
    async def fan(session: WebTransportSession) -> None:
        fanout.add(session)
        try:
            await wait_closed(session)
        finally:
            fanout.discard(session)

    @app.route(path="/idle")
    async def idle(session: WebTransportSession) -> None:
        await wait_closed(session)

    return app, fanout


async def ticker(fanout: set[WebTransportSession], hz: float) -> None:
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
        sessions = list(fanout)
        if sessions:
            await asyncio.gather(
                *(s.send_datagram(data=payload) for s in sessions), return_exceptions=True
            )


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--hz", type=float, default=20.0)
    args = ap.parse_args()

    app, fanout = build_app(args.cert, args.key, args.hz)
    async with app:
        server = app.server
        await server.listen()
        if VERSION >= (0, 20):
            port = server.local_addresses[0][1]
        else:
            addr = server.local_address
            assert addr is not None
            port = addr[1]
        print(f"PORT {port}", flush=True)
        tick_task = asyncio.create_task(ticker(fanout, args.hz))
        try:
            await asyncio.wait_for(server.serve_forever(), timeout=args.seconds)
        except TimeoutError:
            pass
        finally:
            tick_task.cancel()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)

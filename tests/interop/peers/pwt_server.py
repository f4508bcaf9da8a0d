"""A pywebtransport 0.21.x server (draft-15 only) for the fastwt client's interop test.

    python pwt_server.py --cert C --key K

Prints ``PORT <n>`` once listening on 127.0.0.1, then serves until killed. ``/echo``:
accepted with the first protocol the client offered (``wt-protocol``), echoes
bidirectional streams on themselves, unidirectional streams on a new one of its own,
datagrams back, and prints ``EXPORTER <hex>`` (keying material for label
``fastwt-test``, context ``ctx``). ``/close``: once the client ends a unidirectional
stream, closed with code 7 and reason "bye from pywebtransport".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
from typing import Any

from pywebtransport import ServerConfig, WebTransportServer

CLOSE_CODE = 7
CLOSE_REASON = "bye from pywebtransport"
tasks: set[asyncio.Task[None]] = set()


def spawn(coro: Any) -> None:
    task = asyncio.create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def echo_bidi(stream: Any) -> None:
    with contextlib.suppress(Exception):
        data = await stream.read_all()
        await stream.write(data=data, end_stream=True)


async def echo_uni(session: Any, stream: Any) -> None:
    with contextlib.suppress(Exception):
        data = await stream.read_all()
        reply = await session.create_unidirectional_stream()
        await reply.write(data=data, end_stream=True)


async def echo_datagrams(session: Any) -> None:
    with contextlib.suppress(Exception):
        while True:
            data = await session.read_datagram()
            await session.send_datagram(data=data)


async def handle_session(session: Any) -> None:
    path = session.path.split("?")[0]
    if path == "/echo":
        offered = session.wt_available_protocols or []
        await session.accept(wt_protocol=offered[0] if offered else None)
        with contextlib.suppress(Exception):
            key = await session.export_keying_material(
                label="fastwt-test", context=b"ctx", length=16
            )
            print(f"EXPORTER {bytes(key).hex()}", flush=True)
        spawn(echo_datagrams(session))

        async def unis() -> None:
            async for stream in session.incoming_unidirectional_streams():
                spawn(echo_uni(session, stream))

        spawn(unis())
        async for stream in session.incoming_bidirectional_streams():
            spawn(echo_bidi(stream))
    elif path == "/close":
        await session.accept()
        async for stream in session.incoming_unidirectional_streams():
            await stream.read_all()
            break
        await session.close(error_code=CLOSE_CODE, reason=CLOSE_REASON)
    else:
        await session.reject(status_code=404)


async def handle_connection(connection: Any) -> None:
    async for session in connection.incoming_sessions():
        spawn(handle_session(session))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    args = ap.parse_args()
    config = ServerConfig(
        bind_host="127.0.0.1", bind_port=free_udp_port(), certfile=args.cert, keyfile=args.key
    )
    async with WebTransportServer(config=config) as server:
        await server.listen()
        print(f"PORT {server.local_addresses[0][1]}", flush=True)
        async for connection in server.incoming_connections():
            spawn(handle_connection(connection))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    sys.exit(0)

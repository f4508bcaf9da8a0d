"""A fastwt server in its own process for the flood cases, so that its memory is measured
alone (``/proc/<pid>/status``). Sessions on ``/live`` are echoed; sessions on ``/flood``
are treated as the case asks: ``unaccepted`` (never answered), ``unread`` (accepted, no
stream ever taken) or ``slow`` (accepted, one datagram read every 10 ms). Prints
``READY <port> <certificate hash>`` and, every 0.2 s, ``STATS <json>``. A second
and third argument set ``request_timeout`` (default 10 s) and ``max_idle_timeout``
(default 30 s); ``FLOOD_MAX_SESSIONS`` sets ``max_sessions``. ``/live`` echoes datagrams
too."""

from __future__ import annotations

import json
import os
import sys

import anyio

from fastwt import ServerConfig, WebTransportServer, WebTransportSession


async def echo(session: WebTransportSession) -> None:
    await session.accept()
    async with anyio.create_task_group() as tg:

        async def datagrams() -> None:
            while True:
                await session.send_datagram(data=await session.read_datagram())

        tg.start_soon(datagrams)
        async for stream in session.incoming_bidirectional_streams():
            data = await stream.read_all()
            await stream.write(data=data, end_stream=True)
        tg.cancel_scope.cancel()


async def flood(session: WebTransportSession, mode: str, stats: dict[str, int]) -> None:
    if mode == "unaccepted":
        await session.wait_closed()
        return
    await session.accept()
    if mode == "unread":
        await session.wait_closed()
        return
    while not session.is_closed:  # slow: a datagram every 10 ms
        await session.read_datagram()
        stats["read"] += 1
        stats["dropped"] = int(session.stats()["datagrams_dropped"])
        await anyio.sleep(0.01)


async def main(mode: str, request_timeout: float, idle_timeout: float) -> None:
    config = ServerConfig(
        bind_host="127.0.0.1",
        bind_port=0,
        request_timeout=request_timeout,
        max_idle_timeout=idle_timeout,
        max_sessions=int(os.environ.get("FLOOD_MAX_SESSIONS", "10000")),
    )
    stats = {"read": 0, "dropped": 0}
    async with WebTransportServer(config=config) as server, anyio.create_task_group() as tg:
        await server.listen()
        print("READY", server.local_addresses[0][1], server.certificate_hash, flush=True)

        async def report() -> None:
            while True:
                stats["sessions"] = server.session_count
                stats["handshakes"] = server.handshake_count
                print("STATS", json.dumps(stats), flush=True)
                await anyio.sleep(0.2)

        async def handle(session: WebTransportSession) -> None:
            try:
                if session.path.startswith("/live"):
                    await echo(session)
                else:
                    await flood(session, mode, stats)
            except Exception:  # a flooded session may end any way; the server goes on
                pass

        tg.start_soon(report)
        async for session in server.incoming_sessions():
            tg.start_soon(handle, session)


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[2:4]]
    anyio.run(main, sys.argv[1], *args, *[10.0, 30.0][len(args) :])

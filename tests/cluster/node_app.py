"""One cluster node for tests/cluster: a ServerApp with a Redis broker, in its own
process. Prints ``NODE READY port=<port> hash=<certificate sha-256> node=<node id>``
once serving on 127.0.0.1.

Routes:
- ``/room/<name>``: joins room ``<name>``; every datagram the session sends is
  broadcast to the room's other members (``S:<payload>`` is broadcast on streams
  instead). The session leaves when it closes.
- ``/hold``: accepts and waits until the client closes (for the rate limit).

``python node_app.py BROKER_URL [--rate-limit N] [--presence-ttl S] [--backend B]``
"""

from __future__ import annotations

import argparse

import anyio

from fastwt import ServerConfig, WebTransportError, WebTransportSession
from fastwt.framework import ServerApp, create_rate_limit_middleware
from fastwt.framework.cluster import RedisBus


def create_app(broker: str, *, rate_limit: int | None, presence_ttl: float) -> ServerApp:
    app = ServerApp(
        config=ServerConfig(bind_host="127.0.0.1", bind_port=0),
        broker=RedisBus(broker, presence_ttl=presence_ttl),
    )
    if rate_limit is not None:
        app.add_middleware(
            middleware=create_rate_limit_middleware(
                max_requests=rate_limit, window_seconds=60, backend=broker
            )
        )

    @app.pattern_route(pattern=r"/room/(?P<name>\w+)")
    async def room_member(session: WebTransportSession, name: str) -> None:
        room = app.room(name)
        await room.join(session)
        while True:
            try:
                data = await session.read_datagram()
            except WebTransportError:
                return  # the session closed
            if data.startswith(b"S:"):
                await room.broadcast(data[2:], datagram=False, exclude=session)
            else:
                await room.broadcast(data, exclude=session)

    @app.route(path="/hold")
    async def hold(session: WebTransportSession) -> None:
        await session.wait_closed()

    return app


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("broker")
    parser.add_argument("--rate-limit", type=int, default=None)
    parser.add_argument("--presence-ttl", type=float, default=10.0)
    parser.add_argument("--backend", default="asyncio")
    args = parser.parse_args()
    app = create_app(args.broker, rate_limit=args.rate_limit, presence_ttl=args.presence_ttl)
    async with anyio.create_task_group() as tg:
        addresses = await tg.start(app.serve)
        bus = app.broker
        assert bus is not None
        print(
            f"NODE READY port={addresses[0][1]} hash={app.server.certificate_hash} "
            f"node={bus.node_id}",
            flush=True,
        )


if __name__ == "__main__":
    import sys

    backend = "trio" if "--backend" in sys.argv and "trio" in sys.argv else "asyncio"
    try:
        anyio.run(main, backend=backend)
    except KeyboardInterrupt:
        pass

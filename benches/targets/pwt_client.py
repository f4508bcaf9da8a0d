"""Load client for the reference targets (pywebtransport 0.20.x / 0.11.x), with its own client.

    .venvs/pwt020/bin/python targets/pwt_client.py <workload> --url https://127.0.0.1:PORT \
        --server-pid PID [...]

Prints one JSON line (see wl_common.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import sys
from typing import Any

import pywebtransport
from pywebtransport import ClientConfig, WebTransportClient
from pywebtransport.types import EventType

import wl_common

VERSION = tuple(int(x) for x in pywebtransport.__version__.split(".")[:2])


def make_config() -> ClientConfig:
    wanted: dict[str, Any] = {
        "verify_mode": ssl.CERT_NONE,
        "max_connections": 5000,
        "max_sessions": 5000,
        "initial_max_streams_bidi": 1000,
        "max_event_listeners": 1000,
        "connect_timeout": 10.0,
        "keep_alive_interval": 5.0,
        "max_connection_retries": 0,
    }
    names = {f.name for f in dataclasses.fields(ClientConfig)}
    return ClientConfig(**{k: v for k, v in wanted.items() if k in names})


class PwtAdapter:
    def __init__(self) -> None:
        self.client = WebTransportClient(config=make_config())

    async def start(self) -> None:
        await self.client.__aenter__()

    async def stop(self) -> None:
        await self.client.__aexit__(None, None, None)

    async def connect(self, url: str) -> Any:
        return await self.client.connect(url=url)

    async def close_session(self, session: Any) -> None:
        try:
            await session.close()
        finally:
            conn_ref = getattr(session, "_connection", None)
            conn = conn_ref() if conn_ref is not None else None
            if conn is not None and not conn.is_closed:
                await conn.close()

    async def request(self, session: Any, payload: bytes) -> bytes:
        stream = await session.create_bidirectional_stream()
        await stream.write(data=payload, end_stream=True)
        parts = []
        while True:
            chunk = await stream.read(max_bytes=wl_common.CHUNK)
            if not chunk:
                break
            parts.append(chunk)
        return b"".join(parts)

    async def bulk(self, session: Any, size: int) -> int:
        stream = await session.create_bidirectional_stream()
        block = bytes([0x5A]) * wl_common.CHUNK

        async def writer() -> None:
            left = size
            while left > 0:
                n = min(left, wl_common.CHUNK)
                await stream.write(data=block[:n])
                left -= n
            await stream.write(data=b"", end_stream=True)

        wt = asyncio.create_task(writer())
        got = 0
        while True:
            chunk = await stream.read(max_bytes=wl_common.CHUNK)
            if not chunk:
                break
            got += len(chunk)
            wl_common.BULK_PROGRESS[0] = got
        await wt
        return got

    def receive_datagrams(
        self, session: Any, sink: wl_common.DatagramSink
    ) -> asyncio.Task[None] | None:
        def handler(event: Any) -> None:
            data = event.data.get("data") if isinstance(event.data, dict) else None
            if data is not None:
                sink([bytes(data)])

        session.events.on(event_type=EventType.DATAGRAM_RECEIVED, handler=handler)
        return None

    async def send_datagrams(self, session: Any, payloads: list[bytes]) -> None:
        await asyncio.gather(
            *(session.send_datagram(data=p) for p in payloads), return_exceptions=True
        )


if __name__ == "__main__":
    args = wl_common.parse_args()
    try:
        asyncio.run(wl_common.run(PwtAdapter(), args))
    except KeyboardInterrupt:
        sys.exit(1)

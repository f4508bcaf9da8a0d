"""Framed reads on one long-lived stream, client and server in this process over real
QUIC on loopback: the client writes a 100-byte message, the server reads it and echoes
it, the client reads the reply; ``lines`` frames with ``readline`` on both ends,
``msgs`` with ``fastwt.messages.MessageStream`` (``read`` + ``readexactly``).

    python benches/framed_micro.py lines 4000
    python benches/framed_micro.py msgs 4000

Prints ``MODE round-trips/s CPU-us-per-round-trip`` (process CPU, both ends and the I/O
thread together: steadier than the rate on a shared machine). Run it alternately with
two builds' Pythons for an A/B of the receive path.
"""

from __future__ import annotations

import sys
import time

import anyio
from fastwt import ServerConfig, WebTransportSession
from fastwt.framework import ServerApp
from fastwt.messages import BytesCodec, MessageStream
from fastwt.testing import TestClient

app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0))


@app.route(path="/lines")
async def lines(session: WebTransportSession) -> None:
    async for stream in session.incoming_bidirectional_streams():
        while line := await stream.readline():
            await stream.write(data=line)
        await stream.close()


@app.route(path="/msgs")
async def msgs(session: WebTransportSession) -> None:
    async for stream in session.incoming_bidirectional_streams():
        messages = MessageStream(stream, BytesCodec())
        async for message in messages:
            await messages.send(message)
        await stream.close()


async def main(mode: str, count: int) -> None:
    payload = b"x" * 100
    async with TestClient(app) as served:
        session = await served.connect("/" + mode)
        stream = await session.create_bidirectional_stream()
        messages = MessageStream(stream, BytesCodec())
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            if mode == "lines":
                await stream.write(data=payload + b"\n")
                assert await stream.readline() == payload + b"\n"
            else:
                await messages.send(payload)
                assert await messages.recv() == payload
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(mode, round(count / wall), round(cpu / count * 1e6, 1))
        await stream.close()
        await session.close()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("lines", "msgs"):
        raise SystemExit("usage: framed_micro.py lines|msgs COUNT")
    anyio.run(main, sys.argv[1], int(sys.argv[2]))

"""One load process of ``benches/workers/run.py --mode fanout``: SESSIONS sessions (each
from its own client, so its own UDP port, spread over the workers by the kernel), then
counts the tick datagrams they receive in SECONDS after a 1 s warm-up; prints the count.

    python ticks_client.py URL HASH SESSIONS SECONDS
"""

from __future__ import annotations

import sys
import time

import anyio
from fastwt import ClientConfig, WebTransportClient, WebTransportError, WebTransportSession


async def main(url: str, digest: str, sessions: int, seconds: float) -> None:
    config = ClientConfig(server_certificate_hashes=[digest], connect_timeout=20)
    clients = [WebTransportClient(config=config) for _ in range(sessions)]
    opened: list[WebTransportSession] = []
    for c in clients:
        opened.append(await c.connect(url=url))
    print("connected", flush=True)
    start = time.monotonic() + 1.0
    stop = start + seconds
    received = 0

    async def count(session: WebTransportSession) -> None:
        nonlocal received
        with anyio.move_on_after(stop - time.monotonic()):
            try:
                while True:
                    got = await session.read_datagrams(max_count=64)
                    if time.monotonic() >= start:
                        received += len(got)
            except WebTransportError:
                pass

    async with anyio.create_task_group() as tg:
        for session in opened:
            tg.start_soon(count, session)
    print(received, flush=True)
    for c in clients:
        await c.close()


if __name__ == "__main__":
    url, digest, n, s = sys.argv[1:]
    anyio.run(main, url, digest, int(n), float(s))

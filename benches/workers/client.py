"""One load process of benches/workers/run.py: SESSIONS sessions (each from its own
client, so its own UDP port), CONCURRENCY request loops on each (64-byte request, new
bidirectional stream, read the echo to its end), for SECONDS; prints the requests done
after a 1 s warm-up.

    python client.py URL HASH SESSIONS CONCURRENCY SECONDS
"""

from __future__ import annotations

import sys
import time

import anyio
from fastwt import ClientConfig, WebTransportClient, WebTransportSession


async def main(url: str, digest: str, sessions: int, concurrency: int, seconds: float) -> None:
    config = ClientConfig(server_certificate_hashes=[digest], connect_timeout=10)
    clients = [WebTransportClient(config=config) for _ in range(sessions)]
    opened: list[WebTransportSession] = [await c.connect(url=url) for c in clients]
    start = time.monotonic() + 1.0
    stop = start + seconds
    done = 0

    async def loop(session: WebTransportSession) -> None:
        nonlocal done
        payload = b"x" * 64
        while (now := time.monotonic()) < stop:
            stream = await session.create_bidirectional_stream()
            await stream.write(data=payload, end_stream=True)
            await stream.read_all()
            if now >= start:
                done += 1

    async with anyio.create_task_group() as tg:
        for session in opened:
            for _ in range(concurrency):
                tg.start_soon(loop, session)
    print(done, flush=True)
    for c in clients:
        await c.close()


if __name__ == "__main__":
    url, digest, n, c, s = sys.argv[1:]
    anyio.run(main, url, digest, int(n), int(c), float(s))

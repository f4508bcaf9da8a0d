"""Load client for the fastwt target, with fastwt's own client.

    python targets/fastwt_client.py <workload> --url https://127.0.0.1:PORT \
        --cert-hash HEX --server-pid PID [--header k=v ...]

Prints one JSON line (see wl_common.py). Uses the batch datagram calls
(``send_datagrams`` / ``read_datagrams``) that fastwt adds to the reference API.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from fastwt import ClientConfig, WebTransportClient

import wl_common

CHUNK = wl_common.CHUNK


class FastwtAdapter:
    def __init__(self, cert_hash: str, headers: dict[str, str]) -> None:
        config = ClientConfig(
            server_certificate_hashes=[cert_hash] if cert_hash else [],
            headers=headers,
            connect_timeout=10.0,
        )
        self.client = WebTransportClient(config=config)

    async def start(self) -> None:
        await self.client.__aenter__()

    async def stop(self) -> None:
        await self.client.__aexit__(None, None, None)

    async def connect(self, url: str) -> Any:
        return await self.client.connect(url=url)

    async def close_session(self, session: Any) -> None:
        await session.close()

    async def request(self, session: Any, payload: bytes) -> bytes:
        stream = await session.create_bidirectional_stream()
        await stream.write(data=payload, end_stream=True)
        parts = []
        while True:
            chunk = await stream.read(max_size=CHUNK)
            if not chunk:
                break
            parts.append(chunk)
        return b"".join(parts)

    async def bulk(self, session: Any, size: int) -> int:
        stream = await session.create_bidirectional_stream()
        block = memoryview(bytes([0x5A]) * CHUNK)

        async def writer() -> None:
            left = size
            while left > 0:
                n = min(left, CHUNK)
                await stream.write(data=block[:n])
                left -= n
            await stream.write(data=b"", end_stream=True)

        wt = asyncio.create_task(writer())
        got = 0
        while True:
            chunk = await stream.read(max_size=CHUNK)
            if not chunk:
                break
            got += len(chunk)
            wl_common.BULK_PROGRESS[0] = got
        await wt
        return got

    def receive_datagrams(
        self, session: Any, sink: wl_common.DatagramSink
    ) -> asyncio.Task[None] | None:
        async def loop() -> None:
            try:
                while True:
                    sink(await session.read_datagrams(max_count=256))
            except Exception:
                return

        return asyncio.create_task(loop())

    async def send_datagrams(self, session: Any, payloads: list[bytes]) -> None:
        await session.send_datagrams(data=payloads)


def main() -> None:
    headers: dict[str, str] = {}
    argv = sys.argv[1:]
    rest: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--header" and i + 1 < len(argv):
            k, _, v = argv[i + 1].partition("=")
            headers[k] = v
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    args = wl_common.parse_args(rest)
    asyncio.run(wl_common.run(FastwtAdapter(args.cert_hash, headers), args))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(1)

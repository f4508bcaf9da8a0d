"""The load client of the benchmarks: fastwt's own ``WebTransportClient`` behind the
workloads' ``Adapter`` interface (``workloads.py``).

    python -m fastwt.bench.client WORKLOAD --url https://HOST:PORT [--cert-hash HEX]
        [--server-pid PID] [--header k=v ...] [--client-backend rust|python] [...]

Prints one JSON line with the workload's measurements. Uses the batch datagram calls
(``send_datagrams`` / ``read_datagrams``) that fastwt adds to the reference API.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from fastwt import ClientConfig, WebTransportClient

from . import workloads

CHUNK = workloads.CHUNK
BULK_READ_MAX = 1 << 20
"""The most one read of the bulk reply takes (whatever has arrived, up to 1 MiB); the
writes stay the workload's 64 KiB chunks."""

__all__ = ["FastwtAdapter", "main"]


class FastwtAdapter:
    """fastwt's client as the workloads drive it."""

    def __init__(self, cert_hash: str, headers: dict[str, str], backend: str = "rust") -> None:
        config = ClientConfig(
            server_certificate_hashes=[cert_hash] if cert_hash else [],
            headers=headers,
            connect_timeout=10.0,
            backend=backend,
            # The instrument must not be what drops: in ``burst`` this one thread sends
            # as fast as the awaits return and reads the echoes only in between, so up
            # to the whole burst (100,000 datagrams, ~11 MB counted) waits in its queue.
            # Servers run with their defaults (8 MiB).
            datagram_queue_bytes=64 * 1024 * 1024,
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
            chunk = await stream.read(max_size=BULK_READ_MAX)
            if not chunk:
                break
            got += len(chunk)
            workloads.BULK_PROGRESS[0] = got
        await wt
        return got

    def receive_datagrams(
        self, session: Any, sink: workloads.DatagramSink
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


def main(argv: list[str] | None = None) -> None:
    """Parses ``--header k=v`` (repeatable) and ``--client-backend`` here, the rest in
    ``workloads.parse_args``; runs the workload and exits."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    headers: dict[str, str] = {}
    backend = "rust"
    rest: list[str] = []
    i = 0
    while i < len(args_in):
        if args_in[i] in ("--header", "--client-backend") and i + 1 < len(args_in):
            if args_in[i] == "--header":
                k, _, v = args_in[i + 1].partition("=")
                headers[k] = v
            else:
                backend = args_in[i + 1]
            i += 2
        else:
            rest.append(args_in[i])
            i += 1
    args = workloads.parse_args(rest)
    asyncio.run(workloads.run(FastwtAdapter(args.cert_hash, headers, backend), args))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(1)

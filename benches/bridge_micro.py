"""Per-call cost of the Rust<->Python bridge, in microseconds (release build).

    python benches/bridge_micro.py [--n 200000] [--backend asyncio|trio|uvloop]

Measures, on one session over loopback:
  ready read_datagram   a datagram is already queued in Rust; the call returns it
  ready read_datagrams  the batch form, per datagram (batches of 64)
  send_datagram         64-byte payload handed to quinn, per call
  send_datagrams        the batch form, per datagram (batches of 64)
  stream write 64 B     a 64-byte write with flow-control room (a reader drains it)
  awaited wake-up       a task parked on a token, woken through the notifier pipe
  open uni stream       opening a stream (no task or thread hop while credit lasts)
Aim: under 2 us for a call whose result is ready.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import anyio
from fastwt import ClientConfig, ServerConfig, WebTransportClient, WebTransportServer
from fastwt._bridge import get_hub, new_token


async def _time_per_call(n: int, call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - start) / n * 1e6


async def measure(n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    cfg = ServerConfig(bind_host="127.0.0.1", bind_port=0, datagram_queue_size=1 << 20)
    async with WebTransportServer(config=cfg) as server, anyio.create_task_group() as tg:
        await server.listen()
        port = server.local_addresses[0][1]
        accepted: list[object] = []
        ready = anyio.Event()

        async def accept() -> None:
            async for s in server.incoming_sessions():
                await s.accept()
                accepted.append(s)
                ready.set()

        tg.start_soon(accept)
        ccfg = ClientConfig(
            server_certificate_hashes=[server.certificate_hash], datagram_queue_size=1 << 20
        )
        async with WebTransportClient(config=ccfg) as client:
            session = await client.connect(url=f"https://127.0.0.1:{port}/bench")
            await ready.wait()
            peer = accepted[0]
            payload = b"x" * 64

            # send_datagram: client -> server (the server queues them; drops are fine here).
            results["send_datagram"] = await _time_per_call(
                n, lambda: session.send_datagram(data=payload)
            )
            batch = [payload] * 64
            per_batch = await _time_per_call(n // 64, lambda: session.send_datagrams(data=batch))
            results["send_datagrams (per datagram)"] = per_batch / 64

            # ready read_datagram: fill the client's queue from the server first.
            async def fill(count: int) -> None:
                sent = 0
                while sent < count:
                    k = min(64, count - sent)
                    await peer.send_datagrams(data=[payload] * k)  # type: ignore[attr-defined]
                    sent += k
                    if sent % 4096 == 0:
                        await anyio.sleep(0.002)  # let quinn drain its send buffer
                deadline = time.monotonic() + 10
                while session.stats()["datagrams_received"] < count:
                    if time.monotonic() > deadline:
                        break
                    await anyio.sleep(0.01)

            m = min(n, 50_000)
            await fill(m)
            queued = session.stats()["datagrams_received"]
            results["ready read_datagram"] = await _time_per_call(queued, session.read_datagram)
            await fill(m)
            queued = session.stats()["datagrams_received"] - queued
            start = time.perf_counter()
            got = 0
            while got < queued:
                got += len(await session.read_datagrams(max_count=64))
            results["ready read_datagrams (per datagram)"] = (
                (time.perf_counter() - start) / max(got, 1) * 1e6
            )

            # 64-byte stream writes while the peer drains.
            stream = await session.create_bidirectional_stream()
            await stream.write(data=b"start")

            async def drain() -> None:
                s = await peer.accept_bidirectional_stream()  # type: ignore[attr-defined]
                async for _ in s:
                    pass

            tg.start_soon(drain)
            results["stream write 64 B"] = await _time_per_call(
                n, lambda: stream.write(data=payload)
            )
            await stream.write(data=b"", end_stream=True)

            # awaited wake-up: park on a token and be woken through the notifier pipe.
            hub = get_hub()
            token = new_token()
            woken = 0

            async def waker() -> None:
                while woken < n // 10:
                    hub.notifier.notify(token)
                    await anyio.lowlevel.checkpoint()

            async def parker() -> float:
                nonlocal woken
                start = time.perf_counter()
                for _ in range(n // 10):
                    await hub.park(token)
                    woken += 1
                return (time.perf_counter() - start) / (n // 10) * 1e6

            async with anyio.create_task_group() as inner:
                inner.start_soon(waker)
                results["awaited wake-up (notify -> resumed)"] = await parker()

            results["open uni stream (credit available)"] = await _time_per_call(
                500, session.create_unidirectional_stream
            )
            await session.close()
        tg.cancel_scope.cancel()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=200_000, help="calls per measurement")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    ap.add_argument("--backend", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    ap.add_argument("--json", help="also write the medians to this file")
    args = ap.parse_args()
    backend = "asyncio" if args.backend == "uvloop" else args.backend
    options = {"use_uvloop": True} if args.backend == "uvloop" else {}
    runs = [
        anyio.run(measure, args.n, backend=backend, backend_options=options)
        for _ in range(args.repeat)
    ]
    print(f"bridge per-call cost, {args.backend}, median of {args.repeat} runs, n={args.n}")
    print(f"machine: {platform.processor() or platform.machine()}, Python {sys.version.split()[0]}")
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    for k, v in medians.items():
        lo = min(r[k] for r in runs)
        hi = max(r[k] for r in runs)
        print(f"  {k:42s} {v:8.2f} us  (min {lo:.2f}, max {hi:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "n": args.n, "median_us": medians}, f, indent=2)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What one wake-up of a server costs at the least, in Rust and in Python, at the paced
workload's rate: the floor under issue 14's "paced CPU <= 1.3x the native server".

    python3 benches/wake_floor.py [--runs 3] [--rate 800] [--sockets 8] [--seconds 6]

Every server here is a UDP echo (no QUIC, no TLS, no HTTP/3): a packet in, the same packet
out. One paced client (8 sockets, 800 packets/s in all, open loop, the ``paced_8``
shape) drives each in turn, the servers alternated run by run, and the server's CPU per
packet is read from ``/proc``. The servers:

- ``rust``: tokio's current-thread runtime (``benches/rust-ceiling``'s ``udp_echo``);
- ``blocking``: Python, a blocking ``recvfrom``/``sendto`` loop (the interpreter without
  an event loop);
- ``asyncio``: Python, an asyncio ``DatagramProtocol`` that echoes in
  ``datagram_received`` (one loop turn per packet, no task);
- ``asyncio-task``: the same, but the echo is sent by a task awaiting a future the
  protocol resolves (one future and one task step per packet: how a coroutine handler
  is woken in any asyncio server, fastwt's among them).

A QUIC server does the same wake-up per request and more (decryption, acks, streams), all
of it in Rust for both fastwt and the native fastwt-core server. So ``asyncio-task``
minus ``rust`` is the least that Python's part of a request can add to the native
server's CPU per request, before fastwt's own code runs.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402  (benches/run.py: the ceiling crate's build)

PAYLOAD = 64
SERVERS = ("rust", "blocking", "asyncio", "asyncio-task")


# ----------------------------------------------------------------------------- servers


def serve_blocking(seconds: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.5)
    print(f"PORT {s.getsockname()[1]}", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data, peer = s.recvfrom(65_535)
        except TimeoutError:
            continue
        s.sendto(data, peer)


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


class _TaskEcho(asyncio.DatagramProtocol):
    """Hands each packet to a waiting task through a future, as a coroutine handler is
    woken: the task sends the echo and waits again."""

    def __init__(self) -> None:
        self.inbox: list[tuple[bytes, Any]] = []
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.inbox.append((data, addr))
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def handle(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self.inbox:
                data, addr = self.inbox.pop(0)
                self.transport.sendto(data, addr)
            self.waiter = loop.create_future()
            await self.waiter


async def _serve_asyncio(seconds: float, with_task: bool) -> None:
    loop = asyncio.get_running_loop()
    protocol: Any = _TaskEcho() if with_task else _Echo()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: protocol, local_addr=("127.0.0.1", 0)
    )
    print(f"PORT {transport.get_extra_info('sockname')[1]}", flush=True)
    task = asyncio.create_task(protocol.handle()) if with_task else None
    await asyncio.sleep(seconds)
    if task is not None:
        task.cancel()
    transport.close()


# ----------------------------------------------------------------------------- client


class _Probe(asyncio.DatagramProtocol):
    def __init__(self, latencies: list[float]) -> None:
        self.latencies = latencies

    def datagram_received(self, data: bytes, addr: Any) -> None:
        (sent,) = struct.unpack_from("<d", data)
        self.latencies.append(time.perf_counter() - sent)


def _cpu_seconds(pid: int) -> float:
    """The process's CPU time so far, all threads, from the scheduler's nanosecond
    counters (``/proc/<pid>/stat``'s clock ticks are 10 ms: too coarse here)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


async def _drive(
    port: int, pid: int, rate: float, sockets: int, seconds: float
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    transports = []
    for _ in range(sockets):
        t, _ = await loop.create_datagram_endpoint(
            lambda: _Probe(latencies), remote_addr=("127.0.0.1", port)
        )
        transports.append(t)
    pad = bytes(PAYLOAD - 8)
    for t in transports:  # a first exchange each, outside the window
        t.sendto(struct.pack("<d", time.perf_counter()) + pad)
    await asyncio.sleep(0.3)
    latencies.clear()
    cpu0, start = _cpu_seconds(pid), time.perf_counter()
    sent = 0
    while True:
        now = time.perf_counter()
        if now - start >= seconds:
            break
        due = int((now - start) * rate) + 1 - sent
        for _ in range(max(0, due)):
            transports[sent % sockets].sendto(struct.pack("<d", time.perf_counter()) + pad)
            sent += 1
        await asyncio.sleep(max(0.0, start + (sent + 1) / rate - time.perf_counter()))
    await asyncio.sleep(0.05)
    cpu = _cpu_seconds(pid) - cpu0
    for t in transports:
        t.close()
    latencies.sort()
    got = len(latencies)
    return {
        "sent": sent,
        "received": got,
        "cpu_us_per_packet": cpu * 1e6 / max(got, 1),
        "p50_us": latencies[got // 2] * 1e6 if got else float("nan"),
    }


def _server_command(name: str, seconds: float, rust_binary: Path) -> list[str]:
    if name == "rust":
        return [str(rust_binary), "--seconds", str(seconds)]
    return [sys.executable, __file__, "--serve", name, "--seconds", str(seconds)]


def _one_run(name: str, args: argparse.Namespace, rust_binary: Path) -> dict[str, float]:
    cmd = _server_command(name, args.seconds + 5, rust_binary)
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"{name}: no PORT line from {cmd}: {line!r}")
        port = int(line.split()[1])
        return asyncio.run(_drive(port, server.pid, args.rate, args.sockets, args.seconds))
    finally:
        server.kill()
        server.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=800.0)
    ap.add_argument("--sockets", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--serve", choices=SERVERS[1:], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve == "blocking":
        serve_blocking(args.seconds)
        return
    if args.serve is not None:
        asyncio.run(_serve_asyncio(args.seconds, with_task=args.serve == "asyncio-task"))
        return

    ok, why, ceiling = run.build_ceiling()
    rust_binary = ceiling.parent / "udp_echo"
    names = args.servers.split(",")
    if "rust" in names and not (ok and rust_binary.exists()):
        sys.exit(f"no udp_echo binary: {why or rust_binary}")
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for i in range(args.runs):
        for name in names if i % 2 == 0 else names[::-1]:
            r = _one_run(name, args, rust_binary)
            results[name].append(r)
            print(
                f"run {i + 1} {name:<13} {r['cpu_us_per_packet']:6.1f} CPU-us/packet"
                f"  p50 {r['p50_us']:6.0f} us  {int(r['received'])}/{int(r['sent'])}",
                flush=True,
            )
    print(f"\nmedians of {args.runs} runs, {args.rate:.0f} packets/s over {args.sockets} sockets:")
    floor = (
        statistics.median(r["cpu_us_per_packet"] for r in results.get("rust", []))
        if (results.get("rust"))
        else None
    )
    for name in names:
        values = sorted(r["cpu_us_per_packet"] for r in results[name])
        med = statistics.median(values)
        extra = f"  (+{med - floor:.1f} over rust)" if floor is not None and name != "rust" else ""
        print(f"  {name:<13} {med:6.1f} CPU-us/packet ({values[0]:.1f}-{values[-1]:.1f}){extra}")


if __name__ == "__main__":
    main()

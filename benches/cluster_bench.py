"""Rooms: the cost of a local fan-out, and the latency of a broadcast across nodes.

    python benches/cluster_bench.py fanout  [--members 200] [--runs 6] [--broadcasts 300]
    python benches/cluster_bench.py latency [--runs 6] [--messages 1000] [--rate 500]

``fanout``: one process, one room of ``--members`` sessions (clients on loopback in the
same process). Per broadcast of a 64-byte datagram, the server-side time of
``room.broadcast`` (the Rust fan-out: one call) against a Python loop of
``await session.send_datagram(...)`` over the same members; the two alternate run by
run. Medians over runs, with the range.

``latency``: a real ``redis-server`` (Debian's package, on a Unix socket in a temporary
directory) and two node processes (``ServerApp(broker=...)``); this process holds one
client session on each, sends datagrams stamped with ``time.perf_counter_ns()`` to node
A at ``--rate`` per second and times their arrival on the session of node B (through
Redis pub/sub) and, alternating run by run, on a second session of node A (local
fan-out only). p50/p99 per run; medians and ranges over runs.

Release build only (``bash scripts/install.sh``); the machine is shared, so alternate
and quote medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from fastwt import (
    ClientConfig,
    ServerConfig,
    WebTransportClient,
    WebTransportError,
    WebTransportSession,
)
from fastwt.framework import ServerApp
from fastwt.testing import TestClient

PAYLOAD = b"x" * 64


# --------------------------------------------------------------------------- fan-out


async def fanout(members: int, runs: int, broadcasts: int) -> dict[str, Any]:
    app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0, max_sessions=10_000))
    room = app.room("bench")

    @app.route(path="/bench")
    async def member(session: WebTransportSession) -> None:
        await room.join(session)
        await session.wait_closed()

    results: dict[str, list[float]] = {"rust_fanout_us": [], "python_loop_us": []}
    async with TestClient(app) as client:
        sessions = [await client.connect("/bench") for _ in range(members)]
        with anyio.fail_after(30):
            while len(room) < members:  # noqa: ASYNC110 - a benchmark's setup
                await anyio.sleep(0.01)
        received = 0

        async def drain(session: WebTransportSession) -> None:
            nonlocal received
            try:
                while True:
                    batch = await session.read_datagrams(max_count=256)
                    received += len(batch)
            except WebTransportError:
                return

        async with anyio.create_task_group() as tg:
            for session in sessions:
                tg.start_soon(drain, session)
            targets = room.members()
            for run in range(runs):
                for mode in ("rust", "python") if run % 2 == 0 else ("python", "rust"):
                    total = 0.0
                    for _ in range(broadcasts):
                        start = time.perf_counter()
                        if mode == "rust":
                            await room.broadcast(PAYLOAD)
                        else:
                            for target in targets:
                                await target.send_datagram(data=PAYLOAD)  # type: ignore[attr-defined]
                        total += time.perf_counter() - start
                        await anyio.sleep(0.002)  # let the clients drain
                    key = "rust_fanout_us" if mode == "rust" else "python_loop_us"
                    results[key].append(total / broadcasts * 1e6)
            await anyio.sleep(0.5)
            tg.cancel_scope.cancel()
    return {
        "members": members,
        "broadcasts_per_run": broadcasts,
        **_summary(results),
        "ratio_python_over_rust": round(
            statistics.median(results["python_loop_us"])
            / statistics.median(results["rust_fanout_us"]),
            2,
        ),
        "datagrams_sent": members * broadcasts * runs * 2,
        "datagrams_received": received,
    }


# --------------------------------------------------------------------------- latency


def node_main(broker: str) -> None:
    """A node: ``/room/<name>`` joins; each datagram goes to the room's other members."""
    app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0), broker=broker)

    @app.pattern_route(pattern=r"/room/(?P<name>\w+)")
    async def member(session: WebTransportSession, name: str) -> None:
        room = app.room(name)
        await room.join(session)
        try:
            async for data in session.datagrams():
                await room.broadcast(data, exclude=session)
        except WebTransportError:
            return

    async def serve() -> None:
        async with anyio.create_task_group() as tg:
            addresses = await tg.start(app.serve)
            print(f"NODE {addresses[0][1]} {app.server.certificate_hash}", flush=True)

    try:
        anyio.run(serve)
    except KeyboardInterrupt:
        pass


def _start_node(broker: str) -> tuple[subprocess.Popen[str], int, str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "node", broker],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("NODE "):
        proc.kill()
        raise SystemExit(f"node did not start: {line!r}")
    _, port, cert_hash = line.split()
    return proc, int(port), cert_hash


async def _one_run(
    sender: WebTransportSession, receiver: WebTransportSession, messages: int, rate: float
) -> tuple[float, float, int]:
    latencies: list[float] = []

    async def receive() -> None:
        while len(latencies) < messages:
            data = await receiver.read_datagram()
            latencies.append((time.perf_counter_ns() - int(data[:20])) / 1000)

    async with anyio.create_task_group() as tg:
        tg.start_soon(receive)
        interval = 1 / rate
        start = time.perf_counter()
        for n in range(messages):
            await sender.send_datagram(data=b"%020d" % time.perf_counter_ns() + PAYLOAD)
            delay = start + (n + 1) * interval - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
        with anyio.move_on_after(2):
            while len(latencies) < messages:  # noqa: ASYNC110 - stragglers, bounded
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    ordered = sorted(latencies)
    if not ordered:
        return float("nan"), float("nan"), messages
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50, p99, messages - len(latencies)


async def latency(runs: int, messages: int, rate: float) -> dict[str, Any]:
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    directory = Path(tempfile.mkdtemp(prefix="fwbench"))
    sock = directory / "redis.sock"
    redis = subprocess.Popen(  # noqa: ASYNC220 - started once, before any timing
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    nodes: list[subprocess.Popen[str]] = []
    try:
        while not sock.exists():
            time.sleep(0.01)  # noqa: ASYNC251 - before any timing
        broker = f"unix://{sock}"
        (a, port_a, hash_a), (b, port_b, hash_b) = _start_node(broker), _start_node(broker)
        nodes += [a, b]
        config = ClientConfig(server_certificate_hashes=[hash_a, hash_b])
        results: dict[str, list[float]] = {
            "cross_node_p50_us": [],
            "cross_node_p99_us": [],
            "same_node_p50_us": [],
            "same_node_p99_us": [],
        }
        lost = {"cross_node": 0, "same_node": 0}
        async with WebTransportClient(config=config) as client:
            url_a = f"https://127.0.0.1:{port_a}/room/bench"
            sender = await client.connect(url=url_a, timeout=10)
            local = await client.connect(url=url_a, timeout=10)
            remote = await client.connect(url=f"https://127.0.0.1:{port_b}/room/bench", timeout=10)
            await anyio.sleep(0.5)  # joins reach Redis
            for run in range(runs):
                order = ("cross_node", "same_node") if run % 2 == 0 else ("same_node", "cross_node")
                for where in order:
                    receiver = remote if where == "cross_node" else local
                    other = local if where == "cross_node" else remote
                    # Both receive every message; time one, drain the other.
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_drain, other)
                        p50, p99, missing = await _one_run(sender, receiver, messages, rate)
                        tg.cancel_scope.cancel()
                    results[f"{where}_p50_us"].append(p50)
                    results[f"{where}_p99_us"].append(p99)
                    lost[where] += missing
            for session in (sender, local, remote):
                await session.close()
        return {"messages_per_run": messages, "rate_per_s": rate, **_summary(results), "lost": lost}
    finally:
        for node in nodes:
            node.terminate()
            node.wait(10)
        redis.kill()
        redis.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


async def _drain(session: WebTransportSession) -> None:
    try:
        while True:
            await session.read_datagrams(max_count=256)
    except WebTransportError:
        return


def _summary(results: dict[str, list[float]]) -> dict[str, Any]:
    return {
        key: {
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
            "runs": [round(v, 1) for v in values],
        }
        for key, values in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fan = commands.add_parser("fanout")
    fan.add_argument("--members", type=int, default=200)
    fan.add_argument("--runs", type=int, default=6)
    fan.add_argument("--broadcasts", type=int, default=300)
    lat = commands.add_parser("latency")
    lat.add_argument("--runs", type=int, default=6)
    lat.add_argument("--messages", type=int, default=1000)
    lat.add_argument("--rate", type=float, default=500)
    node = commands.add_parser("node")
    node.add_argument("broker")
    args = parser.parse_args()
    if args.command == "node":
        node_main(args.broker)
        return
    if args.command == "fanout":
        result = anyio.run(fanout, args.members, args.runs, args.broadcasts)
    else:
        result = anyio.run(latency, args.runs, args.messages, args.rate)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

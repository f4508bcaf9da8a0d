"""The benchmark workloads, shared by ``fastwt bench`` and the repository's suite
(``benches/run.py``, whose ``targets/wl_common.py`` loads this file).

Each client supplies an ``Adapter`` for its library; the workload logic, the measurement
and the JSON it prints are the same for every client (and the raw-Rust client of
``benches/rust-ceiling`` implements the same ones), so the numbers compare. Server CPU
and RSS are read from ``/proc/<server pid>`` around the measured window (0 where there is
no ``/proc`` or no local server).

This module imports nothing from fastwt and only the standard library: the suite's
reference clients (pywebtransport, in venvs without fastwt) load it by path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

PAYLOAD = 64
CHUNK = 65536

DatagramSink = Callable[[list[bytes]], None]


class Adapter(Protocol):
    """What a client library must offer the workloads."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def connect(self, url: str) -> Any: ...

    async def close_session(self, session: Any) -> None: ...

    async def request(self, session: Any, payload: bytes) -> bytes:
        """Open a bidirectional stream, send ``payload`` and end it, read the reply to its end."""
        ...

    async def bulk(self, session: Any, size: int) -> int:
        """Send ``size`` bytes through one bidirectional stream; return the bytes echoed back."""
        ...

    def receive_datagrams(self, session: Any, sink: DatagramSink) -> asyncio.Task[None] | None:
        """Start delivering the session's incoming datagrams to ``sink`` (in batches)."""
        ...

    async def send_datagrams(self, session: Any, payloads: list[bytes]) -> None: ...


# ---------------------------------------------------------------------------------------------
# /proc probes
# ---------------------------------------------------------------------------------------------

_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """On-CPU seconds of the server's threads, to the nanosecond (the sum of
    ``/proc/<pid>/task/*/schedstat``); ``/proc/<pid>/stat``'s utime+stime (10 ms ticks,
    too coarse for a 0.2 s bulk transfer) when that cannot be read. Threads that exited
    inside the window are not counted; the servers of the suite keep theirs."""
    if pid <= 0:
        return 0.0
    try:
        total_ns = 0
        tasks = os.listdir(f"/proc/{pid}/task")
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total_ns += int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                continue
        if tasks and total_ns:
            return total_ns / 1e9
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / _TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_bytes(pid: int) -> float:
    if pid <= 0:
        return 0.0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0.0


class CpuProbe:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu0 = cpu_seconds(pid)
        self.t0 = time.perf_counter()

    def stop(self) -> tuple[float, float]:
        return cpu_seconds(self.pid) - self.cpu0, time.perf_counter() - self.t0


_ERRORS_SHOWN = 0


def note_error(e: BaseException) -> None:
    """Show the first few errors on stderr (the driver keeps stderr in its log)."""
    global _ERRORS_SHOWN
    if _ERRORS_SHOWN < 3:
        _ERRORS_SHOWN += 1
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    idx = round((len(sorted_values) - 1) * p)
    return sorted_values[min(idx, len(sorted_values) - 1)]


def with_path(url: str, path: str) -> str:
    scheme_end = url.find("://") + 3
    slash = url.find("/", scheme_end)
    base = url if slash < 0 else url[:slash]
    return base + path


# ---------------------------------------------------------------------------------------------
# workloads
# ---------------------------------------------------------------------------------------------


CONNECT_RETRIES = 0


async def connect_retry(a: Adapter, url: str, attempts: int = 3) -> Any:
    """The measured session. A loopback handshake takes milliseconds; an attempt that has
    not completed in 3 s (pywebtransport 0.20.1's client sometimes never completes its
    first one) is abandoned and retried, and counted in ``connect_retries``."""
    global CONNECT_RETRIES
    for i in range(attempts):
        try:
            return await asyncio.wait_for(a.connect(url), 3.0 if i == 0 else 10.0)
        except Exception as e:
            note_error(e)
            if i == attempts - 1:
                raise
            CONNECT_RETRIES += 1
    raise RuntimeError("unreachable")


async def close_all(a: Adapter, sessions: list[Any], limit: float = 5.0) -> None:
    """Close sessions, bounded in time (the measurement is over by then)."""
    try:
        await asyncio.wait_for(
            asyncio.gather(*(a.close_session(s) for s in sessions), return_exceptions=True),
            limit,
        )
    except Exception:
        pass


# Bytes echoed back so far in the running bulk transfer: the adapters' read loops add
# to it, so that a stalled transfer is told from a slow one.
BULK_PROGRESS = [0]
BULK_STALL_SECONDS = 10.0
BULK_LIMIT_SECONDS = 90.0


async def bulk_until_stalled(transfer: Any) -> int:
    """Runs a bulk transfer; gives up when no echoed byte arrived for 10 s (pywebtransport
    0.20.1 sometimes stalls a transfer for good) or after 90 s in all."""
    BULK_PROGRESS[0] = 0
    task = asyncio.ensure_future(transfer)
    start = last_change = time.perf_counter()
    seen = 0
    while True:
        done, _ = await asyncio.wait([task], timeout=0.5)
        if done:
            return int(task.result())
        now = time.perf_counter()
        if BULK_PROGRESS[0] != seen:
            seen, last_change = BULK_PROGRESS[0], now
        stalled = now - last_change > BULK_STALL_SECONDS
        if stalled or now - start > BULK_LIMIT_SECONDS:
            task.cancel()
            why = f"no byte for {BULK_STALL_SECONDS:.0f} s" if stalled else "time limit"
            raise TimeoutError(f"bulk transfer stalled ({why}) after {seen} bytes echoed")


async def wl_bulk(a: Adapter, args: argparse.Namespace) -> dict[str, float]:
    session = await connect_retry(a, with_path(args.url, "/echo"))
    probe = CpuProbe(args.server_pid)
    got = await bulk_until_stalled(a.bulk(session, args.size))
    cpu, wall = probe.stop()
    await close_all(a, [session])
    return {
        "bytes": got,
        "seconds": wall,
        "mb_per_s": got / wall / 1e6,
        "server_cpu_s": cpu,
        "server_cpu_s_per_gib": cpu / (got / 2**30) if got else 0.0,
    }


async def wl_datagrams(a: Adapter, args: argparse.Namespace) -> dict[str, float]:
    session = await connect_retry(a, with_path(args.url, "/echo"))
    received = 0
    arrived = asyncio.Event()

    def sink(batch: list[bytes]) -> None:
        nonlocal received
        received += len(batch)
        arrived.set()

    task = a.receive_datagrams(session, sink)
    payload = bytes([0x42]) * PAYLOAD
    window = args.window
    sent = 0
    written_off = 0
    probe = CpuProbe(args.server_pid)
    end = time.perf_counter() + args.duration
    while time.perf_counter() < end:
        outstanding = sent - received - written_off
        if outstanding < window:
            n = window - outstanding
            await a.send_datagrams(session, [payload] * n)
            sent += n
        else:
            arrived.clear()
            if sent - received - written_off < window:
                continue
            try:
                await asyncio.wait_for(arrived.wait(), 0.02)
            except TimeoutError:
                written_off = sent - received  # nothing came back for 20 ms: count as lost
    got_in_window = received
    cpu, wall = probe.stop()
    await asyncio.sleep(0.3)
    if task is not None:
        task.cancel()
    await close_all(a, [session])
    return {
        "sent": sent,
        "received": received,
        "seconds": wall,
        "received_per_s": got_in_window / wall,
        "loss": 1.0 - received / max(sent, 1),
        "server_cpu_s": cpu,
        "server_cpu_us_per_datagram": cpu * 1e6 / max(got_in_window, 1),
    }


async def wl_reqresp(a: Adapter, args: argparse.Namespace) -> dict[str, float]:
    session = await connect_retry(a, with_path(args.url, "/echo"))
    await a.request(session, bytes(PAYLOAD))  # warm-up
    payload = bytes([7]) * PAYLOAD
    latencies: list[float] = []
    errors = 0
    stop = False
    deadline = 0.0

    async def worker() -> None:
        nonlocal errors
        while not stop:
            t = time.perf_counter()
            try:
                reply = await a.request(session, payload)
            except Exception as e:
                errors += 1
                note_error(e)
                await asyncio.sleep(0.001)
                continue
            now = time.perf_counter()
            if len(reply) != PAYLOAD:
                errors += 1
            elif now <= deadline:
                latencies.append((now - t) * 1e3)

    probe = CpuProbe(args.server_pid)
    deadline = time.perf_counter() + args.duration
    workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    await asyncio.sleep(args.duration)
    stop = True
    cpu, wall = probe.stop()
    # requests still unanswered 3 s after the window closed are stuck
    _done, pending = await asyncio.wait(workers, timeout=3.0)
    for w in pending:
        w.cancel()
    await close_all(a, [session])
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "errors": errors,
        "stuck": len(pending),
        "seconds": wall,
        "concurrency": args.concurrency,
        "req_per_s": n / wall,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "server_cpu_s": cpu,
        "server_cpu_us_per_request": cpu * 1e6 / max(n, 1),
    }


async def wl_sessions(a: Adapter, args: argparse.Namespace) -> dict[str, float]:
    url = with_path(args.url, "/echo")
    latencies: list[float] = []
    errors = 0
    stop = False

    async def worker() -> None:
        nonlocal errors
        while not stop:
            t = time.perf_counter()
            try:
                # a loopback handshake takes milliseconds: one that has not completed in
                # 1 s is counted as an error rather than left to stall the worker
                session = await asyncio.wait_for(a.connect(url), 1.0)
            except Exception as e:
                errors += 1
                note_error(e)
                await asyncio.sleep(0.01)
                continue
            if time.perf_counter() <= deadline:
                latencies.append((time.perf_counter() - t) * 1e3)
            try:
                await asyncio.wait_for(a.close_session(session), 5.0)
            except Exception:
                pass

    probe = CpuProbe(args.server_pid)
    deadline = time.perf_counter() + args.duration
    workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    await asyncio.sleep(args.duration)
    stop = True
    cpu, wall = probe.stop()
    _done, pending = await asyncio.wait(workers, timeout=3.0)
    for w in pending:
        w.cancel()
    latencies.sort()
    n = len(latencies)
    return {
        "sessions": n,
        "errors": errors,
        "seconds": wall,
        "sessions_per_s": n / wall,
        "connect_p50_ms": percentile(latencies, 0.50),
        "connect_p99_ms": percentile(latencies, 0.99),
        "server_cpu_s": cpu,
        "server_cpu_ms_per_session": cpu * 1e3 / max(n, 1),
    }


async def open_many(
    a: Adapter, url: str, count: int, parallel: int = 32, budget: float = 60.0
) -> tuple[list[Any], int]:
    """Open ``count`` sessions, ``parallel`` at a time, for at most ``budget`` seconds."""
    sem = asyncio.Semaphore(parallel)

    async def one() -> Any:
        async with sem:
            return await asyncio.wait_for(a.connect(url), 10.0)

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=budget)
    for t in pending:
        t.cancel()
    sessions = []
    for t in done:
        e = t.exception()
        if e is None:
            sessions.append(t.result())
        else:
            note_error(e)
    if pending:
        note_error(TimeoutError(f"{len(pending)} sessions not open after {budget:.0f} s"))
    return sessions, count - len(sessions)


LATE_LIMIT = 1.0
"""Seconds behind its tick's first datagram (to any session) that a fan-out datagram may
arrive and still count as delivered: a tick that late is stale."""


class TickCount:
    """Which ticks of a fan-out run count, and how many datagrams of each arrived.

    Ticks are chosen by number, not by arrival time: those whose first datagram (to any
    session) came after the window opened, up to the newest seen when it closed. Each
    counts what arrived for it within :data:`LATE_LIMIT` of its first datagram, so a tick
    whose datagrams reach the sessions over more than a period (10,000 sessions on a busy
    server) is not cut by the window's edges. The Rust fan-out client
    (``benches/rust-ceiling/src/fanout.rs``) counts the same way. A tick number in the
    range that nobody got counts as undelivered.
    """

    def __init__(self) -> None:
        self.got: dict[int, int] = {}
        self.first: dict[int, float] = {}
        self.late = 0
        self.newest: int | None = None
        self.lo: int | None = None
        self.hi: int | None = None

    def arrive(self, tick: int, now: float) -> None:
        """A datagram of ``tick`` arrived at ``now`` (seconds, monotonic)."""
        first = self.first.setdefault(tick, now)
        if now - first > LATE_LIMIT:
            self.late += 1
            return
        self.got[tick] = self.got.get(tick, 0) + 1
        if self.newest is None or tick > self.newest:
            self.newest = tick

    def open_window(self) -> None:
        self.lo = None if self.newest is None else self.newest + 1

    def close_window(self) -> None:
        self.hi = self.newest

    def tally(self, sessions: int) -> tuple[int, int, float]:
        """(ticks, datagrams received for them, delivered fraction of sessions x ticks)."""
        lo = self.lo
        if lo is None:  # nothing had arrived when the window opened
            lo = min(self.got, default=0) + 1
        hi = -1 if self.hi is None else self.hi
        ticks = max(hi - lo + 1, 0)
        received = sum(v for k, v in self.got.items() if lo <= k <= hi)
        expected = sessions * ticks
        return ticks, received, received / expected if expected else 0.0


async def wl_fanout(a: Adapter, args: argparse.Namespace) -> dict[str, float]:
    sessions, errors = await open_many(a, with_path(args.url, "/fanout"), args.sessions)
    count = TickCount()

    def sink(batch: list[bytes]) -> None:
        now = time.monotonic()
        for d in batch:
            if len(d) >= 8:
                count.arrive(struct.unpack_from("<Q", d)[0], now)

    tasks = [a.receive_datagrams(s, sink) for s in sessions]
    await asyncio.sleep(1.0)  # settle
    probe = CpuProbe(args.server_pid)
    count.open_window()
    await asyncio.sleep(args.duration)
    count.close_window()
    cpu, wall = probe.stop()
    await asyncio.sleep(LATE_LIMIT)  # the last ticks' stragglers
    for t in tasks:
        if t is not None:
            t.cancel()
    await close_all(a, sessions)
    ticks, received, delivered = count.tally(len(sessions))
    return {
        "sessions": len(sessions),
        "connect_errors": errors,
        "hz": args.hz,
        "seconds": wall,
        "ticks": ticks,
        "received": received,
        "delivered_fraction": delivered,
        "server_cpu_s": cpu,
        "server_cpu_fraction": cpu / wall,
        "server_cpu_us_per_datagram": cpu * 1e6 / max(received, 1),
        "late_datagrams": count.late,
    }


async def wl_memory(a: Adapter, args: argparse.Namespace) -> dict[str, float]:
    url = with_path(args.url, "/idle")
    warm = min(10, args.sessions // 2)
    sessions, errors = await open_many(a, url, warm)
    await asyncio.sleep(1.0)
    rss0 = rss_bytes(args.server_pid)
    more, e2 = await open_many(a, url, args.sessions - warm)
    sessions += more
    errors += e2
    await asyncio.sleep(2.0)
    rss1 = rss_bytes(args.server_pid)
    added = len(more)
    await close_all(a, sessions)
    return {
        "sessions": len(sessions),
        "connect_errors": errors,
        "rss_before_bytes": rss0,
        "rss_after_bytes": rss1,
        "rss_per_session_bytes": (rss1 - rss0) / max(added, 1),
    }


async def wl_datagrams_paced(a: Adapter, args: argparse.Namespace) -> dict[str, float]:
    """64-byte datagrams at a fixed rate (open loop): what arrives back and how late.
    Each carries its send time, so the latency is the round trip of that datagram."""
    session = await connect_retry(a, with_path(args.url, "/echo"))
    latencies: list[float] = []
    counting = [True]

    def sink(batch: list[bytes]) -> None:
        now = time.perf_counter()
        for d in batch:
            if len(d) >= 8 and counting[0]:
                (sent_at,) = struct.unpack_from("<d", d)
                latencies.append((now - sent_at) * 1e3)

    task = a.receive_datagrams(session, sink)
    pad = bytes(PAYLOAD - 8)
    rate = float(args.rate)
    sent = 0
    probe = CpuProbe(args.server_pid)
    start = time.perf_counter()
    end = start + args.duration
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        due = int((now - start) * rate) + 1 - sent
        if due > 0:
            await a.send_datagrams(
                session, [struct.pack("<d", time.perf_counter()) + pad for _ in range(due)]
            )
            sent += due
        await asyncio.sleep(min(0.002, max(0.0, start + (sent + 1) / rate - time.perf_counter())))
    cpu, wall = probe.stop()
    await asyncio.sleep(0.3)  # the last ones' way back
    counting[0] = False
    if task is not None:
        task.cancel()
    await close_all(a, [session])
    latencies.sort()
    return {
        "sent": sent,
        "received": len(latencies),
        "rate": rate,
        "seconds": wall,
        "delivered_fraction": len(latencies) / max(sent, 1),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "server_cpu_s": cpu,
        "server_cpu_us_per_datagram": cpu * 1e6 / max(len(latencies), 1),
    }


async def wl_reqresp_paced(a: Adapter, args: argparse.Namespace) -> dict[str, float]:
    """64-byte requests started at a fixed rate whatever the replies do (open loop, each
    on a new bidirectional stream), spread round-robin over ``--paced-sessions``
    sessions (so 8 sessions at 800/s in all is one request per session every 10 ms).
    Latency counts from when a request was due, so a server that falls behind shows it
    (no coordinated omission)."""
    sessions, _failed = await open_many(
        a, with_path(args.url, "/echo"), max(1, args.paced_sessions)
    )
    if not sessions:
        raise RuntimeError("no session could be opened")
    for s in sessions:
        await a.request(s, bytes(PAYLOAD))  # warm-up
    payload = bytes([7]) * PAYLOAD
    rate = float(args.rate)
    latencies: list[float] = []
    errors = 0
    inflight: set[asyncio.Task[None]] = set()
    # Past this many outstanding requests the server is not keeping up: stop adding load.
    cap = max(64, int(rate))
    skipped = 0

    async def one(due: float, session: Any) -> None:
        nonlocal errors
        try:
            reply = await a.request(session, payload)
        except Exception as e:
            errors += 1
            note_error(e)
            return
        if len(reply) != PAYLOAD:
            errors += 1
        else:
            latencies.append((time.perf_counter() - due) * 1e3)

    probe = CpuProbe(args.server_pid)
    start = time.perf_counter()
    end = start + args.duration
    started = 0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        while started < (now - start) * rate:
            due = start + started / rate
            started += 1
            if len(inflight) >= cap:
                skipped += 1
                continue
            t = asyncio.create_task(one(due, sessions[started % len(sessions)]))
            inflight.add(t)
            t.add_done_callback(inflight.discard)
        await asyncio.sleep(min(0.002, max(0.0, start + started / rate - time.perf_counter())))
    cpu, wall = probe.stop()
    if inflight:
        _done, pending = await asyncio.wait(list(inflight), timeout=3.0)
        for t in pending:
            t.cancel()
    else:
        pending = set()
    await close_all(a, sessions)
    latencies.sort()
    n = len(latencies)
    return {
        "sessions": len(sessions),
        "requests": n,
        "errors": errors,
        "skipped": skipped,
        "stuck": len(pending),
        "rate": rate,
        "seconds": wall,
        "req_per_s": n / wall,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "server_cpu_s": cpu,
        "server_cpu_us_per_request": cpu * 1e6 / max(n, 1),
    }


async def wl_burst(a: Adapter, args: argparse.Namespace) -> dict[str, float]:
    """``--count`` 64-byte datagrams sent one by one as fast as the send call returns
    (``send_datagrams`` of one: fastwt's ``send_datagram``), echoed by the server; what
    came back within a second of the last send. The loss counts both directions (the
    server's receive queue while its handler catches up, mostly)."""
    session = await connect_retry(a, with_path(args.url, "/echo"))
    received = [0]
    seen: set[int] = set()
    last_at = [0.0]

    def sink(batch: list[bytes]) -> None:
        for d in batch:
            if len(d) >= 8:
                (n,) = struct.unpack_from("<Q", d)
                if n not in seen:
                    seen.add(n)
                    received[0] += 1
        last_at[0] = time.perf_counter()

    task = a.receive_datagrams(session, sink)
    pad = bytes(PAYLOAD - 8)
    count = int(args.count)
    probe = CpuProbe(args.server_pid)
    for i in range(count):
        await a.send_datagrams(session, [struct.pack("<Q", i) + pad])
    _, send_wall = probe.stop()
    last = -1
    for _ in range(40):  # until nothing more comes for 0.25 s (at most ~2 s)
        await asyncio.sleep(0.05)
        if received[0] == last:
            break
        last = received[0]
    cpu, _ = probe.stop()
    if task is not None:
        task.cancel()
    await close_all(a, [session])
    return {
        "sent": count,
        "received": received[0],
        "loss": 1.0 - received[0] / max(count, 1),
        "send_seconds": send_wall,
        "sent_per_s": count / max(send_wall, 1e-9),
        # The echoes' rate, from the first send to the last echo that came back.
        "received_per_s": received[0] / max(last_at[0] - probe.t0, 1e-9),
        "server_cpu_s": cpu,
        "server_cpu_us_per_datagram": cpu * 1e6 / max(received[0], 1),
    }


WORKLOADS: dict[str, Callable[[Adapter, argparse.Namespace], Awaitable[dict[str, float]]]] = {
    "bulk": wl_bulk,
    "burst": wl_burst,
    "datagrams": wl_datagrams,
    "datagrams_paced": wl_datagrams_paced,
    "reqresp": wl_reqresp,
    "reqresp_paced": wl_reqresp_paced,
    "sessions": wl_sessions,
    "fanout": wl_fanout,
    "memory": wl_memory,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=sorted(WORKLOADS))
    ap.add_argument("--url", required=True)
    ap.add_argument("--server-pid", type=int, default=0)
    ap.add_argument("--cert-hash", default="")
    ap.add_argument("--size", type=int, default=64 * 2**20)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--hz", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=200.0, help="per second (paced workloads)")
    ap.add_argument(
        "--paced-sessions", type=int, default=1, help="sessions sharing reqresp_paced's rate"
    )
    ap.add_argument("--count", type=int, default=100_000, help="datagrams (burst)")
    return ap.parse_args(argv)


async def run(a: Adapter, args: argparse.Namespace) -> None:
    """Run one workload, print its JSON line, and exit without waiting on slow teardown."""
    await a.start()
    code = 0
    try:
        result = await WORKLOADS[args.workload](a, args)
        if CONNECT_RETRIES:
            result["connect_retries"] = CONNECT_RETRIES
        print(json.dumps(result), flush=True)
    except Exception as e:
        note_error(e)
        code = 1
    try:
        await asyncio.wait_for(a.stop(), 3.0)
    except Exception:
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

"""Requests per second, or fan-out, with ``fastwt run --workers N`` against one process.

    python benches/workers/run.py [--runs 3] [--seconds 5] [--clients 2] [--sessions 8]
        [--concurrency 4] [--targets single,w1,w2]
    python benches/workers/run.py --mode fanout [--sessions 1000] [--clients 2] ...

``--mode fanout``: the server is benches/workers/ticks_app.py (every session gets a
64-byte datagram at 20 Hz from its worker's tick loop); each load process
(ticks_client.py) opens ``--sessions`` sessions and counts the ticks they receive.
Reports the delivered fraction (received / sessions x 20 Hz x seconds) and server
CPU-us per delivered datagram.

Targets: ``single`` is ``fastwt run`` (one process, no supervisor), ``wN`` is
``fastwt run --workers N``. Each run starts the server, then ``--clients`` load
processes (benches/workers/client.py, fastwt's Python client on the Rust core), each
with ``--sessions`` sessions of ``--concurrency`` request loops; targets alternate run
by run. Reports req/s and server CPU-us per request (on-CPU time of the supervisor and
every worker, from /proc/<pid>/task/*/schedstat), medians and ranges. The clients run on
the same machine: on 2 cores they compete with the workers, so read the numbers as
what this machine does, not as the scaling of a bigger one.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cpu_ns(pid: int) -> int:
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    except OSError:
        pass
    return total


def start_server(target: str, app: str) -> tuple[subprocess.Popen[str], str, str, list[int]]:
    args = [sys.executable, "-m", "fastwt", "run", app, "--host", "127.0.0.1"]
    args += ["--port", "0", "--no-access-log", "--log-level", "info"]
    if target == "sid":  # one process, QUIC-LB CIDs (the CID generator alone)
        args += ["--server-id", "0a"]
    elif target.endswith("-nosteer"):
        args += ["--workers", target[1:].split("-")[0], "--no-cid-steering"]
    elif target != "single":
        args += ["--workers", target[1:]]
    proc = subprocess.Popen(
        args, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    port = digest = None
    deadline = time.monotonic() + 60
    while (port is None or digest is None) and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.search(r"serving on \[?[\d.]+\]?:(\d+)", line):
            port = m.group(1)
        if m := re.search(r"SHA-256:\s+([0-9a-f]{64})", line):
            digest = m.group(1)
    if port is None or digest is None:
        proc.kill()
        raise SystemExit(f"{target}: server did not start:\n{''.join(lines)}")
    pids = [proc.pid] + [int(p) for p in re.findall(r"started, pid (\d+)", "".join(lines))]
    return proc, port, digest, pids


@contextmanager
def serving(target: str, app: str) -> Iterator[tuple[str, str, list[int]]]:
    """``target``'s server of ``app`` for one run: (port, certificate hash, the pids whose
    CPU counts); stopped (SIGTERM, then a kill after 30 s) when the run ends."""
    proc, port, digest, pids = start_server(target, app)
    try:
        yield port, digest, pids
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def alternate(
    targets: list[str], runs: int, one: Callable[[str], tuple[float, float]], line: str
) -> dict[str, list[tuple[float, float]]]:
    """``runs`` rounds of ``one(target)``, targets in turn (reversed every other round),
    each result printed with ``line.format(*result)``."""
    results: dict[str, list[tuple[float, float]]] = {t: [] for t in targets}
    for run in range(runs):
        for target in targets if run % 2 == 0 else reversed(targets):
            r = one(target)
            results[target].append(r)
            print(f"run {run + 1} {target}: " + line.format(*r), flush=True)
    return results


def one_run(target: str, opts: argparse.Namespace) -> tuple[float, float]:
    with serving(target, "echo_app:app") as (port, digest, pids):
        url = f"https://127.0.0.1:{port}/echo"
        clients = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "client.py"),
                    url,
                    digest,
                    str(opts.sessions),
                    str(opts.concurrency),
                    str(opts.seconds),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(opts.clients)
        ]
        # The measured window opens 1 s after the clients connected; sample around it.
        time.sleep(2.0)
        cpu0 = sum(cpu_ns(p) for p in pids)
        time.sleep(opts.seconds - 0.5)
        cpu1 = sum(cpu_ns(p) for p in pids)
        total = 0
        for c in clients:
            out, _ = c.communicate(timeout=120)
            total += int(out.strip().splitlines()[-1])
        req_per_s = total / opts.seconds
        cpu_s = (cpu1 - cpu0) / 1e9 / (opts.seconds - 0.5) * opts.seconds
        return req_per_s, (cpu_s * 1e6 / total if total else float("nan"))


def one_fanout_run(target: str, opts: argparse.Namespace) -> tuple[float, float]:
    """(delivered fraction, server CPU-us per delivered datagram) of one run."""
    with serving(target, "ticks_app:app") as (port, digest, pids):
        url = f"https://127.0.0.1:{port}/ticks"
        clients = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(HERE / "ticks_client.py"),
                    url,
                    digest,
                    str(opts.sessions),
                    str(opts.seconds),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(opts.clients)
        ]
        for c in clients:  # each says when its sessions are open; its window opens 1 s on
            assert c.stdout is not None
            if c.stdout.readline().strip() != "connected":
                _, err = c.communicate(timeout=30)
                raise SystemExit(f"{target}: a load process could not connect:\n{err}")
        time.sleep(1.0)
        cpu0 = sum(cpu_ns(p) for p in pids)
        time.sleep(opts.seconds)
        cpu1 = sum(cpu_ns(p) for p in pids)
        received = 0
        for c in clients:
            out, err = c.communicate(timeout=120)
            lines = out.strip().splitlines()
            if c.returncode != 0 or not lines:
                raise SystemExit(f"{target}: a load process failed ({c.returncode}):\n{err}")
            received += int(lines[-1])
        expected = opts.clients * opts.sessions * 20 * opts.seconds
        cpu_us = (cpu1 - cpu0) / 1e3
        return received / expected, (cpu_us / received if received else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--targets", default="single,w1,w2")
    parser.add_argument("--mode", choices=("reqresp", "fanout"), default="reqresp")
    opts = parser.parse_args()
    targets = opts.targets.split(",")
    if opts.mode == "fanout":
        fanout(targets, opts)
        return
    results = alternate(
        targets,
        opts.runs,
        lambda t: one_run(t, opts),
        "{:.0f} req/s, {:.1f} server CPU-us/req",
    )
    base = statistics.median(r for r, _ in results[targets[0]])
    print(
        "\n| target | req/s median (range) | vs "
        + targets[0]
        + " | server CPU-us/req median (range) |"
    )
    print("|---|---|---|---|")
    for t in targets:
        rps = [r for r, _ in results[t]]
        cpu = [c for _, c in results[t]]
        print(
            f"| {t} | {statistics.median(rps):.0f} ({min(rps):.0f}-{max(rps):.0f}) | "
            f"{statistics.median(rps) / base:.2f} | {statistics.median(cpu):.1f} "
            f"({min(cpu):.1f}-{max(cpu):.1f}) |"
        )


def fanout(targets: list[str], opts: argparse.Namespace) -> None:
    results = alternate(
        targets,
        opts.runs,
        lambda t: one_fanout_run(t, opts),
        "delivered {:.1%}, {:.2f} server CPU-us per delivered datagram",
    )
    print(
        f"\n{opts.clients} x {opts.sessions} sessions x 20 Hz x 64 B, {opts.seconds:g} s per run\n"
        "\n| target | delivered median (range) | server CPU-us per delivered datagram |"
    )
    print("|---|---|---|")
    for t in targets:
        d = [x for x, _ in results[t]]
        cpu = [c for _, c in results[t]]
        print(
            f"| {t} | {statistics.median(d):.1%} ({min(d):.1%}-{max(d):.1%}) | "
            f"{statistics.median(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f}) |"
        )


if __name__ == "__main__":
    main()

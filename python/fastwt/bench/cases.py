"""What a benchmark case is, the metrics each kind of workload reports, how a server
process is started and stopped, and how runs are summarized and shown: one definition
for ``fastwt bench`` (``runner.py``) and the repository's suite (``benches/run.py``),
which choose their own sizes, durations and commands.

Standard library only: the suite loads this file by path where fastwt is not installed.
"""

from __future__ import annotations

import queue
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

__all__ = [
    "BULK_METRICS",
    "DATAGRAM_METRICS",
    "FANOUT_METRICS",
    "PACED_DATAGRAM_METRICS",
    "REQUEST_METRICS",
    "SESSION_METRICS",
    "Case",
    "Metrics",
    "fmt",
    "start_server",
    "stop_process",
    "summarize",
]

Metrics = tuple[tuple[str, str, bool], ...]
"""(key in the client's JSON, label, higher is better), primary metric first."""


@dataclass(frozen=True)
class Case:
    """One workload (``workloads.py``'s name) with its parameters for a full run and
    for ``--quick``, and the metrics it reports."""

    name: str
    workload: str
    title: str
    full: dict[str, float]
    quick: dict[str, float]
    metrics: Metrics
    slack: float = 30.0
    """Seconds a client may take on top of the measured duration."""
    relay_ms: float = 0.0
    """One-way delay added by a user-space UDP relay between client and server (the
    suite's ``relay`` binary, benches/rust-ceiling/src/bin/relay.rs); 0: direct."""

    def params(self, quick: bool, duration: float | None = None) -> dict[str, float]:
        """The parameters of this run; ``duration`` replaces the case's own, if any."""
        params = dict(self.quick if quick else self.full)
        if duration is not None and "duration" in params:
            params["duration"] = duration
        return params


BULK_METRICS: Metrics = (
    ("mb_per_s", "MB/s", True),
    ("server_cpu_s_per_gib", "server CPU-s per GiB", False),
)
DATAGRAM_METRICS: Metrics = (
    ("received_per_s", "received/s", True),
    ("loss", "loss", False),
    ("server_cpu_us_per_datagram", "server CPU-us per datagram", False),
)
PACED_DATAGRAM_METRICS: Metrics = (
    ("delivered_fraction", "delivered fraction", True),
    ("server_cpu_us_per_datagram", "server CPU-us per datagram", False),
    ("p50_ms", "p50 ms", False),
    ("p99_ms", "p99 ms", False),
)
REQUEST_METRICS: Metrics = (
    ("req_per_s", "req/s", True),
    ("p50_ms", "p50 ms", False),
    ("p99_ms", "p99 ms", False),
    ("server_cpu_us_per_request", "server CPU-us per request", False),
)
SESSION_METRICS: Metrics = (
    ("sessions_per_s", "sessions/s", True),
    ("connect_p50_ms", "connect p50 ms", False),
    ("server_cpu_ms_per_session", "server CPU-ms per session", False),
)
FANOUT_METRICS: Metrics = (
    ("delivered_fraction", "delivered fraction", True),
    ("server_cpu_fraction", "server CPU (cores)", False),
    ("server_cpu_us_per_datagram", "server CPU-us per datagram", False),
)


def summarize(raw: list[dict[str, Any]], cases: list[Case]) -> dict[str, Any]:
    """case -> metric -> target -> {median, min, max, n, values}, from the runs' records
    (``{"case", "target", "ok", "metrics"}``); failed runs are left out."""
    summary: dict[str, Any] = {}
    for case in cases:
        per_metric: dict[str, Any] = {}
        for key, _label, _higher in case.metrics:
            per_target: dict[str, list[float]] = {}
            for rec in raw:
                if rec["case"] == case.name and rec["ok"]:
                    v = rec["metrics"].get(key)
                    if isinstance(v, int | float):
                        per_target.setdefault(rec["target"], []).append(float(v))
            per_metric[key] = {
                t: {
                    "median": statistics.median(vals),
                    "min": min(vals),
                    "max": max(vals),
                    "n": len(vals),
                    "values": vals,
                }
                for t, vals in per_target.items()
            }
        summary[case.name] = per_metric
    return summary


def fmt(v: float | None, key: str = "", *, percent_digits: int = 1) -> str:
    """A number for a table: fractions (loss, delivered) as percentages, others with
    three significant digits or thousands separators."""
    if v is None:
        return "—"
    if key in ("loss", "delivered_fraction"):
        return f"{v * 100:.{percent_digits}f}%"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def start_server(
    cmd: list[str], *, log: IO[str], cwd: str | None = None, needs_hash: bool = True
) -> tuple[subprocess.Popen[str], int, str]:
    """Starts a bench server and waits (30 s at most) for its ``PORT <n>`` line and, with
    ``needs_hash``, its ``HASH <hex>`` line; (process, port, hash or ""). Raises
    ``RuntimeError`` (after stopping it) when they do not come."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=cwd)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert p.stdout is not None
        for line in p.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    port, cert_hash = 0, ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (port and (cert_hash or not needs_hash)):
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            if p.poll() is not None:
                break
            continue
        if line.startswith("PORT "):
            port = int(line.split()[1])
        elif line.startswith("HASH "):
            cert_hash = line.split()[1]
    if not (port and (cert_hash or not needs_hash)):
        stop_process(p)
        raise RuntimeError(f"{cmd[0]}: the server did not start (exit {p.poll()})")
    return p, port, cert_hash


def stop_process(p: subprocess.Popen[str]) -> None:
    """SIGTERM (SIGINT where there is none), then a kill after 3 s."""
    if p.poll() is not None:
        return
    try:
        p.send_signal(signal.SIGTERM if hasattr(signal, "SIGTERM") else signal.SIGINT)
        p.wait(timeout=3)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)
    except ProcessLookupError:
        pass

#!/usr/bin/env python3
"""fastwt side-by-side benchmark driver (issue 4).

One command runs every workload against every target, alternating the targets run by run
(A B C D A B C D ...), and writes ``results.json``, ``results.md`` (medians, min-max,
ratios) and PNG plots of the ratios into ``--out`` (default ``benches/results``)::

    bash benches/setup_targets.sh          # once: reference venvs, certificate, Rust build
    python3 benches/run.py                 # full run: 5 runs of everything (~27 min here)
    python3 benches/run.py --quick --targets fastwt,rust   # smoke run, ~1 min

Targets, each driven by its own client: ``fastwt`` (bare WebTransportServer),
``fastwt-app`` (fastwt ServerApp with auth + CORS + rate limit; sessions/s only),
``pwt020`` (pywebtransport 0.20.x ServerApp, the reference), ``pwt011`` (pywebtransport
0.11.x, pure Python on aioquic) and ``rust`` (raw wtransport echo server and client: the
ceiling). Every server is a fresh subprocess on 127.0.0.1 port 0 per measurement, killed
afterwards; every client runs under a time limit. Server CPU (utime+stime) and RSS are
read by the clients from /proc/<server pid> around the measured window.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGETS_DIR = HERE / "targets"
VENVS = HERE / ".venvs"
CEILING_DIR = HERE / "rust-ceiling"

ALL_TARGETS = [
    "fastwt",
    "fastwt-app",
    "fastwt-rc",
    "fastwt-base",
    "pwt020",
    "pwt011",
    "rust",
    "quinn",
    "native",
]
DEFAULT_TARGETS = [
    "fastwt",
    "pwt020",
    "pwt011",
    "rust",
    "quinn",
    "native",
    "fastwt-rc",
    "fastwt-app",
]
FASTWT_PROBE = "import fastwt, fastwt._core; print(fastwt.__version__)"
REFERENCE = "pwt020"
CEILING = "rust"
AUTH_HEADERS = [
    "--header",
    "authorization=Bearer bench",
    "--header",
    "origin=https://bench.example",
]


# ---------------------------------------------------------------------------------------------
# workloads ("cases")
# ---------------------------------------------------------------------------------------------


def _load_cases() -> Any:
    """``fastwt.bench.cases`` (python/fastwt/bench/cases.py): from the installed package,
    or by path from this checkout when the orchestrating Python has no fastwt."""
    try:
        from fastwt.bench import cases
    except ImportError:
        path = ROOT / "python" / "fastwt" / "bench" / "cases.py"
        spec = importlib.util.spec_from_file_location("fastwt_bench_cases", path)
        assert spec is not None and spec.loader is not None
        cases = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = cases
        spec.loader.exec_module(cases)
    return cases


_cases = _load_cases()
Case = _cases.Case
_STUCK = (("stuck", "requests stuck >3 s", False),)


def _paced_datagrams(rate: int, quick_duration: float) -> Any:
    return Case(
        f"paced_dg_{rate // 1000}k",
        "datagrams_paced",
        f"64-byte datagrams echoed at {rate:,}/s offered (open loop)",
        {"duration": 5, "rate": rate},
        {"duration": quick_duration, "rate": rate},
        _cases.PACED_DATAGRAM_METRICS,
        slack=60.0,
    )


def _reqresp(concurrency: int) -> Any:
    return Case(
        f"reqresp_c{concurrency}",
        "reqresp",
        f"64-byte request/response, new bidi stream each, concurrency {concurrency}",
        {"duration": 5, "concurrency": concurrency},
        {"duration": 1.5, "concurrency": concurrency},
        _cases.REQUEST_METRICS + _STUCK,
        slack=60.0,
    )


def _fanout(name: str, sessions: int, quick_sessions: int, slack: float) -> Any:
    return Case(
        name,
        "fanout",
        f"server pushes 64-byte datagrams to {sessions:,} sessions at 20 Hz",
        {"sessions": sessions, "hz": 20, "duration": 10},
        {"sessions": quick_sessions, "hz": 20, "duration": 2},
        _cases.FANOUT_METRICS,
        slack=slack,
    )


CASES: list[Any] = [
    Case(
        "bulk",
        "bulk",
        "64 MiB through one bidirectional stream, echoed",
        {"size": 64 * 2**20},
        {"size": 8 * 2**20},
        _cases.BULK_METRICS,
        slack=150.0,
    ),
    Case(
        "bulk8",
        "bulk",
        "8 MiB through one bidirectional stream, echoed (not in the default set: the "
        "reference stalls on 64 MiB)",
        {"size": 8 * 2**20},
        {"size": 8 * 2**20},
        _cases.BULK_METRICS,
        slack=150.0,
    ),
    Case(
        "datagrams",
        "datagrams",
        "64-byte datagrams echoed, closed loop (128 in flight)",
        {"duration": 5, "window": 128},
        {"duration": 1.5, "window": 128},
        _cases.DATAGRAM_METRICS,
        slack=60.0,
    ),
    _reqresp(1),
    _reqresp(32),
    Case(
        "sessions",
        "sessions",
        "new sessions per second (connect + close, 4 in parallel)",
        {"duration": 5, "concurrency": 4},
        {"duration": 1.5, "concurrency": 4},
        _cases.SESSION_METRICS,
        slack=60.0,
    ),
    _fanout("fanout", 1000, 100, 120.0),
    Case(
        "memory",
        "memory",
        "server RSS per idle session, 1,000 sessions open",
        {"sessions": 1000},
        {"sessions": 100},
        (("rss_per_session_bytes", "RSS bytes per idle session", False),),
        slack=120.0,
    ),
    # issue 14: moderate load, many sessions, bursts (after the saturated ones above)
    Case(
        "paced_8",
        "reqresp_paced",
        "64-byte requests, 8 sessions, one every 10 ms each (800/s in all, open loop)",
        {"duration": 6, "rate": 800, "paced-sessions": 8},
        {"duration": 1.5, "rate": 800, "paced-sessions": 8},
        _cases.REQUEST_METRICS,
        slack=60.0,
    ),
    Case(
        "paced_1000",
        "reqresp_paced",
        "64-byte requests, 1,000 sessions, 5,000/s in all (open loop)",
        {"duration": 6, "rate": 5000, "paced-sessions": 1000},
        {"duration": 1.5, "rate": 1000, "paced-sessions": 100},
        _cases.REQUEST_METRICS,
        slack=120.0,
    ),
    _paced_datagrams(10_000, 1.5),
    _paced_datagrams(50_000, 1.0),
    _paced_datagrams(100_000, 1.0),
    Case(
        "burst",
        "burst",
        "100,000 64-byte datagrams sent as fast as the send call returns, echoed",
        {"count": 100_000},
        {"count": 20_000},
        (
            ("loss", "loss (round trip)", False),
            ("sent_per_s", "sent/s", True),
            ("received_per_s", "echoed/s (first send to last echo)", True),
            ("server_cpu_us_per_datagram", "server CPU-us per datagram", False),
        ),
        slack=60.0,
    ),
    _fanout("fanout_10k", 10_000, 300, 240.0),
    # issue 14: the round-trip variant, through the relay adding 5 ms each way
    Case(
        "reqresp_c32_rtt",
        "reqresp",
        "64-byte request/response, concurrency 32, through a relay adding 5 ms each way",
        {"duration": 5, "concurrency": 32},
        {"duration": 1.5, "concurrency": 32},
        _cases.REQUEST_METRICS + _STUCK,
        slack=60.0,
        relay_ms=5.0,
    ),
    Case(
        "paced_8_rtt",
        "reqresp_paced",
        "64-byte requests, 8 sessions, 800/s in all (open loop), through a relay adding "
        "5 ms each way",
        {"duration": 6, "rate": 800, "paced-sessions": 8},
        {"duration": 1.5, "rate": 800, "paced-sessions": 8},
        _cases.REQUEST_METRICS,
        slack=60.0,
        relay_ms=5.0,
    ),
]
CASE_BY_NAME = {c.name: c for c in CASES}
DEFAULT_CASES = [c.name for c in CASES if c.name != "bulk8"]

# which cases each target takes part in
_SATURATED = ["bulk", "bulk8", "datagrams", "reqresp_c1", "reqresp_c32"]
_CLASSIC = [*_SATURATED, "sessions", "fanout", "memory"]
TARGET_CASES: dict[str, list[str]] = {
    "fastwt-app": ["sessions"],
    # the raw-Rust clients implement the workloads of issue 4, and fan-out at any size
    "rust": [*_CLASSIC, "fanout_10k"],
    "fastwt-rc": [*_CLASSIC, "fanout_10k"],
    # raw quinn (no HTTP/3, benches/rust-ceiling/src/raw_quinn.rs): streams only
    "quinn": [
        "bulk",
        "bulk8",
        "reqresp_c1",
        "reqresp_c32",
        "paced_8",
        "paced_1000",
        "reqresp_c32_rtt",
        "paced_8_rtt",
    ],
}

# issue 4's goals: (case, metric, against, op, value, label)
GOALS: list[tuple[str, str, str, str, float, str]] = [
    ("bulk", "mb_per_s", REFERENCE, ">=", 5.0, "bulk MB/s >= 5x reference"),
    ("bulk", "mb_per_s", CEILING, ">=", 0.8, "bulk MB/s >= 80% raw Rust"),
    ("datagrams", "received_per_s", REFERENCE, ">=", 20.0, "datagrams/s >= 20x reference"),
    ("datagrams", "received_per_s", CEILING, ">=", 0.6, "datagrams/s >= 60% raw Rust"),
    ("reqresp_c1", "req_per_s", REFERENCE, ">=", 10.0, "req/s (c=1) >= 10x reference"),
    ("reqresp_c1", "req_per_s", CEILING, ">=", 0.5, "req/s (c=1) >= 50% raw Rust"),
    ("reqresp_c32", "req_per_s", REFERENCE, ">=", 10.0, "req/s (c=32) >= 10x reference"),
    ("reqresp_c32", "req_per_s", CEILING, ">=", 0.5, "req/s (c=32) >= 50% raw Rust"),
    ("sessions", "sessions_per_s", REFERENCE, ">=", 5.0, "sessions/s >= 5x reference"),
    ("sessions", "sessions_per_s", CEILING, ">=", 0.8, "sessions/s >= 80% raw Rust"),
    ("bulk", "server_cpu_s_per_gib", REFERENCE, "<=", 0.2, "server CPU per GiB <= 1/5 reference"),
    ("bulk8", "mb_per_s", REFERENCE, ">=", 5.0, "bulk (8 MiB) MB/s >= 5x reference"),
    ("bulk8", "server_cpu_s_per_gib", REFERENCE, "<=", 0.2, "CPU per GiB (8 MiB) <= 1/5 ref."),
    ("memory", "rss_per_session_bytes", REFERENCE, "<=", 0.5, "RSS per idle session <= 1/2 ref."),
    ("fanout", "delivered_fraction", "", ">=", 0.995, "fan-out delivered >= 99.5% (1,000 x 20 Hz)"),
    # issue 14: true ceilings (raw quinn), moderate load, bursts, 10k sessions
    ("bulk", "mb_per_s", "quinn", ">=", 0.8, "bulk MB/s >= 80% raw quinn"),
    ("reqresp_c32", "req_per_s", "native", ">=", 0.8, "req/s (c=32) >= 80% native core"),
    ("paced_8", "server_cpu_us_per_request", "native", "<=", 1.3, "paced CPU <= 1.3x native"),
    ("reqresp_c32", "req_per_s", "quinn", ">=", 0.5, "req/s (c=32) >= 50% raw quinn"),
    (
        "paced_8",
        "server_cpu_us_per_request",
        REFERENCE,
        "<=",
        0.25,
        "paced (8 x 100/s) CPU per request <= 1/4 reference",
    ),
    ("burst", "loss", "", "<=", 0.05, "burst of 100,000 datagrams: loss <= 5%"),
    ("fanout_10k", "delivered_fraction", "", ">=", 0.995, "fan-out 10,000 x 20 Hz >= 99.5%"),
]


# ---------------------------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    title: str
    server_cmd: list[str]
    client_cmd: list[str]
    client_extra: list[str] = field(default_factory=list)
    available: bool = True
    reason: str = ""
    version: str = ""
    prints_hash: bool = True


def log(msg: str) -> None:
    print(msg, flush=True)


def probe_python(python: str, code: str) -> tuple[bool, str]:
    try:
        p = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["failed"])[-1]
        return False, last
    return True, p.stdout.strip()


def read_setup_status() -> dict[str, str]:
    """What setup_targets.sh recorded for each target ("ok ..." or "missing <why>")."""
    status: dict[str, str] = {}
    path = VENVS / "targets.txt"
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, rest = line.partition(" ")
            status[name] = rest
    return status


def ensure_cert(workdir: Path) -> tuple[Path, Path] | None:
    cert, key = VENVS / "cert.pem", VENVS / "key.pem"
    if cert.exists() and key.exists() and time.time() - cert.stat().st_mtime < 5 * 86400:
        return cert, key
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    for py in [VENVS / "tools/bin/python", VENVS / "pwt020/bin/python", Path(sys.executable)]:
        if not py.exists():
            continue
        p = subprocess.run(
            [str(py), str(TARGETS_DIR / "gen_cert.py"), str(cert), str(key)],
            capture_output=True,
            text=True,
            check=False,
        )
        if p.returncode == 0:
            return cert, key
    return None


@functools.cache
def build_ceiling() -> tuple[bool, str, Path]:
    return _cargo_build(
        "the raw-Rust ceiling (cargo build --release -j 2)", [], CEILING_DIR, "wt-ceiling"
    )


def relay_binary() -> tuple[bool, str, Path]:
    """The UDP relay of the round-trip cases (``relay``, built with the ceiling's crate)."""
    ok, why, ceiling = build_ceiling()
    relay = ceiling.parent / "relay"
    if ok and not relay.exists():
        return False, f"{relay} was not built", relay
    return ok, why, relay


@functools.cache
def build_native() -> tuple[bool, str, Path]:
    """fastwt-core's bench server (rust/core/examples/bench_server.rs), release build."""
    return _cargo_build(
        "the native fastwt-core server (cargo build --release)",
        ["-p", "fastwt-core", "--example", "bench_server"],
        ROOT,
        "examples/bench_server",
    )


def _cargo_build(what: str, args: list[str], cwd: Path, binary_name: str) -> tuple[bool, str, Path]:
    """``cargo build --release -j 2 -q ARGS`` in ``cwd`` into the shared target directory:
    (the binary exists, why not, its path). Without cargo, a binary built before is used."""
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target_dir / "release" / binary_name
    cargo = shutil.which("cargo")
    if cargo is None:
        return binary.exists(), "cargo not found", binary
    log(f"[setup] building {what} ...")
    env = dict(os.environ, CARGO_TARGET_DIR=str(target_dir))
    p = subprocess.run(
        [cargo, "build", "--release", "-j", "2", "-q", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode != 0:
        return False, "cargo build failed: " + p.stderr.strip()[-300:], binary
    return binary.exists(), "", binary


def make_targets(
    names: list[str], fastwt_python: str, workdir: Path, baseline_python: str = ""
) -> dict[str, Target]:
    targets: dict[str, Target] = {}
    status = read_setup_status()
    certs: tuple[Path, Path] | None = None
    for name in names:
        if name in ("fastwt", "fastwt-app"):
            mode = "bare" if name == "fastwt" else "app"
            t = Target(
                name,
                "fastwt (WebTransportServer)"
                if name == "fastwt"
                else "fastwt ServerApp+auth+CORS+rl",
                [fastwt_python, str(TARGETS_DIR / "fastwt_server.py"), "--mode", mode],
                [fastwt_python, str(TARGETS_DIR / "fastwt_client.py")],
                AUTH_HEADERS if name == "fastwt-app" else [],
            )
            ok, out = probe_python(
                fastwt_python, "import fastwt, fastwt._core; print(fastwt.__version__)"
            )
            t.available, t.version = ok, out if ok else ""
            t.reason = "" if ok else f"fastwt not importable with {fastwt_python}: {out}"
        elif name == "fastwt-base":
            # An A/B of the server: another fastwt build (--baseline-python, e.g. main's)
            # serves, this build's client drives it, so only the server differs.
            t = Target(
                name,
                "fastwt baseline server (--baseline-python), this build's client",
                [baseline_python, str(TARGETS_DIR / "fastwt_server.py"), "--mode", "bare"],
                [fastwt_python, str(TARGETS_DIR / "fastwt_client.py")],
            )
            ok, out = (
                probe_python(baseline_python, FASTWT_PROBE)
                if baseline_python
                else (False, "no --baseline-python given")
            )
            t.available, t.version = ok, out if ok else ""
            t.reason = "" if ok else f"baseline fastwt not importable: {out}"
        elif name in ("pwt020", "pwt011"):
            py = VENVS / name / "bin" / "python"
            line = "0.20.x" if name == "pwt020" else "0.11.x"
            t = Target(
                name,
                f"pywebtransport {line} ServerApp",
                [str(py), str(TARGETS_DIR / "pwt_server.py")],
                [str(py), str(TARGETS_DIR / "pwt_client.py")],
            )
            if not py.exists():
                why = status.get(name, "missing venv not set up (run benches/setup_targets.sh)")
                t.available, t.reason = (
                    False,
                    "reference not available: " + why.removeprefix("missing "),
                )
            else:
                ok, out = probe_python(
                    str(py), "import pywebtransport; print(pywebtransport.__version__)"
                )
                t.available, t.version = ok, out if ok else ""
                t.reason = "" if ok else f"reference not available: {out}"
                t.title = f"pywebtransport {out if ok else line} ServerApp"
            t.prints_hash = False
            if t.available:
                if certs is None:
                    certs = ensure_cert(workdir)
                if certs is None:
                    t.available, t.reason = False, "no certificate (cryptography missing)"
                else:
                    t.server_cmd += ["--cert", str(certs[0]), "--key", str(certs[1])]
        elif name == "fastwt-rc":
            ok, why, binary = build_ceiling()
            t = Target(
                name,
                "fastwt server driven by the raw-Rust client",
                [fastwt_python, str(TARGETS_DIR / "fastwt_server.py"), "--mode", "bare"],
                [str(binary), "client"],
            )
            ok2, out = probe_python(
                fastwt_python, "import fastwt, fastwt._core; print(fastwt.__version__)"
            )
            t.available = ok and ok2
            t.version = out if ok2 else ""
            t.reason = why if not ok else ("" if ok2 else f"fastwt not importable: {out}")
        elif name == "native":
            ok, why, binary = build_native()
            t = Target(
                name,
                "fastwt-core native server (no Python), fastwt's client",
                [str(binary)],
                [fastwt_python, str(TARGETS_DIR / "fastwt_client.py")],
            )
            ok2, out = probe_python(fastwt_python, FASTWT_PROBE)
            t.available = ok and ok2
            t.version = out if ok2 else ""
            t.reason = why if not ok else ("" if ok2 else f"fastwt not importable: {out}")
        elif name == "quinn":
            ok, why, binary = build_ceiling()
            t = Target(
                name,
                "raw quinn 0.11 (no HTTP/3: the QUIC floor)",
                [str(binary), "quinn-server"],
                [str(binary), "quinn-client"],
            )
            t.available, t.reason, t.version = ok, why, "quinn 0.11"
        elif name == "rust":
            ok, why, binary = build_ceiling()
            t = Target(
                name,
                "raw Rust (wtransport 0.7.2 + tokio)",
                [str(binary), "server"],
                [str(binary), "client"],
            )
            t.available, t.reason, t.version = ok, why, "wtransport 0.7.2"
        else:
            raise SystemExit(f"unknown target {name!r}; known: {', '.join(ALL_TARGETS)}")
        targets[name] = t
    return targets


# ---------------------------------------------------------------------------------------------
# one measurement
# ---------------------------------------------------------------------------------------------


stop_process = _cases.stop_process


def start_server(t: Target, lifetime: float, logf: Any) -> tuple[subprocess.Popen[str], int, str]:
    """Start ``t``'s server; wait for ``PORT <n>`` (and ``HASH <hex>`` where it prints one)."""
    cmd = [*t.server_cmd, "--seconds", str(int(lifetime))]
    try:
        return _cases.start_server(cmd, log=logf, cwd=str(TARGETS_DIR), needs_hash=t.prints_hash)
    except RuntimeError:
        raise RuntimeError("server did not report its port (see raw/bench.log)") from None


ServerHook = Callable[[subprocess.Popen[str]], Callable[[], None]]


def measure(
    t: Target, case: Case, quick: bool, logf: Any, hook: ServerHook | None = None
) -> tuple[dict[str, float] | None, str]:
    """One fresh server, one client run. ``hook(server)`` runs once the server listens and
    returns a function called when the client is done (the profiler uses it)."""
    params = case.params(quick)
    budget = float(params.get("duration", 0)) + case.slack
    server, port, cert_hash = start_server(t, budget + 30, logf)
    done_hook: Callable[[], None] | None = None
    relay: subprocess.Popen[str] | None = None
    try:
        if case.relay_ms:
            relay, port = start_relay(port, case.relay_ms, budget + 30, logf)
        if hook is not None:
            done_hook = hook(server)
        time.sleep(0.3)  # let the server settle
        cmd = [
            *t.client_cmd,
            case.workload,
            "--url",
            f"https://127.0.0.1:{port}/",
            "--server-pid",
            str(server.pid),
        ]
        if cert_hash:
            cmd += ["--cert-hash", cert_hash]
        for k, v in params.items():
            cmd += [f"--{k}", str(int(v)) if float(v).is_integer() else str(v)]
        cmd += t.client_extra
        logf.write(f"$ {' '.join(cmd)}\n")
        logf.flush()
        try:
            p = subprocess.run(
                cmd,
                stdout=subprocess.PIPE,
                stderr=logf,
                text=True,
                timeout=budget,
                cwd=str(TARGETS_DIR),
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, f"client timed out after {budget:.0f} s"
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not lines:
            return None, f"client exit {p.returncode}"
        result: dict[str, float] = json.loads(lines[-1])
        if server.poll() is not None:
            result["server_died"] = 1.0
        return result, ""
    finally:
        if done_hook is not None:
            done_hook()
        if relay is not None:
            stop_process(relay)
        stop_process(server)


def start_relay(
    port: int, delay_ms: float, lifetime: float, logf: Any
) -> tuple[subprocess.Popen[str], int]:
    """Starts the UDP relay in front of the server on ``port``: (process, relay port).
    It runs in its own process (Rust threads, not the Python cores' work), so the
    server's CPU does not include it."""
    ok, why, binary = relay_binary()
    if not ok:
        raise RuntimeError(f"no relay: {why}")
    cmd = [
        str(binary),
        "--upstream",
        f"127.0.0.1:{port}",
        "--delay-ms",
        str(delay_ms),
        "--seconds",
        str(int(lifetime)),
    ]
    logf.write(f"$ {' '.join(cmd)}\n")
    relay, relay_port, _ = _cases.start_server(cmd, log=logf, needs_hash=False)
    return relay, relay_port


# ---------------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------------


def summarize(raw: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(_cases.summarize(raw, CASES))


def ratio(summary: dict[str, Any], case: str, metric: str, a: str, b: str) -> float | None:
    m = summary.get(case, {}).get(metric, {})
    if a not in m or b not in m:
        return None
    den = m[b]["median"]
    if den == 0:
        return None
    return float(m[a]["median"] / den)


def ratios(summary: dict[str, Any], targets: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    others = [t for t in (REFERENCE, "pwt011", CEILING) if t in targets]
    for case in CASES:
        for key, _label, _hib in case.metrics:
            for mine in ("fastwt", "fastwt-rc"):
                for other in others:
                    r = ratio(summary, case.name, key, mine, other)
                    if r is not None:
                        out.setdefault(case.name, {}).setdefault(key, {})[f"{mine}/{other}"] = r
    app = ratio(summary, "sessions", "sessions_per_s", "fastwt-app", "fastwt")
    if app is not None:
        out.setdefault("sessions", {}).setdefault("sessions_per_s", {})["fastwt-app/fastwt"] = app
    return out


def evaluate_goals(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal for fastwt with its own client, and for the fastwt server driven by the
    raw-Rust client (``fastwt-rc``: the server's share, without the Python client)."""
    rows = []
    for case, metric, against, op, value, label in GOALS:
        row: dict[str, Any] = {
            "goal": label,
            "case": case,
            "metric": metric,
            "against": against or "absolute",
            "op": op,
            "value": value,
        }
        for mine, key in (("fastwt", "got"), ("fastwt-rc", "got_rc")):
            if against:
                got = ratio(summary, case, metric, mine, against)
            else:
                m = summary.get(case, {}).get(metric, {}).get(mine)
                got = m["median"] if m else None
            row[key] = got
            if got is None:
                row[key.replace("got", "status")] = "n/a"
            else:
                met = got >= value if op == ">=" else got <= value
                row[key.replace("got", "status")] = "met" if met else "MISSED"
        rows.append(row)
    return rows


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    commit = ""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        pass
    return {
        "fastwt_commit": commit,
        "cpu_model": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "memory": mem,
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def fmt(v: float | None, key: str = "") -> str:
    return str(_cases.fmt(v, key, percent_digits=2))


def write_markdown(data: dict[str, Any], path: Path) -> None:
    s = data["summary"]
    tnames = [t for t in data["config"]["targets"]]
    tinfo = data["targets"]
    m = data["machine"]
    out: list[str] = []
    out.append("# fastwt benchmark results\n")
    out.append(
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory']}, kernel {m['kernel']}; "
        f"{m['date_utc']}. Runs per target: {data['config']['runs']}"
        f"{' (quick mode)' if data['config']['quick'] else ''}; targets alternated run by run.\n"
    )
    out.append(f"Command: `{data['config']['command']}`\n")
    out.append(f"fastwt at commit: {m.get('fastwt_commit', '?')}\n")
    out.append("## Targets\n")
    for tn in tnames:
        t = tinfo[tn]
        state = "available" if t["available"] else f"**not available** — {t['reason']}"
        out.append(f"- `{tn}`: {t['title']} {t['version']} — {state}")
    out.append("")
    out.append("## Goals (issue 4), medians of the same run\n")
    out.append(
        "`fastwt` is driven by fastwt's own Python client, as the issue asks; `fastwt-rc` is "
        "the same fastwt server driven by the raw-Rust client, which shows the server's share "
        "without the Python client's cost.\n"
    )
    out.append("| goal | fastwt | status | fastwt-rc | status |")
    out.append("|---|---|---|---|---|")

    def shown(g: dict[str, Any], got: float | None) -> str:
        if got is None:
            return "—"
        if g["against"] == "absolute":
            return fmt(got, g["metric"])
        # round towards the goal's wrong side, so that a miss never reads as the goal
        shown_val = math.floor(got * 100) / 100 if g["op"] == ">=" else math.ceil(got * 100) / 100
        return f"{shown_val:.2f}× {g['against']}"

    for g in [g for g in data["goals"] if g["case"] in data["config"]["workloads"]]:
        out.append(
            f"| {g['goal']} | {shown(g, g['got'])} | {g['status']} | "
            f"{shown(g, g.get('got_rc'))} | {g.get('status_rc', 'n/a')} |"
        )
    out.append("")
    out.append("## Medians (min–max)\n")
    ratio_cols = [("fastwt", REFERENCE), ("fastwt", CEILING), ("fastwt-rc", CEILING)]
    header = (
        "| workload | metric | "
        + " | ".join(tnames)
        + " | "
        + " | ".join(f"{a}/{b}" for a, b in ratio_cols)
        + " |"
    )
    out.append(header)
    out.append("|---|---|" + "---|" * (len(tnames) + len(ratio_cols)))
    for case in [c for c in CASES if c.name in data["config"]["workloads"]]:
        for key, label, _hib in case.metrics:
            row = [case.name, label]
            vals = s.get(case.name, {}).get(key, {})
            for tn in tnames:
                v = vals.get(tn)
                if v is None:
                    row.append("—")
                else:
                    row.append(
                        f"{fmt(v['median'], key)} ({fmt(v['min'], key)}–{fmt(v['max'], key)})"
                    )
            for mine, other in ratio_cols:
                r = data["ratios"].get(case.name, {}).get(key, {}).get(f"{mine}/{other}")
                row.append("—" if r is None else f"{r:.2f}×")
            out.append("| " + " | ".join(row) + " |")
    out.append("")
    app = data["ratios"].get("sessions", {}).get("sessions_per_s", {}).get("fastwt-app/fastwt")
    if app is not None:
        out.append(
            f"ServerApp with auth + CORS + rate limit vs bare server, sessions/s: {app:.2f}×\n"
        )
    out.append("## Workloads\n")
    for case in [c for c in CASES if c.name in data["config"]["workloads"]]:
        out.append(
            f"- `{case.name}`: {case.title}; parameters {case.params(data['config']['quick'])}"
        )
    fails = [r for r in data["raw"] if not r["ok"]]
    if fails:
        out.append("\n## Failed measurements\n")
        for r in fails:
            out.append(f"- run {r['run']} {r['case']} {r['target']}: {r['error']}")
    path.write_text("\n".join(out) + "\n")


def make_plots(json_path: Path, out_dir: Path) -> str:
    plotter = HERE / "plot.py"
    for py in [sys.executable, str(VENVS / "tools/bin/python")]:
        if not Path(py).exists():
            continue
        ok, _ = probe_python(py, "import matplotlib")
        if ok:
            p = subprocess.run(
                [py, str(plotter), str(json_path), str(out_dir)],
                capture_output=True,
                text=True,
                check=False,
            )
            return p.stdout.strip() if p.returncode == 0 else "plot failed: " + p.stderr[-300:]
    return "matplotlib not available: no plots (run benches/setup_targets.sh)"


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--runs", type=int, default=None, help="runs per target (default 5; --quick: 1)"
    )
    ap.add_argument("--quick", action="store_true", help="short mode: small sizes, 1 run")
    ap.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="comma-separated")
    ap.add_argument("--workloads", default=",".join(DEFAULT_CASES), help="comma-separated")
    ap.add_argument("--out", default=str(HERE / "results"), help="output directory")
    ap.add_argument("--fastwt-python", default=sys.executable, help="Python with fastwt installed")
    ap.add_argument(
        "--baseline-python",
        default="",
        help="Python with another fastwt build: its server is target fastwt-base",
    )
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite results.md and the plots from --out's results.json, measure nothing",
    )
    args = ap.parse_args(argv)
    if args.report_only:
        out_dir = Path(args.out)
        json_path = out_dir / "results.json"
        old: dict[str, Any] = json.loads(json_path.read_text())
        old["summary"] = summarize(old["raw"])
        old["ratios"] = ratios(old["summary"], old["config"]["targets"])
        old["goals"] = evaluate_goals(old["summary"])
        json_path.write_text(json.dumps(old, indent=1))
        write_markdown(old, out_dir / "results.md")
        if not args.no_plots:
            log("[done] " + make_plots(json_path, out_dir))
        return 0

    runs: int = args.runs if args.runs is not None else (1 if args.quick else 5)
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    case_names = [c.strip() for c in args.workloads.split(",") if c.strip()]
    for c in case_names:
        if c not in CASE_BY_NAME:
            raise SystemExit(f"unknown workload {c!r}; known: {', '.join(CASE_BY_NAME)}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_dir = out_dir / "raw"
    raw_dir.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="fastwt-bench-"))

    targets = make_targets(names, args.fastwt_python, workdir, args.baseline_python)
    for t in targets.values():
        state = f"ok {t.version}" if t.available else f"NOT AVAILABLE: {t.reason}"
        log(f"[setup] {t.name:10s} {state}")
    active = [t for t in targets.values() if t.available]
    if any(CASE_BY_NAME[c].relay_ms for c in case_names):
        # Built now, not inside the first measurement (where the server would wait).
        relay_ok, relay_why, _ = relay_binary()
        log(f"[setup] relay      {'ok' if relay_ok else 'NOT AVAILABLE: ' + relay_why}")

    plan = [
        (run, CASE_BY_NAME[c], t)
        for run in range(1, runs + 1)
        for c in case_names
        for t in active
        if c in TARGET_CASES.get(t.name, case_names)
    ]
    raw: list[dict[str, Any]] = []
    started = time.monotonic()
    with open(raw_dir / "bench.log", "w") as logf:
        for i, (run, case, t) in enumerate(plan, 1):
            t0 = time.monotonic()
            logf.write(f"\n=== run {run} {case.name} {t.name}\n")
            logf.flush()
            try:
                result, error = measure(t, case, args.quick, logf)
            except Exception as e:  # a broken target must not stop the suite
                result, error = None, f"{type(e).__name__}: {e}"
            took = time.monotonic() - t0
            rec = {
                "run": run,
                "case": case.name,
                "target": t.name,
                "ok": result is not None,
                "metrics": result or {},
                "error": error,
                "seconds": took,
            }
            raw.append(rec)
            key, label, _ = case.metrics[0]
            shown = f"{fmt(result.get(key), key)} {label}" if result else f"FAILED ({error})"
            log(
                f"[{i:3d}/{len(plan)}] run {run}/{runs} {case.name:12s} {t.name:10s} "
                f"{shown}  ({took:.1f} s, elapsed {time.monotonic() - started:.0f} s)"
            )

    summary = summarize(raw)
    data: dict[str, Any] = {
        "machine": machine_info(),
        "config": {
            "runs": runs,
            "quick": args.quick,
            "targets": [t for t in names if t in targets],
            "workloads": case_names,
            "command": " ".join(
                ["python3", "benches/run.py", *(argv if argv is not None else sys.argv[1:])]
            ),
        },
        "targets": {
            n: {
                "title": t.title,
                "available": t.available,
                "reason": t.reason,
                "version": t.version,
            }
            for n, t in targets.items()
        },
        "summary": summary,
        "ratios": ratios(summary, names),
        "raw": raw,
    }
    data["goals"] = evaluate_goals(summary)
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(data, indent=1))
    write_markdown(data, out_dir / "results.md")
    log(f"[done] {json_path} and {out_dir / 'results.md'} written")
    if not args.no_plots:
        log("[done] " + make_plots(json_path, out_dir))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

# This file is the orchestration (targets, one measurement, the run loop and its CLI);
# the workloads are in workloads.py, the summary and results.md in report.py.

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from report import evaluate_goals, fmt, machine_info, make_plots, ratios, summarize, write_markdown
from workloads import CASE_BY_NAME, DEFAULT_CASES, RUST_CLIENT, TARGET_CASES, Case, bench_cases

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGETS_DIR = HERE / "targets"
VENVS = HERE / ".venvs"
CEILING_DIR = HERE / "rust-ceiling"

ALL_TARGETS = [
    "fastwt",
    "fastwt-tasks",
    "fastwt-app",
    "fastwt-room",
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
AUTH_HEADERS = [
    "--header",
    "authorization=Bearer bench",
    "--header",
    "origin=https://bench.example",
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
        if name in ("fastwt", "fastwt-tasks", "fastwt-app", "fastwt-room"):
            mode = "app" if name == "fastwt-app" else "bare"
            extra = {"fastwt-room": ["--fanout-room"], "fastwt-tasks": ["--stream-tasks"]}
            options = extra.get(name, [])
            t = Target(
                name,
                {
                    "fastwt": "fastwt (WebTransportServer)",
                    "fastwt-tasks": "fastwt, a task per stream (reference API form)",
                    "fastwt-app": "fastwt ServerApp+auth+CORS+rl",
                    "fastwt-room": "fastwt, fan-out as one room broadcast (Rust fan-out)",
                }[name],
                [fastwt_python, str(TARGETS_DIR / "fastwt_server.py"), "--mode", mode, *options],
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


stop_process = bench_cases.stop_process


def start_server(t: Target, lifetime: float, logf: Any) -> tuple[subprocess.Popen[str], int, str]:
    """Start ``t``'s server; wait for ``PORT <n>`` (and ``HASH <hex>`` where it prints one)."""
    cmd = [*t.server_cmd, "--seconds", str(int(lifetime))]
    try:
        return bench_cases.start_server(
            cmd, log=logf, cwd=str(TARGETS_DIR), needs_hash=t.prints_hash
        )
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
        client = t.client_cmd
        if case.name in RUST_CLIENT:
            ok, why, binary = build_ceiling()
            if not ok:
                return None, f"no Rust client: {why}"
            client = [str(binary), RUST_CLIENT[case.name]]
        cmd = [
            *client,
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
    relay, relay_port, _ = bench_cases.start_server(cmd, log=logf, needs_hash=False)
    return relay, relay_port


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

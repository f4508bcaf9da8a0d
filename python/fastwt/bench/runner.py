"""``fastwt bench``: the Rust backend and the pure-Python backend side by side, on this
machine, from an installed package (no checkout needed).

Every measurement starts a fresh server in its own process (``python -m fastwt bench
--serve --backend rust|python``) and drives it with the same load client in another
process (``python -m fastwt.bench.client``: fastwt's client, on the Rust backend when it
is available). Targets alternate measurement by measurement (rust, python, rust,
python, ...), so slow drifts of a shared machine hit both alike, and the ratios of one
run compare like with like. The table gives medians with their ranges and the ratio
python/rust of the medians; ``--json`` keeps every measurement, ``--plot`` draws the
ratios (matplotlib: ``pip install 'fastwt[bench]'``). ``--target HOST:PORT`` drives a
server elsewhere (``fastwt bench --serve`` there) with the same client instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from .cases import (
    BULK_METRICS,
    DATAGRAM_METRICS,
    FANOUT_METRICS,
    PACED_DATAGRAM_METRICS,
    REQUEST_METRICS,
    SESSION_METRICS,
    Case,
    fmt,
    start_server,
    stop_process,
    summarize,
)

__all__ = ["CASES", "add_arguments", "run"]

TARGETS = ("rust", "python")


CASES: list[Case] = [
    Case(
        "bulk",
        "bulk",
        "bytes through one bidirectional stream, echoed",
        {"size": 16 * 2**20},
        {"size": 4 * 2**20},
        BULK_METRICS,
        slack=90.0,
    ),
    Case(
        "datagrams_burst",
        "datagrams",
        "64-byte datagrams echoed, closed loop, bursts of up to 128 in flight",
        {"duration": 3, "window": 128},
        {"duration": 0.4, "window": 128},
        DATAGRAM_METRICS,
    ),
    Case(
        "datagrams_paced",
        "datagrams_paced",
        "64-byte datagrams echoed at 1,000/s (open loop)",
        {"duration": 3, "rate": 1000},
        {"duration": 0.4, "rate": 1000},
        PACED_DATAGRAM_METRICS,
    ),
    Case(
        "reqresp_c1",
        "reqresp",
        "64-byte request/response on a new stream each, concurrency 1",
        {"duration": 3, "concurrency": 1},
        {"duration": 0.4, "concurrency": 1},
        REQUEST_METRICS,
    ),
    Case(
        "reqresp_c32",
        "reqresp",
        "64-byte request/response on a new stream each, concurrency 32",
        {"duration": 3, "concurrency": 32},
        {"duration": 0.4, "concurrency": 32},
        REQUEST_METRICS,
    ),
    Case(
        "reqresp_paced",
        "reqresp_paced",
        "64-byte request/response started at 200/s (open loop)",
        {"duration": 3, "rate": 200},
        {"duration": 0.4, "rate": 200},
        REQUEST_METRICS,
    ),
    Case(
        "sessions",
        "sessions",
        "new sessions per second (connect + close, 4 in parallel)",
        {"duration": 3, "concurrency": 4},
        {"duration": 0.4, "concurrency": 4},
        SESSION_METRICS,
    ),
    Case(
        "fanout",
        "fanout",
        "the server pushes a 64-byte datagram to every session at 20 Hz",
        {"sessions": 200, "hz": 20, "duration": 3},
        {"sessions": 50, "hz": 20, "duration": 0.6},
        FANOUT_METRICS,
        slack=60.0,
    ),
]
CASE_BY_NAME = {c.name: c for c in CASES}


# --------------------------------------------------------------------------- options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``fastwt bench``'s options (the CLI adds them to its subcommand)."""
    parser.add_argument(
        "--quick", action="store_true", help="short mode (~30 s): 2 runs, short and small"
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per target (default 3; --quick: 2)"
    )
    parser.add_argument(
        "--workloads",
        default=",".join(c.name for c in CASES),
        help=f"comma-separated subset of: {', '.join(c.name for c in CASES)}",
    )
    parser.add_argument("--targets", default=",".join(TARGETS), help="rust,python (default: both)")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per measurement (overrides)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every result as JSON")
    parser.add_argument(
        "--plot", type=Path, metavar="FILE", help="draw the ratios (needs fastwt[bench])"
    )
    parser.add_argument(
        "--target",
        metavar="HOST:PORT",
        help="drive the bench server there (fastwt bench --serve) instead of local ones",
    )
    parser.add_argument("--cert-hash", default="", help="SHA-256 of --target's certificate")
    parser.add_argument(
        "--log", type=Path, metavar="FILE", help="keep the servers' and clients' output there"
    )
    parser.add_argument(
        "--client-backend",
        choices=TARGETS,
        default=None,
        help="backend of the load client (default: rust when available)",
    )
    serve = parser.add_argument_group("server mode (what the measurements start)")
    serve.add_argument("--serve", action="store_true", help="run the bench server instead")
    serve.add_argument(
        "--backend", choices=TARGETS, default="rust", help="--serve: the server's backend"
    )
    from .server import add_arguments as server_arguments

    server_arguments(serve)


# --------------------------------------------------------------------------- processes


class _Progress:
    """A one-line progress bar on stderr (a line per step when it is not a terminal)."""

    def __init__(self, total: int, stream: IO[str] = sys.stderr) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.started = time.monotonic()
        self.tty = stream.isatty()

    def show(self, label: str) -> None:
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        width = 24
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (width - filled)
        text = (
            f"[{bar}] {self.done}/{self.total} {label}  "
            f"{elapsed:.0f} s{f', ~{eta:.0f} s left' if self.done else ''}"
        )
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def step(self, label: str) -> None:
        self.done += 1
        self.show(label)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _start_server(
    backend: str, lifetime: float, log: IO[str]
) -> tuple[subprocess.Popen[str], int, str]:
    """A fresh bench server of ``backend``."""
    cmd = [
        sys.executable, "-m", "fastwt", "bench", "--serve", "--backend", backend,
        "--seconds", str(int(lifetime)),
    ]  # fmt: skip
    try:
        return start_server(cmd, log=log)
    except RuntimeError:
        raise RuntimeError(f"the {backend} server did not start") from None


def _client(
    case: Case,
    params: dict[str, float],
    url: str,
    cert_hash: str,
    server_pid: int,
    client_backend: str,
    log: IO[str],
) -> tuple[dict[str, float] | None, str]:
    cmd = [
        sys.executable, "-m", "fastwt.bench.client", case.workload, "--url", url,
        "--server-pid", str(server_pid), "--client-backend", client_backend,
    ]  # fmt: skip
    if cert_hash:
        cmd += ["--cert-hash", cert_hash]
    for k, v in params.items():
        cmd += [f"--{k}", str(int(v)) if float(v).is_integer() else str(v)]
    budget = float(params.get("duration", 0)) + case.slack
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    try:
        p = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=log, text=True, timeout=budget, check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"client timed out after {budget:.0f} s"
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return None, f"client exit {p.returncode} (see the log)"
    result: dict[str, float] = json.loads(lines[-1])
    return result, ""


def _measure(
    target: str,
    case: Case,
    params: dict[str, float],
    args: argparse.Namespace,
    client_backend: str,
    log: IO[str],
) -> tuple[dict[str, float] | None, str]:
    if target == "remote":
        return _client(
            case, params, f"https://{args.target}/", args.cert_hash, 0, client_backend, log
        )
    budget = float(params.get("duration", 0)) + case.slack
    server, port, cert_hash = _start_server(target, budget + 30, log)
    try:
        time.sleep(0.2)  # let it settle
        url = f"https://127.0.0.1:{port}/"
        result, error = _client(case, params, url, cert_hash, server.pid, client_backend, log)
        if result is not None and server.poll() is not None:
            result["server_died"] = 1.0
        return result, error
    finally:
        stop_process(server)


# --------------------------------------------------------------------------- results


def ratios(summary: dict[str, Any]) -> dict[str, Any]:
    """case -> metric -> python/rust of the medians (where both exist and rust's is not 0)."""
    out: dict[str, Any] = {}
    for case, metrics in summary.items():
        for key, per_target in metrics.items():
            if "python" in per_target and "rust" in per_target:
                den = per_target["rust"]["median"]
                if den:
                    out.setdefault(case, {})[key] = per_target["python"]["median"] / den
    return out


def table(data: dict[str, Any]) -> str:
    """The markdown table of medians (min–max) and python/rust ratios."""
    targets: list[str] = data["config"]["targets"]
    cases = [CASE_BY_NAME[c] for c in data["config"]["workloads"]]
    both = "rust" in targets and "python" in targets
    head = ["workload", "metric", *targets] + (["python/rust"] if both else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in cases:
        for key, label, _higher in case.metrics:
            row = [case.name, label]
            vals = data["summary"].get(case.name, {}).get(key, {})
            for t in targets:
                v = vals.get(t)
                row.append(
                    "—"
                    if v is None
                    else f"{fmt(v['median'], key)} ({fmt(v['min'], key)}–{fmt(v['max'], key)})"
                )
            if both:
                r = data["ratios"].get(case.name, {}).get(key)
                row.append("—" if r is None else f"{r:.2f}×")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from fastwt import __version__

    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "fastwt": __version__,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


# What the plot shows per workload: its headline metric, except where that one is the
# same for both backends by design (paced loads and the fan-out deliver everything).
PLOT_METRIC = {
    "datagrams_paced": "p99_ms",
    "reqresp_paced": "p99_ms",
    "fanout": "server_cpu_fraction",
}


def plot(data: dict[str, Any], path: Path) -> None:
    """A bar per workload: how many times better the Rust backend did than the pure one
    (log scale), with both medians written next to it."""
    import importlib

    try:
        # Imported by name: matplotlib is an optional dependency (fastwt[bench]).
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
        ticker: Any = importlib.import_module("matplotlib.ticker")
    except ImportError:
        raise SystemExit(
            "fastwt bench --plot needs matplotlib: pip install 'fastwt[bench]'"
        ) from None
    rows = []
    for name in data["config"]["workloads"]:
        case = CASE_BY_NAME[name]
        key = PLOT_METRIC.get(name, case.metrics[0][0])
        label, higher = next((lb, h) for k, lb, h in case.metrics if k == key)
        vals = data["summary"].get(name, {}).get(key, {})
        if "rust" not in vals or "python" not in vals:
            continue
        rust, python = vals["rust"]["median"], vals["python"]["median"]
        if rust <= 0 or python <= 0:
            continue
        factor = rust / python if higher else python / rust
        rows.append((f"{name}\n{label}", factor, rust, python, key))
    fig, ax = plt.subplots(figsize=(9, 0.55 * max(len(rows), 1) + 1.6))
    if rows:
        ax.barh([r[0] for r in rows], [r[1] for r in rows], color="tab:blue")
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}×"))
        ax.set_xlim(right=max(r[1] for r in rows) * 4)
        for i, (_label, factor, rust, python, key) in enumerate(rows):
            note = f"  {factor:.2f}×  (rust {fmt(rust, key)}, python {fmt(python, key)})"
            ax.text(factor, i, note, va="center", fontsize=8)
        ax.invert_yaxis()
    ax.set_xlabel("how many times better the Rust backend did (medians of the same run)")
    m = data["machine"]
    runs = data["config"]["runs"]
    ax.set_title(
        f"fastwt bench: {m['cpu_model']}, {m['cores']} cores; {runs} run(s) per backend",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --------------------------------------------------------------------------- main


def _names(text: str, known: list[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in known:
            raise SystemExit(f"fastwt bench: unknown {what} {n!r}; known: {', '.join(known)}")
    return names


def run(args: argparse.Namespace) -> int:
    """The command: ``--serve`` runs the server, anything else a benchmark."""
    if args.serve:
        import asyncio

        from .server import serve

        try:
            asyncio.run(serve(args, args.backend))
        except KeyboardInterrupt:
            pass
        return 0

    from fastwt import _backend

    cases = [CASE_BY_NAME[n] for n in _names(args.workloads, list(CASE_BY_NAME), "workload")]
    if args.target:
        targets = ["remote"]
    else:
        targets = _names(args.targets, list(TARGETS), "target")
        if "rust" in targets and not _backend.rust_available():
            print(
                "fastwt bench: the Rust extension is not importable here "
                f"({_backend.rust_import_error()}): measuring the pure-Python backend only",
                file=sys.stderr,
            )
            targets = [t for t in targets if t != "rust"]
    client_backend = args.client_backend or ("rust" if _backend.rust_available() else "python")
    runs = args.runs if args.runs is not None else (2 if args.quick else 3)
    plan = [(r, case, t) for r in range(1, runs + 1) for case in cases for t in targets]
    if args.log is not None:
        log_path: Path = args.log
    else:
        fd, name = tempfile.mkstemp(prefix="fastwt-bench-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    raw: list[dict[str, Any]] = []
    progress = _Progress(len(plan))
    progress.show("starting")
    with open(log_path, "w") as log:
        for run_no, case, target in plan:
            params = case.params(args.quick, args.duration)
            t0 = time.monotonic()
            try:
                result, error = _measure(target, case, params, args, client_backend, log)
            except Exception as e:  # one broken measurement must not stop the others
                result, error = None, f"{type(e).__name__}: {e}"
            raw.append(
                {
                    "run": run_no,
                    "case": case.name,
                    "target": target,
                    "params": params,
                    "ok": result is not None,
                    "metrics": result or {},
                    "error": error,
                    "seconds": time.monotonic() - t0,
                }
            )
            progress.step(f"run {run_no}/{runs} {case.name} {target}")
    progress.close()
    summary = summarize(raw, cases)
    data: dict[str, Any] = {
        "machine": machine(),
        "config": {
            "quick": bool(args.quick),
            "runs": runs,
            "targets": targets,
            "workloads": [c.name for c in cases],
            "client_backend": client_backend,
            "remote": args.target or None,
            "params": {c.name: c.params(args.quick, args.duration) for c in cases},
        },
        "summary": summary,
        "ratios": ratios(summary),
        "raw": raw,
    }
    m = data["machine"]
    print(
        f"fastwt bench — {m['cpu_model']}, {m['cores']} cores, {m['system']}, Python "
        f"{m['python']}, fastwt {m['fastwt']}, {m['date_utc']}; {runs} run(s) per target, "
        f"targets alternated; client: fastwt on the {client_backend} backend"
    )
    print()
    print(table(data))
    failed = [r for r in raw if not r["ok"]]
    for r in failed:
        print(f"failed: run {r['run']} {r['case']} {r['target']}: {r['error']}", file=sys.stderr)
    if failed or args.log is not None:
        print(f"servers' and clients' output: {log_path}", file=sys.stderr)
    else:
        log_path.unlink(missing_ok=True)
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
        print(f"\nwrote {args.json}")
    if args.plot:
        plot(data, args.plot)
        print(f"wrote {args.plot}")
    return 1 if failed and len(failed) == len(raw) else 0

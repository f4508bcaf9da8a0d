#!/usr/bin/env python3
"""Profile a target's server under one workload of the suite, for the evidence behind a missed
goal: ``perf record`` on the server process (all its threads: the Python loop thread and the
Rust I/O threads) while the suite's client drives it, then a text summary.

    python3 benches/profile.py --target fastwt --workload datagrams [--quick]

Writes ``benches/results/profiles/<workload>-<target>.txt`` with the client's result, the
CPU split per thread, per library (dso) and the top symbols (self time), and keeps the
``perf.data`` next to it (git-ignored) for ``perf report -i``. With ``--py-spy`` it also
records the Python stacks (py-spy, collapsed format) in a second pass.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import run

PYSPY = shutil.which("py-spy") or str(run.VENVS / "tools" / "bin" / "py-spy")


def perf_hook(data_file: Path, freq: int) -> run.ServerHook:
    def hook(server: subprocess.Popen[str]) -> Callable[[], None]:
        p = subprocess.Popen(
            ["perf", "record", "-F", str(freq), "-g", "-p", str(server.pid), "-o", str(data_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)

        def done() -> None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

        return done

    return hook


def pyspy_hook(out_file: Path) -> run.ServerHook:
    def hook(server: subprocess.Popen[str]) -> Callable[[], None]:
        p = subprocess.Popen(
            [
                PYSPY,
                "record",
                "--pid",
                str(server.pid),
                "--native",
                "--rate",
                "200",
                "--format",
                "raw",
                "-o",
                str(out_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)

        def done() -> None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

        return done

    return hook


def perf_report(data_file: Path, sort: str, limit: int) -> str:
    p = subprocess.run(
        [
            "perf",
            "report",
            "-i",
            str(data_file),
            "--no-children",
            "-g",
            "none",
            "--sort",
            sort,
            "--stdio",
            "--percent-limit",
            "0.5",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = [ln for ln in p.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    rows = [ln for ln in rows if "%" in ln.split()[0]] if rows else []
    return "\n".join(rows[:limit]) or p.stderr.strip()[-500:]


def pyspy_summary(raw_file: Path, limit: int = 25) -> str:
    """Self and inclusive sample counts per Python/native frame from collapsed stacks."""
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    total = 0
    for line in raw_file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        self_c[frames[-1]] += n
        for f in set(frames):
            incl_c[f] += n
    out = [f"py-spy samples: {total}", "", "self:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in self_c.most_common(limit)]
    out += ["", "inclusive:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl_c.most_common(limit)]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", default="fastwt")
    ap.add_argument("--workload", required=True, choices=list(run.CASE_BY_NAME))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--freq", type=int, default=999)
    ap.add_argument("--py-spy", action="store_true", help="also record Python stacks")
    ap.add_argument("--out", default=str(run.HERE / "results" / "profiles"))
    ap.add_argument("--fastwt-python", default=sys.executable)
    args = ap.parse_args()

    if shutil.which("perf") is None:
        raise SystemExit("perf not found (Debian package linux-perf)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fastwt-prof-"))
    target = run.make_targets([args.target], args.fastwt_python, work)[args.target]
    if not target.available:
        raise SystemExit(f"{args.target} not available: {target.reason}")
    case = run.CASE_BY_NAME[args.workload]
    stem = f"{args.workload}-{args.target}"
    data_file = out / f"{stem}.perf.data"
    with open(work / "log.txt", "w") as logf:
        result, error = run.measure(
            target, case, args.quick, logf, hook=perf_hook(data_file, args.freq)
        )
        pyspy_text = ""
        if args.py_spy and Path(PYSPY).exists():
            raw = work / "pyspy.txt"
            run.measure(target, case, args.quick, logf, hook=pyspy_hook(raw))
            pyspy_text = pyspy_summary(raw) if raw.exists() else "py-spy wrote nothing"
    report = [
        f"# profile: {case.title} — target {args.target} ({target.title} {target.version})",
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, perf -F {args.freq}, server",
        "",
        "client result: " + (json.dumps(result) if result else f"FAILED: {error}"),
        "",
        "## server CPU by thread (comm)",
        perf_report(data_file, "comm", 20),
        "",
        "## by library (dso)",
        perf_report(data_file, "dso", 20),
        "",
        "## top symbols (self time)",
        perf_report(data_file, "dso,sym", 40),
    ]
    if pyspy_text:
        report += ["", "## Python stacks (py-spy --native, second pass)", pyspy_text]
    text_file = out / f"{stem}.txt"
    text_file.write_text("\n".join(report) + "\n")
    print(f"wrote {text_file} (perf data: {data_file})")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

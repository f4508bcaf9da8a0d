"""The benchmark suite's report: medians and ranges per workload and target, the
ratios between targets, issue 4's and 14's goals, the machine it ran on, and
``results.md`` and the plots made from them (``benches/run.py`` calls these).
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from workloads import CASES, CEILING, REFERENCE, ROOT, bench_cases

HERE = Path(__file__).resolve().parent

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
    ("fanout_10k_rs", "delivered_fraction", "", ">=", 0.995, "fan-out 10k, Rust client >= 99.5%"),
]


# ---------------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------------


def summarize(raw: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(bench_cases.summarize(raw, CASES))


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
    return str(bench_cases.fmt(v, key, percent_digits=2))


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
    """PNG plots of the ratios (benches/plot.py), with the first Python that has
    matplotlib."""
    plotter = HERE / "plot.py"
    for py in [sys.executable, str(HERE / ".venvs" / "tools/bin/python")]:
        if not Path(py).exists():
            continue
        found = subprocess.run([py, "-c", "import matplotlib"], capture_output=True, check=False)
        if found.returncode == 0:
            p = subprocess.run(
                [py, str(plotter), str(json_path), str(out_dir)],
                capture_output=True,
                text=True,
                check=False,
            )
            return p.stdout.strip() if p.returncode == 0 else "plot failed: " + p.stderr[-300:]
    return "matplotlib not available: no plots (run benches/setup_targets.sh)"

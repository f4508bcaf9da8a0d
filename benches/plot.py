"""Plots for the benchmark results: ``python plot.py results.json OUT_DIR`` (needs matplotlib).

Writes ``ratios_vs_reference.png`` (fastwt / pywebtransport 0.20.x, log scale, with the
issue's goals), ``ratios_vs_rust.png`` (fastwt / raw Rust, with goals) and ``metrics.png``
(medians with min-max bars per target for the primary metric of every workload).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# (case, metric, label, higher_is_better)
RATIO_ROWS = [
    ("bulk", "mb_per_s", "bulk MB/s", True),
    ("datagrams", "received_per_s", "datagrams/s", True),
    ("reqresp_c1", "req_per_s", "req/s c=1", True),
    ("reqresp_c32", "req_per_s", "req/s c=32", True),
    ("sessions", "sessions_per_s", "sessions/s", True),
    ("bulk", "server_cpu_s_per_gib", "CPU per GiB", False),
    ("datagrams", "server_cpu_us_per_datagram", "CPU per datagram", False),
    ("reqresp_c32", "server_cpu_us_per_request", "CPU per request", False),
    ("memory", "rss_per_session_bytes", "RSS per session", False),
    ("fanout", "delivered_fraction", "fan-out delivered", True),
]


def goal_for(data: dict[str, Any], case: str, metric: str, against: str) -> float | None:
    for g in data.get("goals", []):
        if g["case"] == case and g["metric"] == metric and g["against"] == against:
            return float(g["value"])
    return None


def ratio_plot(data: dict[str, Any], other: str, title: str, path: Path) -> bool:
    rows = []
    for case, metric, label, hib in RATIO_ROWS:
        r = data["ratios"].get(case, {}).get(metric, {}).get(f"fastwt/{other}")
        if r is None or r <= 0:
            continue
        rows.append((label, r, hib, goal_for(data, case, metric, other)))
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    ys = range(len(rows))
    colors = []
    for _label, r, hib, goal in rows:
        if goal is None:
            good = r >= 1 if hib else r <= 1
        else:
            good = r >= goal if hib else r <= goal
        colors.append("tab:green" if good else "tab:red")
    ax.barh(list(ys), [r for _l, r, _h, _g in rows], color=colors)
    for y, (_label, r, _hib, goal) in zip(ys, rows, strict=True):
        ax.text(r, y, f" {r:.2f}×", va="center", fontsize=9)
        if goal is not None:
            ax.plot([goal, goal], [y - 0.4, y + 0.4], color="black", linewidth=2)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([f"{lbl} ({'↑' if hib else '↓'})" for lbl, _r, hib, _g in rows])
    ax.axvline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_title(title + "\n(black tick: goal; ↑ higher is better, ↓ lower is better)")
    ax.set_xlabel("ratio (median fastwt / median other), log scale")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def metrics_plot(data: dict[str, Any], path: Path) -> bool:
    s = data["summary"]
    panels = [(c, m, lbl) for c, m, lbl, _h in RATIO_ROWS if s.get(c, {}).get(m)]
    if not panels:
        return False
    cols = 3
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax, (case, metric, label) in zip(axes.flat, panels, strict=False):
        vals = s[case][metric]
        names = [t for t in data["config"]["targets"] if t in vals]
        med = [vals[t]["median"] for t in names]
        lo = [vals[t]["median"] - vals[t]["min"] for t in names]
        hi = [vals[t]["max"] - vals[t]["median"] for t in names]
        ax.bar(
            names,
            med,
            yerr=[lo, hi],
            capsize=3,
            color=["tab:blue" if t.startswith("fastwt") else "tab:gray" for t in names],
        )
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        if max(med, default=0) > 0 and min(med, default=0) > 0 and max(med) / min(med) > 50:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    m = data["machine"]
    fig.suptitle(f"medians, min–max bars — {m['cpu_model']}, {m['cores']} cores", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    data = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    made = []
    if ratio_plot(
        data,
        "pwt020",
        "fastwt / pywebtransport 0.20.x (reference)",
        out / "ratios_vs_reference.png",
    ):
        made.append("ratios_vs_reference.png")
    if ratio_plot(
        data, "rust", "fastwt / raw Rust (wtransport ceiling)", out / "ratios_vs_rust.png"
    ):
        made.append("ratios_vs_rust.png")
    if metrics_plot(data, out / "metrics.png"):
        made.append("metrics.png")
    print("plots: " + (", ".join(made) if made else "none (no ratios)"))


if __name__ == "__main__":
    main()

"""``fastwt bench`` end to end on a tiny budget: real servers on both backends, each in
its own process, driven by the load client; the table and the JSON have the promised
shape and every headline number is positive. ``--target`` drives a ``fastwt bench
--serve`` server started separately."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastwt import _backend
from fastwt.bench.runner import CASE_BY_NAME

pytestmark = pytest.mark.skipif(
    not _backend.rust_available(), reason="compares with the Rust backend"
)

WORKLOADS = ["bulk", "datagrams_burst", "reqresp_c1", "sessions"]


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastwt", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.timeout(180)
def test_quick_bench_prints_medians_ranges_ratios_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = bench(
        "--quick", "--runs", "1", "--duration", "0.3", "--workloads", ",".join(WORKLOADS),
        "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "| workload | metric | rust | python | python/rust |" in lines
    for name in WORKLOADS:
        label = CASE_BY_NAME[name].metrics[0][1]
        row = next(ln for ln in lines if ln.startswith(f"| {name} | {label} |"))
        # "median (min-max)" for both targets (an en dash), then the ratio (a times sign)
        assert re.search(
            r"\| [\d,.]+%? \([\d,.]+%?\u2013[\d,.]+%?\) \| [\d,.]+%? \(.*\) \| [\d.]+\u00d7 \|$",
            row,
        ), row
    total = 2 * len(WORKLOADS)
    assert f"[{'#' * 24}] {total}/{total}" in proc.stderr  # the progress bar, complete

    data = json.loads(out.read_text())
    assert data["config"]["quick"] is True
    assert data["config"]["targets"] == ["rust", "python"]
    assert data["config"]["workloads"] == WORKLOADS
    assert data["machine"]["cores"] >= 1
    assert all(r["ok"] for r in data["raw"]), [r["error"] for r in data["raw"]]
    # alternating: each workload measures rust, then python
    assert [(r["case"], r["target"]) for r in data["raw"]] == [
        (w, t) for w in WORKLOADS for t in ("rust", "python")
    ]
    for name in WORKLOADS:
        key = CASE_BY_NAME[name].metrics[0][0]
        for target in ("rust", "python"):
            entry = data["summary"][name][key][target]
            assert entry["median"] > 0 and entry["min"] <= entry["median"] <= entry["max"]
        assert data["ratios"][name][key] > 0


@pytest.mark.timeout(120)
def test_target_drives_a_server_started_elsewhere() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "fastwt", "bench", "--serve", "--backend", "python",
         "--seconds", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = server.stdout.readline().split()[1]
        cert_hash = server.stdout.readline().split()[1]
        proc = bench(
            "--target", f"127.0.0.1:{port}", "--cert-hash", cert_hash,
            "--quick", "--runs", "1", "--duration", "0.3", "--workloads", "reqresp_c1",
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = next(ln for ln in proc.stdout.splitlines() if ln.startswith("| reqresp_c1 | req/s |"))
    assert float(row.split("|")[3].split()[0].replace(",", "")) > 0


NO_MATPLOTLIB = """
import importlib.abc, sys

class NoMatplotlib(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("no matplotlib here (test)")
        return None

sys.meta_path.insert(0, NoMatplotlib())
from fastwt.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_plot_without_matplotlib_says_what_to_install(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", NO_MATPLOTLIB, "bench", "--quick", "--runs", "1",
         "--duration", "0.2", "--workloads", "reqresp_c1", "--targets", "python",
         "--plot", str(tmp_path / "p.png")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "pip install 'fastwt[bench]'" in proc.stderr + proc.stdout
    assert not (tmp_path / "p.png").exists()


def test_plot_draws_the_ratios(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from fastwt.bench import runner

    def stats(v: float) -> dict[str, float]:
        return {"median": v, "min": v, "max": v, "n": 1}

    data = {
        "machine": {"cpu_model": "test CPU", "cores": 2},
        "config": {"workloads": ["bulk", "reqresp_paced"], "runs": 1},
        "summary": {
            "bulk": {"mb_per_s": {"rust": stats(300.0), "python": stats(30.0)}},
            "reqresp_paced": {"p99_ms": {"rust": stats(1.0), "python": stats(1.5)}},
        },
    }
    runner.plot(data, tmp_path / "ratios.png")
    assert (tmp_path / "ratios.png").read_bytes().startswith(b"\x89PNG")

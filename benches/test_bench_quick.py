"""The benchmark suite's short mode, run once by the test suite so that it never rots.

Runs ``benches/run.py --quick --targets fastwt,rust`` into a temporary directory and checks
that every workload produced positive numbers for both targets. Skips when fastwt's core
is not importable or cargo is missing (the raw-Rust ceiling is built on the fly).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

# (workload, metric that must be > 0)
EXPECTED = [
    ("bulk", "mb_per_s"),
    ("datagrams", "received_per_s"),
    ("reqresp_c1", "req_per_s"),
    ("reqresp_c32", "req_per_s"),
    ("sessions", "sessions_per_s"),
    ("fanout", "delivered_fraction"),
    ("memory", "rss_per_session_bytes"),
]


def _fastwt_importable() -> bool:
    try:
        return importlib.util.find_spec("fastwt._core") is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not _fastwt_importable(), reason="fastwt._core is not built")
@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is needed for the Rust ceiling")
def test_bench_quick(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "run.py"),
            "--quick",
            "--targets",
            "fastwt,rust",
            "--out",
            str(tmp_path),
            "--no-plots",
        ],
        capture_output=True,
        text=True,
        timeout=870,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.md").exists()
    assert data["config"]["quick"] is True
    for target in ("fastwt", "rust"):
        assert data["targets"][target]["available"], data["targets"][target]
    problems = []
    for case, metric in EXPECTED:
        for target in ("fastwt", "rust"):
            entry = data["summary"].get(case, {}).get(metric, {}).get(target)
            if entry is None or not entry["median"] > 0:
                problems.append(f"{case}/{metric}/{target}: {entry}")
    failed = [r for r in data["raw"] if not r["ok"]]
    assert not problems, (problems, failed, proc.stdout[-3000:])
    # the ratio of the suite's headline numbers exists
    assert data["ratios"]["bulk"]["mb_per_s"]["fastwt/rust"] > 0

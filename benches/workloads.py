"""The benchmark suite's workloads ("cases"): what each one measures with which
parameters (full and ``--quick``), which targets take part in which, and the two targets
the others are compared with. ``benches/run.py`` runs them, ``report.py`` summarizes
them; the case model itself (``Case``, metrics, formatting) is shared with ``fastwt
bench`` in python/fastwt/bench/cases.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

REFERENCE = "pwt020"
CEILING = "rust"

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


bench_cases = _load_cases()
Case = bench_cases.Case
_STUCK = (("stuck", "requests stuck >3 s", False),)


def _paced_datagrams(rate: int, quick_duration: float) -> Any:
    return Case(
        f"paced_dg_{rate // 1000}k",
        "datagrams_paced",
        f"64-byte datagrams echoed at {rate:,}/s offered (open loop)",
        {"duration": 5, "rate": rate},
        {"duration": quick_duration, "rate": rate},
        bench_cases.PACED_DATAGRAM_METRICS,
        slack=60.0,
    )


def _reqresp(concurrency: int) -> Any:
    return Case(
        f"reqresp_c{concurrency}",
        "reqresp",
        f"64-byte request/response, new bidi stream each, concurrency {concurrency}",
        {"duration": 5, "concurrency": concurrency},
        {"duration": 1.5, "concurrency": concurrency},
        bench_cases.REQUEST_METRICS + _STUCK,
        slack=60.0,
    )


def _fanout(name: str, sessions: int, quick_sessions: int, slack: float) -> Any:
    return Case(
        name,
        "fanout",
        f"server pushes 64-byte datagrams to {sessions:,} sessions at 20 Hz",
        {"sessions": sessions, "hz": 20, "duration": 10},
        {"sessions": quick_sessions, "hz": 20, "duration": 2},
        bench_cases.FANOUT_METRICS,
        slack=slack,
    )


CASES: list[Any] = [
    Case(
        "bulk",
        "bulk",
        "64 MiB through one bidirectional stream, echoed",
        {"size": 64 * 2**20},
        {"size": 8 * 2**20},
        bench_cases.BULK_METRICS,
        slack=150.0,
    ),
    Case(
        "bulk8",
        "bulk",
        "8 MiB through one bidirectional stream, echoed (not in the default set: the "
        "reference stalls on 64 MiB)",
        {"size": 8 * 2**20},
        {"size": 8 * 2**20},
        bench_cases.BULK_METRICS,
        slack=150.0,
    ),
    Case(
        "datagrams",
        "datagrams",
        "64-byte datagrams echoed, closed loop (128 in flight)",
        {"duration": 5, "window": 128},
        {"duration": 1.5, "window": 128},
        bench_cases.DATAGRAM_METRICS,
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
        bench_cases.SESSION_METRICS,
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
        bench_cases.REQUEST_METRICS,
        slack=60.0,
    ),
    Case(
        "paced_1000",
        "reqresp_paced",
        "64-byte requests, 1,000 sessions, 5,000/s in all (open loop)",
        {"duration": 6, "rate": 5000, "paced-sessions": 1000},
        {"duration": 1.5, "rate": 1000, "paced-sessions": 100},
        bench_cases.REQUEST_METRICS,
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
        bench_cases.REQUEST_METRICS + _STUCK,
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
        bench_cases.REQUEST_METRICS,
        slack=60.0,
        relay_ms=5.0,
    ),
    # fanout_10k driven by the Rust fan-out client for every server target (RUST_CLIENT)
    Case(
        "fanout_10k_rs",
        "fanout",
        "fanout_10k with the Rust fan-out client (wt-ceiling fanout-client) for every target",
        {"sessions": 10_000, "hz": 20, "duration": 10},
        {"sessions": 300, "hz": 20, "duration": 2},
        (
            *bench_cases.FANOUT_METRICS,
            ("client_cpu_fraction", "client CPU (cores)", False),
            ("ticks_empty", "ticks nobody got", False),
            ("sessions", "sessions open", True),
        ),
        slack=240.0,
    ),
]
CASE_BY_NAME = {c.name: c for c in CASES}
# not in the default set: bulk8 (the reference stalls on 64 MiB) and fanout_10k_rs (~2 min a run)
DEFAULT_CASES = [c.name for c in CASES if c.name not in ("bulk8", "fanout_10k_rs")]
# cases whose client is a raw-Rust one whatever the target (wt-ceiling's subcommand)
RUST_CLIENT: dict[str, str] = {"fanout_10k_rs": "fanout-client"}

# which cases each target takes part in
_SATURATED = ["bulk", "bulk8", "datagrams", "reqresp_c1", "reqresp_c32"]
_CLASSIC = [*_SATURATED, "sessions", "fanout", "memory"]
TARGET_CASES: dict[str, list[str]] = {
    "fastwt-app": ["sessions"],
    # the fan-out cases with the ticker's sends as one room broadcast (Rust fan-out)
    "fastwt-room": ["fanout", "fanout_10k", "fanout_10k_rs"],
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

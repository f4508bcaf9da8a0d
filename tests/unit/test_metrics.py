"""fastwt.metrics on fakes: stats arithmetic, the observer hooks, counters that
never go back, the Prometheus collector, the missing-dependency error, session logs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

import pytest
from fakes import FakeServer, FakeSession
from prometheus_client import CollectorRegistry, generate_latest

from fastwt import metrics
from fastwt.metrics import ServerStats, SessionStats, enable_prometheus, session_logger


def test_session_stats_from_mapping_and_sum() -> None:
    one = SessionStats.from_mapping(
        {"datagrams_sent": 2, "bytes_sent": 100, "rtt": 0.02, "future_key": 9}
    )
    assert one.datagrams_sent == 2 and one.bytes_sent == 100 and one.rtt == 0.02
    assert one.bytes_received == 0  # missing keys count as 0
    assert SessionStats.from_mapping({"rtt": 0}).rtt is None  # not measured yet
    two = one + SessionStats(datagrams_sent=3, lost_packets=1, rtt=0.5)
    assert (two.datagrams_sent, two.lost_packets, two.bytes_sent, two.rtt) == (5, 1, 100, None)
    assert set(one.as_dict()) == {*metrics.COUNTER_KEYS, "rtt"}


@pytest.mark.anyio
async def test_attach_counts_accepts_refusals_and_keeps_counters_monotonic() -> None:
    sessions = [FakeSession("/x?a=1", session_id=i) for i in range(5)]
    server = FakeServer()
    server.push(*sessions)
    stats = ServerStats.attach(server)  # type: ignore[arg-type]
    assert ServerStats.attach(server) is stats  # type: ignore[arg-type]  # idempotent

    a, b, c, d, e = [await server.next_request() for _ in range(5)]
    await a.accept(headers={"x": "1"})
    await b.accept()
    await c.reject(status_code=429, headers={"retry-after": "1"})
    await d.reject(status_code=429)
    await e.close()  # unanswered: the core refuses it with 404
    # The stats observe the server: the sessions' own methods are not replaced.
    assert server.observers == [stats]
    assert a.calls == [("accept", {"headers": {"x": "1"}, "wt_protocol": None})]
    assert c.calls == [("reject", {"headers": {"retry-after": "1"}, "status_code": 429})]
    assert e.calls == [("close", {"error_code": 0, "reason": None})]

    a.counters.update(datagrams_sent=10, bytes_sent=1000, rtt=0.010)
    b.counters.update(datagrams_sent=5, bytes_received=70, rtt=0.030)
    server.session_count = 2
    snap = stats.snapshot()
    assert snap.sessions_accepted == 2
    assert snap.sessions_refused == {429: 2, 404: 1} and snap.sessions_refused_total == 3
    assert snap.sessions_open == 2
    assert snap.totals.datagrams_sent == 15 and snap.totals.bytes_sent == 1000
    assert snap.rtt_mean == pytest.approx(0.020) and snap.rtt_max == pytest.approx(0.030)

    # a closes (after sending a bit more): its final counters stay in the totals.
    a.counters.update(datagrams_sent=12)
    await a.close(error_code=0)
    server.session_count = 1
    snap = stats.snapshot()
    assert snap.totals.datagrams_sent == 17
    assert snap.rtt_mean == pytest.approx(0.030)  # only b is open
    assert snap.sessions_refused == {429: 2, 404: 1}  # closing an accepted one is no refusal
    assert stats.snapshot().totals.datagrams_sent == 17  # folded once, not twice
    assert snap.as_dict()["sessions_refused"] == {"404": 1, "429": 2}


def test_tracking_by_hand_and_sweeping_closed_sessions() -> None:
    stats = ServerStats()
    sessions = [FakeSession(session_id=i) for i in range(200)]
    for s in sessions:
        s.state = "accepted"
        s.counters["bytes_received"] = 1
        stats.track(s)
        s.state = "closed"  # each closes right away: the tracker must not grow
    assert len(stats._tracked) < 64
    snap = stats.snapshot()
    assert snap.sessions_accepted == 200 and snap.sessions_open == 0
    assert snap.totals.bytes_received == 200


def test_a_session_whose_stats_fail_keeps_its_last_reading() -> None:
    stats = ServerStats()
    s = FakeSession()
    s.state = "accepted"
    s.counters["bytes_sent"] = 42
    stats.track(s)
    assert stats.snapshot().totals.bytes_sent == 42

    def broken() -> Mapping[str, Any]:
        raise RuntimeError("handle gone")

    s.stats = broken  # type: ignore[method-assign]
    assert stats.snapshot().totals.bytes_sent == 42
    assert stats.snapshot().totals.bytes_sent == 42


@pytest.mark.anyio
async def test_prometheus_collector_exports_the_snapshot() -> None:
    server = FakeServer()
    server.push(FakeSession(session_id=1), FakeSession(session_id=2))
    registry = CollectorRegistry()
    collector = enable_prometheus(server, registry)  # type: ignore[arg-type]
    one, two = await server.next_request(), await server.next_request()
    await one.accept()
    await two.reject(status_code=401)
    one.counters.update(
        datagrams_sent=3, datagrams_received=4, datagrams_dropped=1, bytes_sent=500, rtt=0.25
    )
    server.session_count = 1

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("fastwt_sessions_open") == 1
    assert value("fastwt_sessions_accepted_total") == 1
    assert value("fastwt_sessions_refused_total", status="401") == 1
    assert value("fastwt_datagrams_sent_total") == 3
    assert value("fastwt_datagrams_received_total") == 4
    assert value("fastwt_datagrams_dropped_total") == 1
    assert value("fastwt_bytes_sent_total") == 500
    assert value("fastwt_bytes_received_total") == 0
    assert value("fastwt_lost_packets_total") == 0
    assert value("fastwt_rtt_mean_seconds") == 0.25
    assert value("fastwt_rtt_max_seconds") == 0.25
    text = generate_latest(registry).decode()
    assert "# TYPE fastwt_sessions_refused_total counter" in text
    assert 'fastwt_sessions_refused_total{status="401"} 1.0' in text

    # The same names again in one registry: refused; another namespace is fine.
    with pytest.raises(ValueError):
        enable_prometheus(server, registry)  # type: ignore[arg-type]
    other = enable_prometheus(server, registry, namespace="edge")  # type: ignore[arg-type]
    assert other.stats is collector.stats
    assert value("edge_sessions_accepted_total") == 1
    collector.unregister()
    assert value("fastwt_sessions_accepted_total") is None


def test_enable_prometheus_without_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'fastwt\[prometheus\]'"):
        enable_prometheus(FakeServer())  # type: ignore[arg-type]


def test_session_logger_carries_id_path_and_peer(caplog: pytest.LogCaptureFixture) -> None:
    session = FakeSession("/chat/blue?nick=ada", session_id=7, remote_address=("127.0.0.1", 5555))
    log = session_logger(session)
    assert log.logger is logging.getLogger("fastwt")
    with caplog.at_level(logging.INFO, logger="fastwt"):
        log.info("joined %s", "blue", extra={"room": "blue", "peer": "spoofed"})
    [record] = caplog.records
    assert record.getMessage() == "[session 7 /chat/blue?nick=ada from 127.0.0.1:5555] joined blue"
    assert record.session_id == 7  # type: ignore[attr-defined]
    assert record.path == "/chat/blue?nick=ada"  # type: ignore[attr-defined]
    assert record.peer == "127.0.0.1:5555"  # type: ignore[attr-defined]
    assert record.room == "blue"  # type: ignore[attr-defined]
    formatted = logging.Formatter("%(session_id)s %(peer)s %(message)s").format(record)
    assert formatted.startswith("7 127.0.0.1:5555 [session 7")

    session.remote_address = ("::1", 443)
    assert session_logger(session, "app.sessions").extra == {
        "session_id": 7,
        "path": "/chat/blue?nick=ada",
        "peer": "[::1]:443",
    }
    session.remote_address = None
    assert session_logger(session).prefix.endswith("from ?")

"""fastwt.metrics.enable_opentelemetry against a real server, read with the SDK's
InMemoryMetricReader (what an exporter would be handed)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from fastwt import WebTransportSession
from fastwt.framework import MiddlewareRejected, ServerApp
from fastwt.metrics import enable_opentelemetry
from fastwt.testing import TestClient

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def collect(reader: InMemoryMetricReader) -> dict[str, dict[tuple[Any, ...], Any]]:
    """``{metric name: {sorted attributes: value}}`` of one collection."""
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, dict[tuple[Any, ...], Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "fastwt.metrics"
            for metric in scope.metrics:
                points = out.setdefault(metric.name, {})
                for point in metric.data.data_points:
                    points[tuple(sorted(point.attributes.items()))] = point.value
    return out


async def test_opentelemetry_instruments_follow_real_sessions() -> None:
    app = ServerApp()

    @app.middleware
    async def private(*, session: Any) -> None:
        if session.path.startswith("/private"):
            raise MiddlewareRejected(status_code=403)

    @app.route(path="/echo")
    async def echo(session: WebTransportSession) -> None:
        async for data in session.datagrams():
            await session.send_datagram(data=data)

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    enable_opentelemetry(app, provider)
    before = collect(reader)
    assert before["fastwt.sessions.open"] == {(): 0}
    assert before["fastwt.sessions.accepted"] == {(): 0}
    assert "fastwt.rtt.mean" not in before  # no session, no RTT point

    async with TestClient(app) as client:
        sessions = [await client.connect(f"/echo?n={i}") for i in range(3)]
        for path in ("/private", "/private/x", "/nowhere"):
            await client.rejection(path)
        with anyio.fail_after(10):
            for session in sessions:
                await session.send_datagram(data=b"ping")
                assert await session.read_datagram() == b"ping"
        during = collect(reader)
        assert during["fastwt.sessions.open"] == {(): 3}
        assert during["fastwt.sessions.accepted"] == {(): 3}
        assert during["fastwt.sessions.refused"] == {
            (("http.response.status_code", 403),): 2,
            (("http.response.status_code", 404),): 1,
        }
        assert during["fastwt.datagrams.received"][()] >= 3
        assert during["fastwt.datagrams.sent"][()] >= 3
        assert during["fastwt.bytes.sent"][()] > 0
        assert 0 < during["fastwt.rtt.mean"][()] <= during["fastwt.rtt.max"][()] < 1
        for session in sessions:
            await session.close()
        with anyio.fail_after(10):
            while app.server.session_count:
                await anyio.sleep(0.01)
        after = collect(reader)
    assert after["fastwt.sessions.open"] == {(): 0}
    # Counters keep what closed sessions did.
    assert after["fastwt.bytes.sent"][()] >= during["fastwt.bytes.sent"][()]
    assert after["fastwt.sessions.accepted"] == {(): 3}
    units = {
        metric.name: metric.unit
        for resource in (reader.get_metrics_data() or ()).resource_metrics  # type: ignore[union-attr]
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert units["fastwt.bytes.sent"] == "By" and units["fastwt.sessions.open"] == "{session}"
    provider.shutdown()

"""fastwt.metrics against a real server: a ServerApp on 127.0.0.1 (port 0) with
Prometheus enabled, real clients, and the registry scraped with ``generate_latest``."""

from __future__ import annotations

import logging

import anyio
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fastwt import (
    ClientConfig,
    ServerConfig,
    SessionRejectedError,
    WebTransportClient,
    WebTransportServer,
    WebTransportSession,
)
from fastwt.framework import MiddlewareRejected, ServerApp
from fastwt.framework.types import SessionProtocol
from fastwt.metrics import ServerStats, enable_prometheus, session_logger
from fastwt.testing import TestClient

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60), pytest.mark.usefixtures("backend")]


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition text, as a real scraper would parse it."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_prometheus_metrics_move_with_real_sessions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0))

    @app.middleware
    async def members_only(*, session: SessionProtocol) -> None:
        if session.path.startswith("/private"):
            raise MiddlewareRejected(status_code=403)

    @app.route(path="/echo")
    async def echo(session: WebTransportSession) -> None:
        session_logger(session).info("echoing")
        async for data in session.datagrams():
            await session.send_datagram(data=data)

    registry = CollectorRegistry()
    enable_prometheus(app, registry)
    before = scrape(registry)
    assert before[("fastwt_sessions_open", ())] == 0
    assert before[("fastwt_sessions_accepted_total", ())] == 0

    with caplog.at_level(logging.INFO, logger="fastwt"):
        async with TestClient(app) as served:
            port, client = served.port, served.client
            base = f"https://127.0.0.1:{port}"
            sessions = [await client.connect(url=f"{base}/echo?n={i}") for i in range(3)]
            for path, status in [("/nowhere", 404), ("/private", 403), ("/private/x", 403)]:
                with pytest.raises(SessionRejectedError) as caught:
                    await client.connect(url=base + path, timeout=10)
                assert caught.value.status_code == status
            for session in sessions:
                for i in range(20):
                    await session.send_datagram(data=b"%d" % i)
            with anyio.fail_after(10):
                for session in sessions:
                    for _ in range(15):  # most of them come back
                        await session.read_datagram()

            live = scrape(registry)
            assert live[("fastwt_sessions_open", ())] == 3
            assert live[("fastwt_sessions_accepted_total", ())] == 3
            assert live[("fastwt_sessions_refused_total", (("status", "404"),))] == 1
            assert live[("fastwt_sessions_refused_total", (("status", "403"),))] == 2
            assert live[("fastwt_datagrams_received_total", ())] >= 45
            assert live[("fastwt_datagrams_sent_total", ())] >= 45
            assert live[("fastwt_bytes_sent_total", ())] > 0
            assert live[("fastwt_bytes_received_total", ())] > 0
            assert live[("fastwt_datagrams_dropped_total", ())] >= 0
            assert 0 < live[("fastwt_rtt_mean_seconds", ())] <= live[("fastwt_rtt_max_seconds", ())]
            assert live[("fastwt_rtt_max_seconds", ())] < 1.0  # loopback

            for session in sessions:
                await session.close()
            with anyio.fail_after(10):
                while app.server.session_count:
                    await anyio.sleep(0.01)
            after = scrape(registry)
            assert after[("fastwt_sessions_open", ())] == 0
            # Counters keep what closed sessions did; they never go back.
            for key, value in live.items():
                if key[0].endswith("_total"):
                    assert after[key] >= value, key
            assert ("fastwt_rtt_mean_seconds", ()) not in after  # no open session

    logged = [r for r in caplog.records if r.getMessage().endswith("echoing")]
    assert len(logged) == 3
    assert sorted(r.path for r in logged) == [f"/echo?n={i}" for i in range(3)]  # type: ignore[attr-defined]
    assert all(r.peer.startswith("127.0.0.1:") for r in logged)  # type: ignore[attr-defined]
    assert len({r.session_id for r in logged}) >= 1  # type: ignore[attr-defined]


async def test_server_stats_on_a_bare_server() -> None:
    """Without the framework: the hook sees requests read from incoming_sessions()."""
    config = ServerConfig(bind_host="127.0.0.1", bind_port=0)
    async with WebTransportServer(config=config) as server:
        stats = ServerStats.attach(server)
        await server.listen()
        port = server.local_addresses[0][1]
        accepted: list[WebTransportSession] = []

        async def answer() -> None:
            async for request in server.incoming_sessions():
                if request.path == "/yes":
                    await request.accept()
                    accepted.append(request)
                else:
                    await request.reject(status_code=451)

        config_c = ClientConfig(server_certificate_hashes=[server.certificate_hash])
        async with anyio.create_task_group() as tg, WebTransportClient(config=config_c) as client:
            tg.start_soon(answer)
            session = await client.connect(url=f"https://127.0.0.1:{port}/yes", timeout=10)
            with pytest.raises(SessionRejectedError):
                await client.connect(url=f"https://127.0.0.1:{port}/no", timeout=10)
            stream = await session.create_bidirectional_stream()
            await stream.write(data=b"x" * 100_000, end_stream=True)
            with anyio.fail_after(10):
                while stats.snapshot().totals.bytes_received < 100_000:
                    await anyio.sleep(0.01)
            snap = stats.snapshot()
            assert snap.sessions_accepted == 1 and snap.sessions_open == 1
            assert snap.sessions_refused == {451: 1}
            assert snap.rtt_mean is not None and snap.rtt_mean > 0
            await session.close()
            tg.cancel_scope.cancel()


async def test_scraped_over_http_from_prometheus_client_thread() -> None:
    """``start_http_server`` scrapes in its own thread while sessions come and go."""
    import urllib.request

    from prometheus_client import start_http_server

    app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0))

    @app.route(path="/hold")
    async def hold(session: WebTransportSession) -> None:
        await session.wait_closed()

    registry = CollectorRegistry()
    enable_prometheus(app, registry, namespace="wt")
    httpd, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    metrics_url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"

    def fetch() -> str:
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            return str(response.read().decode())

    try:
        async with TestClient(app) as served:
            port, client = served.port, served.client
            scrapes: list[str] = []

            async def scrape_repeatedly() -> None:
                while True:
                    scrapes.append(await anyio.to_thread.run_sync(fetch))

            async with anyio.create_task_group() as tg:
                tg.start_soon(scrape_repeatedly)
                for _ in range(10):
                    session = await client.connect(url=f"https://127.0.0.1:{port}/hold")
                    await session.close()
                with anyio.fail_after(10):
                    while app.server.session_count:
                        await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
            text = await anyio.to_thread.run_sync(fetch)
        assert scrapes
        assert "wt_sessions_accepted_total 10.0" in text
        assert "wt_sessions_open 0.0" in text
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)

"""fastwt.testing.TestClient: an app served in process on loopback, real QUIC."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastwt import ClientConfig, ServerConfig, SessionRejectedError, WebTransportSession
from fastwt.cli import write_dev_certificate
from fastwt.framework import MiddlewareRejected, ServerApp
from fastwt.testing import TestClient, echo_once, serve_echo

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def echo_app(config: ServerConfig | None = None) -> tuple[ServerApp, list[str]]:
    app = ServerApp(config=config)
    events: list[str] = []

    @app.on_startup
    def started() -> None:
        events.append("startup")

    @app.on_shutdown
    async def stopped() -> None:
        events.append("shutdown")

    @app.middleware
    async def members_only(*, session: object) -> None:
        if getattr(session, "path", "").startswith("/private"):
            raise MiddlewareRejected(status_code=403, headers={"x-why": "members only"})

    @app.route(path="/echo")
    async def echo(session: WebTransportSession) -> None:
        events.append(f"session {session.query.get('n', '')}")
        await serve_echo(session)
        events.append("session ended")

    return app, events


async def test_serves_the_app_runs_its_hooks_and_closes_what_the_test_left_open() -> None:
    # The app's own bind_port (4433 by default) is not used: tests never collide.
    app, events = echo_app()
    async with TestClient(app) as client:
        assert events == ["startup"]
        assert client.port != 4433 and client.base_url == f"https://127.0.0.1:{client.port}"
        session = await client.connect("/echo?n=1", headers={"x-test": "1"})
        assert await echo_once(session, b"hello") == b"hello"
        rejected = await client.rejection("/private")
        assert (rejected.status_code, rejected.headers["x-why"]) == (403, "members only")
        assert (await client.rejection("/nowhere")).status_code == 404
        with pytest.raises(SessionRejectedError):
            await client.connect("/nowhere")
        with pytest.raises(AssertionError, match="was accepted"):
            await client.rejection("/echo?n=2")
        left_open = await client.connect("/echo?n=3")
    assert left_open.is_closed
    assert not app.server.is_serving
    assert events[0] == "startup" and events[-1] == "shutdown"
    assert [e for e in events if e.startswith("session ") and e[-1].isdigit()] == [
        "session 1",
        "session 2",
        "session 3",
    ]


async def test_an_app_with_its_own_certificate_files(tmp_path: Path) -> None:
    write_dev_certificate(tmp_path, names=["device.example"])
    config = ServerConfig(certfile=tmp_path / "cert.pem", keyfile=tmp_path / "key.pem")
    app, _ = echo_app(config)
    # Other client options are kept; the trust is the app's certificate hash.
    client_config = ClientConfig(connect_timeout=5, headers={"x-device": "7"})
    async with TestClient(app, client_config=client_config) as client:
        assert client.client.config.connect_timeout == 5
        session = await client.connect("/echo")
        assert await echo_once(session, b"own cert") == b"own cert"


async def test_ipv6_loopback() -> None:
    app, _ = echo_app()
    async with TestClient(app, host="::1") as client:
        assert client.base_url.startswith("https://[::1]:")
        session = await client.connect("/echo")
        assert await echo_once(session, b"six") == b"six"


async def test_misuse_is_reported() -> None:
    app, _ = echo_app()
    client = TestClient(app)
    with pytest.raises(RuntimeError, match="async with"):
        await client.connect("/echo")
    async with client:
        with pytest.raises(ValueError, match="must start with '/'"):
            client.url("echo")


async def test_serve_echo_prefixes_and_echo_once_times_out() -> None:
    app = ServerApp()

    @app.route(path="/prefixed")
    async def prefixed(session: WebTransportSession) -> None:
        await serve_echo(session, prefix=b"re: ")

    @app.route(path="/silent")
    async def silent(session: WebTransportSession) -> None:
        await session.wait_closed()  # reads nothing, answers nothing

    async with TestClient(app) as client:
        session = await client.connect("/prefixed")
        assert await echo_once(session, b"one") == b"re: one"
        assert await echo_once(session, bytearray(b"two")) == b"re: two"
        session = await client.connect("/silent")
        with pytest.raises(TimeoutError):
            await echo_once(session, b"anyone?", timeout=0.3)

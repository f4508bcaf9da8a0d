"""``ServerApp.run(**kwargs)``/``serve(**kwargs)``: ServerConfig fields as overrides."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from fakes import FakeServer, fake_server

from fastwt import ServerConfig, WebTransportServer
from fastwt.errors import ConfigurationError, ServerError
from fastwt.framework import ServerApp

BASE = ServerConfig(bind_host="127.0.0.1", bind_port=4433, max_sessions=7, request_timeout=3.0)
FIELDS = [f.name for f in dataclasses.fields(ServerConfig)]


@pytest.fixture
def app() -> ServerApp:
    """A ServerApp with a real ``ServerConfig`` in front of a ``FakeServer``."""
    return ServerApp(server=FakeServer(config=BASE))


def _cert_pair(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    return str(cert), str(key)


@pytest.mark.anyio
async def test_serve_replaces_config_fields_on_the_same_server(
    app: ServerApp, tmp_path: Path
) -> None:
    server = fake_server(app)
    certfile, keyfile = _cert_pair(tmp_path)
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda **kw: app.serve(port=0, certfile=certfile, keyfile=keyfile, max_sessions=3, **kw)
        )
        assert app.server is server  # hooks on the server (ServerStats.attach) survive
        assert server.listened == (None, 0)
        tg.cancel_scope.cancel()
    assert server.config == dataclasses.replace(
        BASE, certfile=certfile, keyfile=keyfile, max_sessions=3
    )
    assert server.config.request_timeout == 3.0  # fields not given are kept


@pytest.mark.anyio
async def test_serve_without_overrides_keeps_the_config_object(app: ServerApp) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(lambda **kw: app.serve(host="::1", **kw))
        tg.cancel_scope.cancel()
    assert app.server.config is BASE


@pytest.mark.parametrize("method", ["run", "serve"])
def test_unknown_keyword_lists_the_valid_ones(app: ServerApp, method: str) -> None:
    with pytest.raises(TypeError) as exc:
        if method == "run":
            app.run(max_sesions=3)
        else:
            anyio.run(lambda: app.serve(max_sesions=3))
    message = str(exc.value)
    assert f"ServerApp.{method}()" in message and "max_sesions" in message
    for name in FIELDS:
        assert name in message
    assert ("backend_options" in message) == (method == "run")
    assert app.server.config is BASE
    assert fake_server(app).listened is None


@pytest.mark.parametrize(
    "kwargs",
    [{"host": "::1", "bind_host": "127.0.0.1"}, {"port": 1, "bind_port": 2}],
)
def test_host_and_bind_host_together_are_refused(app: ServerApp, kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="give one of them"):
        app.run(**kwargs)
    assert app.server.config is BASE


def test_bind_host_and_bind_port_are_overrides_too(app: ServerApp) -> None:
    @app.on_startup
    def stop() -> None:
        os.kill(os.getpid(), signal.SIGINT)

    app.run(bind_host="::1", bind_port=0)
    assert fake_server(app).config == dataclasses.replace(BASE, bind_host="::1", bind_port=0)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_sessions": 0}, {"certfile": "cert.pem"}, {"congestion_control_algorithm": "x"}],
)
def test_invalid_values_fail_like_the_config_itself(app: ServerApp, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        app.run(**kwargs)
    assert app.server.config is BASE


def test_run_applies_overrides_before_startup(app: ServerApp, tmp_path: Path) -> None:
    certfile, keyfile = _cert_pair(tmp_path)
    seen: list[ServerConfig] = []

    @app.on_startup
    def record_and_stop() -> None:
        seen.append(app.server.config)
        os.kill(os.getpid(), signal.SIGINT)

    app.run(host="127.0.0.1", port=0, certfile=certfile, keyfile=keyfile, shutdown_grace=0.5)
    expected = dataclasses.replace(BASE, certfile=certfile, keyfile=keyfile, shutdown_grace=0.5)
    assert seen == [expected]
    assert fake_server(app).listened == ("127.0.0.1", 0)


@pytest.mark.anyio
async def test_overrides_while_serving_are_refused(app: ServerApp) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(app.serve)
        with pytest.raises(RuntimeError, match="already serving"):
            await app.serve(max_sessions=1)
        tg.cancel_scope.cancel()
    assert app.server.config is BASE


def test_a_listening_server_refuses_a_new_config() -> None:
    """The real server: the swap is allowed until ``listen()`` built the core."""
    server = WebTransportServer(config=BASE)
    new = dataclasses.replace(BASE, max_sessions=1)
    server._replace_config(new)
    assert server.config is new
    server._handle = object()  # type: ignore[assignment]  # as after listen()
    with pytest.raises(ServerError, match="cannot change after listen"):
        server._replace_config(BASE)
    server._handle = None

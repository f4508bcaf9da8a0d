"""ServerApp against a fake server: dispatch, rejection, lifecycle, shutdown."""

from __future__ import annotations

import logging
import os
import signal
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from fakes import FakeSession, fake_server

from fastwt.framework import MiddlewareRejected, ServerApp, create_rate_limit_middleware

pytestmark = pytest.mark.anyio


class Lifecycle:
    """A stateful middleware recording its enter/exit and the requests it saw."""

    def __init__(self, log: list[str], name: str = "stateful") -> None:
        self.log = log
        self.name = name

    async def __aenter__(self) -> Lifecycle:
        self.log.append(f"{self.name}:enter")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.log.append(f"{self.name}:exit")

    async def __call__(self, *, session: Any) -> None:
        self.log.append(f"{self.name}:request")


async def serve_in(tg: Any, app: ServerApp, **kwargs: Any) -> list[tuple[str, int]]:
    addresses: list[tuple[str, int]] = await tg.start(lambda **kw: app.serve(**kwargs, **kw))
    return addresses


async def test_routes_accepts_runs_the_handler_and_closes_with_code_0(app: ServerApp) -> None:
    seen: list[tuple[Any, dict[str, Any]]] = []

    @app.route(path="/echo")
    async def echo(session: Any, **params: Any) -> None:
        assert session.call_names == ["accept"]  # accepted before the handler runs
        seen.append((session, {"query": session.query, **params}))

    @app.pattern_route(pattern=r"/rooms/(?P<room>\w+)/(?P<user>\d+)")
    async def room(session: Any, room: str, user: str) -> None:
        seen.append((session, {"room": room, "user": user}))

    server = fake_server(app)
    first = FakeSession("/echo?x=1&x=2&y=3")
    second = FakeSession("/rooms/blue/7?z=0")
    async with anyio.create_task_group() as tg:
        addresses = await serve_in(tg, app, host="127.0.0.1", port=9999)
        assert addresses == [("127.0.0.1", 9999)]
        assert server.listened == ("127.0.0.1", 9999)
        server.push(first)
        server.push(second)
        with anyio.fail_after(5):
            await first.closed.wait()
            await second.closed.wait()
        tg.cancel_scope.cancel()
    assert seen == [
        (first, {"query": {"x": "2", "y": "3"}}),
        (second, {"room": "blue", "user": "7"}),
    ]
    for session in (first, second):
        assert session.call_names == ["accept", "close"]
        assert session.close_code() == 0


async def test_no_route_rejects_404_without_accepting(app: ServerApp) -> None:
    @app.route(path="/known")
    async def known(session: Any) -> None: ...

    server = fake_server(app)
    session = FakeSession("/unknown")
    async with anyio.create_task_group() as tg:
        await serve_in(tg, app)
        server.push(session)
        with anyio.fail_after(5):
            await session.closed.wait()
        tg.cancel_scope.cancel()
    assert session.calls == [("reject", {"status_code": 404, "headers": None})]


async def test_middleware_rejection_reaches_the_request_with_status_and_headers(
    app: ServerApp,
) -> None:
    handled: list[str] = []

    @app.middleware
    async def gate(*, session: Any) -> None:
        if session.headers.get("token") != "ok":
            raise MiddlewareRejected(status_code=429, headers={"Retry-After": "7"})

    @app.middleware
    async def broken(*, session: Any) -> None:
        if session.path == "/boom":
            raise RuntimeError("bug in middleware")

    @app.route(path="/")
    async def root(session: Any) -> None:
        handled.append(session.path)

    @app.route(path="/boom")
    async def boom(session: Any) -> None:
        handled.append(session.path)

    server = fake_server(app)
    refused = FakeSession("/")
    failed = FakeSession("/boom", headers={"token": "ok"})
    allowed = FakeSession("/", headers={"token": "ok"})
    async with anyio.create_task_group() as tg:
        await serve_in(tg, app)
        for session in (refused, failed, allowed):
            server.push(session)
        with anyio.fail_after(5):
            for session in (refused, failed, allowed):
                await session.closed.wait()
        tg.cancel_scope.cancel()
    assert refused.calls == [("reject", {"status_code": 429, "headers": {"retry-after": "7"}})]
    assert failed.calls == [("reject", {"status_code": 500, "headers": None})]
    assert allowed.call_names == ["accept", "close"]
    assert handled == ["/"]


async def test_a_raising_handler_closes_only_its_session_and_is_logged(
    app: ServerApp, caplog: pytest.LogCaptureFixture
) -> None:
    release = anyio.Event()
    finished: list[str] = []

    @app.route(path="/bad")
    async def bad(session: Any) -> None:
        raise ValueError("handler bug")

    @app.route(path="/good")
    async def good(session: Any) -> None:
        await release.wait()
        finished.append("good")

    server = fake_server(app)
    good_session = FakeSession("/good", remote_address=("192.0.2.10", 4242))
    bad_session = FakeSession("/bad?q=1", remote_address=("192.0.2.99", 5151))
    with caplog.at_level(logging.ERROR, logger="fastwt.framework"):
        async with anyio.create_task_group() as tg:
            await serve_in(tg, app)
            server.push(good_session)
            server.push(bad_session)
            with anyio.fail_after(5):
                await bad_session.closed.wait()
            assert not good_session.is_closed  # the concurrent session is undisturbed
            release.set()
            with anyio.fail_after(5):
                await good_session.closed.wait()
            # The server still serves new sessions after the failure.
            later = FakeSession("/good")
            server.push(later)
            with anyio.fail_after(5):
                await later.closed.wait()
            tg.cancel_scope.cancel()
    assert bad_session.close_code() == ServerApp.handler_error_code != 0
    assert good_session.close_code() == 0
    assert later.close_code() == 0
    assert finished == ["good", "good"]
    record = next(r for r in caplog.records if "failed for session" in r.getMessage())
    assert "/bad?q=1" in record.getMessage()
    assert "192.0.2.99" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


async def test_a_handler_that_closes_its_session_is_not_closed_again(app: ServerApp) -> None:
    @app.route(path="/")
    async def root(session: Any) -> None:
        await session.close(error_code=42, reason="done")

    server = fake_server(app)
    session = FakeSession("/")
    async with anyio.create_task_group() as tg:
        await serve_in(tg, app)
        server.push(session)
        with anyio.fail_after(5):
            await session.closed.wait()
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert session.calls == [
        ("accept", {"headers": None, "wt_protocol": None}),
        ("close", {"error_code": 42, "reason": "done"}),
    ]


async def test_lifecycle_runs_once_in_order_and_cancel_closes_open_sessions(
    app: ServerApp,
) -> None:
    log: list[str] = []
    app.add_middleware(middleware=Lifecycle(log, "mw1"))
    app.add_middleware(middleware=Lifecycle(log, "mw2"))

    @app.on_startup
    def sync_start() -> None:
        log.append("startup:sync")

    @app.on_startup
    async def async_start() -> None:
        await anyio.lowlevel.checkpoint()
        log.append("startup:async")

    @app.on_shutdown
    async def async_stop() -> None:
        await anyio.lowlevel.checkpoint()
        log.append("shutdown:async")

    @app.on_shutdown
    def sync_stop() -> None:
        log.append("shutdown:sync")

    entered = anyio.Event()

    @app.route(path="/forever")
    async def forever(session: Any) -> None:
        entered.set()
        await anyio.sleep_forever()

    server = fake_server(app)
    session = FakeSession("/forever")
    async with anyio.create_task_group() as tg:
        await serve_in(tg, app)
        server.push(session)
        with anyio.fail_after(5):
            await entered.wait()
        tg.cancel_scope.cancel()

    assert log == [
        "mw1:enter",
        "mw2:enter",
        "startup:sync",
        "startup:async",
        "mw1:request",
        "mw2:request",
        "shutdown:async",
        "shutdown:sync",
        "mw2:exit",
        "mw1:exit",
    ]
    assert session.close_code() == ServerApp.shutdown_error_code != 0
    assert server.close_count >= 1
    # Each runs once: calling them again changes nothing.
    await app.shutdown()
    assert log.count("shutdown:sync") == 1
    with pytest.raises(RuntimeError, match="start again"):
        await app.startup()


async def test_async_with_then_serve_runs_hooks_once(app: ServerApp) -> None:
    log: list[str] = []
    app.on_startup(lambda: log.append("start"))
    app.on_shutdown(lambda: log.append("stop"))
    async with app:
        assert log == ["start"]
        async with anyio.create_task_group() as tg:
            await serve_in(tg, app)
            tg.cancel_scope.cancel()
        assert log == ["start"]
    assert log == ["start", "stop"]


async def test_shutdown_from_another_task_stops_serve_and_closes_sessions(
    app: ServerApp,
) -> None:
    entered = anyio.Event()
    served: list[str] = []

    @app.route(path="/")
    async def root(session: Any) -> None:
        entered.set()
        await anyio.sleep_forever()

    async def run_serve() -> None:
        await app.serve()
        served.append("returned")

    server = fake_server(app)
    session = FakeSession("/")
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app)
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_serve)
            await anyio.wait_all_tasks_blocked()
            server.push(session)
            with anyio.fail_after(5):
                await entered.wait()
                await app.shutdown()
    assert served == ["returned"]
    assert session.close_code() == ServerApp.shutdown_error_code


async def test_serve_returns_when_the_server_closes(app: ServerApp) -> None:
    log: list[str] = []
    app.on_shutdown(lambda: log.append("stop"))
    server = fake_server(app)
    async with anyio.create_task_group() as tg:
        await serve_in(tg, app)
        await server.close()
    assert log == ["stop"]


async def test_configuration_is_frozen_after_startup(app: ServerApp) -> None:
    async def handler(session: Any) -> None: ...

    async def mw(*, session: Any) -> None: ...

    await app.startup()
    with pytest.raises(RuntimeError, match="after the ServerApp started"):
        app.route(path="/late")(handler)
    with pytest.raises(RuntimeError, match="after the ServerApp started"):
        app.pattern_route(pattern="/late/.*")(handler)
    with pytest.raises(RuntimeError, match="after the ServerApp started"):
        app.add_middleware(middleware=mw)
    with pytest.raises(RuntimeError, match="after the ServerApp started"):
        app.middleware(mw)
    with pytest.raises(RuntimeError, match="after the ServerApp started"):
        app.on_startup(lambda: None)
    with pytest.raises(RuntimeError, match="after the ServerApp started"):
        app.on_shutdown(lambda: None)
    assert app.router.get_route_stats()["exact_routes"] == 0
    await app.shutdown()


async def test_failing_startup_exits_entered_middleware(app: ServerApp) -> None:
    log: list[str] = []
    app.add_middleware(middleware=Lifecycle(log))

    @app.on_startup
    def explode() -> None:
        raise OSError("no database")

    with pytest.raises(OSError, match="no database"):
        await app.serve()
    assert log == ["stateful:enter", "stateful:exit"]
    assert fake_server(app).close_count >= 1


async def test_failing_shutdown_handler_does_not_skip_the_rest(
    app: ServerApp, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[str] = []
    app.add_middleware(middleware=Lifecycle(log))

    @app.on_shutdown
    def explode() -> None:
        raise RuntimeError("flush failed")

    app.on_shutdown(lambda: log.append("second handler"))
    await app.startup()
    with caplog.at_level(logging.ERROR):
        await app.shutdown()
    assert log == ["stateful:enter", "second handler", "stateful:exit"]
    assert "flush failed" in caplog.text


async def test_rate_limiter_is_entered_as_stateful_middleware(app: ServerApp) -> None:
    limiter = create_rate_limit_middleware(max_requests=1)
    app.add_middleware(middleware=limiter)

    @app.route(path="/")
    async def root(session: Any) -> None: ...

    server = fake_server(app)
    sessions = [FakeSession("/"), FakeSession("/")]
    async with anyio.create_task_group() as tg:
        await serve_in(tg, app)
        for session in sessions:
            server.push(session)
            with anyio.fail_after(5):
                await session.closed.wait()
        assert limiter.tracked_clients == 1
        tg.cancel_scope.cancel()
    assert sessions[0].call_names == ["accept", "close"]
    status, headers = sessions[1].rejection() or (None, None)
    assert status == 429 and headers is not None and int(headers["retry-after"]) > 0
    assert limiter.tracked_clients == 0  # exited by shutdown


async def test_serve_refuses_unknown_keyword_arguments_and_double_serve(app: ServerApp) -> None:
    with pytest.raises(TypeError, match="bogus"):
        await app.serve(bogus=1)
    async with anyio.create_task_group() as tg:
        await serve_in(tg, app)
        with pytest.raises(RuntimeError, match="already serving"):
            await app.serve()
        tg.cancel_scope.cancel()


def test_run_refuses_unknown_keyword_arguments(app: ServerApp) -> None:
    with pytest.raises(TypeError, match="bogus"):
        app.run(bogus=1)


@pytest.mark.parametrize(
    ("backend", "signum"),
    [
        ("asyncio", signal.SIGINT),
        ("asyncio", signal.SIGTERM),
        ("trio", signal.SIGINT),
        ("trio", signal.SIGTERM),
    ],
)
def test_run_stops_cleanly_on_signals(app: ServerApp, backend: str, signum: int) -> None:
    """run() owns its loop; a signal closes sessions with a code, runs shutdown hooks,
    exits stateful middleware, and returns."""
    log: list[str] = []
    app.add_middleware(middleware=Lifecycle(log))
    app.on_startup(lambda: log.append("startup"))
    app.on_shutdown(lambda: log.append("shutdown"))

    @app.route(path="/")
    async def root(session: Any) -> None:
        log.append("handler")
        os.kill(os.getpid(), signum)
        await anyio.sleep_forever()

    session = FakeSession("/")
    fake_server(app).push(session)
    app.run(host="127.0.0.1", port=0, backend=backend)
    assert log == [
        "stateful:enter",
        "startup",
        "stateful:request",
        "handler",
        "shutdown",
        "stateful:exit",
    ]
    assert session.close_code() == ServerApp.shutdown_error_code
    assert fake_server(app).listened == ("127.0.0.1", 0)


async def test_an_app_takes_its_server_and_refuses_a_config_beside_it() -> None:
    from fakes import FakeServer

    from fastwt import ServerConfig
    from fastwt.framework.app import webtransport_server_of

    server = FakeServer(config={"fake": "config"})
    app = ServerApp(server=server)
    assert app.server is server
    with pytest.raises(TypeError, match="config or server"):
        ServerApp(config=ServerConfig(), server=FakeServer(config={}))
    # What only a WebTransportServer has (workers, metrics, SIGHUP reload) says so.
    with pytest.raises(TypeError, match="workers needs a fastwt WebTransportServer"):
        webtransport_server_of(app, needs="workers")
    real = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0))
    assert webtransport_server_of(real, needs="workers") is real.server

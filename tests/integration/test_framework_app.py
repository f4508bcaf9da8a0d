"""ServerApp end to end: the real server and client on loopback, asyncio and trio.

Each test builds an app and serves it with ``fastwt.testing.TestClient`` (127.0.0.1,
port 0, the development certificate trusted by its hash).
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from fastwt import (
    ClientConfig,
    ErrorCodes,
    ServerConfig,
    WebTransportClient,
    WebTransportSession,
)
from fastwt.framework import (
    MiddlewareRejected,
    ServerApp,
    create_auth_middleware,
    create_cors_middleware,
    create_rate_limit_middleware,
)
from fastwt.testing import TestClient, echo_once, serve_echo

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60), pytest.mark.usefixtures("backend")]


def new_app() -> ServerApp:
    return ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0))


async def test_routes_params_query_streams_and_datagrams() -> None:
    app = new_app()

    @app.route(path="/echo")
    async def echo(session: WebTransportSession) -> None:
        datagram = await session.read_datagram()
        await session.send_datagram(data=b"dgram:" + datagram)
        await serve_echo(session, prefix=f"echo{sorted(session.query.items())}:".encode())

    @app.pattern_route(pattern=r"/rooms/(?P<room>[a-z]+)/(?P<seat>\d+)")
    async def room(session: WebTransportSession, room: str, seat: str) -> None:
        await serve_echo(session, prefix=f"{room}/{seat}:".encode())

    async with TestClient(app) as served:
        session = await served.connect("/echo?b=2&a=1&a=3")
        await session.send_datagram(data=b"ping")
        with anyio.fail_after(10):
            assert await session.read_datagram() == b"dgram:ping"
        assert await echo_once(session, b"hi") == b"echo[('a', '3'), ('b', '2')]:hi"
        await session.close()

        session = await served.connect("/rooms/blue/12?x=1")
        assert await echo_once(session, b"yo") == b"blue/12:yo"
        await session.close()

        # Not a full match of the pattern, no exact route: 404.
        rejected = await served.rejection("/rooms/blue/12/more")
        assert rejected.status_code == 404
        assert (await served.rejection("/nowhere")).status_code == 404


async def test_auth_middleware_401_500_and_pass() -> None:
    app = new_app()

    async def auth_handler(*, headers: Any) -> bool:
        if headers.get("authorization") == "explode":
            raise RuntimeError("auth backend down")
        return bool(headers.get("authorization") == "Bearer secret")

    app.add_middleware(middleware=create_auth_middleware(auth_handler=auth_handler))

    @app.route(path="/")
    async def root(session: WebTransportSession) -> None:
        await serve_echo(session)

    async with TestClient(app) as served:
        assert (await served.rejection("/")).status_code == 401
        assert (
            await served.rejection("/", headers={"authorization": "Bearer wrong"})
        ).status_code == 401
        assert (
            await served.rejection("/", headers={"authorization": "explode"})
        ).status_code == 500
        session = await served.connect("/", headers={"authorization": "Bearer secret"})
        assert await echo_once(session, b"ok") == b"ok"
        await session.close()


async def test_cors_middleware_403_and_allowed_origin() -> None:
    app = new_app()
    app.add_middleware(middleware=create_cors_middleware(allowed_origins=["https://good.example"]))

    @app.route(path="/")
    async def root(session: WebTransportSession) -> None:
        await serve_echo(session)

    async with TestClient(app) as served:
        assert (await served.rejection("/")).status_code == 403
        assert (
            await served.rejection("/", headers={"origin": "https://evil.example"})
        ).status_code == 403
        session = await served.connect("/", headers={"origin": "https://good.example"})
        assert await echo_once(session, b"cors") == b"cors"
        await session.close()


async def test_rate_limit_429_with_retry_after_after_max_requests() -> None:
    app = new_app()
    app.add_middleware(middleware=create_rate_limit_middleware(max_requests=3, window_seconds=60))

    @app.route(path="/")
    async def root(session: WebTransportSession) -> None:
        await serve_echo(session)

    async with TestClient(app) as served:
        for _ in range(3):
            session = await served.connect("/")
            assert await echo_once(session, b"x") == b"x"
            await session.close()
        rejected = await served.rejection("/")
        assert rejected.status_code == 429
        assert 1 <= int(rejected.headers["retry-after"]) <= 60
        # Refusals do not count, and it stays limited.
        assert (await served.rejection("/")).status_code == 429


async def test_custom_rejection_status_and_headers_reach_the_client() -> None:
    app = new_app()

    @app.middleware
    async def teapot(*, session: Any) -> None:
        if session.query.get("tea") == "1":
            raise MiddlewareRejected(status_code=418, headers={"X-Brew": "earl grey"})

    @app.middleware
    async def broken(*, session: Any) -> None:
        if session.query.get("bug") == "1":
            raise ZeroDivisionError

    @app.route(path="/")
    async def root(session: WebTransportSession) -> None:
        await serve_echo(session)

    async with TestClient(app) as served:
        rejected = await served.rejection("/?tea=1")
        assert rejected.status_code == 418
        assert rejected.headers.get("x-brew") == "earl grey"
        assert (await served.rejection("/?bug=1")).status_code == 500
        session = await served.connect("/?tea=0")
        assert await echo_once(session, b"fine") == b"fine"
        await session.close()


async def test_a_raising_handler_does_not_disturb_a_concurrent_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = new_app()

    @app.route(path="/crash")
    async def crash(session: WebTransportSession) -> None:
        stream = await session.accept_bidirectional_stream()
        await stream.read_all()
        raise RuntimeError("handler bug")

    @app.route(path="/echo")
    async def echo(session: WebTransportSession) -> None:
        await serve_echo(session)

    async with TestClient(app) as served:
        steady = await served.connect("/echo")
        assert await echo_once(steady, b"before") == b"before"

        doomed = await served.connect("/crash")
        stream = await doomed.create_bidirectional_stream()
        await stream.write(data=b"trigger", end_stream=True)
        with anyio.fail_after(10):
            code, _reason = await doomed.wait_closed()
        assert code == ErrorCodes.HANDLER_ERROR

        assert await echo_once(steady, b"after") == b"after"
        assert not steady.is_closed
        fresh = await served.connect("/echo")
        assert await echo_once(fresh, b"new") == b"new"
        for session in (steady, fresh):
            await session.close()
    messages = [r.getMessage() for r in caplog.records if r.exc_info]
    assert any("/crash" in m and "127.0.0.1" in m for m in messages), messages


async def test_handler_return_closes_the_session_with_code_0() -> None:
    app = new_app()

    @app.route(path="/once")
    async def once(session: WebTransportSession) -> None:
        stream = await session.accept_bidirectional_stream()
        await stream.write(data=await stream.read_all(), end_stream=True)

    async with TestClient(app) as served:
        session = await served.connect("/once")
        assert await echo_once(session, b"bye") == b"bye"
        with anyio.fail_after(10):
            code, _reason = await session.wait_closed()
        assert code == 0


class RecordingMiddleware:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def __aenter__(self) -> RecordingMiddleware:
        self.log.append("middleware enter")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.log.append("middleware exit")

    async def __call__(self, *, session: Any) -> None:
        self.log.append(f"request {session.path}")


async def test_lifecycle_hooks_run_once_and_shutdown_closes_sessions_with_a_code() -> None:
    app = new_app()
    log: list[str] = []
    app.add_middleware(middleware=RecordingMiddleware(log))
    app.on_startup(lambda: log.append("startup sync"))

    @app.on_startup
    async def start_async() -> None:
        await anyio.lowlevel.checkpoint()
        log.append("startup async")

    @app.on_shutdown
    async def stop_async() -> None:
        await anyio.lowlevel.checkpoint()
        log.append("shutdown async")

    app.on_shutdown(lambda: log.append("shutdown sync"))

    @app.route(path="/hold")
    async def hold(session: WebTransportSession) -> None:
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        addresses = await tg.start(lambda task_status: app.serve(task_status=task_status))
        config = ClientConfig(server_certificate_hashes=[app.server.certificate_hash])
        async with WebTransportClient(config=config) as client:
            url = f"https://127.0.0.1:{addresses[0][1]}/hold"
            session = await client.connect(url=url, timeout=10)
            await anyio.sleep(0.1)  # let the handler start
            tg.cancel_scope.cancel()  # what run() does on SIGINT/SIGTERM
            with anyio.fail_after(10), anyio.CancelScope(shield=True):
                code, _reason = await session.wait_closed()
    assert code == ErrorCodes.SERVER_SHUTDOWN
    assert log == [
        "middleware enter",
        "startup sync",
        "startup async",
        "request /hold",
        "shutdown async",
        "shutdown sync",
        "middleware exit",
    ]
    assert not app.server.is_serving


async def test_async_with_app_then_serve_like_pywebtransport() -> None:
    app = new_app()
    started: list[str] = []
    app.on_startup(lambda: started.append("once"))

    @app.route(path="/")
    async def root(session: WebTransportSession) -> None:
        await serve_echo(session, prefix=b">")

    async with app:
        async with anyio.create_task_group() as tg:
            addresses = await tg.start(
                lambda task_status: app.serve(host="127.0.0.1", port=0, task_status=task_status)
            )
            config = ClientConfig(server_certificate_hashes=[app.server.certificate_hash])
            async with WebTransportClient(config=config) as client:
                url = f"https://127.0.0.1:{addresses[0][1]}/"
                session = await client.connect(url=url, timeout=10)
                assert await echo_once(session, b"x") == b">x"
                await session.close()
            tg.cancel_scope.cancel()
    assert started == ["once"]


async def test_many_concurrent_sessions_through_the_full_middleware_stack() -> None:
    app = new_app()

    async def auth_handler(*, headers: Any) -> bool:
        return bool(headers.get("authorization") == "ok")

    app.add_middleware(middleware=create_auth_middleware(auth_handler=auth_handler))
    app.add_middleware(middleware=create_cors_middleware(allowed_origins=["https://a.example"]))
    app.add_middleware(middleware=create_rate_limit_middleware(max_requests=1000))

    @app.pattern_route(pattern=r"/n/(?P<n>\d+)")
    async def numbered(session: WebTransportSession, n: str) -> None:
        await serve_echo(session, prefix=n.encode() + b":")

    results: dict[int, bytes] = {}

    async with TestClient(app) as served:

        async def one(i: int) -> None:
            session = await served.connect(
                f"/n/{i}", headers={"authorization": "ok", "origin": "https://a.example"}
            )
            results[i] = await echo_once(session, b"x")
            await session.close()

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
    assert results == {i: f"{i}:x".encode() for i in range(20)}

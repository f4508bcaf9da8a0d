"""Faults in user code: handlers and middleware that raise, hang or leak tasks are
isolated, cut off where configured (``handler_timeout``; middleware by the server's
``request_timeout``) and logged, and the app keeps serving everyone else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
import sniffio
from robustness_figures import record

from fastwt import (
    ErrorCodes,
    ServerConfig,
    SessionRejectedError,
    WebTransportClient,
    WebTransportSession,
)
from fastwt.framework import ServerApp
from fastwt.framework.types import SessionProtocol
from fastwt.testing import TestClient, serve_echo

pytestmark = pytest.mark.anyio


def faulty_app(cancelled: list[str]) -> ServerApp:
    app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0, request_timeout=0.5))
    app.handler_timeout = 0.5

    @app.middleware
    async def moody(*, session: SessionProtocol) -> None:
        if session.path == "/mw-raises":
            raise RuntimeError("middleware bug")
        if session.path == "/mw-hangs":
            try:
                await anyio.sleep_forever()
            finally:
                cancelled.append("middleware")

    @app.route(path="/raises")
    async def raises(session: WebTransportSession) -> None:
        raise ValueError("handler bug")

    @app.route(path="/hangs")
    async def hangs(session: WebTransportSession) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append("handler")

    app.route(path="/echo")(serve_echo)

    for path in ("/mw-raises", "/mw-hangs"):
        app.route(path=path)(serve_echo)
    return app


@asynccontextmanager
async def serving(app: ServerApp) -> AsyncIterator[tuple[WebTransportClient, int]]:
    """The app served on loopback (``fastwt.testing.TestClient``): its client and port."""
    async with TestClient(app) as served:
        yield served.client, served.port


async def test_faulty_handlers_and_middleware_are_isolated_timed_out_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled: list[str] = []
    caplog.set_level(logging.INFO, logger="fastwt.framework")
    async with serving(faulty_app(cancelled)) as (client, port):
        url = f"https://127.0.0.1:{port}"

        raised = await client.connect(url=f"{url}/raises")
        with anyio.fail_after(5):
            assert (await raised.wait_closed())[0] == ErrorCodes.HANDLER_ERROR

        hung = await client.connect(url=f"{url}/hangs")
        with anyio.fail_after(5):
            code, reason = await hung.wait_closed()
        assert (code, reason) == (ErrorCodes.HANDLER_ERROR, "handler timed out")

        for path, status in (("/mw-raises", 500), ("/mw-hangs", 503)):
            with pytest.raises(SessionRejectedError) as refused, anyio.fail_after(5):
                await client.connect(url=f"{url}{path}")
            assert refused.value.status_code == status

        live = await client.connect(url=f"{url}/echo")  # the app still serves
        stream = await live.create_bidirectional_stream()
        await stream.write(data=b"unharmed", end_stream=True)
        with anyio.fail_after(5):
            assert await stream.read_all() == b"unharmed"
    assert sorted(cancelled) == ["handler", "middleware"]  # nothing left running
    logged = caplog.text
    assert "handler bug" in logged and "middleware bug" in logged
    assert "handler_timeout" in logged and "request_timeout" in logged
    record(
        "user code faults",
        "raising handler -> close code HANDLER_ERROR; hung handler cancelled at 0.5 s; "
        "raising middleware -> 500; hung middleware cancelled, 503; the app serves on",
    )


async def test_a_task_leaked_by_a_handler_that_fails_later_harms_no_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    if sniffio.current_async_library() != "asyncio":
        pytest.skip("the leaked task is an asyncio task")
    app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0))
    leaked: list[asyncio.Task[None]] = []

    async def later() -> None:
        await asyncio.sleep(0.1)
        raise RuntimeError("leaked task failed")

    @app.route(path="/leak")
    async def leak(session: WebTransportSession) -> None:
        leaked.append(asyncio.ensure_future(later()))  # nobody awaits it

    app.route(path="/echo")(serve_echo)

    async with serving(app) as (client, port):
        for _ in range(3):
            s = await client.connect(url=f"https://127.0.0.1:{port}/leak")
            with anyio.fail_after(5):
                await s.wait_closed()
        await anyio.sleep(0.3)
        live = await client.connect(url=f"https://127.0.0.1:{port}/echo")
        stream = await live.create_bidirectional_stream()
        await stream.write(data=b"fine", end_stream=True)
        with anyio.fail_after(5):
            assert await stream.read_all() == b"fine"
    assert all(t.done() and isinstance(t.exception(), RuntimeError) for t in leaked)

"""Graceful shutdown with live sessions and streams in flight, one peer granting no
credit: GOAWAY goes out, sessions are closed with the shutdown code, data already
written reaches a peer that reads, shutdown handlers run, no task or thread is left, and
it all ends within a bound whatever the peers do."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time

import anyio
import anyio.abc
import pytest
from raw_client import accepted_session
from robustness_figures import record

from fastwt import ClientConfig, ErrorCodes, ServerConfig, WebTransportClient, WebTransportSession
from fastwt.framework import ServerApp

pytestmark = pytest.mark.anyio

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the raw aioquic peer runs on asyncio


async def test_graceful_shutdown_is_bounded_and_loses_nothing_written() -> None:
    threads_before = {t.name for t in threading.enumerate()}
    tasks_before = asyncio.all_tasks()
    app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0))
    app.shutdown_timeout = 3.0
    shutdown_ran: list[str] = []
    wrote = anyio.Event()

    @app.on_shutdown
    async def goodbye() -> None:
        shutdown_ran.append("handler")

    @app.route(path="/push")
    async def push(session: WebTransportSession) -> None:
        stream = await session.create_unidirectional_stream()
        await stream.write(data=PAYLOAD, end_stream=True)
        wrote.set()
        await anyio.sleep_forever()

    @app.route(path="/idle")
    async def idle(session: WebTransportSession) -> None:
        await anyio.sleep_forever()

    serving = anyio.CancelScope()

    async def run_app(*, task_status: anyio.abc.TaskStatus[object]) -> None:
        with serving:
            await app.serve(task_status=task_status)

    async with anyio.create_task_group() as tg:
        addresses: list[tuple[str, int]] = await tg.start(run_app)
        port = addresses[0][1]
        trust = ClientConfig(server_certificate_hashes=[app.server.certificate_hash])
        async with (
            WebTransportClient(config=trust) as client,
            accepted_session(port, "/idle", max_stream_data=1, max_data=64),
        ):
            reader = await client.connect(url=f"https://127.0.0.1:{port}/push")
            incoming = reader.incoming_unidirectional_streams()
            stream = await anext(incoming)
            with anyio.fail_after(5):
                await wrote.wait()
            started = time.monotonic()
            serving.cancel()  # the app's serve() is stopped: shutdown begins
            # The client reads what was written before the close, then sees the close.
            with anyio.fail_after(10):
                received = await stream.read_all()
                code, _reason = await reader.wait_closed()
    took = time.monotonic() - started
    assert hashlib.sha256(received).digest() == hashlib.sha256(PAYLOAD).digest()
    assert code == ErrorCodes.SERVER_SHUTDOWN
    assert reader.draining  # GOAWAY came before the close
    assert shutdown_ran == ["handler"]
    assert took < app.shutdown_timeout + 2, took
    # Tasks the app or the server started and left running (not the test runner's).
    others = {
        t
        for t in asyncio.all_tasks() - tasks_before
        if not t.done() and "/fastwt/" in getattr(t.get_coro(), "cr_code", t).co_filename
    }
    assert not others, others
    # Process-lifetime workers may start on first use: the I/O runtime's thread, the log
    # forwarder, asyncio's executor (name resolution). Nothing else may be left.
    new_threads = {t.name for t in threading.enumerate()} - threads_before
    lasting = {"fastwt-io", "fastwt-log"}
    assert all(t in lasting or t.startswith("asyncio_") for t in new_threads), new_threads
    record(
        "graceful shutdown",
        f"returned in {took:.2f} s with a peer granting no credit; 1 MiB in flight "
        "delivered intact; GOAWAY, code SERVER_SHUTDOWN, shutdown handler ran",
    )

"""fastwt.ReconnectingClient: backoff delays, and a real server killed and restarted."""

from __future__ import annotations

import random
import socket
import textwrap
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import pytest

from fastwt import (
    Backoff,
    ClientConfig,
    ReconnectingClient,
    ServerConfig,
    SessionRejectedError,
    WebTransportSession,
)
from fastwt.cli import write_dev_certificate
from fastwt.framework import MiddlewareRejected, ServerApp
from fastwt.testing import TestClient

pytestmark = pytest.mark.timeout(90)


def test_backoff_grows_exponentially_to_the_cap_with_jitter_below_it() -> None:
    fixed = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0)
    assert [fixed.delay(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert fixed.delay(10_000) == 1.0  # no overflow
    jittered = Backoff(initial=0.1, maximum=1.0, jitter=0.5, rng=random.Random(1))
    delays = [jittered.delay(n) for n in range(200)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert len(set(delays)) > 100  # spread out, not one value
    assert all(0.5 <= d <= 1.0 for d in delays[10:])
    for bad in ({"initial": 2.0, "maximum": 1.0}, {"multiplier": 0.5}, {"jitter": 1.5}):
        with pytest.raises(ValueError):
            Backoff(**bad)  # type: ignore[arg-type]


APP = """
import os
from fastwt.framework import ServerApp

app = ServerApp()


@app.route(path="/echo")
async def echo(session):
    async for stream in session.incoming_bidirectional_streams():
        data = await stream.read_all()
        await stream.write(data=f"{os.getpid()}:".encode() + data, end_stream=True)
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.anyio
async def test_reconnects_with_backoff_after_the_server_is_killed_and_restarted(
    tmp_path: Path, fastwt_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "reconnect_app.py").write_text(textwrap.dedent(APP))
    digest = write_dev_certificate(tmp_path)  # the same certificate across restarts
    monkeypatch.chdir(tmp_path)
    port = free_udp_port()
    args = ("run", "reconnect_app:app", "--host", "127.0.0.1", "--port", str(port))
    cert_args = ("--certfile", "cert.pem", "--keyfile", "key.pem")

    async def start_server() -> Any:
        server = fastwt_cli(*args, *cert_args)
        await anyio.to_thread.run_sync(server.wait_for, r"serving on")
        return server

    first = await start_server()
    config = ClientConfig(
        server_certificate_hashes=[digest],
        connect_timeout=1.0,
        # A killed server sends nothing: the idle timeout is what notices it.
        max_idle_timeout=1.0,
        keep_alive_interval=0.2,
    )
    retries: list[tuple[int, float]] = []
    retried = anyio.Event()

    def on_retry(attempt: int, delay: float, error: BaseException) -> None:
        retries.append((attempt, delay))
        if len(retries) >= 2:
            retried.set()

    client = ReconnectingClient(
        f"https://127.0.0.1:{port}/echo",
        config=config,
        backoff=Backoff(initial=0.05, maximum=0.4, jitter=0.5),
        on_retry=on_retry,
    )
    replies: list[tuple[int, str]] = []
    got_reply = anyio.Event()

    async def chat(session: WebTransportSession) -> None:
        nonlocal got_reply
        while True:
            stream = await session.create_bidirectional_stream()
            await stream.write(data=b"ping", end_stream=True)
            pid, _, text = (await stream.read_all()).decode().partition(":")
            replies.append((int(pid), text))
            got_reply.set()
            await anyio.sleep(0.05)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.run, chat)
            await got_reply.wait()
            first.proc.kill()  # SIGKILL: no goodbye to the client
            first.proc.wait()
            await retried.wait()  # the client is trying, and failing, to reconnect
            got_reply = anyio.Event()
            second = await start_server()
            await got_reply.wait()
            tg.cancel_scope.cancel()
    assert second.stop() == 0, second.output

    pids = [pid for pid, _ in replies]
    assert pids[0] == first.proc.pid and pids[-1] == second.proc.pid
    assert {text for _, text in replies} == {"ping"}
    assert client.connections == 2
    attempts = [attempt for attempt, _ in retries]
    assert attempts == list(range(1, len(attempts) + 1))
    assert all(0 < delay <= 0.4 for _, delay in retries)


@pytest.mark.anyio
async def test_rejections_that_will_not_change_are_raised_and_others_retried() -> None:
    app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0))
    busy = [2]

    @app.middleware
    async def gate(*, session: Any) -> None:
        if session.path.startswith("/forbidden"):
            raise MiddlewareRejected(status_code=403)
        if busy[0] > 0:
            busy[0] -= 1
            raise MiddlewareRejected(status_code=503)

    @app.route(path="/ok")
    async def ok(session: WebTransportSession) -> None:
        await session.wait_closed()

    async with TestClient(app) as served:
        config = ClientConfig(server_certificate_hashes=[app.server.certificate_hash])
        fast = Backoff(initial=0.01, maximum=0.02)
        forbidden = ReconnectingClient(served.url("/forbidden"), config=config, backoff=fast)
        with pytest.raises(SessionRejectedError) as caught:
            async for _ in forbidden.sessions():
                pytest.fail("a 403 must not connect")
        assert caught.value.status_code == 403

        statuses: list[int] = []
        client = ReconnectingClient(
            served.url("/ok"),
            config=config,
            backoff=fast,
            on_retry=lambda _n, _d, exc: statuses.append(getattr(exc, "status_code", 0)),
        )
        with anyio.fail_after(10):
            async with aclosing(client.sessions()) as sessions:
                async for session in sessions:
                    assert session.state == "accepted"
                    break
        assert session.is_closed  # closed by the generator's exit
        assert statuses == [503, 503]

        busy[0] = 5
        limited = ReconnectingClient(served.url("/ok"), config=config, backoff=fast, max_attempts=3)
        with pytest.raises(SessionRejectedError) as caught:
            async for _ in limited.sessions():
                pytest.fail("should have given up")
        assert caught.value.status_code == 503

"""Limits a server exposed to the internet needs: ``max_sessions`` counts sessions across
every bound address (not connections per address), connections that never send CONNECT
take no session room, handshakes in flight and sessions per client IP have their own
limits, stateless Retry is available, and a client or app that stalls admission is cut
off by ``request_timeout``. Each refusal is clear: CONNECTION_REFUSED, or a status."""

from __future__ import annotations

import socket
import time
from contextlib import AsyncExitStack

import anyio
import pytest
from integration.echo_server import echo_server
from raw_client import raw_connection
from robustness_figures import record

from fastwt import (
    ClientConfig,
    ServerConfig,
    SessionRejectedError,
    WebTransportClient,
    WebTransportServer,
)
from fastwt.errors import WebTransportError
from fastwt.testing import echo_once

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the raw aioquic clients run on asyncio


async def wait_for(predicate: object, limit: float = 5) -> None:
    with anyio.fail_after(limit):
        while not predicate():  # type: ignore[operator]
            await anyio.sleep(0.01)


async def test_max_sessions_counts_sessions_across_bound_addresses() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    async with (
        echo_server(bind_host=["127.0.0.1", "::1"], max_sessions=2) as echo,
        echo.client() as client,
    ):
        port = echo.server.local_addresses[0][1]
        one = await client.connect(url=f"https://127.0.0.1:{port}/echo")
        two = await client.connect(url=f"https://[::1]:{port}/echo")
        await wait_for(lambda: echo.server.session_count == 2)
        for url in (f"https://127.0.0.1:{port}/echo", f"https://[::1]:{port}/echo"):
            with pytest.raises(WebTransportError, match=r"(?i)refused"):
                await client.connect(url=url)
        assert await echo_once(one, b"alive") == b"alive"
        await two.close()
        await wait_for(lambda: echo.server.session_count == 1)
        three = await client.connect(url=f"https://[::1]:{port}/echo")  # room again
        assert await echo_once(three, b"alive") == b"alive"
        record("max_sessions=2 on two addresses", "3rd session refused on either address")


async def test_connections_that_never_send_connect_take_no_session_room() -> None:
    async with AsyncExitStack() as stack:
        echo = await stack.enter_async_context(echo_server(max_sessions=2))
        port = echo.server.local_addresses[0][1]
        for _ in range(4):  # more idle connections than max_sessions
            await stack.enter_async_context(raw_connection(port))
        await wait_for(lambda: echo.server.handshake_count == 4)
        client = await stack.enter_async_context(echo.client())
        session = await client.connect(url=f"{echo.url}/echo")
        assert await echo_once(session, b"alive") == b"alive"
        assert echo.server.session_count == 1


@pytest.fixture(params=["rust", "python"])
def either_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The limit tests that both backends must pass (Retry is the Rust server's only)."""
    monkeypatch.setenv("FASTWT_BACKEND", str(request.param))
    return str(request.param)


@pytest.mark.usefixtures("either_backend")
async def test_handshake_limit_refuses_a_flood_while_live_sessions_work() -> None:
    async with AsyncExitStack() as stack:
        echo = await stack.enter_async_context(echo_server(max_handshakes=3))
        port = echo.server.local_addresses[0][1]
        client = await stack.enter_async_context(echo.client())
        live = await client.connect(url=f"{echo.url}/echo")
        for _ in range(3):
            await stack.enter_async_context(raw_connection(port))
        await wait_for(lambda: echo.server.handshake_count == 3)
        with pytest.raises(WebTransportError, match=r"(?i)refused"):
            await client.connect(url=f"{echo.url}/echo")
        assert await echo_once(live, b"alive") == b"alive"
        record("max_handshakes=3", "4th connection refused, live session echoes")


@pytest.mark.usefixtures("either_backend")
async def test_sessions_per_ip_are_limited_per_address() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    async with (
        echo_server(bind_host=["127.0.0.1", "::1"], max_sessions_per_ip=1) as echo,
        echo.client() as client,
    ):
        port = echo.server.local_addresses[0][1]
        v4 = await client.connect(url=f"https://127.0.0.1:{port}/echo")
        with pytest.raises(WebTransportError, match=r"(?i)refused"):
            await client.connect(url=f"https://127.0.0.1:{port}/echo")
        v6 = await client.connect(url=f"https://[::1]:{port}/echo")  # another address
        assert await echo_once(v4, b"alive") == await echo_once(v6, b"alive") == b"alive"


async def test_stateless_retry_admits_real_clients() -> None:
    async with echo_server(retry=True) as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        assert await echo_once(session, b"alive") == b"alive"


async def test_a_request_the_app_never_answers_gets_503() -> None:
    config = ServerConfig(bind_host="127.0.0.1", bind_port=0, request_timeout=0.5)
    async with WebTransportServer(config=config) as server:
        await server.listen()  # nobody ever calls accept()
        port = server.local_addresses[0][1]
        trust = ClientConfig(server_certificate_hashes=[server.certificate_hash])
        async with WebTransportClient(config=trust) as client:
            started = time.monotonic()
            with pytest.raises(SessionRejectedError) as refused, anyio.fail_after(5):
                await client.connect(url=f"https://127.0.0.1:{port}/")
            took = time.monotonic() - started
        assert refused.value.status_code == 503
        assert server.session_count == 0
        record("unanswered request (request_timeout=0.5 s)", f"503 after {took:.2f} s")


async def test_connections_without_a_request_are_closed_at_the_deadline() -> None:
    async with echo_server(request_timeout=0.5) as echo:
        port = echo.server.local_addresses[0][1]
        async with raw_connection(port) as idle:
            await wait_for(lambda: echo.server.handshake_count == 1)
            started = time.monotonic()
            with anyio.fail_after(5):
                await idle.terminated.wait()
            record("connection without CONNECT", f"closed after {time.monotonic() - started:.2f} s")
        assert echo.server.handshake_count == 0

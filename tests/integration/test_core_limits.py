"""Server limits and keep-alive over real QUIC, on both backends: ``max_sessions``,
``pending_request_capacity`` (503 with retry-after), ``request_timeout`` for a client
that never sends its CONNECT request, and ``keep_alive_interval`` against an idle
timeout."""

from __future__ import annotations

import ssl

import anyio
import pytest
from aioquic.asyncio import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

from fastwt import (
    ClientConfig,
    ServerConfig,
    SessionRejectedError,
    WebTransportClient,
    WebTransportError,
    WebTransportServer,
)

from .echo_server import echo_server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("backend")]


async def test_pending_request_capacity_refuses_with_503_and_retry_after() -> None:
    config = ServerConfig(bind_host="127.0.0.1", bind_port=0, pending_request_capacity=1)
    async with WebTransportServer(config=config) as server:
        await server.listen()  # nobody takes the requests: the first one waits
        port = server.local_addresses[0][1]
        client_config = ClientConfig(server_certificate_hashes=[server.certificate_hash])
        async with (
            WebTransportClient(config=client_config) as client,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(lambda: client.connect(url=f"https://127.0.0.1:{port}/first"))
            with anyio.fail_after(1):
                while server.session_count == 0:
                    await anyio.sleep(0.01)
            with pytest.raises(SessionRejectedError) as rejected, anyio.fail_after(10):
                await client.connect(url=f"https://127.0.0.1:{port}/second")
            assert rejected.value.status_code == 503
            assert rejected.value.headers.get("retry-after") == "1"
            tg.cancel_scope.cancel()


async def test_max_sessions_refuses_the_next_connection() -> None:
    async with echo_server(max_sessions=1) as echo, echo.client(connect_timeout=3) as client:
        first = await client.connect(url=f"{echo.url}/echo")
        with pytest.raises(WebTransportError), anyio.fail_after(10):
            await client.connect(url=f"{echo.url}/echo")
        assert not first.is_closed


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the raw client is aioquic's asyncio one
async def test_request_timeout_closes_a_connection_without_a_connect_request() -> None:
    async with echo_server(request_timeout=0.3) as echo:
        port = int(echo.url.rsplit(":", 1)[1])
        configuration = QuicConfiguration(alpn_protocols=H3_ALPN, is_client=True)
        configuration.verify_mode = ssl.CERT_NONE
        with anyio.fail_after(10):
            async with connect("127.0.0.1", port, configuration=configuration) as raw:
                # A QUIC connection with no CONNECT request: the server ends it.
                await raw.wait_closed()


async def test_keep_alive_outlives_the_idle_timeout() -> None:
    async with (
        echo_server(max_idle_timeout=0.6) as echo,
        echo.client(max_idle_timeout=0.6, keep_alive_interval=0.15) as client,
    ):
        session = await client.connect(url=f"{echo.url}/echo")
        await anyio.sleep(1.8)  # three idle timeouts without a byte from the application
        assert not session.is_closed
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"still here", end_stream=True)
        with anyio.fail_after(5):
            assert await stream.read_all() == b"still here"

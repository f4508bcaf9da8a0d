"""Sessions nobody holds any more end: a dropped session is closed, a dropped request is
refused, and a cancelled connect() leaves no connection behind (with keep-alives one
would otherwise live forever)."""

from __future__ import annotations

import gc

import anyio
import pytest
from robustness_figures import record

from fastwt import (
    ClientConfig,
    ServerConfig,
    SessionRejectedError,
    WebTransportClient,
    WebTransportServer,
)

pytestmark = pytest.mark.anyio


def server_config() -> ServerConfig:
    return ServerConfig(bind_host="127.0.0.1", bind_port=0, keep_alive_interval=0.2)


def client_for(server: WebTransportServer) -> WebTransportClient:
    trust = ClientConfig(
        server_certificate_hashes=[server.certificate_hash], keep_alive_interval=0.2
    )
    return WebTransportClient(config=trust)


async def test_a_session_the_server_drops_is_closed() -> None:
    async with WebTransportServer(config=server_config()) as server:
        await server.listen()
        port = server.local_addresses[0][1]
        async with client_for(server) as client, anyio.create_task_group() as tg:

            async def accept_and_drop() -> None:
                session = await server.accept()
                await session.accept()
                del session
                gc.collect()

            tg.start_soon(accept_and_drop)
            session = await client.connect(url=f"https://127.0.0.1:{port}/")
            with anyio.fail_after(5):
                code, reason = await session.wait_closed()
            assert code == 0 and "dropped" in reason
            assert server.session_count == 0


async def test_a_request_the_server_drops_is_refused() -> None:
    async with WebTransportServer(config=server_config()) as server:
        await server.listen()
        port = server.local_addresses[0][1]
        async with client_for(server) as client, anyio.create_task_group() as tg:

            async def take_and_drop() -> None:
                session = await server.accept()
                del session
                gc.collect()

            tg.start_soon(take_and_drop)
            with pytest.raises(SessionRejectedError) as refused, anyio.fail_after(5):
                await client.connect(url=f"https://127.0.0.1:{port}/")
            assert refused.value.status_code == 404


async def test_a_cancelled_connect_leaves_no_session_on_the_server() -> None:
    async with WebTransportServer(config=server_config()) as server:
        await server.listen()  # never answers: the connect waits for its response
        port = server.local_addresses[0][1]
        async with client_for(server) as client:
            with anyio.move_on_after(0.3):
                await client.connect(url=f"https://127.0.0.1:{port}/")
            gc.collect()
            started = anyio.current_time()
            with anyio.fail_after(3):
                while server.session_count or server.handshake_count:
                    await anyio.sleep(0.02)
            took = anyio.current_time() - started
        record("cancelled connect()", f"server side gone {took * 1000:.0f} ms after the cancel")


async def test_a_client_session_dropped_by_its_app_is_closed() -> None:
    async with WebTransportServer(config=server_config()) as server:
        await server.listen()
        port = server.local_addresses[0][1]
        async with client_for(server) as client, anyio.create_task_group() as tg:
            closed: list[tuple[int, str]] = []

            async def serve_one() -> None:
                session = await server.accept()
                await session.accept()
                closed.append(await session.wait_closed())

            tg.start_soon(serve_one)
            session = await client.connect(url=f"https://127.0.0.1:{port}/")
            del session
            gc.collect()
            with anyio.fail_after(5):
                while not closed:
                    await anyio.sleep(0.02)
            assert closed[0][0] == 0 and "dropped" in closed[0][1]

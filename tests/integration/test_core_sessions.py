"""Session life over real QUIC: rejection statuses, close codes, server shutdown,
cancellation, binding, certificates and a misbehaving client."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import pytest

from fastwt import (
    ClientConfig,
    ServerConfig,
    SessionClosedError,
    SessionError,
    SessionRejectedError,
    WebTransportClient,
    WebTransportServer,
    generate_dev_certificate,
)
from fastwt._bridge import get_hub

from .echo_server import echo_server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("backend")]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
async def test_every_rejection_status_reaches_the_client(status: int) -> None:
    async with echo_server() as echo, echo.client() as client:
        with pytest.raises(SessionRejectedError) as excinfo:
            await client.connect(url=f"{echo.url}/reject/{status}")
        assert excinfo.value.status_code == status
        assert excinfo.value.headers["x-reason"] == f"status {status}"


@pytest.mark.parametrize("status", [100, 101, 199, 200, 204, 299, 600])
async def test_interim_and_success_statuses_are_not_rejections(status: int) -> None:
    async with (
        WebTransportServer(config=ServerConfig(bind_host="127.0.0.1", bind_port=0)) as server,
        anyio.create_task_group() as tg,
    ):
        await server.listen()
        refused: list[str] = []

        async def answer() -> None:
            session = await server.accept()
            with pytest.raises(SessionError) as excinfo:
                await session.reject(status_code=status)
            refused.append(str(excinfo.value))
            await session.reject(status_code=403)  # still answerable

        tg.start_soon(answer)
        config = ClientConfig(server_certificate_hashes=[server.certificate_hash])
        async with WebTransportClient(config=config) as client:
            port = server.local_addresses[0][1]
            with pytest.raises(SessionRejectedError) as rejected, anyio.fail_after(5):
                await client.connect(url=f"https://127.0.0.1:{port}/")
        assert rejected.value.status_code == 403
        assert "300-599" in refused[0]


async def test_close_reason_over_1024_bytes_is_refused_and_1024_arrive_whole() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        with pytest.raises(SessionError, match="1024"):
            await session.close(error_code=1, reason="x" * 1025)
        assert not session.is_closed
        await session.close(error_code=2, reason="é" * 512)  # 1024 bytes of UTF-8
        with anyio.fail_after(5):
            while not echo.closes:
                await anyio.sleep(0.01)
        assert echo.closes[0] == (2, "é" * 512)


async def test_close_code_and_reason_client_to_server() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        await session.close(error_code=4242, reason="client done")
        with anyio.fail_after(5):
            while not echo.closes:
                await anyio.sleep(0.01)
        assert echo.closes[0] == (4242, "client done")
        assert session.is_closed


async def test_close_code_and_reason_server_to_client() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/close/31337")
        with anyio.fail_after(5):
            assert await session.wait_closed() == (31337, "server says bye")
        with pytest.raises(SessionClosedError) as excinfo:
            await session.read_datagram()
        assert excinfo.value.error_code == 31337


async def test_server_close_ends_live_sessions_with_code() -> None:
    async with echo_server() as echo, echo.client() as client:
        sessions = [await client.connect(url=f"{echo.url}/echo") for _ in range(3)]
        await echo.server.close(error_code=9, reason="maintenance")
        with anyio.fail_after(5):
            for s in sessions:
                assert await s.wait_closed() == (9, "maintenance")
        assert not echo.server.is_serving


async def test_cancelled_reads_leave_nothing_pending(backend: str) -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        stream = await session.create_bidirectional_stream()
        hub = session._hub  # the backend's hub (the Rust one is _bridge.get_hub())
        assert backend == "python" or hub is get_hub()
        with anyio.move_on_after(0.1):
            await stream.read()
        with anyio.move_on_after(0.1):
            await session.read_datagram()
        with anyio.move_on_after(0.1):
            await session.accept_bidirectional_stream()
        tokens = [stream._read_token, session._dgram_token, session._bi_token]
        assert not any(hub.is_waiting(t) for t in tokens)
        # The stream still works after the cancelled read.
        await stream.write(data=b"after", end_stream=True)
        with anyio.fail_after(5):
            assert await stream.read_all() == b"after"


async def test_binds_ipv4_and_ipv6_on_one_port() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    config = ServerConfig(bind_host=["127.0.0.1", "::1"], bind_port=0)
    async with WebTransportServer(config=config) as server:
        await server.listen()
        addrs = server.local_addresses
        assert {h for h, _ in addrs} == {"127.0.0.1", "::1"}
        assert len({p for _, p in addrs}) == 1


async def test_pem_certificate_files_and_ca_trust(tmp_path: Path) -> None:
    cert, key, digest = generate_dev_certificate()
    (tmp_path / "cert.pem").write_text(cert)
    (tmp_path / "key.pem").write_text(key)
    config = ServerConfig(
        bind_host="127.0.0.1",
        bind_port=0,
        certfile=tmp_path / "cert.pem",
        keyfile=tmp_path / "key.pem",
    )
    async with WebTransportServer(config=config) as server, anyio.create_task_group() as tg:
        await server.listen()
        assert server.certificate_hash == digest
        port = server.local_addresses[0][1]

        async def accept_one() -> None:
            async for s in server.incoming_sessions():
                await s.accept()

        tg.start_soon(accept_one)
        ca = ClientConfig(ca_certs=tmp_path / "cert.pem")
        async with WebTransportClient(config=ca) as client:
            session = await client.connect(url=f"https://localhost:{port}/")
            assert session.path == "/"
        tg.cancel_scope.cancel()


async def test_idle_timeout_closes_session() -> None:
    async with echo_server(max_idle_timeout=0.5) as echo, echo.client(max_idle_timeout=0.5) as c:
        session = await c.connect(url=f"{echo.url}/echo")
        with anyio.fail_after(5):
            _code, reason = await session.wait_closed()
        assert "timed out" in reason


async def test_malformed_capsule_from_one_client_does_not_take_the_server_down() -> None:
    async with echo_server() as echo, echo.client() as client:
        bad = await client.connect(url=f"{echo.url}/echo")
        # Reach under the API: write the two bytes 01 00 (a HEADERS frame of length 0,
        # then garbage) onto the CONNECT stream via a raw bidirectional stream header.
        stream = await bad.create_bidirectional_stream()
        await stream.write(data=b"\x01\x00\xff\xff", end_stream=True)
        good = await client.connect(url=f"{echo.url}/echo")
        s = await good.create_bidirectional_stream()
        await s.write(data=b"still alive", end_stream=True)
        with anyio.fail_after(5):
            assert await s.read_all() == b"still alive"

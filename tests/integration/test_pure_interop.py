"""The two backends against each other over real QUIC on loopback: a pure-Python server
with the Rust client, and a Rust server with the pure-Python client. The parametrized
suites run each backend against itself; these show that both speak the same protocol
(stream headers, capsules, datagram framing, error-code mapping, rejection headers)."""

from __future__ import annotations

import anyio
import pytest

from fastwt import SessionRejectedError, StreamError, _backend

from .echo_server import echo_server

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not _backend.rust_available(), reason="needs the Rust extension"),
]

PAIRS = [
    pytest.param("python", "rust", id="pure-server-rust-client"),
    pytest.param("rust", "python", id="rust-server-pure-client"),
]


@pytest.mark.parametrize(("server", "client"), PAIRS)
async def test_streams_datagrams_and_uni_push(server: str, client: str) -> None:
    async with (
        echo_server(backend=server) as echo,
        echo.client(backend=client) as c,
    ):
        with anyio.fail_after(20):
            session = await c.connect(url=f"{echo.url}/push-uni")
            pushed = await session.accept_unidirectional_stream()
            assert await pushed.read_all() == b"from server"
            stream = await session.create_bidirectional_stream()
            payload = bytes(range(256)) * 4096  # 1 MiB
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: stream.write_all(data=payload))
                assert await stream.read_all() == payload
            out = await session.create_unidirectional_stream()
            await out.write(data=b"uni", end_stream=True)
            back = await session.accept_unidirectional_stream()
            assert await back.read_all() == b"uni"
            got = b""
            while not got:
                await session.send_datagram(data=b"dgram")
                with anyio.move_on_after(0.5):
                    got = await session.read_datagram()
            assert got == b"dgram"


@pytest.mark.parametrize(("server", "client"), PAIRS)
async def test_close_codes_both_ways_and_rejections(server: str, client: str) -> None:
    async with (
        echo_server(backend=server) as echo,
        echo.client(backend=client) as c,
    ):
        with anyio.fail_after(20):
            session = await c.connect(url=f"{echo.url}/close/31337")
            assert await session.wait_closed() == (31337, "server says bye")
            session = await c.connect(url=f"{echo.url}/echo")
            await session.close(error_code=4242, reason="client done é")
            while (4242, "client done é") not in echo.closes:
                await anyio.sleep(0.01)
            with pytest.raises(SessionRejectedError) as rejected:
                await c.connect(url=f"{echo.url}/reject/429")
            assert rejected.value.status_code == 429
            assert rejected.value.headers["x-reason"] == "status 429"


@pytest.mark.parametrize(("server", "client"), PAIRS)
async def test_reset_code_crosses_the_error_code_mapping(server: str, client: str) -> None:
    async with (
        echo_server(backend=server) as echo,
        echo.client(backend=client) as c,
    ):
        session = await c.connect(url=f"{echo.url}/echo")
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"partial")
        await anyio.sleep(0.2)  # the stream's header must reach the server first
        await stream.reset(error_code=0x1E * 7 + 5)  # crosses a GREASE point
        with anyio.fail_after(5):
            while not any(isinstance(e, StreamError) for e in echo.errors):
                await anyio.sleep(0.01)
        codes = [e.error_code for e in echo.errors if isinstance(e, StreamError)]
        assert 0x1E * 7 + 5 in codes

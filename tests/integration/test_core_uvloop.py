"""The bridge on uvloop: the notifier's fd is watched with uvloop's add_reader."""

from __future__ import annotations

import anyio
import pytest

from .echo_server import echo_server

uvloop = pytest.importorskip("uvloop")


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return "asyncio", {"use_uvloop": True}


@pytest.mark.anyio
async def test_streams_and_datagrams_on_uvloop() -> None:
    import asyncio

    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        with anyio.fail_after(10):
            for i in range(100):
                stream = await session.create_bidirectional_stream()
                await stream.write(data=b"uv%d" % i, end_stream=True)
                assert await stream.read_all() == b"uv%d" % i
            await session.send_datagram(data=b"dgram")
            assert await session.read_datagram() == b"dgram"

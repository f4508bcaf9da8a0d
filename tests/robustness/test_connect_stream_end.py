"""A session ends with its CONNECT stream, cleanly or abruptly: a client that resets the
stream, or stops our half of it, and keeps the connection up must not hold a session."""

from __future__ import annotations

import time

import anyio
import pytest
from _aioquic_peer import aioquic_session
from integration.echo_server import echo_server
from robustness_figures import record

pytestmark = pytest.mark.anyio

H3_REQUEST_CANCELLED = 0x10C


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the aioquic peer runs on asyncio


@pytest.mark.parametrize("how", ["reset", "stop_sending"])
async def test_abrupt_end_of_the_connect_stream_ends_the_session(how: str) -> None:
    async with echo_server() as echo:
        port = echo.server.local_addresses[0][1]
        async with aioquic_session(host="127.0.0.1", port=port) as client:
            assert client.session_id is not None
            with anyio.fail_after(5):
                while echo.server.session_count != 1:
                    await anyio.sleep(0.01)
            started = time.monotonic()
            if how == "reset":
                client._quic.reset_stream(client.session_id, H3_REQUEST_CANCELLED)
            else:
                client._quic.stop_stream(client.session_id, H3_REQUEST_CANCELLED)
            client.transmit()
            with anyio.fail_after(3):
                while echo.server.session_count != 0:
                    await anyio.sleep(0.01)
            took = time.monotonic() - started
            record(f"CONNECT stream {how}", f"session ended after {took * 1000:.0f} ms")

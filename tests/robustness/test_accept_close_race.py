"""close() while accept() is still writing its 200 (the peer grants one byte of credit at
a time): the client must not be left in a session the server thinks closed. The 200 goes
out, then the close capsule with the server's code."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from raw_client import connect_request, raw_connection, response_status, session_close_data
from robustness_figures import record

from fastwt import ServerConfig, WebTransportServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the aioquic client runs on asyncio


async def test_close_during_a_pending_accept_sends_the_close_after_the_200() -> None:
    config = ServerConfig(bind_host="127.0.0.1", bind_port=0)
    async with WebTransportServer(config=config) as server, anyio.create_task_group() as tg:
        await server.listen()
        port = server.local_addresses[0][1]
        states: list[str] = []

        async def answer() -> None:
            session = await server.accept()
            async with anyio.create_task_group() as inner:
                inner.start_soon(session.accept)
                await anyio.lowlevel.checkpoint()  # the 200 is on its way, one byte per round trip
                await session.close(error_code=77, reason="changed my mind")
            states.append(str(session.state))

        tg.start_soon(answer)
        async with raw_connection(port, max_stream_data=1) as client:
            stream_id = connect_request(client, port=port)
            assert await response_status(client, stream_id) == b"200"
            with anyio.fail_after(10):
                while b"changed my mind" not in session_close_data(client):
                    await anyio.sleep(0.01)
            capsule = session_close_data(client)
            assert (77).to_bytes(4, "big") + b"changed my mind" in capsule
        assert server.session_count == 0
        record("close during a pending accept", "client saw 200 then the close capsule (code 77)")

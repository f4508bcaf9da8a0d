"""Session-level signals and draft details between fastwt peers: DRAIN_WEBTRANSPORT_SESSION,
GOAWAY on server shutdown, the draft in diagnostics, wt-protocol, and datagrams
refused to a peer without H3_DATAGRAM. Each runs on both backends (the pure one signals
a server's GOAWAY as a drain of each session: aioquic cannot send GOAWAY)."""

from __future__ import annotations

import anyio
import pytest

from fastwt import (
    ClientConfig,
    ConfigurationError,
    ServerConfig,
    SessionError,
    WebTransportClient,
    WebTransportServer,
    WebTransportSession,
)

from .echo_server import echo_server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("backend")]


async def _server_side(echo: object) -> WebTransportSession:
    sessions: list[WebTransportSession] = echo.sessions  # type: ignore[attr-defined]
    with anyio.fail_after(5):
        while not sessions:
            await anyio.sleep(0.01)
    return sessions[0]


async def test_fastwt_peers_speak_draft_02() -> None:
    """fastwt↔fastwt stays on draft-02 (what browsers speak): no session flow control."""
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        peer = await _server_side(echo)
        assert session.draft == peer.draft == "draft-02"
        info = await session.diagnose()
        assert info["draft"] == "draft-02" and info["flow_control"] is None
        assert session.protocol is None


async def test_drain_reaches_the_peer() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        peer = await _server_side(echo)
        assert not session.draining and not peer.draining
        await peer.drain()
        with anyio.fail_after(5):
            while not session.draining:
                await anyio.sleep(0.01)
        # Draining is a hint: the session still works.
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"still here", end_stream=True)
        with anyio.fail_after(5):
            assert await stream.read_all() == b"still here"
        await session.drain()
        with anyio.fail_after(5):
            while not peer.draining:
                await anyio.sleep(0.01)
        assert (await session.diagnose())["draining"] is True


async def test_server_shutdown_sends_goaway_before_the_close() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        await _server_side(echo)
        await echo.server.close(error_code=5, reason="maintenance")
        with anyio.fail_after(5):
            code, reason = await session.wait_closed()
        assert (code, reason) == (5, "maintenance")
        assert session.draining, "GOAWAY did not reach the client"


async def test_wt_protocol_is_chosen_from_what_the_client_offered() -> None:
    """wt-available-protocols (RFC 8941 list) in, wt-protocol (an sf-string) out; a
    protocol the client did not offer is refused."""
    config = ServerConfig(bind_host="127.0.0.1", bind_port=0)
    chosen: list[str | None] = []
    async with WebTransportServer(config=config) as server, anyio.create_task_group() as tg:
        await server.listen()
        port = server.local_addresses[0][1]

        async def serve() -> None:
            async for request in server.incoming_sessions():
                with pytest.raises(SessionError, match="not among the protocols"):
                    await request.accept(wt_protocol="v3")
                await request.accept(wt_protocol='v"2')
                chosen.append(request.protocol)

        tg.start_soon(serve)
        client_config = ClientConfig(
            server_certificate_hashes=[server.certificate_hash],
            headers={"wt-available-protocols": r'"v\"2";q=1, "v1"'},
        )
        async with WebTransportClient(config=client_config) as client:
            session = await client.connect(url=f"https://127.0.0.1:{port}/chat")
            assert session.protocol == 'v"2'
            assert session.headers["wt-protocol"] == r'"v\"2"'
            assert chosen == ['v"2']
            assert (await session.diagnose())["protocol"] == 'v"2'
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("name", ["wt_max_data", "wt_max_streams_bidi", "wt_max_streams_uni"])
def test_session_credit_must_be_positive(name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        ServerConfig(**{name: 0})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=name):
        ClientConfig(**{name: 2**61})  # type: ignore[arg-type]

"""Interop with aioquic, an independent WebTransport implementation (pure Python):
aioquic's client against the fastwt server, and the fastwt client against aioquic's
server. aioquic runs on asyncio only, so these tests do too."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from _aioquic_peer import (
    SETTINGS_ENABLE_WEBTRANSPORT_DRAFT02,
    SETTINGS_WEBTRANSPORT_MAX_SESSIONS_DRAFT07,
    SETTINGS_WT_ENABLED,
    SETTINGS_WT_INITIAL_MAX_DATA,
    SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI,
    SETTINGS_WT_INITIAL_MAX_STREAMS_UNI,
    SETTINGS_WT_MAX_SESSIONS,
    WT_MAX_DATA,
    WT_MAX_STREAMS_BIDI,
    WT_MAX_STREAMS_UNI,
    WT_STREAMS_BLOCKED_UNI,
    EchoServerProtocol,
    WebTransportProtocol,
    aioquic_echo_server,
    aioquic_session,
    bidi_echo,
    close_capsule,
    datagram_echo,
    pooled_connect,
    safari_session,
    session_close_data,
    varint_capsule,
    wait_for_capsule,
)
from _certs import DevCert
from aioquic.h3.events import DatagramReceived

from fastwt import ClientConfig, ServerConfig, WebTransportClient, WebTransportServer, devserver
from fastwt.session import WebTransportSession

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


@contextlib.asynccontextmanager
async def fastwt_echo_server(dev_cert: DevCert) -> AsyncIterator[devserver.DevServerInfo]:
    """``fastwt dev``'s echo server on 127.0.0.1, port 0, with the given certificate."""
    async with anyio.create_task_group() as tg:
        serve = functools.partial(
            devserver.serve,
            hosts=("127.0.0.1",),
            port=0,
            certfile=dev_cert.certfile,
            keyfile=dev_cert.keyfile,
        )
        info: devserver.DevServerInfo = await tg.start(serve)
        yield info
        tg.cancel_scope.cancel()


async def uni_echo(client: WebTransportProtocol, payload: bytes) -> bytes:
    """Send ``payload`` on a unidirectional stream; the echo server answers on one of its
    own (server-initiated unidirectional stream ids are 3 mod 4)."""
    assert client.http is not None and client.session_id is not None
    stream_id = client.http.create_webtransport_stream(client.session_id, is_unidirectional=True)
    client._quic.send_stream_data(stream_id, payload, end_stream=True)
    client.transmit()
    with anyio.fail_after(5):
        while True:
            for sid, ended in client.ended.items():
                if sid & 0x3 == 0x3 and ended.is_set():
                    return bytes(client.buffers[sid])
            await anyio.sleep(0.005)


async def test_aioquic_client_against_fastwt_server(anyio_backend: str, dev_cert: DevCert) -> None:
    payload = os.urandom(256 * 1024)
    async with fastwt_echo_server(dev_cert) as info:
        # The core hashes the certificate it loaded exactly as cryptography does.
        assert info.certificate_hash == dev_cert.sha256
        # aioquic verifies the chain and the 127.0.0.1 IP SAN of the PEM files fastwt loaded.
        async with aioquic_session(
            host="127.0.0.1", port=info.port, path="/echo", cafile=dev_cert.certfile
        ) as client:
            assert await bidi_echo(client, payload) == payload
            assert await datagram_echo(client, b"datagram from aioquic") == b"datagram from aioquic"
            assert await uni_echo(client, b"uni from aioquic") == b"uni from aioquic"


async def test_aioquic_client_sees_fastwt_close(anyio_backend: str, dev_cert: DevCert) -> None:
    """fastwt's session close sends CLOSE_WEBTRANSPORT_SESSION with code and reason."""
    async with (
        fastwt_echo_server(dev_cert) as info,
        aioquic_session(
            host="127.0.0.1", port=info.port, path="/close?code=4242&reason=bye%20now"
        ) as client,
    ):
        assert client.http is not None and client.session_id is not None
        trigger = client.http.create_webtransport_stream(client.session_id, is_unidirectional=True)
        client._quic.send_stream_data(trigger, b"close, please", end_stream=True)
        client.transmit()
        expected = close_capsule(4242, "bye now")
        with anyio.fail_after(5):
            while not session_close_data(client).startswith(expected):
                assert not client.terminated.is_set() or session_close_data(client), (
                    "connection closed without a CLOSE_WEBTRANSPORT_SESSION capsule"
                )
                await anyio.sleep(0.005)


@pytest.mark.parametrize("trust", ["certificate_hash", "ca_certs"])
async def test_fastwt_client_against_aioquic_server(
    anyio_backend: str, dev_cert: DevCert, trust: str
) -> None:
    if trust == "certificate_hash":
        config = ClientConfig(server_certificate_hashes=[dev_cert.sha256])
    else:
        config = ClientConfig(ca_certs=dev_cert.certfile)
    payload = os.urandom(256 * 1024)
    async with (
        aioquic_echo_server(
            host="127.0.0.1", port=0, certfile=dev_cert.certfile, keyfile=dev_cert.keyfile
        ) as port,
        WebTransportClient(config=config) as client,
    ):
        session = await client.connect(url=f"https://127.0.0.1:{port}/echo")
        with anyio.fail_after(10):
            stream = await session.create_bidirectional_stream()
            await stream.write(data=payload, end_stream=True)
            assert await stream.read_all() == payload

            uni = await session.create_unidirectional_stream()
            await uni.write(data=b"uni from fastwt", end_stream=True)
            async for incoming in session.incoming_unidirectional_streams():
                assert await incoming.read_all() == b"uni from fastwt"
                break

            assert await _datagram_echo(session, b"datagram from fastwt") == b"datagram from fastwt"
        await session.close()


async def test_fastwt_client_sees_aioquic_close(anyio_backend: str, dev_cert: DevCert) -> None:
    """aioquic's server closes the session on /close with a capsule (code 7); the fastwt
    session reports it."""
    async with (
        aioquic_echo_server(
            host="127.0.0.1", port=0, certfile=dev_cert.certfile, keyfile=dev_cert.keyfile
        ) as port,
        WebTransportClient(
            config=ClientConfig(server_certificate_hashes=[dev_cert.sha256])
        ) as client,
    ):
        session = await client.connect(url=f"https://127.0.0.1:{port}/close")
        with anyio.fail_after(5):
            code, reason = await session.wait_closed()
        assert (code, reason) == (EchoServerProtocol.CLOSE_CODE, EchoServerProtocol.CLOSE_REASON)
        assert session.is_closed
        assert (session.close_code, session.close_reason) == (code, reason)


async def _datagram_echo(session: object, payload: bytes, tries: int = 10) -> bytes:
    for _ in range(tries):
        await session.send_datagram(data=payload)  # type: ignore[attr-defined]
        with anyio.move_on_after(0.5):
            return bytes(await session.read_datagram())  # type: ignore[attr-defined]
    raise TimeoutError(f"no datagram came back after {tries} tries")


@contextlib.asynccontextmanager
async def recording_echo_server(
    dev_cert: DevCert, **options: Any
) -> AsyncIterator[tuple[int, list[Any]]]:
    """A fastwt echo server (``fastwt dev``'s routes) that keeps each accepted session's
    ``diagnose()``; ``options`` go to its ``ServerConfig``."""
    seen: list[Any] = []
    config = ServerConfig(
        bind_host="127.0.0.1",
        bind_port=0,
        certfile=dev_cert.certfile,
        keyfile=dev_cert.keyfile,
        **options,
    )

    async def handle(session: WebTransportSession) -> None:
        await session.accept()
        seen.append(await session.diagnose())
        await devserver.echo(session)

    async with WebTransportServer(config=config) as server, anyio.create_task_group() as tg:
        await server.listen()

        async def serve() -> None:
            async for session in server.incoming_sessions():
                tg.start_soon(handle, session)

        tg.start_soon(serve)
        yield server.local_addresses[0][1], seen
        tg.cancel_scope.cancel()


async def test_safari_shaped_client(anyio_backend: str, dev_cert: DevCert) -> None:
    """What Safari sends (SETTINGS with WT_MAX_SESSIONS and draft-07's id, no draft-02
    setting, ``:protocol webtransport-h3``, session flow control with room for only two
    server streams) and what it needs: WT_MAX_SESSIONS >= 1 and the initial limits in
    the server's SETTINGS, credit capsules before it sends anything, and a server that
    keeps within its WT_MAX_STREAMS (waiting, with WT_STREAMS_BLOCKED, for more)."""
    limits = {"wt_max_data": 4 << 20, "wt_max_streams_bidi": 60, "wt_max_streams_uni": 50}
    async with (
        recording_echo_server(dev_cert, **limits) as (port, seen),
        safari_session(host="127.0.0.1", port=port) as (client, settings, headers),
    ):
        assert settings.get(SETTINGS_WT_MAX_SESSIONS, 0) >= 1
        assert settings.get(SETTINGS_WT_ENABLED) == 1
        assert settings.get(SETTINGS_ENABLE_WEBTRANSPORT_DRAFT02) == 1
        assert SETTINGS_WEBTRANSPORT_MAX_SESSIONS_DRAFT07 not in settings, "switches Chrome"
        # The initial limits are ServerConfig's.
        assert settings.get(SETTINGS_WT_INITIAL_MAX_DATA) == 4 << 20
        assert settings.get(SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI) == 60
        assert settings.get(SETTINGS_WT_INITIAL_MAX_STREAMS_UNI) == 50
        assert b"sec-webtransport-http3-draft" not in headers, "draft-02 only"
        # Safari sends no stream data before it has session credit.
        max_data = await wait_for_capsule(client, WT_MAX_DATA)
        max_bidi = await wait_for_capsule(client, WT_MAX_STREAMS_BIDI)
        max_uni = await wait_for_capsule(client, WT_MAX_STREAMS_UNI)
        assert (max_data, max_bidi, max_uni) == (4 << 20, 60, 50)

        payload = os.urandom(256 * 1024)
        assert await bidi_echo(client, payload) == payload
        assert await datagram_echo(client, b"datagram from safari") == b"datagram from safari"

        # Three unidirectional streams, each echoed on one of the server's: the third
        # reply waits for credit beyond the two this client granted.
        assert client.http is not None and client.session_id is not None
        for i in range(3):
            sid = client.http.create_webtransport_stream(client.session_id, is_unidirectional=True)
            client._quic.send_stream_data(sid, f"uni {i}".encode(), end_stream=True)
        client.transmit()
        assert await wait_for_capsule(client, WT_STREAMS_BLOCKED_UNI) == 2
        with anyio.fail_after(5):
            while len(_server_uni_replies(client)) < 2:
                await anyio.sleep(0.005)
        await anyio.sleep(0.2)
        assert len(_server_uni_replies(client)) == 2, "the server exceeded WT_MAX_STREAMS"
        client.http.send_data(
            client.session_id, varint_capsule(WT_MAX_STREAMS_UNI, 3), end_stream=False
        )
        client.transmit()
        with anyio.fail_after(5):
            while len(_server_uni_replies(client)) < 3:
                await anyio.sleep(0.005)
        assert sorted(_server_uni_replies(client)) == [b"uni 0", b"uni 1", b"uni 2"]
        assert seen[0]["draft"] == "draft-07..14"
        assert seen[0]["flow_control"]["peer_max_streams_uni"] == 2


def _server_uni_replies(client: WebTransportProtocol) -> list[bytes]:
    return [
        bytes(client.buffers[sid])
        for sid, ended in list(client.ended.items())
        if sid & 0x3 == 0x3 and ended.is_set()
    ]


H3_REQUEST_REJECTED = 0x10B


async def _echo_on(client: WebTransportProtocol, session_id: int, payload: bytes) -> bytes:
    """A bidirectional echo on the session ``session_id`` of a pooled connection."""
    client.session_id = session_id
    return await bidi_echo(client, payload)


async def _datagram_echo_on(client: WebTransportProtocol, session_id: int, payload: bytes) -> int:
    """Sends ``payload`` as a datagram of ``session_id`` until it comes back; returns the
    session id the echo came back on."""
    assert client.http is not None
    for _ in range(10):
        client.http.send_datagram(session_id, payload)
        client.transmit()
        with anyio.move_on_after(0.5):
            while True:
                for event in client.events:
                    if isinstance(event, DatagramReceived) and event.data == payload:
                        return int(event.stream_id)
                await anyio.sleep(0.005)
    raise TimeoutError("no datagram came back")


async def test_pooled_sessions_on_one_connection(anyio_backend: str, dev_cert: DevCert) -> None:
    """``max_sessions_per_connection=2``: a client of drafts 07+ opens two sessions on one
    connection; both echo (streams and datagrams, each on its own session), a third
    CONNECT gets 429, and closing one session leaves the other and the connection up."""
    async with (
        recording_echo_server(dev_cert, max_sessions_per_connection=2) as (port, seen),
        safari_session(host="127.0.0.1", port=port, path="/echo") as (client, settings, _),
    ):
        assert settings.get(SETTINGS_WT_MAX_SESSIONS) == 2
        for setting in (
            SETTINGS_WT_INITIAL_MAX_DATA,
            SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI,
            SETTINGS_WT_INITIAL_MAX_STREAMS_UNI,
        ):
            assert settings.get(setting, 0) > 0
        first = client.session_id
        assert first is not None
        second, response = await pooled_connect(client, host="127.0.0.1", port=port, path="/echo")
        assert isinstance(response, dict) and response[b":status"] == b"200"
        _, refused = await pooled_connect(client, host="127.0.0.1", port=port, path="/echo")
        assert isinstance(refused, dict) and refused[b":status"] == b"429"

        assert await _echo_on(client, first, b"to the first") == b"to the first"
        assert await _echo_on(client, second, b"to the second") == b"to the second"
        assert await _datagram_echo_on(client, second, b"dgram 2") == second
        assert await _datagram_echo_on(client, first, b"dgram 1") == first
        with anyio.fail_after(5):
            while len(seen) < 2:
                await anyio.sleep(0.01)

        # The first session ends; the second and the connection go on.
        assert client.http is not None
        client.http.send_data(first, close_capsule(0, "first done"), end_stream=True)
        client.transmit()
        await anyio.sleep(0.8)  # past the server's close grace period
        assert not client.terminated.is_set(), "the connection went with the first session"
        assert await _echo_on(client, second, b"still here") == b"still here"
        assert await _datagram_echo_on(client, second, b"dgram again") == second
        # With the first gone there is room for another.
        _, again = await pooled_connect(client, host="127.0.0.1", port=port, path="/echo")
        assert isinstance(again, dict) and again[b":status"] == b"200"


async def test_a_second_session_is_refused_without_pooling(
    anyio_backend: str, dev_cert: DevCert
) -> None:
    """At the default ``max_sessions_per_connection=1`` a second CONNECT is reset with
    H3_REQUEST_REJECTED (not processed) and the first session goes on."""
    async with (
        recording_echo_server(dev_cert) as (port, _),
        safari_session(host="127.0.0.1", port=port, path="/echo") as (client, settings, _),
    ):
        assert settings.get(SETTINGS_WT_MAX_SESSIONS) == 1
        first = client.session_id
        assert first is not None
        _, refused = await pooled_connect(client, host="127.0.0.1", port=port, path="/echo")
        assert refused == H3_REQUEST_REJECTED
        assert await _echo_on(client, first, b"alone") == b"alone"

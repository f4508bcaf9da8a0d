"""Interop with aioquic, an independent WebTransport implementation (pure Python):
aioquic's client against the fastwt server, and the fastwt client against aioquic's
server. aioquic runs on asyncio only, so these tests do too."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator

import anyio
import pytest
from _aioquic_peer import (
    EchoServerProtocol,
    WebTransportProtocol,
    aioquic_echo_server,
    aioquic_session,
    bidi_echo,
    close_capsule,
    datagram_echo,
    session_close_data,
)
from _certs import DevCert

from fastwt import ClientConfig, WebTransportClient, devserver

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

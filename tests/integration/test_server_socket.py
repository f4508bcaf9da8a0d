"""A server on a socket it is given (``listen(sock=...)``), and connection IDs naming a
QUIC-LB server id (``ServerConfig.server_id``, encrypted with ``cid_key``), over real
QUIC on loopback."""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from cid_tap import CidTap

from fastwt import (
    ClientConfig,
    ConfigurationError,
    ServerConfig,
    ServerError,
    WebTransportClient,
    WebTransportServer,
)
from fastwt.quic_lb import DecodedCid, decode_cid

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serving(
    config: ServerConfig, sock: socket.socket | None = None
) -> AsyncIterator[WebTransportServer]:
    """A server answering each bidirectional stream with ``b"ok:"`` + what it read."""
    async with WebTransportServer(config=config) as server, anyio.create_task_group() as tg:
        await server.listen(sock=sock)

        async def handle(session: object) -> None:
            from fastwt import WebTransportSession

            assert isinstance(session, WebTransportSession)
            await session.accept()
            stream = await session.accept_bidirectional_stream()
            await stream.write(data=b"ok:" + await stream.read_all(), end_stream=True)
            await session.wait_closed()

        async def accept_loop() -> None:
            async for session in server.incoming_sessions():
                tg.start_soon(handle, session)

        tg.start_soon(accept_loop)
        try:
            yield server
        finally:
            await server.close()
            tg.cancel_scope.cancel()


async def round_trip(server: WebTransportServer, port: int) -> bytes:
    config = ClientConfig(server_certificate_hashes=[server.certificate_hash])
    async with WebTransportClient(config=config) as client:
        session = await client.connect(url=f"https://127.0.0.1:{port}/")
        with anyio.fail_after(10):
            stream = await session.create_bidirectional_stream()
            await stream.write(data=b"hi", end_stream=True)
            reply = await stream.read_all()
        await session.close()
    return reply


async def test_a_server_serves_on_a_socket_it_is_given() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        # bind_port says otherwise: the given socket wins.
        config = ServerConfig(bind_host="127.0.0.1", bind_port=1)
        async with serving(config, sock) as server:
            assert server.local_addresses == [("127.0.0.1", port)]
            assert await round_trip(server, port) == b"ok:hi"
        # The caller's socket is still its own (the server served on a duplicate).
        assert sock.fileno() >= 0 and sock.getsockname()[1] == port


async def test_a_given_socket_must_be_a_bound_udp_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        with pytest.raises(ServerError, match="UDP"):
            await WebTransportServer().listen(sock=tcp)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unbound:
        with pytest.raises(ValueError, match="not bound"):
            await WebTransportServer().listen(sock=unbound)


async def test_a_refused_socket_is_not_leaked() -> None:
    """The duplicate handed to the core is closed when the core refuses it: 20 refusals
    leave no more descriptors open than before (counted with fstat, after a garbage
    collection so that earlier tests' objects do not close theirs meanwhile)."""

    def open_fds() -> int:
        gc.collect()
        count = 0
        for fd in range(4096):
            try:
                os.fstat(fd)
            except OSError:
                continue
            count += 1
        return count

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unbound:
        # The first listen() makes the process's hub (its wake-up descriptors).
        with pytest.raises(ValueError):
            await WebTransportServer().listen(sock=unbound)
        before = open_fds()
        for _ in range(20):
            with pytest.raises(ValueError):
                await WebTransportServer().listen(sock=unbound)
        assert open_fds() <= before


async def test_a_server_id_server_accepts_sessions() -> None:
    config = ServerConfig(bind_host="127.0.0.1", bind_port=0, server_id="0a0b0c")
    async with serving(config) as server:
        port = server.local_addresses[0][1]
        assert await round_trip(server, port) == b"ok:hi"


SERVER_ID = bytes.fromhex("0a0b0c")
KEY = bytes.fromhex("8f95f09245765f80256934e50c66207f")


async def issued_cids(config: ServerConfig, cid_len: int) -> set[bytes]:
    """The CIDs a server with ``config`` issued to a client that ran one session
    through a :class:`CidTap` (the DCIDs of the client's short-header packets)."""
    async with serving(config) as server:
        port = server.local_addresses[0][1]
        with CidTap(("127.0.0.1", port), cid_len) as tap:
            assert await round_trip(server, tap.port) == b"ok:hi"
    assert tap.dcids, f"no short-header packet among {tap.packets}"
    return tap.dcids


async def test_plaintext_cids_carry_the_server_id_in_the_clear() -> None:
    config = ServerConfig(bind_host="127.0.0.1", bind_port=0, server_id=SERVER_ID)
    for cid in await issued_cids(config, 14):
        assert cid[0] == 13, "config rotation 0, 13 octets follow"
        assert cid[1:4] == SERVER_ID
        assert decode_cid(cid, 3) == DecodedCid(config_id=0, server_id=SERVER_ID, worker=0)


async def test_a_server_with_a_cid_key_issues_cids_only_the_key_decodes() -> None:
    config = ServerConfig(
        bind_host="127.0.0.1", bind_port=0, server_id=SERVER_ID.hex(), cid_key=KEY.hex()
    )
    cids = await issued_cids(config, 17)
    for cid in cids:
        assert cid[0] == 16, "config rotation 0, 16 octets follow: one AES block"
        assert decode_cid(cid, 3, KEY) == DecodedCid(config_id=0, server_id=SERVER_ID, worker=0)
        wrong = decode_cid(cid, 3, bytes(16))
        assert wrong is not None and (wrong.server_id, wrong.worker) != (SERVER_ID, 0)
        assert cid[1:4] != SERVER_ID, "the server id is not in the clear"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (bytes(15), "16 octets"),
        (bytes(17), "16 octets"),
        ("00" * 17, "16 octets"),
        ("zz" * 16, "hex"),
        (16, "16 octets"),
    ],
)
def test_bad_cid_keys_are_refused_without_showing_them(key: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        ServerConfig(server_id="0a", cid_key=key)  # type: ignore[arg-type]
    assert "zz" not in str(raised.value) and "0000" not in str(raised.value)


def test_a_cid_key_needs_a_server_id_and_stays_out_of_repr() -> None:
    with pytest.raises(ConfigurationError, match="cid_key needs server_id"):
        ServerConfig(cid_key=KEY)
    assert KEY.hex() not in repr(ServerConfig(server_id="0a", cid_key=KEY.hex()))


def test_decode_cid_refuses_a_key_of_another_length() -> None:
    with pytest.raises(ConfigurationError, match="16 octets"):
        decode_cid(bytes(17), 3, bytes(8))
    assert decode_cid(bytes(16), 3, KEY) is None, "not an encrypted CID's length"


@pytest.mark.parametrize("bad", ["", "zz", "00" * 10, b"", 7])
def test_bad_server_ids_are_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="server_id"):
        ServerConfig(server_id=bad)  # type: ignore[arg-type]


def test_the_pure_backend_refuses_rebind() -> None:
    pytest.importorskip("aioquic")
    from fastwt import ClientError

    client = WebTransportClient(config=ClientConfig(backend="python"))
    with pytest.raises(ClientError, match="Rust backend"):
        client.rebind()

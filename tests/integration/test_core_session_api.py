"""The rest of the session and stream surface: keying material, diagnose, limits,
insecure development trust, and wrong-hash refusal."""

from __future__ import annotations

import ssl

import anyio
import pytest

from fastwt import (
    ClientConfig,
    ConnectionError,
    StreamError,
    WebTransportClient,
    WebTransportError,
    WebTransportSession,
)

from .echo_server import echo_server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("backend")]


@pytest.mark.rust_only("aioquic has no TLS exporter: export_keying_material raises there")
async def test_both_sides_export_the_same_keying_material() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        with anyio.fail_after(5):
            while not echo.sessions:
                await anyio.sleep(0.01)
        peer: WebTransportSession = echo.sessions[0]
        mine = await session.export_keying_material(label="fastwt test", context=b"ctx", length=32)
        theirs = await peer.export_keying_material(label="fastwt test", context=b"ctx", length=32)
        other = await session.export_keying_material(label="other", context=b"ctx", length=32)
        assert len(mine) == 32
        assert mine == theirs
        assert mine != other


async def test_diagnose_reports_state_path_and_counters() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo?room=7")
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"abc", end_stream=True)
        with anyio.fail_after(5):
            assert await stream.read_all() == b"abc"
        info = await session.diagnose()
        assert info["state"] == "accepted"
        assert info["path"] == "/echo?room=7"
        assert info["close_code"] is None
        assert info["bytes_sent"] > 0 and info["bytes_received"] > 0
        for key in ("datagrams_sent", "datagrams_received", "datagrams_dropped", "rtt"):
            assert key in info
        sinfo = await stream.diagnose()
        assert sinfo["bytes_sent"] == 3 and sinfo["bytes_received"] == 3
        assert sinfo["direction"] == "bidirectional" and sinfo["is_peer_initiated"] is False
        await session.close(error_code=3, reason="done")
        info = await session.diagnose()
        assert (info["state"], info["close_code"], info["close_reason"]) == ("closed", 3, "done")


async def test_read_limits_raise_clear_errors() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        with anyio.fail_after(5):
            stream = await session.create_bidirectional_stream()
            await stream.write(data=b"0123456789", end_stream=True)
            with pytest.raises(StreamError, match="max_size=4"):
                await stream.read_all(max_size=4)
            stream = await session.create_bidirectional_stream()
            await stream.write(data=b"short", end_stream=True)
            with pytest.raises(StreamError, match="5 of 8"):
                await stream.readexactly(size=8)
            stream = await session.create_bidirectional_stream()
            await stream.write(data=b"no newline here", end_stream=True)
            with pytest.raises(StreamError, match="max_size=3"):
                await stream.readline(max_size=3)


async def test_development_trust_with_cert_none_and_wrong_hash_refused() -> None:
    async with echo_server() as echo:
        insecure = ClientConfig(verify_mode=ssl.CERT_NONE)
        async with WebTransportClient(config=insecure) as client:
            session = await client.connect(url=f"{echo.url}/echo")
            assert session.state == "accepted"
        wrong = ClientConfig(server_certificate_hashes=["00" * 32], connect_timeout=5)
        async with WebTransportClient(config=wrong) as client:
            with pytest.raises(ConnectionError):
                await client.connect(url=f"{echo.url}/echo")


async def test_writes_after_the_peer_closed_the_session_fail_instead_of_hanging() -> None:
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"first")
        await echo.server.close(error_code=5, reason="bye")
        with anyio.fail_after(10):
            assert await session.wait_closed() == (5, "bye")
            with pytest.raises(WebTransportError):
                # More than the stream's 1 MiB buffer: without the error this would wait
                # forever for room.
                for _ in range(64):
                    await stream.write(data=b"x" * 65536)

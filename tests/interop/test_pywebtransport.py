"""Interop with pywebtransport (the reference implementation), draft-15 and its
predecessor 0.20.1, each a real peer in a subprocess of its own venv: its client against
the fastwt server, and (0.21.1) its server for the fastwt client. fastwt picks the draft
per connection from what the peer sends; these peers speak only the newest one."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from _certs import DevCert
from _peers import PEERS, peer_python, run_json_script

from fastwt import ClientConfig, ServerConfig, WebTransportClient, WebTransportServer, devserver
from fastwt.errors import SessionError
from fastwt.session import WebTransportSession

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


@contextlib.asynccontextmanager
async def fastwt_server(dev_cert: DevCert) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    """A fastwt server on 127.0.0.1: ``/proto`` is accepted with ``wt_protocol="chat-v2"``
    and echoes like ``fastwt dev``; other paths go to the dev server's routes. Yields
    the port and, per session, what the server side saw."""
    seen: list[dict[str, Any]] = []
    config = ServerConfig(
        bind_host="127.0.0.1", bind_port=0, certfile=dev_cert.certfile, keyfile=dev_cert.keyfile
    )

    async def handle(session: WebTransportSession) -> None:
        if session.path == "/proto":
            with pytest.raises(SessionError, match="not among the protocols"):
                await session.accept(wt_protocol="not-offered")
            await session.accept(wt_protocol="chat-v2")
            info = await session.diagnose()
            key = await session.export_keying_material(
                label="fastwt-test", context=b"ctx", length=16
            )
            info["exporter"] = key.hex()
            seen.append(info)
            await devserver.echo(session)
        else:
            await devserver.handle_session(session)

    async with WebTransportServer(config=config) as server, anyio.create_task_group() as tg:
        await server.listen()

        async def serve() -> None:
            async for session in server.incoming_sessions():
                tg.start_soon(handle, session)

        tg.start_soon(serve)
        yield server.local_addresses[0][1], seen
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("version", ["0.21.1", "0.20.1"])
async def test_pywebtransport_client_against_fastwt_server(
    anyio_backend: str, dev_cert: DevCert, version: str
) -> None:
    python = peer_python(version)
    async with fastwt_server(dev_cert) as (port, seen):
        result = await run_json_script(
            python, "pwt_client.py", "--url", f"https://127.0.0.1:{port}"
        )
    assert "error" not in result, result.get("traceback", result)
    assert result["version"] == version
    # 0.20.1 alone gets one retry of a connection it never sent a CONNECT on (see
    # peers/pwt_client.py); 0.21.1 must connect at the first try.
    assert result.get("connect_retries", 0) <= (1 if version == "0.20.1" else 0), result
    assert result["bidi"] == "bidi from pywebtransport"
    assert result["uni"] == "uni from pywebtransport"
    assert result["datagram"] == "datagram from pywebtransport"
    assert result["close"] == [4242, "bye now"]
    assert result["protocol"] == "chat-v2"
    server_side = seen[0]
    assert server_side["draft"] == "draft-15"
    assert server_side["protocol"] == "chat-v2"
    if version == "0.21.1":
        # Draft-15's per-session exporter ("EXPORTER-WebTransport", session id, label,
        # context) on both sides.
        assert result["exporter"] == server_side["exporter"]
    flow = server_side["flow_control"]
    assert flow is not None and flow["local_max_streams_bidi"] >= 1


@contextlib.asynccontextmanager
async def pwt_server(python: str, dev_cert: DevCert) -> AsyncIterator[tuple[int, list[str]]]:
    """pywebtransport 0.21.1's server (peers/pwt_server.py); yields its port and output."""
    proc = await anyio.open_process(
        [
            python,
            str(PEERS / "pwt_server.py"),
            "--cert",
            dev_cert.certfile,
            "--key",
            dev_cert.keyfile,
        ],
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    port_seen = anyio.Event()
    port: list[int] = []

    async def read() -> None:
        buf = b""
        async for chunk in stdout:
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                lines.append(text)
                if text.startswith("PORT "):
                    port.append(int(text.split()[1]))
                    port_seen.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            with anyio.fail_after(30):
                await port_seen.wait()
            yield port[0], lines
            tg.cancel_scope.cancel()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.aclose()


async def test_fastwt_client_against_pywebtransport_server(
    anyio_backend: str, dev_cert: DevCert
) -> None:
    """The fastwt client sees draft-15 only (SETTINGS_WT_ENABLED without draft-02's
    setting), so it connects with ``webtransport-h3`` and draft-15 rules."""
    python = peer_python("0.21.1")
    config = ClientConfig(
        server_certificate_hashes=[dev_cert.sha256],
        headers={"wt-available-protocols": '"chat-v2", "chat-v1"'},
    )
    async with (
        pwt_server(python, dev_cert) as (port, output),
        WebTransportClient(config=config) as client,
    ):
        with anyio.fail_after(20):
            session = await client.connect(url=f"https://127.0.0.1:{port}/echo")
            assert session.draft == "draft-15"
            assert session.protocol == "chat-v2"
            stream = await session.create_bidirectional_stream()
            payload = os.urandom(64 * 1024)
            await stream.write(data=payload, end_stream=True)
            assert await stream.read_all() == payload
            uni = await session.create_unidirectional_stream()
            await uni.write(data=b"uni from fastwt", end_stream=True)
            async for incoming in session.incoming_unidirectional_streams():
                assert await incoming.read_all() == b"uni from fastwt"
                break
            assert await _datagram_echo(session, b"datagram from fastwt") == b"datagram from fastwt"
            key = await session.export_keying_material(
                label="fastwt-test", context=b"ctx", length=16
            )
            with anyio.fail_after(5):
                while not any(line.startswith("EXPORTER ") for line in output):
                    await anyio.sleep(0.01)
            assert f"EXPORTER {key.hex()}" in output, "\n".join(output)
            diag = await session.diagnose()
            assert diag["draft"] == "draft-15"
            assert diag["flow_control"]["peer_max_streams_bidi"] >= 1
            await session.close()

            closing = await client.connect(url=f"https://127.0.0.1:{port}/close")
            trigger = await closing.create_unidirectional_stream()
            await trigger.write(data=b"close, please", end_stream=True)
            code, reason = await closing.wait_closed()
        assert (code, reason) == (7, "bye from pywebtransport"), "\n".join(output)


async def _datagram_echo(session: WebTransportSession, payload: bytes) -> bytes:
    for _ in range(10):
        await session.send_datagram(data=payload)
        with anyio.move_on_after(0.5):
            return bytes(await session.read_datagram())
    raise TimeoutError("no datagram came back after 10 tries")


async def test_pywebtransport_client_pools_sessions_on_a_fastwt_server(
    anyio_backend: str, dev_cert: DevCert
) -> None:
    """pywebtransport 0.21.1 opens two sessions on one connection of a server with
    ``max_sessions_per_connection=2``: each echoes, a third is refused (429), and
    closing the first leaves the second and the connection working."""
    python = peer_python("0.21.1")
    config = ServerConfig(
        bind_host="127.0.0.1",
        bind_port=0,
        certfile=dev_cert.certfile,
        keyfile=dev_cert.keyfile,
        max_sessions_per_connection=2,
    )
    paths: list[str] = []

    async def handle(session: WebTransportSession) -> None:
        paths.append(session.path)
        await devserver.handle_session(session)

    async with WebTransportServer(config=config) as server, anyio.create_task_group() as tg:
        await server.listen()

        async def serve() -> None:
            async for session in server.incoming_sessions():
                tg.start_soon(handle, session)

        tg.start_soon(serve)
        port = server.local_addresses[0][1]
        result = await run_json_script(python, "pwt_pool.py", "--url", f"https://127.0.0.1:{port}")
        tg.cancel_scope.cancel()
    assert "error" not in result, result.get("traceback", result)
    assert result["same_connection"] is True
    assert result["ids"][0] != result["ids"][1]
    assert (result["first_bidi"], result["second_bidi"]) == ("to the first", "to the second")
    assert (result["first_datagram"], result["second_datagram"]) == ("dgram one", "dgram two")
    # pywebtransport reports the refusal as error 0x10b whether it enforces the server's
    # WT_MAX_SESSIONS itself or gets fastwt's 429 (rust/core/src/tests/pooling.rs and
    # test_aioquic.py check the 429 on the wire).
    assert result["third"] != "accepted" and "0x10b" in result["third"], result
    assert result["first_closed"] is True
    assert result["second_after"] == "still here"
    assert result["second_datagram_after"] == "dgram again"
    assert result["connection_closed"] is False
    assert paths == ["/echo", "/echo"], "the third never reached the application"

"""Certificate rotation while serving: new connections get the new certificate, open
sessions are not dropped; ``fastwt run`` reloads on SIGHUP (development certificates
expire within 14 days, so a long-running server must be able to change its own)."""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from robustness_figures import record

from fastwt import (
    ClientConfig,
    ServerConfig,
    WebTransportClient,
    WebTransportServer,
    WebTransportSession,
    generate_dev_certificate,
)
from fastwt.errors import WebTransportError
from fastwt.testing import echo_once, serve_echo

pytestmark = pytest.mark.anyio


def write_cert(directory: Path) -> str:
    cert, key, digest = generate_dev_certificate()
    (directory / "cert.pem").write_text(cert)
    (directory / "key.pem").write_text(key)
    return digest


async def connect(
    stack: AsyncExitStack, port: int, digest: str, path: str = "/"
) -> WebTransportSession:
    config = ClientConfig(server_certificate_hashes=[digest])
    client = await stack.enter_async_context(WebTransportClient(config=config))
    with anyio.fail_after(5):
        return await client.connect(url=f"https://127.0.0.1:{port}{path}")


async def test_rotation_keeps_open_sessions_and_serves_the_new_certificate(
    tmp_path: Path,
) -> None:
    old = write_cert(tmp_path)
    config = ServerConfig(
        bind_host="127.0.0.1",
        bind_port=0,
        certfile=tmp_path / "cert.pem",
        keyfile=tmp_path / "key.pem",
    )
    async with (
        AsyncExitStack() as stack,
        WebTransportServer(config=config) as server,
        anyio.create_task_group() as tg,
    ):
        await server.listen()
        port = server.local_addresses[0][1]

        async def serve() -> None:
            async for session in server.incoming_sessions():

                async def echo(session: WebTransportSession = session) -> None:
                    await session.accept()
                    await serve_echo(session)

                tg.start_soon(echo)

        tg.start_soon(serve)
        before = await connect(stack, port, old)
        new = write_cert(tmp_path)  # the files are replaced on disk
        assert server.reload_certificate() == new == server.certificate_hash
        assert await echo_once(before, b"still open") == b"still open"
        after = await connect(stack, port, new)
        assert await echo_once(after, b"new cert") == b"new cert"
        with pytest.raises(WebTransportError):
            await connect(stack, port, old)  # pinned to the old hash: refused now
        tg.cancel_scope.cancel()
    record("certificate rotation", "open session kept; new connections get the new certificate")


APP = """
from fastwt.framework import ServerApp

app = ServerApp()

@app.route(path="/echo")
async def echo(session):
    async for stream in session.incoming_bidirectional_streams():
        await stream.write(data=await stream.read_all(), end_stream=True)
"""


async def test_fastwt_run_reloads_its_certificate_on_sighup(
    tmp_path: Path, fastwt_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rot_app.py").write_text(textwrap.dedent(APP))
    old = write_cert(tmp_path)
    monkeypatch.chdir(tmp_path)
    server = fastwt_cli(
        "run", "rot_app:app", "--host", "127.0.0.1", "--port", "0",
        "--certfile", "cert.pem", "--keyfile", "key.pem",
    )  # fmt: skip
    port = int(server.wait_for(r"listening on 127\.0\.0\.1 port (\d+)").group(1))
    stack = AsyncExitStack()
    before = await connect(stack, port, old, "/echo")
    new = write_cert(tmp_path)
    os.kill(server.proc.pid, signal.SIGHUP)
    server.wait_for(rf"certificate reloaded, SHA-256: {new}")
    assert await echo_once(before, b"kept") == b"kept"
    after = await connect(stack, port, new, "/echo")
    assert await echo_once(after, b"reloaded") == b"reloaded"
    await stack.aclose()
    assert server.stop() == 0, server.output

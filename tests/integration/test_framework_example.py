"""examples/reference_app.py — a pywebtransport-style app — runs on fastwt.

In process (asyncio, which the app's handlers use directly) against the fastwt client,
and as a script: ``run()`` serving until SIGINT, then exiting cleanly.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest
from example_support import EXAMPLES, load_example

from fastwt import ClientConfig, SessionRejectedError, WebTransportClient, generate_dev_certificate
from fastwt.framework import ServerApp

EXAMPLE = EXAMPLES / "reference_app.py"
AUTH = {"authorization": "Bearer demo-token"}

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("backend")]


async def exercise(port: int, cert_hash: str) -> None:
    """What a client of the reference app does; asserts every answer."""
    config = ClientConfig(server_certificate_hashes=[cert_hash])
    base = f"https://127.0.0.1:{port}"
    async with WebTransportClient(config=config) as client:
        with pytest.raises(SessionRejectedError) as caught:
            await client.connect(url=f"{base}/echo", timeout=10)
        assert caught.value.status_code == 401
        with pytest.raises(SessionRejectedError) as caught:
            await client.connect(url=f"{base}/missing", headers=AUTH, timeout=10)
        assert caught.value.status_code == 404

        session = await client.connect(url=f"{base}/echo", headers=AUTH, timeout=10)
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"stream data", end_stream=True)
        assert await stream.read_all() == b"ECHO: stream data"
        await session.send_datagram(data=b"dgram")
        with anyio.fail_after(10):
            assert await session.read_datagram() == b"ECHO: dgram"
        await session.close()

        session = await client.connect(url=f"{base}/greet", headers=AUTH, timeout=10)
        stream = await session.accept_bidirectional_stream()
        assert await stream.read_all() == b"hello, who are you?"
        await stream.write(data=b"ada", end_stream=True)
        with anyio.fail_after(10):
            assert await session.read_datagram() == b"welcome ada"
        with anyio.fail_after(10):
            code, _ = await session.wait_closed()
        assert code == 0  # the handler returned: closed cleanly

        session = await client.connect(url=f"{base}/chat/lobby?nick=ada", headers=AUTH, timeout=10)
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"hi all", end_stream=True)
        assert await stream.read_all() == b"[lobby] hi all"
        await session.close()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the example's handlers use asyncio
async def test_reference_app_in_process(tmp_path: Path) -> None:
    cert_pem, key_pem, cert_hash = generate_dev_certificate()
    (tmp_path / "cert.pem").write_text(cert_pem)
    (tmp_path / "key.pem").write_text(key_pem)
    app: ServerApp = load_example("reference_app").create_app(
        certfile=str(tmp_path / "cert.pem"), keyfile=str(tmp_path / "key.pem")
    )
    async with anyio.create_task_group() as tg:
        addresses = await tg.start(
            lambda task_status: app.serve(host="127.0.0.1", port=0, task_status=task_status)
        )
        assert app.server.certificate_hash == cert_hash
        await exercise(addresses[0][1], cert_hash)
        tg.cancel_scope.cancel()


def test_reference_app_as_a_script_stops_cleanly_on_sigint() -> None:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()
    found: dict[str, str] = {}

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if m := re.search(r"sha-256: ([0-9a-f]{64})", line):
                found["hash"] = m[1]
            if m := re.search(r"serving on \[\('127\.0\.0\.1', (\d+)\)", line):
                found["port"] = m[1]
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(30) and "port" in found and "hash" in found, "".join(lines)
        anyio.run(exercise, int(found["port"]), found["hash"])
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(5)
    output = "".join(lines)
    assert "reference app starting" in output
    assert "reference app stopped" in output  # shutdown handlers ran
    assert "Traceback" not in output

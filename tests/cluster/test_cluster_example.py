"""examples/cluster_room.py on two nodes sharing one Redis: one started by ``fastwt run
... --broker``, one as a script with ``--broker``; members on either node hear each
other, and each welcome counts the members of both nodes."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from cluster_support import RedisServer
from process_support import CliProcess, OutputProcess, PythonScript

from fastwt import ClientConfig, WebTransportClient

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _address(process: OutputProcess, port_pattern: str) -> tuple[int, str]:
    port = int(process.wait_for(port_pattern, timeout=60)[1])
    cert_hash = process.wait_for(r"certificate SHA-256:\s+(\w+)", timeout=10)[1]
    return port, cert_hash


async def test_cluster_room_example_on_two_nodes(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # `fastwt run examples.cluster_room:app` imports from here
    cli = CliProcess(
        "run", "examples.cluster_room:app", "--host", "127.0.0.1", "--port", "0",
        "--broker", redis_server.url,
    )  # fmt: skip
    script = PythonScript(
        ROOT / "examples" / "cluster_room.py", "--port", "0", "--broker", redis_server.url
    )
    try:
        nodes = [
            _address(cli, r"serving on 127\.0\.0\.1:(\d+)"),
            _address(script, r"listening on \[\('127\.0\.0\.1', (\d+)\)"),
        ]
        # printed after the certificate line: wait for it, not only look at what came
        script.wait_for(r"broker:\s+unix://", timeout=10)
        async with WebTransportClient(
            config=ClientConfig(server_certificate_hashes=[h for _, h in nodes])
        ) as client:
            sessions = []
            for n, (port, _) in enumerate(nodes):
                session = await client.connect(
                    url=f"https://127.0.0.1:{port}/room/lobby?nick=n{n}", timeout=10
                )
                with anyio.fail_after(10):
                    stream = await session.accept_unidirectional_stream()
                    welcome = json.loads(await stream.read_all())
                assert welcome["present"] == n + 1  # counts the member on the other node
                sessions.append(session)
            on_cli, on_script = sessions
            await on_cli.send_datagram(data=b"tick")
            with anyio.fail_after(10):
                assert await on_script.read_datagram() == b"n0:tick"
            stream = await on_script.create_unidirectional_stream()
            await stream.write(data=b"chat line", end_stream=True)
            with anyio.fail_after(10):
                relayed = await on_cli.accept_unidirectional_stream()
                assert await relayed.read_all() == b"n1:chat line"
            for session in sessions:
                await session.close()
    finally:
        assert cli.stop() == 0, cli.output
        assert script.stop() == 0, script.output

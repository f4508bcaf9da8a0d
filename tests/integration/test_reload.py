"""``fastwt run --reload``: a real server restarted after its module is edited."""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from fastwt import ClientConfig, WebTransportClient, WebTransportError
from fastwt.cli import main, write_dev_certificate

pytest.importorskip("watchfiles")

pytestmark = pytest.mark.timeout(120)

APP = """
from fastwt.framework import ServerApp

app = ServerApp()


@app.route(path="/version")
async def version(session):
    stream = await session.create_unidirectional_stream()
    await stream.write(data=b"VERSION", end_stream=True)
    await session.wait_closed()
"""


def write_app(directory: Path, version: str) -> None:
    (directory / "reload_app.py").write_text(textwrap.dedent(APP).replace("VERSION", version))


async def served_version(url: str, digest: str) -> str:
    config = ClientConfig(server_certificate_hashes=[digest], connect_timeout=2)
    async with WebTransportClient(config=config) as client:
        session = await client.connect(url=url)
        with anyio.fail_after(10):
            stream = await session.accept_unidirectional_stream()
            version = (await stream.read_all()).decode()
        await session.close()
    return version


async def wait_for_version(url: str, digest: str, expected: str) -> None:
    """Connect until the server answers ``expected`` (it restarts in between), for at
    most a minute."""
    deadline = time.monotonic() + 60
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = await served_version(url, digest)
        except WebTransportError as exc:
            seen = repr(exc)
        if seen == expected:
            return
        await anyio.sleep(0.1)
    pytest.fail(f"the server never answered {expected!r}; last: {seen!r}")


def count(server: Any, pattern: str) -> int:
    return len(re.findall(pattern, server.output))


@pytest.mark.anyio
async def test_reload_restarts_the_app_when_its_module_changes(
    tmp_path: Path, fastwt_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    app_dir = tmp_path / "src"
    app_dir.mkdir()
    write_app(app_dir, "one")
    digest = write_dev_certificate(tmp_path)  # one certificate across restarts
    monkeypatch.chdir(app_dir)
    server = fastwt_cli(
        "run",
        "reload_app:app",
        "--reload",
        "--reload-dir",
        str(app_dir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--certfile",
        str(tmp_path / "cert.pem"),
        "--keyfile",
        str(tmp_path / "key.pem"),
    )
    port = (await anyio.to_thread.run_sync(server.wait_for, r"serving on .*, (\d+)\)")).group(1)
    url = f"https://127.0.0.1:{port}/version"
    assert await served_version(url, digest) == "one"

    # Each child binds its own port 0: follow the port the second one prints.
    write_app(app_dir, "two")
    await anyio.to_thread.run_sync(server.wait_for, r"reload_app\.py changed: restarting")
    deadline = time.monotonic() + 60
    while count(server, r"serving on ") < 2:
        assert time.monotonic() < deadline, server.output
        await anyio.sleep(0.05)
    port = re.findall(r"serving on .*, (\d+)\)", server.output)[-1]
    await wait_for_version(f"https://127.0.0.1:{port}/version", digest, "two")

    # A file that is not Python does not restart it: the next restart names only the
    # module edited after it.
    (app_dir / "notes.txt").write_text("not code")
    write_app(app_dir, "three")
    deadline = time.monotonic() + 60
    while count(server, r"changed: restarting") < 2:
        assert time.monotonic() < deadline, server.output
        await anyio.sleep(0.05)
    restarts = re.findall(r"INFO\s+fastwt\.cli: (.*) changed: restarting", server.output)
    assert restarts == ["reload_app.py", "reload_app.py"], server.output
    # Stop only once the third child serves: a SIGINT while it still imports is a
    # KeyboardInterrupt traceback in that child (the race this test once had).
    while count(server, r"serving on ") < 3:
        assert time.monotonic() < deadline, server.output
        await anyio.sleep(0.05)
    assert server.stop() == 0, server.output
    assert "Traceback" not in server.output


def test_reload_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nowhere")
    assert main(["run", "json:dumps", "--reload", "--reload-dir", missing]) == 2
    assert "no such directory" in capsys.readouterr().err

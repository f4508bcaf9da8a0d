"""The README's ``make run`` on a fresh clone, the way a newcomer meets it: Debian's own
``/usr/bin/python3`` (externally managed, PEP 668: ``pip install`` into it fails), nothing
on PATH but the system's directories and cargo's, no virtual environment active.

The scripts must make the project's own ``.venv/`` from that interpreter, build and
install into it, and start the echo server, which prints its banner and answers a real
client. The clone is of the committed ``HEAD`` (what CI and a newcomer get). Cargo's
target directory is shared with the development build, so only the two crates of the
clone are recompiled.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import anyio
import pytest

from fastwt import ClientConfig, WebTransportClient

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _newcomer_env(home: Path) -> dict[str, str]:
    cargo = shutil.which("cargo")
    assert cargo is not None
    keep = ("HOME", "USER", "LANG", "RUSTUP_HOME", "CARGO_HOME", "TMPDIR", "CI")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = f"/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:{Path(cargo).parent}"
    env["CARGO_TARGET_DIR"] = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    env.setdefault("HOME", str(home))
    return env


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_make_run_on_a_fresh_clone_with_the_system_python(tmp_path: Path) -> None:
    if not SYSTEM_PYTHON.exists() or shutil.which("make") is None:
        pytest.skip("needs the system's /usr/bin/python3 and make")
    if shutil.which("cargo") is None or shutil.which("git") is None:
        pytest.skip("needs cargo and git")
    clone = tmp_path / "fastwt"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = _newcomer_env(tmp_path)
    resolved = subprocess.run(
        ["sh", "-c", "command -v python3"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(resolved).resolve().parent == Path("/usr/bin"), resolved

    port = _free_udp_port()
    proc = subprocess.Popen(
        ["make", "run", f"PORT={port}", "HOST=127.0.0.1"],
        cwd=clone,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        deadline = time.monotonic() + 1200
        digest = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"certificate SHA-256:\s+([0-9a-f]{64})", "".join(lines))
            if found and any("listening on" in line for line in lines):
                digest = found.group(1)
                break
            time.sleep(0.5)
        output = "".join(lines)
        assert digest is not None, f"no banner; make run printed:\n{output[-6000:]}"
        assert f"fastwt echo server listening on 127.0.0.1:{port}" in output
        assert "externally-managed-environment" not in output
        cfg = (clone / ".venv" / "pyvenv.cfg").read_text()
        assert re.search(r"^home = /usr/bin$", cfg, re.M), cfg

        async def echo() -> bytes:
            config = ClientConfig(server_certificate_hashes=[digest])
            async with WebTransportClient(config=config) as client:
                with anyio.fail_after(10):
                    session = await client.connect(url=f"https://127.0.0.1:{port}/echo")
                    stream = await session.create_bidirectional_stream()
                    await stream.write(data=b"newcomer", end_stream=True)
                    data = await stream.read_all()
                await session.close()
                return data

        assert anyio.run(echo) == b"newcomer"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

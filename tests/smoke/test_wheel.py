"""The release wheel installs into a fresh virtual environment with no Rust toolchain
and runs a server + client echo there.

It builds with ``maturin build --release`` into a temporary directory, reusing the
cargo target directory (``target/`` or ``$CARGO_TARGET_DIR``) of the development
build, so a warm rebuild takes seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SMOKE = """
import functools, sys
import anyio
import fastwt
from fastwt import ClientConfig, WebTransportClient, devserver

assert "site-packages" in fastwt.__file__, fastwt.__file__

async def main() -> None:
    async with anyio.create_task_group() as tg:
        serve = functools.partial(devserver.serve, hosts=("127.0.0.1",), port=0)
        info = await tg.start(serve)
        config = ClientConfig(server_certificate_hashes=[info.certificate_hash])
        async with WebTransportClient(config=config) as client:
            session = await client.connect(url=info.url)
            with anyio.fail_after(10):
                stream = await session.create_bidirectional_stream()
                await stream.write(data=b"smoke" * 1000, end_stream=True)
                assert await stream.read_all() == b"smoke" * 1000
                for _ in range(20):
                    await session.send_datagram(data=b"ping")
                    with anyio.move_on_after(0.5):
                        assert await session.read_datagram() == b"ping"
                        break
                else:
                    raise AssertionError("no datagram came back")
            await session.close()
        tg.cancel_scope.cancel()
    print("SMOKE OK", fastwt.__file__)

anyio.run(main)
"""


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_wheel_in_fresh_venv_without_rust(tmp_path: Path) -> None:
    maturin = shutil.which("maturin")
    if maturin is None:
        if os.environ.get("CI"):
            pytest.fail("maturin is needed to build the wheel", pytrace=False)
        pytest.skip("maturin is not installed")

    dist = tmp_path / "dist"
    subprocess.run(
        [maturin, "build", "--release", "--out", str(dist)],
        cwd=ROOT,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    wheels = list(dist.glob("fastwt-*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    assert "-abi3-" in wheel.name, f"not an abi3 wheel: {wheel.name}"
    if sys.platform == "linux":
        assert "manylinux" in wheel.name, f"not a manylinux wheel: {wheel.name}"

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"
    # No Rust in PATH (and no project sources on sys.path): only the wheel can work.
    path = os.pathsep.join([str(bin_dir), "/usr/local/bin", "/usr/bin", "/bin"])
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CARGO", "RUST", "PYTHON", "VIRTUAL_ENV", "MATURIN"))
    }
    env.update(PATH=path, PYTHONNOUSERSITE="1")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )

    installed = run(
        str(bin_dir / "python"), "-m", "pip", "install", "--only-binary", ":all:", str(wheel)
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    smoke = run(str(bin_dir / "python"), "-c", SMOKE)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "SMOKE OK" in smoke.stdout and str(env_dir) in smoke.stdout

    cli = run(str(bin_dir / "fastwt"), "--help")
    assert cli.returncode == 0 and "usage: fastwt" in cli.stdout, cli.stderr

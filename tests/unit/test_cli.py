"""The ``fastwt`` command line: help, argument errors, ``cert``, ``dev`` and ``run``.

(``fastwt demo`` is loaded in a real browser by tests/interop/test_browser.py.)
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fastwt import ClientConfig, WebTransportClient, cli
from fastwt.cli import main

COMMANDS = ["run", "dev", "demo", "cert", "bench"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastwt", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


# --------------------------------------------------------------------------- help


def test_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fastwt {command}")
    options = {
        "run": ["MODULE:APP", "--host", "--port", "--certfile", "--keyfile", "--log-level"],
        "dev": ["--host", "--port", "--certfile", "--keyfile", "--log-level"],
        "demo": ["--port", "--http-port"],
        "cert": ["--out-dir"],
        "bench": ["--quick", "--json", "--plot", "--target", "--cert-hash", "--serve"],
    }[command]
    for option in options:
        assert option in out


def test_console_script_is_installed() -> None:
    script = shutil.which("fastwt")
    if script is None:
        pytest.skip("the fastwt script is not on PATH")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("fastwt ")


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nonsense"],
        ["run"],
        ["run", "app", "--port", "http"],
        ["dev", "--port", "70000"],
        ["dev", "--log-level", "loud"],
        ["demo", "--http-port", "-1"],
        ["dev", "--certfile", "/nonexistent/cert.pem"],
        ["cert", "--bogus"],
    ],
)
def test_bad_arguments_one_line_exit_2(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "error:" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "expected MODULE:APP"),
        ("surely_no_such_module_xyz:app", "cannot import module"),
        ("json:no_such_app", "has no attribute"),
        ("json:dumps", "not a fastwt ServerApp"),
    ],
)
def test_run_bad_app(spec: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", spec]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_certfile_needs_keyfile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    assert main(["dev", "--certfile", str(cert)]) == 2
    assert "--certfile and --keyfile go together" in capsys.readouterr().err


def test_run_passes_the_certificate_and_tuning_to_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fastwt run --certfile/--keyfile`` and the tuning flags become ``ServerConfig``
    overrides of ``ServerApp.serve`` (through ``fastwt.cli.run_app``)."""
    (tmp_path / "cli_cert_app.py").write_text(
        "from fastwt.framework import ServerApp\napp = ServerApp()\n"
    )
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "run_app", lambda app, **kwargs: calls.append(kwargs))
    args = ["run", "cli_cert_app:app", "--certfile", str(cert), "--keyfile", str(key)]
    assert main([*args, "--port", "0", "--backend", "uvloop"]) == 0
    assert main(["run", "cli_cert_app:app"]) == 0
    tuning = ["--max-sessions", "5", "--idle-timeout", "2.5", "--keep-alive", "1"]
    assert main(["run", "cli_cert_app:app", *tuning, "--congestion-control", "bbr"]) == 0
    assert calls == [
        {
            "host": None,
            "port": 0,
            "backend": "asyncio",
            "backend_options": {"use_uvloop": True},
            "announce": False,
            "certfile": str(cert),
            "keyfile": str(key),
        },
        {
            "host": None,
            "port": None,
            "backend": "asyncio",
            "backend_options": {},
            "announce": True,
        },
        {
            "host": None,
            "port": None,
            "backend": "asyncio",
            "backend_options": {},
            "announce": True,
            "max_sessions": 5,
            "max_idle_timeout": 2.5,
            "keep_alive_interval": 1.0,
            "congestion_control_algorithm": "bbr",
        },
    ]


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run_cli("dev", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.startswith("fastwt dev: error:") and str(port) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_bad_certificate_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    result = run_cli("dev", "--port", "0", "--certfile", str(junk), "--keyfile", str(junk))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --------------------------------------------------------------------------- cert


def test_cert_writes_a_browser_compatible_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "certs"
    assert main(["cert", "--out-dir", str(out_dir)]) == 0
    printed = capsys.readouterr().out

    cert = x509.load_pem_x509_certificate((out_dir / "cert.pem").read_bytes())
    digest = hashlib.sha256(cert.public_bytes(encoding=_der())).hexdigest()
    assert f"certificate SHA-256: {digest}" in printed
    assert digest in printed.split("certificate SHA-256:")[1]  # and in the JS snippet
    assert "serverCertificateHashes" in printed

    # What browsers require of a certificate trusted by hash: ECDSA P-256, < 14 days.
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime < datetime.timedelta(days=14)
    assert cert.not_valid_before_utc <= datetime.datetime.now(datetime.UTC)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert (out_dir / "key.pem").stat().st_mode & 0o077 == 0


def test_cert_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "--out-dir", str(tmp_path)]) == 0
    first = (tmp_path / "cert.pem").read_bytes()
    assert main(["cert", "--out-dir", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "cert.pem").read_bytes() == first
    assert main(["cert", "--out-dir", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "cert.pem").read_bytes() != first


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


# --------------------------------------------------------------------------- dev and run


async def _bidi_echo(url: str, certificate_hash: str, payload: bytes) -> bytes:
    config = ClientConfig(server_certificate_hashes=[certificate_hash])
    async with WebTransportClient(config=config) as client:
        session = await client.connect(url=url)
        with anyio.fail_after(10):
            stream = await session.create_bidirectional_stream()
            await stream.write(data=payload, end_stream=True)
            echoed = await stream.read_all()
        await session.close()
    return bytes(echoed)


@pytest.mark.anyio
async def test_dev_server_echoes(fastwt_cli: Callable[..., Any]) -> None:
    """`fastwt dev` prints the URL, the certificate hash and a JS snippet, echoes, and
    stops cleanly on Ctrl-C."""
    dev = fastwt_cli("dev", "--port", "0")
    url = dev.wait_for(r"URL:\s+(https://127\.0\.0\.1:\d+/echo)").group(1)
    digest = dev.wait_for(r"certificate SHA-256:\s+([0-9a-f]{64})").group(1)
    dev.wait_for(r"Ctrl-C")
    assert f'const hash = "{digest}";' in dev.output
    assert f'new WebTransport("{url}"' in dev.output
    assert "[::1]:" in dev.output  # listens on both loopback addresses
    assert await _bidi_echo(url, digest, b"hello, dev server") == b"hello, dev server"
    assert dev.stop() == 0, dev.output
    assert "Traceback" not in dev.output


APP_MODULE = """
from fastwt.framework import ServerApp

app = ServerApp()


@app.route(path="/upper")
async def upper(session):
    async for stream in session.incoming_bidirectional_streams():
        data = await stream.read_all()
        await stream.write(data=data.upper(), end_stream=True)
"""


@pytest.mark.anyio
async def test_run_serves_an_app(
    tmp_path: Path, fastwt_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cli_test_app.py").write_text(textwrap.dedent(APP_MODULE))
    assert main(["cert", "--out-dir", str(tmp_path)]) == 0
    digest = hashlib.sha256(
        x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes()).public_bytes(_der())
    ).hexdigest()
    monkeypatch.chdir(tmp_path)
    server = fastwt_cli(
        "run",
        "cli_test_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--certfile",
        "cert.pem",
        "--keyfile",
        "key.pem",
        "--log-level",
        "info",
    )
    port = server.wait_for(r"serving on .*'127\.0\.0\.1', (\d+)").group(1)
    url = f"https://127.0.0.1:{port}/upper"
    assert await _bidi_echo(url, digest, b"shout") == b"SHOUT"
    assert server.stop() == 0, server.output
    assert "Traceback" not in server.output


def test_backend_names_the_implementation_or_as_before_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--backend rust|python`` picks the WebTransport implementation (``--loop`` the
    event loop); an event loop name after ``--backend`` still means the loop."""
    (tmp_path / "cli_backend_app.py").write_text(
        "from fastwt.framework import ServerApp\napp = ServerApp()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "run_app", lambda app, **kwargs: calls.append(kwargs))
    assert main(["run", "cli_backend_app:app", "--backend", "python", "--loop", "uvloop"]) == 0
    assert main(["run", "cli_backend_app:app", "--backend", "trio"]) == 0
    common = {"host": None, "port": None, "announce": True}
    assert calls == [
        {
            **common,
            "backend": "asyncio",
            "backend_options": {"use_uvloop": True},
            "implementation": "python",
        },
        {**common, "backend": "trio", "backend_options": {}},
    ]
    assert main(["run", "cli_backend_app:app", "--backend", "trio", "--loop", "asyncio"]) == 2
    assert "disagree" in capsys.readouterr().err


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_run_serves_an_app_on_the_pure_backend_and_trio(
    tmp_path: Path, fastwt_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fastwt run --backend python --loop trio``: ServerApp.run(backend="python")
    serves the app on the pure-Python backend under trio."""
    (tmp_path / "cli_pure_app.py").write_text(textwrap.dedent(APP_MODULE))
    assert main(["cert", "--out-dir", str(tmp_path)]) == 0
    digest = hashlib.sha256(
        x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes()).public_bytes(_der())
    ).hexdigest()
    monkeypatch.chdir(tmp_path)
    server = fastwt_cli(
        "run", "cli_pure_app:app", "--host", "127.0.0.1", "--port", "0",
        "--certfile", "cert.pem", "--keyfile", "key.pem",
        "--backend", "python", "--loop", "trio", "--log-level", "info",
    )  # fmt: skip
    port = server.wait_for(r"serving on .*'127\.0\.0\.1', (\d+)").group(1)
    url = f"https://127.0.0.1:{port}/upper"
    assert await _bidi_echo(url, digest, b"pure") == b"PURE"
    assert server.stop() == 0, server.output
    assert "Traceback" not in server.output


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_dev_server_on_the_pure_backend_echoes(fastwt_cli: Callable[..., Any]) -> None:
    dev = fastwt_cli("dev", "--port", "0", "--backend", "python")
    url = dev.wait_for(r"URL:\s+(https://127\.0\.0\.1:\d+/echo)").group(1)
    digest = dev.wait_for(r"certificate SHA-256:\s+([0-9a-f]{64})").group(1)
    dev.wait_for(r"Ctrl-C")
    assert await _bidi_echo(url, digest, b"hello, pure dev server") == b"hello, pure dev server"
    assert dev.stop() == 0, dev.output
    assert "Traceback" not in dev.output

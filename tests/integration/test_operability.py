"""What an operator expects of ``fastwt run``: the access log, ``--log-config`` (JSON
lines too), ``FASTWT_*`` environment variables, the tuning flags, the development
certificate banner, and ``SSLKEYLOGFILE``."""

from __future__ import annotations

import json
import logging
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from fastwt import ClientConfig, WebTransportClient, cli
from fastwt.cli import configure_logging, main
from fastwt.framework import MiddlewareRejected, ServerApp
from fastwt.testing import TestClient, serve_echo

pytestmark = pytest.mark.timeout(90)

APP = """
from fastwt.framework import ServerApp

app = ServerApp()


@app.route(path="/upper")
async def upper(session):
    async for stream in session.incoming_bidirectional_streams():
        data = await stream.read_all()
        await stream.write(data=data.upper(), end_stream=True)
"""


async def upper_once(
    url: str, digest: str, payload: bytes, until: Callable[[], Any] = lambda: None
) -> tuple[bytes, Any]:
    """Echo ``payload``, close the session with code 7, and keep the connection until
    ``until()`` (run in a thread) returns: closing the client at once could lose the
    close capsule."""
    config = ClientConfig(server_certificate_hashes=[digest])
    async with WebTransportClient(config=config) as client:
        session = await client.connect(url=url, timeout=10)
        with anyio.fail_after(10):
            stream = await session.create_bidirectional_stream()
            await stream.write(data=payload, end_stream=True)
            echoed = await stream.read_all()
        await session.close(error_code=7, reason="done")
        seen = await anyio.to_thread.run_sync(until)
    return echoed, seen


# --------------------------------------------------------------------------- access log


@pytest.mark.anyio
async def test_one_access_line_per_session_with_status_bytes_and_close_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = ServerApp()

    @app.middleware
    async def private(*, session: Any) -> None:
        if session.path.startswith("/private"):
            raise MiddlewareRejected(status_code=403)

    app.route(path="/echo")(serve_echo)

    with caplog.at_level(logging.INFO, logger="fastwt.access"):
        async with TestClient(app) as client:
            session = await client.connect("/echo?room=1")
            stream = await session.create_bidirectional_stream()
            await stream.write(data=b"x" * 5000, end_stream=True)
            with anyio.fail_after(10):
                await stream.read_all()
            await session.close(error_code=42, reason="bye")
            assert (await client.rejection("/private")).status_code == 403
            assert (await client.rejection("/nowhere")).status_code == 404
            with anyio.fail_after(10):
                while len([r for r in caplog.records if r.name == "fastwt.access"]) < 3:
                    await anyio.sleep(0.01)
    records = {r.path: r for r in caplog.records if r.name == "fastwt.access"}  # type: ignore[attr-defined]
    assert set(records) == {"/echo?room=1", "/private", "/nowhere"}
    ok = records["/echo?room=1"]
    assert (ok.status, ok.close_code, ok.close_reason) == (200, 42, "bye")  # type: ignore[attr-defined]
    assert ok.bytes_received > 5000 and ok.bytes_sent > 5000  # type: ignore[attr-defined]
    assert ok.peer.startswith("127.0.0.1:") and ok.duration > 0  # type: ignore[attr-defined]
    assert re.fullmatch(
        r'127\.0\.0\.1:\d+ - "/echo\?room=1" 200 \d+\.\d{3}s sent=\d+ received=\d+ close=42',
        ok.getMessage(),
    ), ok.getMessage()
    assert records["/private"].status == 403  # type: ignore[attr-defined]
    assert records["/private"].close_code is None  # type: ignore[attr-defined]
    assert '"/nowhere" 404 ' in records["/nowhere"].getMessage()


# --------------------------------------------------------------------------- fastwt run


JSON_LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        }
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {"fastwt": {"level": "INFO", "handlers": ["stdout"]}},
}


@pytest.mark.anyio
async def test_run_prints_the_dev_certificate_and_logs_json_lines_from_a_log_config(
    tmp_path: Path, fastwt_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pythonjsonlogger")
    (tmp_path / "ops_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "log.json").write_text(json.dumps(JSON_LOG_CONFIG))
    monkeypatch.chdir(tmp_path)
    # Options from the environment; the command line wins over FASTWT_PORT.
    monkeypatch.setenv("FASTWT_APP", "ops_app:app")
    monkeypatch.setenv("FASTWT_HOST", "127.0.0.1")
    monkeypatch.setenv("FASTWT_PORT", "not-a-port")
    monkeypatch.setenv("FASTWT_LOG_CONFIG", "log.json")
    monkeypatch.setenv("FASTWT_MAX_SESSIONS", "3")
    server = fastwt_cli("run", "--port", "0")
    url = server.wait_for(r"URL:\s+(https://127\.0\.0\.1:\d+/upper)").group(1)
    digest = server.wait_for(r"certificate SHA-256:\s+([0-9a-f]{64})").group(1)
    assert f'const hash = "{digest}";' in server.output
    echoed, match = await upper_once(
        url, digest, b"shout", lambda: server.wait_for(r'^\{.*"name": "fastwt\.access"')
    )
    assert echoed == b"SHOUT"
    line = match.string
    access = json.loads(line)
    assert access["path"] == "/upper" and access["status"] == 200
    assert access["close_code"] == 7 and access["close_reason"] == "done"
    assert access["bytes_sent"] > 0 and access["peer"].startswith("127.0.0.1:")
    assert server.stop() == 0, server.output
    assert "Traceback" not in server.output


def test_bad_environment_values_are_one_line_errors_unless_the_flag_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "env_app.py").write_text(
        "from fastwt.framework import ServerApp\napp = ServerApp()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "run_app", lambda app, **kwargs: calls.append(kwargs))
    for name, value in [
        ("FASTWT_PORT", "http"),
        ("FASTWT_MAX_SESSIONS", "0"),
        ("FASTWT_CONGESTION_CONTROL", "fast"),
        ("FASTWT_NO_ACCESS_LOG", "maybe"),
        ("FASTWT_LOG_LEVEL", "loud"),
    ]:
        with monkeypatch.context() as env:
            env.setenv(name, value)
            assert main(["run", "env_app:app"]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"fastwt run: error: {name}: ") and len(err.splitlines()) == 1
    monkeypatch.setenv("FASTWT_PORT", "http")
    monkeypatch.setenv("FASTWT_IDLE_TIMEOUT", "3")
    monkeypatch.setenv("FASTWT_CONGESTION_CONTROL", "newreno")
    monkeypatch.setenv("FASTWT_BACKEND", "trio")
    monkeypatch.setenv("FASTWT_NO_ACCESS_LOG", "1")
    assert main(["run", "env_app:app", "--port", "5000", "--idle-timeout", "9"]) == 0
    assert calls[-1]["port"] == 5000 and calls[-1]["backend"] == "trio"
    assert calls[-1]["max_idle_timeout"] == 9.0
    assert calls[-1]["congestion_control_algorithm"] == "newreno"
    assert logging.getLogger("fastwt.access").level == logging.WARNING
    logging.getLogger("fastwt.access").setLevel(logging.NOTSET)
    # Repeatable options take a comma-separated list; flags replace it.
    monkeypatch.setenv("FASTWT_HOST", "127.0.0.1, ::1")
    args = cli.build_parser().parse_args(["dev"])
    cli._apply_env_lists(args)
    assert args.hosts == ["127.0.0.1", "::1"]
    args = cli.build_parser().parse_args(["dev", "--host", "::1"])
    cli._apply_env_lists(args)
    assert args.hosts == ["::1"]


def test_run_help_names_every_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    flags = re.findall(r"(--[a-z-]+)", out)
    assert "--max-sessions" in flags and "--congestion-control" in flags
    for flag in set(flags) - {"--help"}:
        assert f"env FASTWT_{flag[2:].replace('-', '_').upper()}" in out, flag
    assert "env FASTWT_APP" in out


def test_log_config_yaml_and_its_errors(tmp_path: Path) -> None:
    yaml_file = tmp_path / "log.yaml"
    yaml_file.write_text(
        textwrap.dedent(
            """
            version: 1
            disable_existing_loggers: false
            loggers:
              fastwt.test_yaml: {level: ERROR}
            """
        )
    )
    pytest.importorskip("yaml")
    configure_logging("debug", str(yaml_file))
    assert logging.getLogger("fastwt.test_yaml").level == logging.ERROR
    assert logging.getLogger("fastwt").level == logging.DEBUG
    logging.getLogger("fastwt").setLevel(logging.NOTSET)
    for text, message in [("[1, 2]", "expected a mapping"), ("{", "not valid JSON")]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(cli.UsageError, match=message):
            configure_logging(None, str(bad))
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}')
    with pytest.raises(cli.UsageError, match=r"bad\.json"):
        configure_logging(None, str(bad))


# --------------------------------------------------------------------------- SSLKEYLOGFILE


KEY_LINE = re.compile(r"^(CLIENT_HANDSHAKE_TRAFFIC_SECRET|CLIENT_TRAFFIC_SECRET_0) ([0-9a-f]{64}) ")


def _client_randoms(path: Path) -> set[str]:
    return {m[2] for line in path.read_text().splitlines() if (m := KEY_LINE.match(line))}


@pytest.mark.anyio
async def test_sslkeylogfile_gets_the_secrets_of_server_and_client(
    tmp_path: Path, fastwt_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    server_log, client_log = tmp_path / "server-keys.log", tmp_path / "client-keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(server_log))
    dev = fastwt_cli("dev", "--host", "127.0.0.1", "--port", "0")
    url = dev.wait_for(r"URL:\s+(https://\S+)").group(1)
    digest = dev.wait_for(r"certificate SHA-256:\s+([0-9a-f]{64})").group(1)
    # The variable is read when the client is made (at its first connect).
    monkeypatch.setenv("SSLKEYLOGFILE", str(client_log))
    config = ClientConfig(server_certificate_hashes=[digest])
    async with WebTransportClient(config=config) as client:
        session = await client.connect(url=url, timeout=10)
        await session.close()
    assert dev.stop() == 0, dev.output
    client_randoms, server_randoms = _client_randoms(client_log), _client_randoms(server_log)
    # NSS key log lines, naming the same connection (its client random) on both sides.
    assert len(client_randoms) == 1 and client_randoms == server_randoms
    assert "SERVER_TRAFFIC_SECRET_0 " in client_log.read_text()


# --------------------------------------------------------------------------- qlog


@pytest.mark.anyio
async def test_qlogdir_gets_one_trace_per_connection_on_each_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With QLOGDIR set when the server and the client are made, each connection
    writes a JSON-SEQ qlog trace (what qvis reads); without it, none."""
    app = ServerApp()

    app.route(path="/echo")(serve_echo)

    qlog_dir = tmp_path / "qlog"
    monkeypatch.setenv("QLOGDIR", str(qlog_dir))
    async with TestClient(app) as client:
        for _ in range(2):
            session = await client.connect("/echo")
            stream = await session.create_bidirectional_stream()
            await stream.write(data=b"traced", end_stream=True)
            with anyio.fail_after(10):
                assert await stream.read_all() == b"traced"
            await session.close()
    traces = sorted(qlog_dir.glob("*.sqlog"))
    roles = sorted(path.name.split("-")[1] for path in traces)
    assert roles == ["client", "client", "server", "server"], traces
    for path in traces:
        # JSON-SEQ: each record starts with the RS character.
        records = [json.loads(r) for r in path.read_text().split("\x1e") if r.strip()]
        assert records[0]["qlog_format"] == "JSON-SEQ"
        names = {r.get("name") for r in records[1:]}
        assert "transport:packet_sent" in names and "transport:packet_received" in names

    monkeypatch.delenv("QLOGDIR")
    untraced = ServerApp()
    untraced.route(path="/echo")(serve_echo)
    async with TestClient(untraced) as client:
        await (await client.connect("/echo")).close()
    assert len(list(qlog_dir.glob("*.sqlog"))) == 4

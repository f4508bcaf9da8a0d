"""The ``fastwt`` command line (also ``python -m fastwt``).

Commands:
    fastwt run module:app   run a ServerApp (like ``uvicorn module:app``)
    fastwt dev              echo server with a development certificate, for trying things
    fastwt demo             the echo server plus a web page that uses it from the browser
    fastwt cert             write a development certificate and print its SHA-256
    fastwt bench            the Rust and the pure-Python backend side by side

Bad arguments print one line on stderr and exit with status 2; Ctrl-C exits quietly.
Every option can also be set from an environment variable named after it, e.g.
``FASTWT_PORT`` for ``--port`` (``FASTWT_APP`` for run's MODULE:APP): the command line
wins, as with uvicorn's ``UVICORN_*`` variables.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import logging.config
import os
import shlex
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import anyio.abc

from fastwt import __version__, generate_dev_certificate
from fastwt._core import CONGESTION_CONTROLS
from fastwt.config import check_cert_pair
from fastwt.errors import ConfigurationError, WebTransportError
from fastwt.framework import ServerApp
from fastwt.framework.app import webtransport_server_of

if TYPE_CHECKING:
    from fastwt.devserver import DevServerInfo

__all__ = ["configure_logging", "main", "run_app", "write_dev_certificate"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
BACKENDS = ("asyncio", "uvloop", "trio")
ENV_PREFIX = "FASTWT_"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
# WebTransport implementations (ServerConfig.backend); ``--backend`` takes these too.
WT_BACKENDS = ("rust", "python")
DEV_CERT_DAYS = 13
DEV_CERT_NAMES = ("localhost", "127.0.0.1", "::1")


class UsageError(Exception):
    """A problem with what the user asked for: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump, no traceback)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fastwt",
        description="WebTransport for Python with a Rust core.",
        epilog="Run 'fastwt COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, required=True
    )

    run = commands.add_parser(
        "run",
        help="run a ServerApp given as module:attribute",
        description="Run a fastwt.framework.ServerApp, e.g. 'fastwt run chat:app'. "
        "The module is imported from the current directory first.",
    )
    env_app = os.environ.get(ENV_PREFIX + "APP")
    run.add_argument(
        "app",
        metavar="MODULE:APP",
        nargs="?" if env_app else None,
        default=env_app,
        help="where the ServerApp is, e.g. myapp:app (env FASTWT_APP)",
    )
    _option(run, "--host", help="address to bind (default: the app's configuration)")
    _option(run, "--port", type=_port, help="UDP port (default: the app's configuration)")
    _add_cert_options(run)
    _add_backend(run)
    _add_log_options(run)
    _option(
        run,
        "--reload",
        action="store_true",
        help="restart when a .py file under the reload directories changes (development; "
        "needs watchfiles: pip install 'fastwt[reload]')",
    )
    _option(
        run,
        "--reload-dir",
        action="append",
        dest="reload_dirs",
        metavar="DIR",
        help="directory to watch with --reload (repeatable; default: the current directory)",
    )
    _option(
        run,
        "--broker",
        metavar="URL",
        help="Redis URL where rooms meet across processes and nodes, e.g. "
        "redis://10.0.0.5:6379/0 or unix:///run/redis.sock (needs coredis: pip install "
        "'fastwt[cluster]'; default: rooms are local to the process)",
    )
    _option(
        run,
        "--no-access-log",
        action="store_true",
        help="no access line per session (the fastwt.access logger)",
    )
    _add_worker_options(run)
    tuning = run.add_argument_group("tuning (default: the app's configuration)")
    _option(tuning, "--max-sessions", type=_positive_int, metavar="N", help="sessions open at once")
    _option(
        tuning,
        "--idle-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="close a connection after this long without a packet (max_idle_timeout)",
    )
    _option(
        tuning,
        "--keep-alive",
        type=_positive_float,
        metavar="SECONDS",
        help="send QUIC keep-alive pings this often (keep_alive_interval)",
    )
    _option(
        tuning,
        "--congestion-control",
        choices=CONGESTION_CONTROLS,
        help="congestion controller (congestion_control_algorithm)",
    )
    _option(
        tuning,
        "--shutdown-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="how long a graceful shutdown may take (ServerApp.shutdown_timeout)",
    )
    run.set_defaults(handler=_cmd_run)

    dev = commands.add_parser(
        "dev",
        aliases=["serve-dev"],
        help="echo server with a generated development certificate",
        description="Serve /echo on 127.0.0.1 and ::1: streams and datagrams are echoed. "
        "Prints the URL, the certificate's SHA-256 for serverCertificateHashes and a "
        "JavaScript snippet to paste into a browser console.",
    )
    _add_server_options(dev, default_port=4433)
    dev.set_defaults(handler=_cmd_dev, http_port=None)

    demo = commands.add_parser(
        "demo",
        help="echo server plus a web page that uses it from the browser",
        description="Start the echo server and serve a page on http://127.0.0.1:HTTP_PORT/ "
        "that connects to it with WebTransport and shows each check passing.",
    )
    _add_server_options(demo, default_port=0)
    _option(
        demo,
        "--http-port",
        type=_port,
        default=8000,
        help="TCP port of the web page (default: 8000)",
    )
    demo.set_defaults(handler=_cmd_dev)

    cert = commands.add_parser(
        "cert",
        help="write a development certificate (cert.pem, key.pem)",
        description="Write an ECDSA P-256 certificate valid for 13 days for localhost, "
        "127.0.0.1 and ::1 (what browsers accept through serverCertificateHashes), and "
        "print its SHA-256 and a JavaScript snippet.",
    )
    _option(
        cert, "--out-dir", type=Path, default=Path("."), help="directory to write into (default: .)"
    )
    _option(
        cert,
        "--name",
        action="append",
        dest="names",
        metavar="NAME",
        help="another DNS name or IP address for the certificate (repeatable; "
        "localhost, 127.0.0.1 and ::1 are always in it)",
    )
    _option(cert, "--force", action="store_true", help="overwrite existing files")
    cert.set_defaults(handler=_cmd_cert)

    from fastwt.bench import runner

    bench = commands.add_parser(
        "bench",
        help="benchmark the Rust and the pure-Python backend on this machine",
        description="Run workloads against a Rust-backend and a pure-Python-backend server "
        "(each in its own process, alternating), with the same client, and print medians, "
        "ranges and ratios. --quick takes about 30 seconds. See docs/benchmarking.md.",
    )
    runner.add_arguments(bench)
    bench.set_defaults(handler=runner.run)
    return parser


@dataclass(frozen=True)
class _BadEnv:
    """The default of an option whose environment variable did not parse: reported as
    a usage error only if the command line does not give the option (it wins)."""

    message: str


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def _option(parser: Any, flag: str, **kwargs: Any) -> None:
    """``parser.add_argument(flag, ...)`` whose default may come from ``FASTWT_<FLAG>``
    (converted and checked like the flag's value; for repeatable options a
    comma-separated list). The help text names the variable."""
    env = _env_name(flag)
    kwargs["help"] = f"{kwargs.get('help', '')} (env {env})".lstrip()
    value = os.environ.get(env)
    action = kwargs.get("action")
    if value is not None:
        try:
            if action == "store_true":
                if value.strip().lower() not in _TRUE + _FALSE:
                    raise argparse.ArgumentTypeError(f"expected 1/0, true/false, got {value!r}")
                kwargs["default"] = value.strip().lower() in _TRUE
            elif action == "append":
                convert = kwargs.get("type", str)
                items = [v.strip() for v in value.split(",") if v.strip()]
                # Kept apart: argparse would add the flag's values to a list default.
                dest = kwargs.get("dest") or flag.lstrip("-").replace("-", "_")
                parser.set_defaults(**{f"_env_{dest}": [convert(v) for v in items]})
            else:
                converted = kwargs.get("type", str)(value)
                choices = kwargs.get("choices")
                if choices is not None and converted not in choices:
                    raise argparse.ArgumentTypeError(
                        f"invalid choice {value!r} (choose from {', '.join(choices)})"
                    )
                kwargs["default"] = converted
        except (argparse.ArgumentTypeError, ValueError) as exc:
            kwargs["default"] = _BadEnv(f"{env}: {exc}")
    if action == "append":
        kwargs.setdefault("default", None)
    parser.add_argument(flag, **kwargs)


def _apply_env_lists(args: argparse.Namespace) -> None:
    """Repeatable options: the environment's list when the command line gave none."""
    for name, values in list(vars(args).items()):
        if name.startswith("_env_"):
            dest = name.removeprefix("_env_")
            if not getattr(args, dest, None):
                setattr(args, dest, values)
            delattr(args, name)


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("worker processes (Linux; see docs/deployment.md)")
    _option(
        group,
        "--workers",
        type=_positive_int,
        metavar="N",
        help="run N worker processes on one UDP port under a supervisor, sessions "
        "steered to their worker by connection ID (default: one process, no supervisor)",
    )
    _option(
        group,
        "--server-id",
        metavar="HEX",
        help="QUIC-LB server id written in every connection ID, 1-9 octets as hex "
        "(for a CID-aware load balancer in front of several machines)",
    )
    _option(
        group,
        "--cid-key",
        metavar="HEX",
        help="16-octet QUIC-LB key as hex (needs --server-id): connection IDs encrypted "
        "so that only a load balancer with the key reads them; with --workers needs "
        "--no-cid-steering (prefer the variable: a command line is visible to every user)",
    )
    _option(
        group,
        "--drain-timeout",
        type=_non_negative_float,
        default=5.0,
        metavar="SECONDS",
        help="with --workers: how long a stopping worker waits after GOAWAY for its "
        "sessions to end before closing them (default: 5)",
    )
    _option(
        group,
        "--no-cid-steering",
        action="store_true",
        help="with --workers: no BPF steering, the kernel's address hash alone "
        "(diagnostic: a client whose address changes loses its session)",
    )


def _add_cert_options(parser: argparse.ArgumentParser) -> None:
    _option(parser, "--certfile", type=_existing_file, help="PEM certificate chain")
    _option(parser, "--keyfile", type=_existing_file, help="PEM private key")


def _add_log_options(parser: argparse.ArgumentParser) -> None:
    _option(parser, "--log-level", choices=LOG_LEVELS, help="logging level (default: info)")
    _option(
        parser,
        "--log-config",
        type=_existing_file,
        metavar="FILE",
        help="logging configuration for logging.config.dictConfig, JSON (.json) or "
        "YAML (.yaml/.yml, needs PyYAML); --log-level then sets the fastwt loggers' level",
    )


def _add_backend(parser: argparse.ArgumentParser) -> None:
    # ``--backend`` named the event loop before the pure-Python backend existed; it takes
    # either kind of name, so old command lines (and FASTWT_BACKEND=trio) keep working.
    _option(
        parser,
        "--backend",
        choices=(*WT_BACKENDS, *BACKENDS),
        default=None,
        help="WebTransport implementation: rust (default) or python (pure Python on "
        "aioquic); an event loop name here means --loop, as before",
    )
    _option(parser, "--loop", choices=BACKENDS, default=None, help="event loop (default: asyncio)")


def _add_server_options(parser: argparse.ArgumentParser, *, default_port: int) -> None:
    _option(
        parser,
        "--host",
        action="append",
        dest="hosts",
        metavar="HOST",
        help="address to bind (repeatable; default: 127.0.0.1 and ::1)",
    )
    _option(
        parser,
        "--port",
        type=_port,
        default=default_port,
        help=f"UDP port, 0 for any free one (default: {default_port})",
    )
    _add_cert_options(parser)
    _add_backend(parser)
    _add_log_options(parser)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _existing_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


# --------------------------------------------------------------------------- commands


def _check_cert_pair(args: argparse.Namespace) -> None:
    try:
        check_cert_pair(args.certfile, args.keyfile, names=("--certfile", "--keyfile"))
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    _check_cert_pair(args)
    if not args.app:
        raise UsageError("the following arguments are required: MODULE:APP (or FASTWT_APP)")
    if args.broker:
        from fastwt.framework.cluster import BROKER_ENV, connect_redis

        try:
            connect_redis(args.broker)
        except ConfigurationError as exc:
            raise UsageError(f"--broker: {exc}") from None
        # Read by ServerApp() when the module makes the app (and inherited by children).
        os.environ[BROKER_ENV] = args.broker
    if args.reload:
        return _run_with_reload(args)
    app = load_app(args.app)
    if not isinstance(app, ServerApp):
        raise UsageError(f"{args.app} is a {type(app).__name__}, not a fastwt ServerApp")
    if args.broker and app.broker is None:
        raise UsageError(
            f"--broker: {args.app} was made before the broker could be set; make the "
            "ServerApp when the module is imported (or pass broker= to it)"
        )
    overrides: dict[str, Any] = {}
    if args.certfile:
        overrides.update(certfile=args.certfile, keyfile=args.keyfile)
    for option, field_name in (
        ("max_sessions", "max_sessions"),
        ("idle_timeout", "max_idle_timeout"),
        ("keep_alive", "keep_alive_interval"),
        ("congestion_control", "congestion_control_algorithm"),
    ):
        if getattr(args, option) is not None:
            overrides[field_name] = getattr(args, option)
    if args.shutdown_timeout is not None:
        app.shutdown_timeout = args.shutdown_timeout
    if args.no_access_log:
        logging.getLogger("fastwt.access").setLevel(logging.WARNING)
    implementation, loop = _split_backend(args)
    if implementation is not None:  # ServerConfig.backend
        overrides["implementation"] = implementation
    if args.server_id is not None:
        overrides["server_id"] = args.server_id
    if args.cid_key is not None:
        overrides["cid_key"] = args.cid_key
    backend, options = _backend(loop)
    if args.workers is not None:
        return _run_workers(args, app, overrides, backend, options)
    run_app(
        app,
        host=args.host,
        port=args.port,
        backend=backend,
        backend_options=options,
        announce=app.server.config.certfile is None and not args.certfile,
        **overrides,
    )
    return 0


def _run_workers(
    args: argparse.Namespace,
    app: ServerApp,
    overrides: dict[str, Any],
    backend: str,
    backend_options: dict[str, Any] | None,
) -> int:
    """``--workers N``: this process supervises N workers (fastwt.workers)."""
    from fastwt.workers import serve_app

    if "implementation" in overrides:  # --backend rust|python: ServerConfig.backend
        overrides["backend"] = overrides.pop("implementation")

    def ready(address: tuple[str, int], digest: str | None) -> None:
        host, port = address
        print(f"fastwt: {args.workers} workers serving on {_format_addr(host, port)} (UDP)")
        if digest is not None:
            print(f"  certificate SHA-256:      {digest}")
            print("  (a development certificate shared by the workers, made at each start)")
        sys.stdout.flush()

    # A WorkersError (a ServerError) is a one-line error with status 1, as a port
    # that cannot be bound is for one process.
    return serve_app(
        app,
        spec=args.app,
        workers=args.workers,
        host=args.host,
        port=args.port,
        overrides=overrides,
        on_ready=ready,
        backend=backend,
        backend_options=backend_options or {},
        steering=not args.no_cid_steering,
        drain_timeout=args.drain_timeout,
        shutdown_timeout=app.shutdown_timeout,
        log_level=args.log_level,
        log_config=args.log_config,
        access_log=not args.no_access_log,
    )


def _run_with_reload(args: argparse.Namespace) -> int:
    """``--reload``: this process only watches; the app runs in a child ``fastwt run``
    (the same arguments without the reload options), which watchfiles stops with SIGINT
    (a clean shutdown) and starts again after each change to a ``.py`` file, as
    uvicorn's reloader does. A child that fails to start (a syntax error) is started
    again at the next change."""
    try:
        import watchfiles
    except ImportError:
        raise UsageError(
            "--reload needs watchfiles: pip install 'fastwt[reload]' (or: pip install watchfiles)"
        ) from None
    dirs = [Path(d) for d in (args.reload_dirs or [os.getcwd()])]
    for directory in dirs:
        if not directory.is_dir():
            raise UsageError(f"--reload-dir: no such directory: {str(directory)!r}")
    argv: list[str] = args.argv
    child: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--reload":
            pass
        elif arg == "--reload-dir":
            skip = True
        elif not arg.startswith("--reload-dir="):
            child.append(arg)
    # The child must not reload in turn (FASTWT_RELOAD may be what asked for it).
    os.environ[ENV_PREFIX + "RELOAD"] = "0"
    log = logging.getLogger("fastwt.cli")
    log.info("watching %s for changes to .py files", ", ".join(map(str, dirs)))

    def changed(changes: set[tuple[Any, str]]) -> None:
        paths = sorted({os.path.relpath(path) for _, path in changes})
        log.info("%s changed: restarting", ", ".join(paths))

    watchfiles.run_process(
        *dirs,
        target=shlex.join([sys.executable, "-m", "fastwt", *child]),
        target_type="command",
        watch_filter=watchfiles.PythonFilter(),
        callback=changed,
        debounce=400,
        sigint_timeout=int(args.shutdown_timeout or 10) + 2,
    )
    return 0


def run_app(
    app: ServerApp,
    *,
    host: str | None,
    port: int | None,
    backend: str = "asyncio",
    backend_options: dict[str, Any] | None = None,
    announce: bool = False,
    implementation: str | None = None,
    **overrides: Any,
) -> None:
    """``app.run(...)`` (``backend`` is the event loop, ``implementation`` the
    ``ServerConfig.backend``: ``"rust"`` or ``"python"``), plus, with ``announce``, the
    development certificate's SHA-256 and a JavaScript snippet printed once it listens
    (as ``fastwt dev`` does): with a generated certificate a browser needs the hash,
    which changes at every start."""
    from fastwt.framework.app import _cancel_on_signals

    if implementation is not None:
        overrides["backend"] = implementation

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            if threading.current_thread() is threading.main_thread():
                reload = functools.partial(_reload_certificate, app)
                await tg.start(
                    functools.partial(_cancel_on_signals, tg.cancel_scope, on_hangup=reload)
                )

            async def serve(*, task_status: anyio.abc.TaskStatus[Any]) -> None:
                await app.serve(host=host, port=port, task_status=task_status, **overrides)
                tg.cancel_scope.cancel()

            addresses = await tg.start(serve)
            if announce:
                _print_run_banner(app, addresses)

    try:
        from fastwt import _bridge

        _bridge.run(main, backend=backend, backend_options=backend_options)
    except KeyboardInterrupt:
        logging.getLogger("fastwt.cli").info("interrupted")


def _reload_certificate(app: ServerApp) -> None:
    """On SIGHUP: re-read the certificate files (or make a new development certificate)
    for new connections, as nginx reloads on SIGHUP; open sessions are not touched."""
    try:
        digest = webtransport_server_of(app, needs="reloading the certificate").reload_certificate()
    except Exception as exc:  # a bad file must not stop the server
        logging.getLogger("fastwt.cli").error("SIGHUP: certificate not reloaded: %s", exc)
    else:
        print(f"certificate reloaded, SHA-256: {digest}", flush=True)


def _print_run_banner(app: ServerApp, addresses: Sequence[tuple[str, int]]) -> None:
    from fastwt.devserver import js_snippet

    host, port = addresses[0]
    # A wildcard address is reached on loopback; the certificate names 127.0.0.1.
    url_host = {"::": "127.0.0.1", "0.0.0.0": "127.0.0.1"}.get(host, host)
    routes = sorted(app.router.get_all_routes())
    url = f"https://{_format_addr(url_host, port)}{routes[0] if routes else '/'}"
    digest = app.server.certificate_hash
    listening = ", ".join(_format_addr(h, p) for h, p in addresses)
    print(
        "\n".join(
            [
                f"fastwt: serving on {listening} (UDP)",
                "",
                f"  URL:                      {url}",
                f"  certificate SHA-256:      {digest}",
                "  (a development certificate, regenerated at each start;",
                "   --certfile/--keyfile for your own)",
                "",
                "Paste into the DevTools console of a secure-context page (it opens a",
                "bidirectional stream and a datagram, as for the echo server of fastwt dev):",
                "",
                js_snippet(url, digest),
                "",
            ]
        ),
        flush=True,
    )


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` (the attribute may be dotted), like uvicorn."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:APP, e.g. 'myapp:app', got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise UsageError(f"cannot import module {module_name!r}: {exc}") from None
        raise
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _cmd_dev(args: argparse.Namespace) -> int:
    import anyio

    from fastwt import devserver

    _check_cert_pair(args)
    hosts = tuple(args.hosts or devserver.DEFAULT_HOSTS)
    implementation, loop = _split_backend(args)
    backend, options = _backend(loop)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            serve = functools.partial(
                devserver.serve,
                hosts=hosts,
                port=args.port,
                certfile=args.certfile,
                keyfile=args.keyfile,
                http_port=args.http_port,
                backend=implementation,
            )
            info = await tg.start(serve)
            _print_dev_banner(info, custom_cert=args.certfile is not None)

    from fastwt import _bridge

    _bridge.run(main, backend=backend, backend_options=options)
    return 0


def _print_dev_banner(info: DevServerInfo, *, custom_cert: bool) -> None:
    from fastwt.devserver import js_snippet

    listening = ", ".join(_format_addr(host, port) for host, port in info.addresses)
    lines = [
        f"fastwt echo server listening on {listening} (UDP)",
        "",
        f"  URL:                      {info.url}",
        f"  certificate SHA-256:      {info.certificate_hash}",
    ]
    if not custom_cert:
        lines.append("  (a development certificate, regenerated at each start)")
    if info.page_url:
        lines += ["", f"  Demo page: open {info.page_url} in a Chromium-based browser"]
    lines += [
        "",
        "Paste into the DevTools console of a secure-context page (http://127.0.0.1:...,",
        "http://localhost:... or any https:// page; not about:blank):",
        "",
        js_snippet(info.url, info.certificate_hash),
        "",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


def _format_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _split_backend(args: argparse.Namespace) -> tuple[str | None, str]:
    """(WebTransport implementation or None for the config's default, event loop)."""
    if args.backend in BACKENDS:  # the old meaning of --backend
        if args.loop is not None and args.loop != args.backend:
            raise UsageError(f"--backend {args.backend} and --loop {args.loop} disagree")
        return None, args.backend
    return args.backend, args.loop or "asyncio"


def _backend(name: str) -> tuple[str, dict[str, Any]]:
    if name == "uvloop":
        return "asyncio", {"use_uvloop": True}
    return name, {}


def _cmd_cert(args: argparse.Namespace) -> int:
    from fastwt.devserver import js_snippet

    out_dir: Path = args.out_dir
    extra_names = list(args.names or [])
    names = (*DEV_CERT_NAMES, *extra_names)
    cert_path, key_path = out_dir / "cert.pem", out_dir / "key.pem"
    if not args.force:
        for path in (cert_path, key_path):
            if path.exists():
                raise UsageError(f"{path} exists (use --force to overwrite)")
    digest = write_dev_certificate(out_dir, names=extra_names)
    print(f"wrote {cert_path} and {key_path} (ECDSA P-256, valid {DEV_CERT_DAYS} days)")
    print(f"names: {', '.join(names)}")
    print(f"certificate SHA-256: {digest}")
    print()
    print(f"fastwt run myapp:app --certfile {cert_path} --keyfile {key_path}")
    print()
    print(js_snippet("https://127.0.0.1:4433/echo", digest))
    return 0


def write_dev_certificate(out_dir: Path, *, names: Sequence[str] = ()) -> str:
    """Write ``cert.pem`` and ``key.pem`` (ECDSA P-256, valid 13 days, for localhost,
    127.0.0.1, ::1 and ``names``) into ``out_dir``; return the hex SHA-256 of the DER
    certificate, the value browsers take in ``serverCertificateHashes``."""
    cert_pem, key_pem, digest = generate_dev_certificate(list(names))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "cert.pem").write_text(cert_pem)
        key_path = out_dir / "key.pem"
        key_path.touch(mode=0o600)
        key_path.chmod(0o600)
        key_path.write_text(key_pem)
    except OSError as exc:
        raise UsageError(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    return digest


# --------------------------------------------------------------------------- entry point


def _level(name: str) -> int:
    return 5 if name == "trace" else int(getattr(logging, name.upper()))


def configure_logging(level: str | None, config_file: str | None = None) -> None:
    """``--log-level`` and ``--log-config``. Without a file: ``logging.basicConfig``
    at ``level`` (default info). With one: ``logging.config.dictConfig`` of its JSON or
    YAML content, and ``level``, when given, set on the ``fastwt`` logger."""
    if config_file is None:
        fmt = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
        logging.basicConfig(level=_level(level or "info"), format=fmt)
        return
    path = Path(config_file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise UsageError(
                    f"{path} is YAML, which needs PyYAML: pip install 'fastwt[yaml]' "
                    "(or use a .json file)"
                ) from None
            config = yaml.safe_load(text)
        else:
            config = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and yaml.YAMLError's
        kind = "YAML" if path.suffix.lower() in (".yaml", ".yml") else "JSON"
        raise UsageError(f"{path}: not valid {kind}: {exc}") from None
    except Exception as exc:
        raise UsageError(f"{path}: {exc}") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path}: expected a mapping (a dictConfig), got {type(config).__name__}")
    config.setdefault("version", 1)
    try:
        logging.config.dictConfig(config)
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    if level is not None:
        logging.getLogger("fastwt").setLevel(_level(level))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastwt`` script; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    _apply_env_lists(args)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        for value in vars(args).values():
            if isinstance(value, _BadEnv):
                raise UsageError(value.message)
        if hasattr(args, "log_level"):
            configure_logging(args.log_level, args.log_config)
        return handler(args)
    except BaseException as exc:
        # Task groups wrap what went wrong in exception groups: judge the one inside.
        leaf = _sole_exception(exc)
        if isinstance(leaf, UsageError):
            print(f"fastwt {args.command}: error: {leaf}", file=sys.stderr)
            return 2
        if isinstance(leaf, KeyboardInterrupt):
            return 0
        if isinstance(leaf, OSError | WebTransportError):
            # e.g. the port is taken or the key does not match: one line, no
            # traceback (--log-level debug logs it).
            logging.getLogger("fastwt.cli").debug("%s failed", args.command, exc_info=True)
            print(f"fastwt {args.command}: error: {leaf}", file=sys.stderr)
            return 1
        raise


def _sole_exception(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc

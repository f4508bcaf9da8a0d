"""The ``fastwt`` command line (also ``python -m fastwt``).

Commands:
    fastwt run module:app   run a ServerApp (like ``uvicorn module:app``)
    fastwt dev              echo server with a development certificate, for trying things
    fastwt demo             the echo server plus a web page that uses it from the browser
    fastwt cert             write a development certificate and print its SHA-256
    fastwt bench            the Rust and the pure-Python backend side by side

Bad arguments print one line on stderr and exit with status 2; Ctrl-C exits quietly.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from fastwt import __version__, generate_dev_certificate
from fastwt.errors import WebTransportError
from fastwt.framework import ServerApp

if TYPE_CHECKING:
    from fastwt.devserver import DevServerInfo

__all__ = ["main", "write_dev_certificate"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
BACKENDS = ("asyncio", "uvloop", "trio")
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
    run.add_argument("app", metavar="MODULE:APP", help="where the ServerApp is, e.g. myapp:app")
    run.add_argument("--host", help="address to bind (default: the app's configuration)")
    run.add_argument("--port", type=_port, help="UDP port (default: the app's configuration)")
    _add_cert_options(run)
    _add_backend(run)
    _add_log_level(run)
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
    demo.add_argument(
        "--http-port", type=_port, default=8000, help="TCP port of the web page (default: 8000)"
    )
    demo.set_defaults(handler=_cmd_dev)

    cert = commands.add_parser(
        "cert",
        help="write a development certificate (cert.pem, key.pem)",
        description="Write an ECDSA P-256 certificate valid for 13 days for localhost, "
        "127.0.0.1 and ::1 (what browsers accept through serverCertificateHashes), and "
        "print its SHA-256 and a JavaScript snippet.",
    )
    cert.add_argument(
        "--out-dir", type=Path, default=Path("."), help="directory to write into (default: .)"
    )
    cert.add_argument(
        "--name",
        action="append",
        dest="names",
        default=[],
        metavar="NAME",
        help="another DNS name or IP address for the certificate (repeatable; "
        "localhost, 127.0.0.1 and ::1 are always in it)",
    )
    cert.add_argument("--force", action="store_true", help="overwrite existing files")
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


def _add_cert_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--certfile", type=_existing_file, help="PEM certificate chain")
    parser.add_argument("--keyfile", type=_existing_file, help="PEM private key")


def _add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="logging level (default: info)"
    )


def _add_backend(parser: argparse.ArgumentParser) -> None:
    # ``--backend`` named the event loop before the pure-Python backend existed; it takes
    # either kind of name, so old command lines keep working.
    parser.add_argument(
        "--backend",
        choices=(*WT_BACKENDS, *BACKENDS),
        default=None,
        help="WebTransport implementation: rust (default) or python (pure Python on "
        "aioquic); an event loop name here means --loop, as before",
    )
    parser.add_argument(
        "--loop", choices=BACKENDS, default=None, help="event loop (default: asyncio)"
    )


def _add_server_options(parser: argparse.ArgumentParser, *, default_port: int) -> None:
    parser.add_argument(
        "--host",
        action="append",
        dest="hosts",
        metavar="HOST",
        help="address to bind (repeatable; default: 127.0.0.1 and ::1)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=default_port,
        help=f"UDP port, 0 for any free one (default: {default_port})",
    )
    _add_cert_options(parser)
    _add_backend(parser)
    _add_log_level(parser)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def _existing_file(text: str) -> str:
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return text


# --------------------------------------------------------------------------- commands


def _check_cert_pair(args: argparse.Namespace) -> None:
    if (args.certfile is None) != (args.keyfile is None):
        raise UsageError("--certfile and --keyfile go together")


def _cmd_run(args: argparse.Namespace) -> int:
    _check_cert_pair(args)
    app = load_app(args.app)
    if not isinstance(app, ServerApp):
        raise UsageError(f"{args.app} is a {type(app).__name__}, not a fastwt ServerApp")
    cert = {"certfile": args.certfile, "keyfile": args.keyfile} if args.certfile else {}
    implementation, loop = _split_backend(args)
    backend, options = _backend(loop)
    if implementation is not None:  # ServerApp.run takes it as backend=, the loop as loop=
        cert.update(loop=backend)
        backend = implementation
    app.run(host=args.host, port=args.port, backend=backend, backend_options=options, **cert)
    return 0


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

    anyio.run(main, backend=backend, backend_options=options)
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
    names = (*DEV_CERT_NAMES, *args.names)
    cert_path, key_path = out_dir / "cert.pem", out_dir / "key.pem"
    if not args.force:
        for path in (cert_path, key_path):
            if path.exists():
                raise UsageError(f"{path} exists (use --force to overwrite)")
    digest = write_dev_certificate(out_dir, names=args.names)
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


def _configure_logging(level: str) -> None:
    numeric = 5 if level == "trace" else getattr(logging, level.upper())
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastwt`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "log_level"):
        _configure_logging(args.log_level)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
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

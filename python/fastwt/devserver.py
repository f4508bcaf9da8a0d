"""The echo development server behind ``fastwt dev`` and ``fastwt demo``.

It needs no files: the server generates a development certificate (ECDSA P-256, valid
for less than 14 days), which browsers accept through ``serverCertificateHashes``. It
listens on 127.0.0.1 and ::1 (Chromium resolves ``localhost`` to ::1 first and does not
fall back to IPv4 for QUIC) and serves two paths:

- ``/echo``: every bidirectional stream is echoed back on itself; every
  unidirectional stream is answered by a new unidirectional stream carrying the same
  bytes; every datagram is sent back.
- ``/close?code=N&reason=TEXT``: the session is accepted, and as soon as the client
  ends a unidirectional stream the server closes the session with that code and
  reason (to see a server-initiated close from the browser).

Any other path is rejected with 404. ``fastwt demo`` also serves a web page over plain
HTTP on 127.0.0.1 (a secure context) that connects to the echo server and shows each
check passing.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import anyio
from anyio.abc import TaskStatus

from fastwt import ServerConfig
from fastwt.errors import WebTransportError
from fastwt.framework import MiddlewareRejected, ServerApp
from fastwt.framework.types import SessionProtocol

if TYPE_CHECKING:
    from fastwt.session import WebTransportSession
    from fastwt.stream import WebTransportBidirectionalStream, WebTransportReceiveStream

__all__ = [
    "CLIENT_JS",
    "DEFAULT_HOSTS",
    "DevServerInfo",
    "app",
    "demo_page",
    "handle_session",
    "js_snippet",
    "serve",
    "start_page_server",
]

log = logging.getLogger("fastwt.devserver")

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "::1")
READ_CHUNK = 65536

# Errors that mean "the peer or the session went away": an echo task just ends.
_GONE = (WebTransportError, anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream)


@dataclass(frozen=True, slots=True)
class DevServerInfo:
    """Where the dev server listens and how a browser trusts it."""

    url: str
    """``https://127.0.0.1:PORT/echo``, the URL to pass to ``new WebTransport``."""
    certificate_hash: str
    """Hex SHA-256 of the DER certificate, for ``serverCertificateHashes``."""
    addresses: list[tuple[str, int]]
    page_url: str | None = None
    """The demo page (``fastwt demo`` only)."""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 443


# --------------------------------------------------------------------------- sessions


def app(*, config: ServerConfig | None = None) -> ServerApp:
    """The echo server as a :class:`~fastwt.framework.ServerApp`: ``/echo``,
    ``/close?code=N&reason=TEXT`` (a bad query is refused with 400), 404 elsewhere."""
    application = ServerApp(config=config)
    application.route(path="/echo")(echo)
    application.route(path="/close")(_close_route)
    application.add_middleware(middleware=_check_close_query)
    return application


async def handle_session(session: WebTransportSession) -> None:
    """Route one session request as :func:`app` does, for a loop over a bare
    ``WebTransportServer``'s ``incoming_sessions()``."""
    parts = urlsplit(session.path)
    try:
        if parts.path == "/echo":
            await session.accept()
            await echo(session)
        elif parts.path == "/close":
            _close_args(parts.query)  # a bad query is refused before the accept
            await session.accept()
            await _close_route(session)
        else:
            await session.reject(status_code=404)
    except _GONE as exc:
        log.debug("session %s ended: %r", session.path, exc)
    except ValueError:
        await session.reject(status_code=400)


def _close_args(query: str) -> tuple[int, str]:
    """``/close``'s code and reason; ValueError when they are not a session close's."""
    values = parse_qs(query)
    code = int(values.get("code", ["0"])[0])
    if not 0 <= code <= 0xFFFFFFFF:
        raise ValueError(f"close code {code} does not fit in 32 bits")
    return code, values.get("reason", [""])[0]


async def _check_close_query(*, session: SessionProtocol) -> None:
    parts = urlsplit(session.path)
    if parts.path == "/close":
        try:
            _close_args(parts.query)
        except ValueError:
            raise MiddlewareRejected(status_code=400) from None


async def _close_route(session: WebTransportSession) -> None:
    code, reason = _close_args(urlsplit(session.path).query)
    try:
        await close_when_asked(session, error_code=code, reason=reason)
    except _GONE as exc:
        log.debug("session %s ended: %r", session.path, exc)


async def echo(session: WebTransportSession) -> None:
    """Echo streams and datagrams until the session closes."""
    async with anyio.create_task_group() as tg:

        async def bidi_streams() -> None:
            async for stream in session.incoming_bidirectional_streams():
                tg.start_soon(_echo_bidi, stream)

        async def uni_streams() -> None:
            async for stream in session.incoming_unidirectional_streams():
                tg.start_soon(_echo_uni, session, stream)

        async def datagrams() -> None:
            async for data in session.datagrams():
                await session.send_datagram(data=data)

        for loop in (bidi_streams, uni_streams, datagrams):
            tg.start_soon(_until_gone, loop)


async def _until_gone(func: Any) -> None:
    try:
        await func()
    except _GONE as exc:
        log.debug("echo loop ended: %r", exc)


async def _echo_bidi(stream: WebTransportBidirectionalStream) -> None:
    try:
        while data := await stream.read(max_size=READ_CHUNK):
            await stream.write(data=data)
        await stream.close()
    except _GONE as exc:
        log.debug("bidi echo ended: %r", exc)


async def _echo_uni(session: WebTransportSession, stream: WebTransportReceiveStream) -> None:
    try:
        data = await stream.read_all()
        reply = await session.create_unidirectional_stream()
        await reply.write(data=data, end_stream=True)
    except _GONE as exc:
        log.debug("uni echo ended: %r", exc)


async def close_when_asked(session: WebTransportSession, *, error_code: int, reason: str) -> None:
    """Close the session with ``error_code`` and ``reason`` once the client ends a
    unidirectional stream (its content is ignored)."""
    async for stream in session.incoming_unidirectional_streams():
        await stream.read_all()
        break
    await session.close(error_code=error_code, reason=reason)


# --------------------------------------------------------------------------- server


async def serve(
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    port: int = 4433,
    certfile: str | None = None,
    keyfile: str | None = None,
    http_port: int | None = None,
    backend: str | None = None,
    task_status: TaskStatus[DevServerInfo] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run the echo server until cancelled.

    ``port=0`` picks a free port (the same one on every host when possible).
    With ``http_port`` (0 for any), also serve the demo page on
    ``http://127.0.0.1:HTTP_PORT/``. ``task_status.started`` receives the
    :class:`DevServerInfo` once the server listens. ``backend`` (``"rust"`` or
    ``"python"``) overrides the configuration's default.
    """
    config = ServerConfig(bind_host=list(hosts), bind_port=port, certfile=certfile, keyfile=keyfile)
    if backend is not None:
        config = dataclasses.replace(config, backend=backend)
    application = app(config=config)
    httpd: http.server.ThreadingHTTPServer | None = None
    try:
        async with anyio.create_task_group() as tg:
            addresses = list(await tg.start(application.serve))
            digest = application.server.certificate_hash
            url = f"https://{_url_authority(addresses)}/echo"
            page_url = None
            if http_port is not None:
                httpd = start_page_server(demo_page(url, digest), port=http_port)
                page_url = f"http://127.0.0.1:{httpd.server_address[1]}/"
            task_status.started(
                DevServerInfo(
                    url=url, certificate_hash=digest, addresses=addresses, page_url=page_url
                )
            )
    finally:
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()


def _url_authority(addresses: Sequence[tuple[str, int]]) -> str:
    """``host:port`` for the URL, preferring 127.0.0.1 (what browsers reach surely)."""
    host, port = next(((h, p) for h, p in addresses if h == "127.0.0.1"), addresses[0])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------- browser side


def js_snippet(url: str, certificate_hash: str) -> str:
    """A snippet to paste into a browser's DevTools console (on a secure-context page,
    e.g. ``http://127.0.0.1:...`` or any ``https://`` page; ``about:blank`` has no
    ``WebTransport``)."""
    return f"""\
const hash = "{certificate_hash}";
const wt = new WebTransport("{url}", {{
  serverCertificateHashes: [{{
    algorithm: "sha-256",
    value: Uint8Array.from(hash.match(/../g), (b) => parseInt(b, 16)),
  }}],
}});
await wt.ready;
const stream = await wt.createBidirectionalStream();
const writer = stream.writable.getWriter();
await writer.write(new TextEncoder().encode("hello, fastwt"));
await writer.close();
const {{ value }} = await stream.readable.getReader().read();
console.log("echoed:", new TextDecoder().decode(value));
const dg = wt.datagrams;
await dg.writable.getWriter().write(new TextEncoder().encode("ping"));
console.log("datagram:", new TextDecoder().decode((await dg.readable.getReader().read()).value));"""


def _static(name: str) -> str:
    """A file of the package's ``static/`` directory (the browser side of the demo)."""
    return (resources.files("fastwt") / "static" / name).read_text(encoding="utf-8")


CLIENT_JS = _static("client.js")
"""The browser helpers (``window.fastwt``: connect, echo checks, server close) that the
demo page and the browser interop tests include: ``static/client.js``."""


def demo_page(url: str, certificate_hash: str) -> str:
    """The demo page's HTML, set up for the echo server at ``url``."""
    config = json.dumps({"url": url, "hash": certificate_hash})
    page = _static("demo.html")
    return page.replace("__CLIENT_JS__", CLIENT_JS).replace("__CONFIG__", config)


def start_page_server(html: str, *, port: int = 0) -> http.server.ThreadingHTTPServer:
    """Serve ``html`` at ``http://127.0.0.1:PORT/`` (a secure context, where browsers
    offer ``WebTransport``) from a daemon thread; ``port=0`` picks a free port
    (``server_address[1]``). Stop it with ``shutdown()`` and ``server_close()``."""
    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/favicon.ico":  # keeps a 404 out of the browser console
                self.send_response(204)
                self.end_headers()
                return
            if path not in ("/", "/index.html"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("page: " + format, *args)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="fastwt-page", daemon=True).start()
    return httpd

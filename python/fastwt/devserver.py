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
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import anyio
from anyio.abc import TaskStatus

from fastwt import ServerConfig, WebTransportServer
from fastwt.errors import WebTransportError

if TYPE_CHECKING:
    from fastwt.session import WebTransportSession
    from fastwt.stream import WebTransportBidirectionalStream, WebTransportReceiveStream

__all__ = [
    "CLIENT_JS",
    "DEFAULT_HOSTS",
    "DevServerInfo",
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


async def handle_session(session: WebTransportSession) -> None:
    """Route one session request: ``/echo``, ``/close``, or 404."""
    parts = urlsplit(session.path)
    try:
        if parts.path == "/echo":
            await session.accept()
            await echo(session)
        elif parts.path == "/close":
            query = parse_qs(parts.query)
            code = int(query.get("code", ["0"])[0])
            reason = query.get("reason", [""])[0]
            await session.accept()
            await close_when_asked(session, error_code=code, reason=reason)
        else:
            await session.reject(status_code=404)
    except _GONE as exc:
        log.debug("session %s ended: %r", session.path, exc)
    except ValueError:
        await session.reject(status_code=400)


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
    async with WebTransportServer(config=config) as server:
        await server.listen()
        addresses = list(server.local_addresses)
        url = f"https://{_url_authority(addresses)}/echo"
        info = DevServerInfo(url=url, certificate_hash=server.certificate_hash, addresses=addresses)
        httpd: http.server.ThreadingHTTPServer | None = None
        if http_port is not None:
            httpd = start_page_server(demo_page(url, info.certificate_hash), port=http_port)
            page_port = httpd.server_address[1]
            info = DevServerInfo(
                url=url,
                certificate_hash=info.certificate_hash,
                addresses=addresses,
                page_url=f"http://127.0.0.1:{page_port}/",
            )
        try:
            async with anyio.create_task_group() as tg:
                task_status.started(info)
                async for session in server.incoming_sessions():
                    tg.start_soon(handle_session, session)
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


CLIENT_JS = r"""
// fastwt browser helpers: used by the demo page and by the browser interop tests.
window.fastwt = (() => {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const hexToBytes = (hex) => Uint8Array.from(hex.match(/../g), (b) => parseInt(b, 16));
  const withTimeout = (promise, ms, what) =>
    Promise.race([
      promise,
      new Promise((_, reject) => setTimeout(() => reject(new Error(what + ": timed out")), ms)),
    ]);

  async function connect(url, hash) {
    const wt = new WebTransport(url, {
      serverCertificateHashes: [{ algorithm: "sha-256", value: hexToBytes(hash) }],
    });
    await withTimeout(wt.ready, 10000, "connect " + url);
    return wt;
  }

  async function readAll(readable) {
    const reader = readable.getReader();
    const chunks = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const c of chunks) { out.set(c, offset); offset += c.length; }
    return out;
  }

  async function bidiEcho(wt, text) {
    const stream = await wt.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    await writer.write(enc.encode(text));
    await writer.close();
    return dec.decode(await withTimeout(readAll(stream.readable), 5000, "bidi echo"));
  }

  // A unidirectional stream to the server; the echo server answers with a
  // unidirectional stream of its own carrying the same bytes.
  async function uniEcho(wt, text) {
    const incoming = wt.incomingUnidirectionalStreams.getReader();
    const stream = await wt.createUnidirectionalStream();
    const writer = stream.getWriter();
    await writer.write(enc.encode(text));
    await writer.close();
    const { value } = await withTimeout(incoming.read(), 5000, "incoming uni stream");
    incoming.releaseLock();
    return dec.decode(await withTimeout(readAll(value), 5000, "uni echo"));
  }

  // Datagrams may be lost: send until one comes back.
  async function datagramEcho(wt, text, tries = 10) {
    const writer = wt.datagrams.writable.getWriter();
    const reader = wt.datagrams.readable.getReader();
    try {
      for (let i = 0; i < tries; i++) {
        await writer.write(enc.encode(text));
        try {
          const { value } = await withTimeout(reader.read(), 500, "datagram");
          return dec.decode(value);
        } catch (e) { /* lost: try again */ }
      }
      throw new Error("no datagram came back after " + tries + " tries");
    } finally {
      writer.releaseLock();
      reader.releaseLock();
    }
  }

  // Ask the dev server's /close path to close the session; resolves with what the
  // browser reports: {closeCode, reason}.
  async function serverClose(wt) {
    try {
      const stream = await wt.createUnidirectionalStream();
      const writer = stream.getWriter();
      await writer.write(enc.encode("close, please"));
      await writer.close();
    } catch (e) {
      // The server may have closed the session already.
    }
    const info = await withTimeout(wt.closed, 5000, "transport.closed");
    return { closeCode: info.closeCode, reason: info.reason };
  }

  return { hexToBytes, connect, readAll, bidiEcho, uniEcho, datagramEcho, serverClose };
})();
"""

_DEMO_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fastwt demo</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; }
  li.ok::marker { content: "\\2714  "; color: green; }
  li.fail::marker { content: "\\2718  "; color: crimson; }
  li.wait::marker { content: "\\2026  "; }
  code { background: #f4f4f4; padding: 0 .2em; }
</style>
</head>
<body>
<h1>fastwt demo</h1>
<p>This page connects to <code id="url"></code> with WebTransport, trusting the
development certificate by its SHA-256 (<code>serverCertificateHashes</code>).</p>
<ul id="checks"></ul>
<p id="status">running&hellip;</p>
<script>__CLIENT_JS__</script>
<script>
const CONFIG = __CONFIG__;
document.getElementById("url").textContent = CONFIG.url;

function row(name) {
  const li = document.createElement("li");
  li.className = "wait";
  li.textContent = name;
  document.getElementById("checks").appendChild(li);
  return li;
}

async function check(results, name, fn) {
  const li = row(name);
  try {
    const detail = await fn();
    li.className = "ok";
    li.textContent = name + (detail ? ": " + detail : "");
    results[name] = true;
  } catch (e) {
    li.className = "fail";
    li.textContent = name + ": " + e;
    results[name] = String(e);
  }
}

async function runDemo() {
  const results = {};
  let wt = null;
  await check(results, "connect", async () => {
    wt = await fastwt.connect(CONFIG.url, CONFIG.hash);
  });
  if (wt) {
    await check(results, "bidirectional stream echo", () => fastwt.bidiEcho(wt, "hello, fastwt"));
    await check(results, "unidirectional streams, both ways", () => fastwt.uniEcho(wt, "one way"));
    await check(results, "datagram echo", () => fastwt.datagramEcho(wt, "ping"));
    wt.close({ closeCode: 0, reason: "demo done" });
  }
  const ok = Object.values(results).every((v) => v === true);
  document.getElementById("status").textContent = ok ? "All checks passed." : "Some checks failed.";
  document.title = "fastwt demo: " + (ok ? "ok" : "failed");
  window.demoResults = results;
  return results;
}
window.demoDone = runDemo();
</script>
</body>
</html>
"""


def demo_page(url: str, certificate_hash: str) -> str:
    """The demo page's HTML, set up for the echo server at ``url``."""
    config = json.dumps({"url": url, "hash": certificate_hash})
    return _DEMO_HTML.replace("__CLIENT_JS__", CLIENT_JS).replace("__CONFIG__", config)


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

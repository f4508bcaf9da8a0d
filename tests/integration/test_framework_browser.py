"""CORS with a real browser: a page from an allowed origin connects, another is refused.

Two pages are served over plain HTTP from 127.0.0.1 on two ports, i.e. two origins;
the ServerApp allows only the first. Headless Chromium (Debian's package, driven by
Playwright) trusts the development certificate by its hash.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from browser_support import Browser, require_chromium, serve_html

from fastwt import ServerConfig, WebTransportSession
from fastwt.framework import ServerApp, create_cors_middleware

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

PAGE = "<!doctype html><meta charset=utf-8><title>cors</title>"

CONNECT_JS = """
async ([url, hash]) => {
  const value = Uint8Array.from(hash.match(/../g).map((h) => parseInt(h, 16)));
  try {
    const wt = new WebTransport(url, {
      serverCertificateHashes: [{ algorithm: "sha-256", value }],
    });
    await wt.ready;
    const stream = await wt.createBidirectionalStream();
    const writer = stream.writable.getWriter();
    await writer.write(new TextEncoder().encode("hello"));
    await writer.close();
    const reader = stream.readable.getReader();
    let text = "";
    for (;;) {
      const { value: chunk, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(chunk);
    }
    wt.close();
    return { ok: true, text };
  } catch (e) {
    return { ok: false, error: String(e) };
  }
}
"""


@contextlib.contextmanager
def page_server() -> Iterator[str]:
    """An empty page at ``http://127.0.0.1:PORT/``; yields that origin."""
    with serve_html(PAGE) as url:
        yield url.removesuffix("/")


def connect_from(pages: list[str], url: str, cert_hash: str) -> tuple[list[Any], list[str]]:
    """Open each page in Chromium and connect to ``url`` from it (blocking)."""
    with Browser(Path(tempfile.mkdtemp(prefix="fastwt-chromium-"))) as browser:
        results = []
        for page_url in pages:
            page = browser.open(page_url + "/")
            results.append(page.evaluate(CONNECT_JS, [url, cert_hash]))
            page.close()
        return results, browser.console


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_allowed_origin_connects_and_other_origin_is_refused() -> None:
    require_chromium()
    with page_server() as allowed_origin, page_server() as other_origin:
        app = ServerApp(config=ServerConfig(bind_host="127.0.0.1", bind_port=0))
        app.add_middleware(middleware=create_cors_middleware(allowed_origins=[allowed_origin]))
        seen_origins: list[str | None] = []

        @app.route(path="/echo")
        async def echo(session: WebTransportSession) -> None:
            seen_origins.append(session.headers.get("origin"))
            async for stream in session.incoming_bidirectional_streams():
                await stream.write(data=b"echo:" + await stream.read_all(), end_stream=True)

        async with anyio.create_task_group() as tg:
            addresses = await tg.start(lambda task_status: app.serve(task_status=task_status))
            url = f"https://127.0.0.1:{addresses[0][1]}/echo"
            (allowed, refused), console = await anyio.to_thread.run_sync(
                connect_from, [allowed_origin, other_origin], url, app.server.certificate_hash
            )
            tg.cancel_scope.cancel()
    report = "\n".join(["browser console:", *console])
    assert allowed == {"ok": True, "text": "echo:hello"}, report
    assert allowed["ok"] and not refused["ok"], report
    assert seen_origins == [allowed_origin]  # the refused page never reached a handler

"""CORS with a real browser: a page from an allowed origin connects, another is refused.

Two pages are served over plain HTTP from 127.0.0.1 on two ports, i.e. two origins;
the ServerApp allows only the first. The browser trusts the development certificate
by its hash. Chromium (Debian's package) is driven by Playwright; Firefox ESR runs
with no driver, on pages that POST their results back (``browser_support.Firefox``):
the first page, once it has reported, goes on to the second.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from browser_support import (
    Browser,
    Firefox,
    ReportingPage,
    require_chromium,
    require_firefox,
    serve_html,
)

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
    wt.closed.catch(() => {});  // a refused session rejects it too: not "unhandled"
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

# connect(url, certificate_hash) -> (what each page's CONNECT_JS returned, console report)
Connect = Callable[[str, str], tuple[list[Any], str]]


@contextlib.contextmanager
def chromium_pages() -> Iterator[tuple[list[str], Connect]]:
    """Two origins, and a ``Connect`` that opens a page of each in Chromium."""
    require_chromium()
    with serve_html(PAGE) as first, serve_html(PAGE) as second:
        pages = [first, second]

        def connect(url: str, cert_hash: str) -> tuple[list[Any], str]:
            with Browser(Path(tempfile.mkdtemp(prefix="fastwt-chromium-"))) as browser:
                results = []
                for page_url in pages:
                    page = browser.open(page_url)
                    results.append(page.evaluate(CONNECT_JS, [url, cert_hash]))
                    page.close()
                return results, browser.console_report()

        yield [page.removesuffix("/") for page in pages], connect


@contextlib.contextmanager
def firefox_pages() -> Iterator[tuple[list[str], Connect]]:
    """Two origins, and a ``Connect`` that runs a page of each in one Firefox load
    chain (the first page goes on to the second once it has reported)."""
    require_firefox()
    with ReportingPage() as first, ReportingPage() as second:

        def connect(url: str, cert_hash: str) -> tuple[list[Any], str]:
            for page in (first, second):
                page.evaluate(CONNECT_JS, [url, cert_hash])
            with Firefox(Path(tempfile.mkdtemp(prefix="fastwt-firefox-"))) as firefox:
                results = firefox.run(first, second)
            return results, firefox.console_report()

        yield [first.origin, second.origin], connect


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    "browser_pages", [chromium_pages, firefox_pages], ids=["chromium", "firefox"]
)
async def test_allowed_origin_connects_and_other_origin_is_refused(
    browser_pages: Callable[[], contextlib.AbstractContextManager[tuple[list[str], Connect]]],
) -> None:
    with browser_pages() as ([allowed_origin, _other_origin], connect):
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
            (allowed, refused), report = await anyio.to_thread.run_sync(
                connect, url, app.server.certificate_hash
            )
            tg.cancel_scope.cancel()
    assert allowed == {"ok": True, "text": "echo:hello"}, report
    assert allowed["ok"] and not refused["ok"], report
    assert seen_origins == [allowed_origin]  # the refused page never reached a handler

"""Real-browser interop: headless Chromium against fastwt over WebTransport.

The page is served from http://127.0.0.1 (a secure context) and trusts the server's
development certificate through ``serverCertificateHashes``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _aioquic_peer import EchoServerProtocol, aioquic_echo_server
from _browser import expect_results, expected_results, run_interop_checks
from _certs import DevCert
from anyio.from_thread import start_blocking_portal
from browser_support import Browser, serve_html

from fastwt import devserver
from fastwt.devserver import DevServerInfo, js_snippet

pytestmark = pytest.mark.browser

CLOSE_CODE = 4242
CLOSE_REASON = "server says bye"


def test_chromium_against_fastwt(browser: Browser, fastwt_echo_server: DevServerInfo) -> None:
    """Bidirectional echo, a unidirectional stream each way, datagram echo, and a
    server-initiated close whose code and reason reach ``transport.closed``."""
    base = f"https://127.0.0.1:{fastwt_echo_server.port}"
    results = run_interop_checks(
        browser,
        echo_url=f"{base}/echo",
        close_url=f"{base}/close?code={CLOSE_CODE}&reason={CLOSE_REASON.replace(' ', '%20')}",
        certificate_hash=fastwt_echo_server.certificate_hash,
    )
    expected = expected_results(browser, close_code=CLOSE_CODE, close_reason=CLOSE_REASON)
    expect_results(results, expected, browser)


def test_printed_js_snippet_works(browser: Browser, fastwt_echo_server: DevServerInfo) -> None:
    """The snippet ``fastwt dev`` prints for a DevTools console runs as printed."""
    snippet = js_snippet(fastwt_echo_server.url, fastwt_echo_server.certificate_hash)
    with serve_html("<!doctype html><title>console</title>") as page_url:
        page = browser.open(page_url)
        # The console allows top-level await; an async function body is the same.
        page.evaluate(f"async () => {{\n{snippet}\n}}")
    logged = [line for line in browser.console if line.startswith("console.log:")]
    assert logged == ["console.log: echoed: hello, fastwt", "console.log: datagram: ping"], (
        browser.console_report()
    )


def test_chromium_reaches_dev_server_by_every_loopback_name(browser: Browser) -> None:
    """``fastwt dev`` binds 127.0.0.1 and ::1, so ``localhost`` works too (Chromium
    tries ::1 first for it and does not fall back to IPv4 for QUIC)."""
    serve = functools.partial(devserver.serve, hosts=devserver.DEFAULT_HOSTS, port=0)
    with start_blocking_portal() as portal:
        future, info = portal.start_task(serve)
        try:
            with serve_html(f"<script>{devserver.CLIENT_JS}</script>") as page_url:
                page = browser.open(page_url)
                for host in ("localhost", "[::1]", "127.0.0.1"):
                    echoed = page.evaluate(
                        """async ([url, hash]) => {
                          try {
                            const wt = await fastwt.connect(url, hash);
                            const echoed = await fastwt.bidiEcho(wt, "hi");
                            wt.close();
                            return echoed;
                          } catch (e) { return String(e); }
                        }""",
                        [f"https://{host}:{info.port}/echo", info.certificate_hash],
                    )
                    assert echoed == "hi", f"{host}: {echoed}\n{browser.console_report()}"
        finally:
            future.cancel()


@pytest.fixture
def aioquic_server(dev_cert: DevCert) -> Iterator[int]:
    """aioquic's echo server (an independent implementation) on a background loop."""
    server = aioquic_echo_server(
        host="127.0.0.1", port=0, certfile=dev_cert.certfile, keyfile=dev_cert.keyfile
    )
    with (
        start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(server) as port,
    ):
        yield port


def test_chromium_against_aioquic(browser: Browser, aioquic_server: int, dev_cert: DevCert) -> None:
    """The same checks against aioquic: proves the harness itself (browser, flags,
    page, certificate) works, so a failure above is fastwt's."""
    base = f"https://127.0.0.1:{aioquic_server}"
    results = run_interop_checks(
        browser,
        echo_url=f"{base}/echo",
        close_url=f"{base}/close",
        certificate_hash=dev_cert.sha256,
    )
    expected = expected_results(
        browser,
        close_code=EchoServerProtocol.CLOSE_CODE,
        close_reason=EchoServerProtocol.CLOSE_REASON,
    )
    expect_results(results, expected, browser)


def test_demo_page(browser: Browser, fastwt_cli: Callable[..., Any]) -> None:
    """``fastwt demo`` serves a page that connects to its echo server and shows every
    check passing; Ctrl-C stops it cleanly."""
    demo = fastwt_cli("demo", "--port", "0", "--http-port", "0")
    page_url = demo.wait_for(r"open (http://127\.0\.0\.1:\d+/)").group(1)
    page = browser.open(page_url)
    results = page.evaluate("window.demoDone")
    failed = {name: r for name, r in results.items() if r is not True}
    assert not failed, f"demo checks failed: {failed}\n{browser.console_report()}"
    assert page.title() == "fastwt demo: ok"
    assert "All checks passed." in page.inner_text("#status")
    assert demo.stop() == 0, demo.output
    assert "Traceback" not in demo.output, demo.output

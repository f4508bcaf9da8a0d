"""Headless Chromium against fastwt's pure-Python backend: the same page and checks as
``test_browser.py`` (bidirectional echo, unidirectional streams both ways, datagram
echo, a server-initiated close whose code and reason reach ``transport.closed``), with
``fastwt dev``'s echo server on aioquic instead of the Rust core."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
from _browser import expect_results, expected_results, run_interop_checks
from anyio.from_thread import start_blocking_portal
from browser_support import Browser

from fastwt import devserver
from fastwt.devserver import DevServerInfo

pytestmark = pytest.mark.browser

CLOSE_CODE = 4242
CLOSE_REASON = "server says bye"


@pytest.fixture(params=["asyncio", "trio"])
def pure_echo_server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DevServerInfo]:
    """``fastwt dev``'s echo server with ``FASTWT_BACKEND=python`` (the default of every
    config it makes), on its own event loop in a background thread."""
    monkeypatch.setenv("FASTWT_BACKEND", "python")
    with start_blocking_portal(backend=request.param) as portal:
        serve = functools.partial(devserver.serve, hosts=("127.0.0.1",), port=0)
        future, info = portal.start_task(serve, name="fastwt pure echo server")
        try:
            yield info
        finally:
            future.cancel()


def test_chromium_against_the_pure_python_backend(
    browser: Browser, pure_echo_server: DevServerInfo
) -> None:
    base = f"https://127.0.0.1:{pure_echo_server.port}"
    results = run_interop_checks(
        browser,
        echo_url=f"{base}/echo",
        close_url=f"{base}/close?code={CLOSE_CODE}&reason={CLOSE_REASON.replace(' ', '%20')}",
        certificate_hash=pure_echo_server.certificate_hash,
    )
    expected = expected_results(browser, close_code=CLOSE_CODE, close_reason=CLOSE_REASON)
    expect_results(results, expected, browser)

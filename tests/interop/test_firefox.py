"""Real-browser interop: headless Firefox ESR against fastwt over WebTransport.

The same checks as test_browser.py's Chromium ones, in one page load per server:
Firefox runs without any WebDriver, started on a page whose script POSTs its results
back to the page's server (``browser_support.Firefox`` and ``ReportingPage``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _aioquic_peer import EchoServerProtocol, aioquic_echo_server
from _browser import expect_results, expected_results, run_interop_checks
from _certs import DevCert
from anyio.from_thread import start_blocking_portal
from browser_support import Firefox

from fastwt.devserver import DevServerInfo

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

CLOSE_CODE = 4242
CLOSE_REASON = "server says bye"


def test_firefox_against_fastwt(firefox: Firefox, fastwt_echo_server: DevServerInfo) -> None:
    """Bidirectional echo, a unidirectional stream each way, datagram echo, and a
    server-initiated close whose code and reason reach ``transport.closed``."""
    base = f"https://127.0.0.1:{fastwt_echo_server.port}"
    results = run_interop_checks(
        firefox,
        echo_url=f"{base}/echo",
        close_url=f"{base}/close?code={CLOSE_CODE}&reason={CLOSE_REASON.replace(' ', '%20')}",
        certificate_hash=fastwt_echo_server.certificate_hash,
    )
    expected = expected_results(firefox, close_code=CLOSE_CODE, close_reason=CLOSE_REASON)
    expect_results(results, expected, firefox)


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


def test_firefox_against_aioquic(firefox: Firefox, aioquic_server: int, dev_cert: DevCert) -> None:
    """The same checks against aioquic: proves the harness (Firefox, profile, page,
    certificate) works, so a failure above is fastwt's."""
    base = f"https://127.0.0.1:{aioquic_server}"
    results = run_interop_checks(
        firefox,
        echo_url=f"{base}/echo",
        close_url=f"{base}/close",
        certificate_hash=dev_cert.sha256,
    )
    expected = expected_results(
        firefox,
        close_code=EchoServerProtocol.CLOSE_CODE,
        close_reason=EchoServerProtocol.CLOSE_REASON,
    )
    expect_results(results, expected, firefox)

"""The interop checks run in a headless browser against an echo server (the browsers
themselves are driven by ``browser_support``): one JS function, which Playwright
evaluates in Chromium and a ``ReportingPage`` calls in Firefox."""

from __future__ import annotations

from typing import Any

from browser_support import Browser, Firefox, ReportingPage, serve_html

from fastwt.devserver import CLIENT_JS

# Runs every check even when one fails, so a report shows them all. Uses the helpers
# of fastwt.devserver.CLIENT_JS (window.fastwt), which the test page includes.
INTEROP_JS = """
async ([echoUrl, closeUrl, hash, who]) => {
  const out = {};
  const run = async (name, fn) => {
    try { out[name] = { ok: true, value: await fn() }; }
    catch (e) { out[name] = { ok: false, error: String(e) }; }
  };
  let wt = null;
  await run("connect", async () => { wt = await fastwt.connect(echoUrl, hash); return "ready"; });
  if (wt) {
    await run("bidi", () => fastwt.bidiEcho(wt, "bidi from " + who));
    await run("uni", () => fastwt.uniEcho(wt, "uni from " + who));
    await run("datagram", () => fastwt.datagramEcho(wt, "datagram from " + who));
    wt.close({ closeCode: 0, reason: "" });
  }
  await run("server_close", async () => fastwt.serverClose(await fastwt.connect(closeUrl, hash)));
  return out;
}
"""


def run_interop_checks(
    browser: Browser | Firefox, *, echo_url: str, close_url: str, certificate_hash: str
) -> dict[str, dict[str, Any]]:
    """Open a page with fastwt's browser helpers and run the interop checks there (in
    one page load). The echoed texts name the browser: see :func:`expected_results`."""
    if isinstance(browser, Firefox):
        with ReportingPage() as reporting:
            reporting.evaluate(INTEROP_JS, [echo_url, close_url, certificate_hash, "firefox"])
            (reported,) = browser.run(reporting)
        return dict(reported)  # or {"pageerror": ...}, which expect_results shows
    html = f"<!doctype html><meta charset=utf-8><title>interop</title><script>{CLIENT_JS}</script>"
    with serve_html(html) as page_url:
        page = browser.open(page_url)
        try:
            results: dict[str, dict[str, Any]] = page.evaluate(
                INTEROP_JS, [echo_url, close_url, certificate_hash, "chromium"]
            )
        finally:
            page.close()
    return results


def expected_results(
    browser: Browser | Firefox, *, close_code: int, close_reason: str
) -> dict[str, Any]:
    """What :func:`run_interop_checks` reports in ``browser`` when every check passes
    (the server closes ``close_url``'s session with ``close_code`` and ``close_reason``)."""
    who = "firefox" if isinstance(browser, Firefox) else "chromium"
    return {
        "connect": "ready",
        "bidi": f"bidi from {who}",
        "uni": f"uni from {who}",
        "datagram": f"datagram from {who}",
        "server_close": {"closeCode": close_code, "reason": close_reason},
    }


def expect_results(
    results: dict[str, dict[str, Any]], expected: dict[str, Any], browser: Browser | Firefox
) -> None:
    """Assert every check, reporting all mismatches at once with the browser console."""
    problems = []
    for name, value in expected.items():
        got = results.get(name, {"ok": False, "error": "did not run"})
        if not got["ok"]:
            problems.append(f"{name}: failed: {got['error']}")
        elif got["value"] != value:
            problems.append(f"{name}: expected {value!r}, got {got['value']!r}")
    # e.g. {"pageerror": ...} or {"error": ...}: the page's script itself broke
    problems += [f"{name}: {got!r}" for name, got in results.items() if name not in expected]
    assert not problems, "\n".join([*problems, browser.console_report()])

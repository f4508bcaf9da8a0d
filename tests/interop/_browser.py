"""The interop checks run in headless Chromium against an echo server (the browser
itself is driven by ``browser_support``)."""

from __future__ import annotations

from typing import Any

from browser_support import Browser, serve_html

from fastwt.devserver import CLIENT_JS

# Runs every check even when one fails, so a report shows them all. Uses the helpers
# of fastwt.devserver.CLIENT_JS (window.fastwt), which the test page includes.
INTEROP_JS = """
async ([echoUrl, closeUrl, hash]) => {
  const out = {};
  const run = async (name, fn) => {
    try { out[name] = { ok: true, value: await fn() }; }
    catch (e) { out[name] = { ok: false, error: String(e) }; }
  };
  let wt = null;
  await run("connect", async () => { wt = await fastwt.connect(echoUrl, hash); return "ready"; });
  if (wt) {
    await run("bidi", () => fastwt.bidiEcho(wt, "bidi from chromium"));
    await run("uni", () => fastwt.uniEcho(wt, "uni from chromium"));
    await run("datagram", () => fastwt.datagramEcho(wt, "datagram from chromium"));
    wt.close({ closeCode: 0, reason: "" });
  }
  await run("server_close", async () => fastwt.serverClose(await fastwt.connect(closeUrl, hash)));
  return out;
}
"""


def run_interop_checks(
    browser: Browser, *, echo_url: str, close_url: str, certificate_hash: str
) -> dict[str, dict[str, Any]]:
    """Open a page with fastwt's browser helpers and run the interop checks there."""
    html = f"<!doctype html><meta charset=utf-8><title>interop</title><script>{CLIENT_JS}</script>"
    with serve_html(html) as page_url:
        page = browser.open(page_url)
        try:
            results: dict[str, dict[str, Any]] = page.evaluate(
                INTEROP_JS, [echo_url, close_url, certificate_hash]
            )
        finally:
            page.close()
    return results


def expect_results(
    results: dict[str, dict[str, Any]], expected: dict[str, Any], browser: Browser
) -> None:
    """Assert every check, reporting all mismatches at once with the browser console."""
    problems = []
    for name, value in expected.items():
        got = results.get(name, {"ok": False, "error": "did not run"})
        if not got["ok"]:
            problems.append(f"{name}: failed: {got['error']}")
        elif got["value"] != value:
            problems.append(f"{name}: expected {value!r}, got {got['value']!r}")
    assert not problems, "\n".join([*problems, browser.console_report()])

"""Headless Chromium (Debian's package) driven by Playwright, for interop tests.

Never ``playwright install``: the browser is /usr/bin/chromium, passed as
``executable_path``. Pages are served over plain HTTP from 127.0.0.1 (a secure
context, so ``WebTransport`` exists), and every console message is kept so that a
failure shows the browser's own explanation ("Opening handshake failed" in JS hides
the real cause, which only the console tells).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastwt.devserver import CLIENT_JS, start_page_server

CHROMIUM = os.environ.get("FASTWT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def require_chromium() -> None:
    """Skip when Chromium or Playwright is missing, except in CI, where it fails."""
    problems = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        problems.append(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("playwright is not installed (pip install playwright)")
    if problems:
        message = "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {message}", pytrace=False)
        pytest.skip(message)


@contextlib.contextmanager
def serve_html(html: str) -> Iterator[str]:
    """Serve ``html`` at ``http://127.0.0.1:PORT/`` from a thread; yields that URL."""
    httpd = start_page_server(html)
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class Browser:
    """One headless Chromium with a fresh profile; ``console`` keeps every message."""

    def __init__(self, user_data_dir: Path) -> None:
        self.user_data_dir = user_data_dir
        self.console: list[str] = []
        self._playwright: Any = None
        self._context: Any = None

    def __enter__(self) -> Browser:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._context = self._playwright.chromium.launch_persistent_context(
                str(self.user_data_dir),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                timeout=60_000,
            )
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._context.close()
        finally:
            self._playwright.stop()
            shutil.rmtree(self.user_data_dir, ignore_errors=True)

    def open(self, url: str) -> Any:
        """A new page at ``url`` whose console messages and errors are recorded."""
        page = self._context.new_page()
        page.on("console", lambda msg: self.console.append(f"console.{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: self.console.append(f"pageerror: {err}"))
        page.goto(url)
        return page

    def console_report(self) -> str:
        if not self.console:
            return "(no browser console output)"
        return "\n".join(["browser console:", *self.console])


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

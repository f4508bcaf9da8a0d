"""Headless Chromium (Debian's package) driven by Playwright, shared by every browser
test (tests/interop, tests/integration).

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

from fastwt.devserver import start_page_server

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

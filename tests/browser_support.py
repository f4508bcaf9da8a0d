"""Real browsers for every browser test (tests/interop, tests/integration).

- Headless Chromium (Debian's package) driven by Playwright (:class:`Browser`). Never
  ``playwright install``: the browser is /usr/bin/chromium, passed as
  ``executable_path``.
- Headless Firefox ESR (Debian's ``firefox-esr``) with no WebDriver at all
  (:class:`Firefox`): it is started on a :class:`ReportingPage`, whose script POSTs
  its result back to the page's own server. Playwright's Firefox would need
  Playwright's patched build, and there is no geckodriver.

Pages are served over plain HTTP from 127.0.0.1 (a secure context, so
``WebTransport`` exists), and every console message is kept so that a failure shows
the browser's own explanation ("Opening handshake failed" in JS hides the real cause,
which only the console tells).
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    if not _is_executable(CHROMIUM):
        problems.append(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("playwright is not installed (pip install playwright)")
    _skip_or_fail(problems)


def require_firefox() -> None:
    """Skip when Firefox is missing, except in CI, where it fails."""
    if not _is_executable(FIREFOX):
        _skip_or_fail([f"{FIREFOX} not found (apt-get install firefox-esr)"])


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _skip_or_fail(problems: list[str]) -> None:
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


# --------------------------------------------------------------------------- Firefox

FIREFOX = os.environ.get("FASTWT_FIREFOX", "/usr/bin/firefox-esr")

# The profile's user.js: nothing at startup may reach for the Internet (first-run and
# what's-new pages, telemetry, updates, safe browsing, remote settings, captive-portal
# and connectivity probes, DNS-over-HTTPS), and the page's console goes to stdout.
FIREFOX_PREFS: dict[str, bool | int | str] = {
    # WebTransport (both default to true in ESR 128+; set in case a build differs).
    # 153 no longer has the datagram switch (datagrams are always on); harmless.
    "network.webtransport.enabled": True,
    "network.webtransport.datagrams.enabled": True,
    "network.http.http3.enable": True,
    # console.log of pages (and dump()) to stdout, for failure reports
    "devtools.console.stdout.content": True,
    "browser.dom.window.dump.enabled": True,
    # first run, default browser, session restore
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank",
    "startup.homepage_welcome_url": "about:blank",
    "startup.homepage_welcome_url.additional": "",
    "browser.aboutwelcome.enabled": False,
    "trailhead.firstrun.didSeeAboutWelcome": True,
    "browser.newtabpage.enabled": False,
    "browser.newtabpage.activity-stream.feeds.system.topstories": False,
    "browser.newtabpage.activity-stream.feeds.section.topstories": False,
    "browser.newtabpage.activity-stream.feeds.topsites": False,
    "browser.newtabpage.activity-stream.feeds.telemetry": False,
    "browser.newtabpage.activity-stream.telemetry": False,
    "browser.topsites.contile.enabled": False,
    "browser.sessionstore.resume_from_crash": False,
    "browser.tabs.warnOnClose": False,
    "browser.warnOnQuit": False,
    "browser.uitour.enabled": False,
    "browser.discovery.enabled": False,
    "toolkit.startup.max_resumed_crashes": -1,
    # telemetry, data reporting, studies
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.policy.dataSubmissionPolicyBypassNotification": True,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.usage.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "browser.ping-centre.telemetry": False,
    "app.normandy.enabled": False,
    "app.normandy.api_url": "",
    "app.shield.optoutstudies.enabled": False,
    "browser.crashReports.unsubmittedCheck.autoSubmit2": False,
    # updates: the application, add-ons, search engines, media plugins
    "app.update.disabledForTesting": True,
    "app.update.auto": False,
    "app.update.checkInstallTime": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.blocklist.enabled": False,
    "browser.search.update": False,
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-gmpopenh264.enabled": False,
    "media.gmp-widevinecdm.enabled": False,
    # safe browsing and remote settings
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "browser.safebrowsing.provider.google.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "services.settings.server": "data:,#remote-settings-dummy/v1",  # with the env below
    "nimbus.rollouts.enabled": False,
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "security.OCSP.enabled": 0,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "browser.translations.enable": False,
    "browser.ml.enable": False,
    "identity.fxaccounts.enabled": False,
    "dom.push.enabled": False,
    "dom.push.connection.enabled": False,
    "dom.push.serverURL": "",
    # network probes and speculative connections
    "network.captive-portal-service.enabled": False,
    "captivedetect.canonicalURL": "",
    "network.connectivity-service.enabled": False,
    "network.trr.mode": 5,  # DNS over HTTPS off
    "doh-rollout.disable-heuristics": True,
    "network.proxy.type": 0,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.predictor.enabled": False,
    "network.http.speculative-parallel-limit": 0,
    "browser.places.speculativeConnect.enabled": False,
    "browser.urlbar.speculativeConnect.enabled": False,
    "network.manage-offline-status": False,
    "privacy.trackingprotection.enabled": False,
}

# Included by every ReportingPage, before its script: ``fastwtReport(value)`` POSTs
# ``value`` as JSON to the page's server, then goes on to the next page, if any.
# An uncaught error reports itself, so that a broken script fails at once instead of
# timing out.
_REPORT_JS = """
window.fastwtReport = (() => {
  let sent = false;
  return async (value) => {
    if (sent) return;
    sent = true;
    await fetch("/results", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(value === undefined ? null : value),
    });
    if (NEXT_URL) location.href = NEXT_URL;
  };
})();
addEventListener("error", (e) =>
  fastwtReport({ pageerror: `${e.message} (${e.filename}:${e.lineno})` }));
addEventListener("unhandledrejection", (e) =>
  console.error("unhandled rejection: " + e.reason));
"""


# Messages (with their continuation lines: indented, or JS stack frames) that
# console_report leaves out.
_FIREFOX_NOISE = (
    "console.error: services.settings:",
    "console.warn: services.settings:",
    "console.error: RSLoader:",
)


def _is_continuation(line: str) -> bool:
    """An indented line, blank line or JS stack frame (``name@url:line:column``)."""
    return (
        line[:1].isspace() or not line.strip() or re.fullmatch(r"\S*@\S+:\d+:\d+", line) is not None
    )


def _script_json(value: Any) -> str:
    """``value`` as a JS literal that is safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c")


class ReportingPage:
    """A page at ``http://127.0.0.1:PORT/`` (an origin of its own) that calls a JS
    function and POSTs what it returns to ``/results`` on the same server: Playwright's
    ``page.evaluate(function, arg)`` for a browser that is not driven at all.

    Set the function with :meth:`evaluate` before the browser loads the page (the
    origin is known before, e.g. for a CORS allow-list). The page includes
    ``fastwt.devserver.CLIENT_JS`` (``window.fastwt``). :meth:`result` waits for the
    POST.
    """

    def __init__(self) -> None:
        self.function = "async () => null"
        self.arg: Any = None
        self.next_url: str | None = None
        self._results: queue.Queue[Any] = queue.Queue()
        page = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/favicon.ico":
                    self._send(204, b"", "text/plain")
                elif path == "/":
                    self._send(200, page.html().encode(), "text/html; charset=utf-8")
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                if urlsplit(self.path).path != "/results":
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    page._results.put(json.loads(body))
                except ValueError:
                    page._results.put({"pageerror": f"not JSON: {body!r}"})
                self._send(204, b"", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.url = self.origin + "/"
        threading.Thread(
            target=self._httpd.serve_forever, name="reporting-page", daemon=True
        ).start()

    def evaluate(self, function: str, arg: Any = None) -> None:
        """Make the page call ``function`` (JS source of a function, possibly async)
        with ``arg`` (JSON) and report what it returns (or ``{"error": ...}``)."""
        self.function = function
        self.arg = arg

    def html(self) -> str:
        return f"""<!doctype html><meta charset=utf-8><title>fastwt</title>
<script>{CLIENT_JS}</script>
<script>const NEXT_URL = {_script_json(self.next_url)};{_REPORT_JS}</script>
<script>
Promise.resolve({_script_json(self.arg)})
  .then({self.function})
  .then(fastwtReport, (e) => fastwtReport({{ error: String(e) }}));
</script>
"""

    def result(self, timeout: float) -> Any:
        """What the page POSTed; raises ``TimeoutError`` if nothing came in time."""
        try:
            return self._results.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.url} reported nothing within {timeout:.0f} s") from None

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ReportingPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Firefox:
    """One headless Firefox with a fresh profile in ``workdir``, no WebDriver:
    :meth:`run` starts it on a chain of :class:`ReportingPage` and returns what they
    report. Leaving the context kills Firefox's whole process group and removes
    ``workdir``; :meth:`console_report` has its stdout and stderr (with the pages'
    console messages), also afterwards."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.profile = workdir / "profile"
        self._log_path = workdir / "firefox.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: str | None = None

    def __enter__(self) -> Firefox:
        self.profile.mkdir(parents=True)
        prefs = (f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in FIREFOX_PREFS.items())
        (self.profile / "user.js").write_text("\n".join(prefs) + "\n")
        return self

    def run(self, *pages: ReportingPage, timeout: float = 45.0) -> list[Any]:
        """Open ``pages[0]`` in Firefox; each page goes on to the next once it has
        reported. Returns every page's report; fails with Firefox's output if one
        does not come within ``timeout`` seconds of the start."""
        if self._proc is not None:
            raise RuntimeError("one run per Firefox")
        for page, following in itertools.pairwise(pages):
            page.next_url = following.url
        env = {
            **os.environ,
            "MOZ_HEADLESS": "1",
            "MOZ_CRASHREPORTER_DISABLE": "1",
            "MOZ_DISABLE_AUTO_SAFE_MODE": "1",
            # honour services.settings.server (else it stays Mozilla's, on the Internet)
            "MOZ_REMOTE_SETTINGS_DEVTOOLS": "1",
        }
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    FIREFOX,
                    "--headless",
                    "--no-remote",
                    "--profile",
                    str(self.profile),
                    pages[0].url,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, killed as a whole
            )
        deadline = time.monotonic() + timeout
        results = []
        for page in pages:
            try:
                results.append(page.result(max(deadline - time.monotonic(), 0.1)))
            except TimeoutError as exc:
                status = self._proc.poll()
                state = "running" if status is None else f"exited with {status}"
                pytest.fail(f"{exc} (Firefox {state})\n{self.console_report()}", pytrace=False)
        return results

    def output(self) -> str:
        if self._output is not None:
            return self._output
        try:
            return self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def console_report(self) -> str:
        """Firefox's output without the remote-settings noise (its clients fail on the
        dummy server of FIREFOX_PREFS, several times a run)."""
        kept: list[str] = []
        left_out = 0
        skipping = False
        for line in self.output().splitlines():
            if line.startswith(_FIREFOX_NOISE):
                skipping = True
                left_out += 1
            elif not (skipping and _is_continuation(line)):
                skipping = False
                kept.append(line)
        if left_out:
            kept.append(f"({left_out} messages of Firefox's remote settings clients left out)")
        output = "\n".join(kept).strip()
        return f"Firefox output:\n{output}" if output else "(no Firefox output)"

    def __exit__(self, *exc: object) -> None:
        try:
            if self._proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=30)
        finally:
            self._output = self.output()
            shutil.rmtree(self.workdir, ignore_errors=True)

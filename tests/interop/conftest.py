"""Fixtures of the interop tests: a development certificate, an in-process fastwt echo
server on a background event loop, and a headless Chromium or Firefox."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
from _certs import DevCert, make_dev_cert
from anyio.from_thread import start_blocking_portal
from browser_support import Browser, Firefox, require_chromium, require_firefox

from fastwt import devserver


@pytest.fixture(scope="session")
def dev_cert(tmp_path_factory: pytest.TempPathFactory) -> DevCert:
    """An ECDSA P-256 certificate valid for 13 days (what browsers take by hash)."""
    return make_dev_cert(tmp_path_factory.mktemp("cert"))


@pytest.fixture(params=["asyncio", "trio"])
def fastwt_echo_server(request: pytest.FixtureRequest) -> Iterator[devserver.DevServerInfo]:
    """``fastwt dev``'s echo server on 127.0.0.1, port 0, running on its own event loop
    (asyncio or trio) in a background thread, so a test can drive a synchronous
    browser against it."""
    with start_blocking_portal(backend=request.param) as portal:
        serve = functools.partial(devserver.serve, hosts=("127.0.0.1",), port=0)
        future, info = portal.start_task(serve, name="fastwt echo server")
        try:
            yield info
        finally:
            future.cancel()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """Headless Chromium with a fresh profile. Its console is printed at teardown, so
    it shows in the report of a failing test."""
    require_chromium()
    with Browser(tmp_path / "chromium-profile") as b:
        try:
            yield b
        finally:
            print(b.console_report())


@pytest.fixture
def firefox(tmp_path: Path) -> Iterator[Firefox]:
    """Headless Firefox with a fresh profile (not started yet: ``firefox.run(page)``).
    Its output, with the pages' console, is printed at teardown."""
    require_firefox()
    with Firefox(tmp_path / "firefox") as f:
        try:
            yield f
        finally:
            print(f.console_report())

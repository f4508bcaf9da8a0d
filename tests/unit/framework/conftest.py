"""Fixtures for the framework unit tests (no network: a fake server and sessions)."""

from __future__ import annotations

import pytest
from framework_fakes import FakeServer

import fastwt.framework.app as app_module
from fastwt.framework import ServerApp


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> ServerApp:
    """A ServerApp whose server is a ``FakeServer`` (reach it as ``app.server``)."""
    monkeypatch.setattr(app_module, "WebTransportServer", FakeServer)
    monkeypatch.setattr(app_module, "ServerConfig", lambda **_: {"fake": "config"})
    return ServerApp()

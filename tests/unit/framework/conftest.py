"""Fixtures for the framework unit tests (no network: a fake server and sessions)."""

from __future__ import annotations

import pytest
from fakes import FakeServer

from fastwt.framework import ServerApp


@pytest.fixture
def app() -> ServerApp:
    """A ServerApp driving a ``FakeServer`` (reach it as ``app.server``): passed in as
    its server, nothing of the framework is patched."""
    return ServerApp(server=FakeServer(config={"fake": "config"}))

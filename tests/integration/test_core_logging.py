"""Rust log events reach Python ``logging`` under ``fastwt.core``, with the session's
id, path and peer in the record."""

from __future__ import annotations

import logging

import anyio
import pytest

from fastwt import SessionRejectedError
from fastwt._logging import refresh_logging

from .echo_server import echo_server

pytestmark = pytest.mark.anyio


async def test_rust_events_reach_python_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fastwt.core")
    refresh_logging()
    try:
        async with echo_server() as echo, echo.client() as client:
            with pytest.raises(SessionRejectedError):
                await client.connect(url=f"{echo.url}/reject/403?who=me")
            with anyio.fail_after(5):
                while not any("session requested" in r.getMessage() for r in caplog.records):
                    await anyio.sleep(0.01)
    finally:
        caplog.set_level(logging.WARNING, logger="fastwt.core")
        refresh_logging()
    record = next(r for r in caplog.records if "session requested" in r.getMessage())
    assert record.name == "fastwt.core"
    message = record.getMessage()
    assert "/reject/403?who=me" in message
    assert "127.0.0.1" in message
    assert "session=" in message

"""MiddlewareManager and MiddlewareRejected."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fakes import FakeSession

from fastwt.framework import MiddlewareManager, MiddlewareRejected

pytestmark = pytest.mark.anyio


def recorder(log: list[str], name: str, *, reject: BaseException | None = None) -> Any:
    async def middleware(*, session: Any) -> None:
        log.append(f"{name}:{session.path}")
        if reject is not None:
            raise reject

    return middleware


async def test_runs_in_registration_order_and_passes_the_session() -> None:
    log: list[str] = []
    manager = MiddlewareManager()
    for name in ("first", "second", "third"):
        manager.add_middleware(middleware=recorder(log, name))
    assert manager.get_middleware_count() == 3
    await manager.process_request(session=FakeSession("/x"))
    assert log == ["first:/x", "second:/x", "third:/x"]


async def test_rejection_stops_the_chain_and_keeps_status_and_headers() -> None:
    log: list[str] = []
    manager = MiddlewareManager()
    rejection = MiddlewareRejected(status_code=418, headers={"X-Why": "teapot"})
    manager.add_middleware(middleware=recorder(log, "first"))
    manager.add_middleware(middleware=recorder(log, "second", reject=rejection))
    manager.add_middleware(middleware=recorder(log, "third"))
    with pytest.raises(MiddlewareRejected) as caught:
        await manager.process_request(session=FakeSession("/x"))
    assert caught.value is rejection
    assert caught.value.status_code == 418
    assert caught.value.headers == {"x-why": "teapot"}
    assert log == ["first:/x", "second:/x"]


async def test_other_exceptions_become_500_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    manager = MiddlewareManager()
    boom = RuntimeError("database down")
    manager.add_middleware(middleware=recorder([], "broken", reject=boom))
    with caplog.at_level(logging.ERROR), pytest.raises(MiddlewareRejected) as caught:
        await manager.process_request(session=FakeSession("/secret"))
    assert caught.value.status_code == 500
    assert caught.value.__cause__ is boom
    assert "/secret" in caplog.text
    assert "database down" in caplog.text


async def test_remove_middleware() -> None:
    log: list[str] = []
    manager = MiddlewareManager()
    first, second = recorder(log, "first"), recorder(log, "second")
    manager.add_middleware(middleware=first)
    manager.add_middleware(middleware=second)
    manager.remove_middleware(middleware=first)
    manager.remove_middleware(middleware=first)  # no-op when absent
    assert manager.get_middleware_count() == 1
    await manager.process_request(session=FakeSession("/"))
    assert log == ["second:/"]


async def test_empty_chain_lets_everything_through() -> None:
    await MiddlewareManager().process_request(session=FakeSession("/"))


def test_non_callable_middleware_is_refused() -> None:
    with pytest.raises(TypeError):
        MiddlewareManager().add_middleware(middleware="nope")  # type: ignore[arg-type]


def test_middleware_rejected_defaults_and_validation() -> None:
    default = MiddlewareRejected()
    assert default.status_code == 403
    assert default.headers == {}
    assert "403" in str(default)
    with pytest.raises(TypeError):
        MiddlewareRejected(429)  # type: ignore[misc]
    with pytest.raises(ValueError):
        MiddlewareRejected(status_code=200)
    with pytest.raises(ValueError):
        MiddlewareRejected(status_code=600)
    with pytest.raises(TypeError):
        MiddlewareRejected(status_code="429")  # type: ignore[arg-type]
    headers = {"Retry-After": "5"}
    rejected = MiddlewareRejected(status_code=429, headers=headers)
    headers["Retry-After"] = "changed"
    assert rejected.headers == {"retry-after": "5"}

"""The bundled auth and CORS middleware."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import FakeSession

from fastwt.framework import MiddlewareRejected, create_auth_middleware, create_cors_middleware

pytestmark = pytest.mark.anyio


async def status_of(middleware: Any, session: FakeSession) -> int | None:
    """The rejection status, or None when the middleware lets the session through."""
    try:
        await middleware(session=session)
    except MiddlewareRejected as exc:
        return exc.status_code
    return None


async def test_auth_passes_the_headers_and_follows_the_verdict() -> None:
    seen: list[dict[str, str]] = []

    async def auth_handler(*, headers: Any) -> bool:
        seen.append(dict(headers))
        return headers.get("authorization") == "Bearer good"

    middleware = create_auth_middleware(auth_handler=auth_handler)
    good = FakeSession("/", headers={"authorization": "Bearer good"})
    bad = FakeSession("/", headers={"authorization": "Bearer bad"})
    assert await status_of(middleware, good) is None
    assert await status_of(middleware, bad) == 401
    assert await status_of(middleware, FakeSession("/")) == 401
    assert seen == [{"authorization": "Bearer good"}, {"authorization": "Bearer bad"}, {}]


async def test_auth_handler_exception_is_500_and_own_rejection_passes_through() -> None:
    async def broken(*, headers: Any) -> bool:
        raise KeyError("no user store")

    async def picky(*, headers: Any) -> bool:
        raise MiddlewareRejected(status_code=403, headers={"x-reason": "banned"})

    with pytest.raises(MiddlewareRejected) as caught:
        await create_auth_middleware(auth_handler=broken)(session=FakeSession("/"))
    assert caught.value.status_code == 500
    assert isinstance(caught.value.__cause__, KeyError)

    with pytest.raises(MiddlewareRejected) as caught:
        await create_auth_middleware(auth_handler=picky)(session=FakeSession("/"))
    assert (caught.value.status_code, caught.value.headers) == (403, {"x-reason": "banned"})


async def test_auth_accepts_a_plain_function() -> None:
    middleware = create_auth_middleware(auth_handler=lambda *, headers: "ok" in headers)
    assert await status_of(middleware, FakeSession("/", headers={"ok": "1"})) is None
    assert await status_of(middleware, FakeSession("/")) == 401


async def test_cors_allows_listed_origins_only() -> None:
    middleware = create_cors_middleware(
        allowed_origins=["https://app.example.com", "http://127.0.0.1:8000/"]
    )
    for origin in ("https://app.example.com", "HTTPS://APP.EXAMPLE.COM", "http://127.0.0.1:8000"):
        assert await status_of(middleware, FakeSession("/", headers={"origin": origin})) is None
    for origin in (
        "https://evil.example.com",
        "https://app.example.com.evil.com",
        "http://app.example.com",
        "http://127.0.0.1:8001",
        "null",
    ):
        assert await status_of(middleware, FakeSession("/", headers={"origin": origin})) == 403


async def test_cors_rejects_a_missing_origin_even_with_wildcard() -> None:
    for allowed in (["https://a.example"], ["*"]):
        middleware = create_cors_middleware(allowed_origins=allowed)
        assert await status_of(middleware, FakeSession("/")) == 403
        assert await status_of(middleware, FakeSession("/", headers={"origin": ""})) == 403


async def test_cors_star_allows_any_origin() -> None:
    middleware = create_cors_middleware(allowed_origins=["*"])
    for origin in ("https://anything.test", "null", "http://localhost:1234"):
        assert await status_of(middleware, FakeSession("/", headers={"origin": origin})) is None


async def test_cors_wildcard_entries_cover_labels_and_ports_only() -> None:
    middleware = create_cors_middleware(
        allowed_origins=["https://*.example.com", "http://localhost:*"]
    )
    allowed = ("https://a.example.com", "https://a.b.example.com", "http://localhost:5173")
    for origin in allowed:
        assert await status_of(middleware, FakeSession("/", headers={"origin": origin})) is None
    refused = (
        "https://example.com",
        "https://evil.com/.example.com",
        "https://evil.com?.example.com",
        "https://evil.com#.example.com",
        "https://user@evil.com:.example.com",
        "http://localhost",
        "http://localhost:80/path",
        "https://a.example.com.evil.com",
    )
    for origin in refused:
        status = await status_of(middleware, FakeSession("/", headers={"origin": origin}))
        assert status == 403, origin


async def test_cors_copies_its_list() -> None:
    origins = ["https://a.example"]
    middleware = create_cors_middleware(allowed_origins=origins)
    origins.append("https://b.example")
    session = FakeSession("/", headers={"origin": "https://b.example"})
    assert await status_of(middleware, session) == 403


def test_cors_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError):
        create_cors_middleware(allowed_origins="https://a.example")  # type: ignore[arg-type]

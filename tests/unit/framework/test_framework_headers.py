"""Middleware reads every form of request headers that ``Headers`` allows: a mapping (with
any case of names), or ``(name, value)`` pairs as ``str`` or ``bytes``."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import FakeSession

from fastwt.framework import (
    MiddlewareRejected,
    create_auth_middleware,
    create_cors_middleware,
    create_rate_limit_middleware,
)
from fastwt.framework.headers import header_map
from fastwt.framework.types import Headers

pytestmark = pytest.mark.anyio

ORIGIN = "https://game.example.com"
TOKEN = "Bearer good"

FORMS: dict[str, Headers] = {
    "mapping": {"origin": ORIGIN, "authorization": TOKEN},
    "mapping, mixed case": {"Origin": ORIGIN, "Authorization": TOKEN},
    "str pairs": [("origin", ORIGIN), ("authorization", TOKEN)],
    "bytes pairs": [(b"origin", ORIGIN.encode()), (b"authorization", TOKEN.encode())],
    "mixed pairs, with a pseudo-header": [
        (b":path", b"/"),
        ("Origin", ORIGIN.encode()),
        (b"AUTHORIZATION", TOKEN),
    ],
}


async def verdict(middleware: Any, session: FakeSession) -> int | None:
    try:
        await middleware(session=session)
    except MiddlewareRejected as exc:
        return exc.status_code
    return None


@pytest.mark.parametrize("form", list(FORMS))
async def test_auth_sees_the_headers_as_a_lower_case_mapping(form: str) -> None:
    seen: list[dict[str, str]] = []

    async def auth_handler(*, headers: Any) -> bool:
        seen.append(dict(headers))
        return bool(headers.get("authorization") == TOKEN)

    middleware = create_auth_middleware(auth_handler=auth_handler)
    assert await verdict(middleware, FakeSession(headers=FORMS[form])) is None
    assert seen == [{"origin": ORIGIN, "authorization": TOKEN}]


@pytest.mark.parametrize("form", list(FORMS))
async def test_cors_reads_the_origin_in_every_form(form: str) -> None:
    allowed = create_cors_middleware(allowed_origins=[ORIGIN])
    refused = create_cors_middleware(allowed_origins=["https://other.example.com"])
    assert await verdict(allowed, FakeSession(headers=FORMS[form])) is None
    assert await verdict(refused, FakeSession(headers=FORMS[form])) == 403


@pytest.mark.parametrize("form", list(FORMS))
async def test_rate_limiter_counts_sessions_in_every_form(form: str) -> None:
    limiter = create_rate_limit_middleware(max_requests=2, window_seconds=60)
    results = [await verdict(limiter, FakeSession(headers=FORMS[form])) for _ in range(3)]
    assert results == [None, None, 429]


def test_repeated_fields_are_combined_and_lower_case_mappings_are_not_copied() -> None:
    pairs: Headers = [("X-Tag", "a"), (b"x-tag", b"b"), ("accept", "*/*")]
    assert header_map(pairs) == {"x-tag": "a, b", "accept": "*/*"}
    own = {"origin": ORIGIN}
    assert header_map(own) is own
    assert header_map([(b"x-raw", b"caf\xe9")]) == {"x-raw": "caf\u00e9"}

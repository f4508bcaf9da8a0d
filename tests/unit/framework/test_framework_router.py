"""RequestRouter: exact routes, pattern routes, default handler, query handling."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import FakeSession

from fastwt.framework import RequestRouter


async def handler_a(session: Any, **params: Any) -> None: ...


async def handler_b(session: Any, **params: Any) -> None: ...


async def handler_c(session: Any, **params: Any) -> None: ...


def test_exact_route_matches_and_has_no_params() -> None:
    router = RequestRouter()
    router.add_route(path="/echo", handler=handler_a)
    assert router.route_request(session=FakeSession("/echo")) == (handler_a, {})
    assert router.route_request(session=FakeSession("/echo/")) is None
    assert router.route_request(session=FakeSession("/ech")) is None


def test_query_string_is_ignored_for_matching() -> None:
    router = RequestRouter()
    router.add_route(path="/echo", handler=handler_a)
    router.add_pattern_route(pattern=r"/rooms/(?P<room>\w+)", handler=handler_b)
    assert router.route_request(session=FakeSession("/echo?room=1&x=2")) == (handler_a, {})
    assert router.route_request(session=FakeSession("/rooms/blue?token=abc")) == (
        handler_b,
        {"room": "blue"},
    )
    # A "?" inside the query does not confuse the split.
    assert router.route_request(session=FakeSession("/echo?a=?b")) == (handler_a, {})


def test_pattern_route_passes_named_groups_and_must_match_the_whole_path() -> None:
    router = RequestRouter()
    router.add_pattern_route(pattern=r"/users/(?P<user>\d+)/items/(?P<item>\w+)", handler=handler_a)
    result = router.route_request(session=FakeSession("/users/42/items/hat"))
    assert result == (handler_a, {"user": "42", "item": "hat"})
    assert router.route_request(session=FakeSession("/users/42/items/hat/extra")) is None
    assert router.route_request(session=FakeSession("/x/users/42/items/hat")) is None


def test_exact_routes_win_over_patterns_and_patterns_match_in_registration_order() -> None:
    router = RequestRouter()
    router.add_pattern_route(pattern=r"/(?P<name>.+)", handler=handler_b)
    router.add_pattern_route(pattern=r"/special", handler=handler_c)
    router.add_route(path="/special", handler=handler_a)
    assert router.route_request(session=FakeSession("/special")) == (handler_a, {})
    router.remove_route(path="/special")
    # The first registered pattern wins even though the second is more specific.
    assert router.route_request(session=FakeSession("/special")) == (
        handler_b,
        {"name": "special"},
    )


def test_default_handler_is_last_and_none_when_nothing_matches() -> None:
    router = RequestRouter()
    router.add_route(path="/a", handler=handler_a)
    assert router.route_request(session=FakeSession("/nowhere")) is None
    router.set_default_handler(handler=handler_c)
    assert router.route_request(session=FakeSession("/nowhere")) == (handler_c, {})
    assert router.route_request(session=FakeSession("/a")) == (handler_a, {})


def test_duplicate_exact_route_raises_unless_override() -> None:
    router = RequestRouter()
    router.add_route(path="/a", handler=handler_a)
    with pytest.raises(ValueError, match="/a"):
        router.add_route(path="/a", handler=handler_b)
    assert router.get_route_handler(path="/a") is handler_a
    router.add_route(path="/a", handler=handler_b, override=True)
    assert router.get_route_handler(path="/a") is handler_b


def test_invalid_pattern_raises_value_error() -> None:
    router = RequestRouter()
    with pytest.raises(ValueError, match="invalid route pattern"):
        router.add_pattern_route(pattern="/(unclosed", handler=handler_a)
    assert router.get_route_stats()["pattern_routes"] == 0


def test_remove_and_lookup_helpers() -> None:
    router = RequestRouter()
    router.add_route(path="/a", handler=handler_a)
    router.add_pattern_route(pattern=r"/p/(?P<x>\d+)", handler=handler_b)
    routes = router.get_all_routes()
    assert routes == {"/a": handler_a}
    routes["/b"] = handler_b  # a copy: the router is unaffected
    assert router.get_route_handler(path="/b") is None
    assert router.get_route_handler(path="/p/1") is None  # exact match only

    router.remove_pattern_route(pattern=r"/p/(?P<x>\d+)")
    assert router.route_request(session=FakeSession("/p/1")) is None
    router.remove_pattern_route(pattern="/not-registered")  # no-op
    router.remove_route(path="/a")
    router.remove_route(path="/a")  # no-op
    assert router.get_all_routes() == {}


def test_route_stats() -> None:
    router = RequestRouter()
    assert router.get_route_stats() == {
        "exact_routes": 0,
        "pattern_routes": 0,
        "has_default_handler": False,
        "patterns": [],
    }
    router.add_route(path="/a", handler=handler_a)
    router.add_route(path="/b", handler=handler_a)
    router.add_pattern_route(pattern=r"/c/\d+", handler=handler_b)
    router.set_default_handler(handler=handler_c)
    stats = router.get_route_stats()
    assert stats["exact_routes"] == 2
    assert stats["pattern_routes"] == 1
    assert stats["has_default_handler"] is True
    assert stats["patterns"] == [r"/c/\d+"]

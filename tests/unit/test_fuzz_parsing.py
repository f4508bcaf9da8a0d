"""Property-based tests of the Python parsing and routing surface: the router, header
reading, a session's query, config validation and the CORS origin matcher.

Kept short (a few seconds for the file); with ``CI`` set the examples are derandomized,
so CI runs the same cases every time. ``FASTWT_FUZZ_EXAMPLES`` scales the counts up.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import ssl
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from robustness_figures import record

from fastwt import ClientConfig, ServerConfig, WebTransportClient, WebTransportServer, _bridge
from fastwt.errors import ConfigurationError
from fastwt.framework import RequestRouter
from fastwt.framework.cors import create_cors_middleware
from fastwt.framework.exceptions import MiddlewareRejected
from fastwt.framework.headers import header_map
from fastwt.session import WebTransportSession

_SCALE = int(os.environ.get("FASTWT_FUZZ_EXAMPLES", "1"))


def fuzz(examples: int) -> Callable[[Any], Any]:
    """Hypothesis settings for this file: ``examples`` cases (times the scale), no
    deadline (shared CI cores), derandomized in CI."""
    return settings(
        max_examples=examples * _SCALE,
        deadline=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )


# Each property group counts the cases it ran; one figure line per group at the end.
_CASES: dict[str, int] = {}
# Generated configs that built (and so were started): a property that never builds one
# would test nothing.
_BUILT: dict[str, int] = {}


def _count(group: str) -> None:
    _CASES[group] = _CASES.get(group, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Any:
    yield
    for group, n in sorted(_CASES.items()):
        built = ""
        if group == "config":
            servers, clients = _BUILT.get("server", 0), _BUILT.get("client", 0)
            built = f" ({servers} server and {clients} client configs built and started)"
        record(f"fuzz: {group}", f"{n} cases{built}, 0 unexpected exceptions")


class _Session:
    """What the router and the CORS middleware read of a session."""

    def __init__(self, path: str = "/", headers: Any = None, origin: str | None = None) -> None:
        self.path = path
        self.headers = {} if headers is None else headers
        self.origin = origin
        self.remote_address = ("127.0.0.1", 1)
        self.session_id = 0


async def _h1(session: Any, **params: Any) -> None: ...


async def _h2(session: Any, **params: Any) -> None: ...


async def _h3(session: Any, **params: Any) -> None: ...


# A :path as a peer may send it: any text, or path-like text with queries.
_PATH_CHARS = string.ascii_letters + string.digits + "/?#&=%.-_~:@!$'()*+,;[]"
peer_paths = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=_PATH_CHARS, max_size=60),
    st.text(alphabet=_PATH_CHARS, max_size=40).map(lambda s: "/" + s),
    st.sampled_from(["", "/", "//", "//[x", "//[::1", "/?", "?", "/a?b?c", "//h/x?a=1", "/%zz"]),
)
segments = st.text(alphabet=string.ascii_letters + string.digits + "-._~%:@!$&'()*+,;=", min_size=1)
route_paths = st.lists(segments, max_size=5).map(lambda s: "/" + "/".join(s))


# ---- router ---------------------------------------------------------------------------


_PATTERNS = (r"/rooms/(?P<room>[^/]+)", r"/(?P<a>[^/]*)/(?P<b>.*)", r"/files/.*")


@fuzz(300)
@given(path=peer_paths, exact=st.lists(route_paths, max_size=4), default=st.booleans())
def test_router_on_arbitrary_paths(path: str, exact: list[str], default: bool) -> None:
    _count("router")
    router = RequestRouter()
    for p in exact:
        router.add_route(path=p, handler=_h1, override=True)
    for pattern in _PATTERNS:
        router.add_pattern_route(pattern=pattern, handler=_h2)
    if default:
        router.set_default_handler(handler=_h3)
    result = router.route_request(session=_Session(path))  # type: ignore[arg-type]
    # The documented order: exact route, patterns in order (whole path), default.
    route_path = path.partition("?")[0]
    matches = (re.fullmatch(p, route_path) for p in _PATTERNS)
    match = next((m for m in matches if m is not None), None)
    if route_path in exact:
        assert result == (_h1, {})
    elif match is not None:
        assert result == (_h2, match.groupdict())
    elif default:
        assert result == (_h3, {})
    else:
        assert result is None


@fuzz(200)
@given(
    path=route_paths,
    query=st.text(max_size=30),
    others=st.lists(route_paths, max_size=4, unique=True),
)
def test_router_matches_a_registered_exact_path(path: str, query: str, others: list[str]) -> None:
    _count("router")
    router = RequestRouter()
    for p in others:
        if p != path:
            router.add_route(path=p, handler=_h2)
    router.add_route(path=path, handler=_h1)
    # Patterns that would match anything come after the exact route.
    router.add_pattern_route(pattern=".*", handler=_h3)
    assert router.route_request(session=_Session(path)) == (_h1, {})  # type: ignore[arg-type]
    with_query = f"{path}?{query}"
    assert router.route_request(session=_Session(with_query)) == (_h1, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        router.add_route(path=path, handler=_h2)
    router.remove_route(path=path)
    assert router.route_request(session=_Session(path)) == (_h3, {})  # type: ignore[arg-type]


_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
_literals = st.text(alphabet=string.ascii_letters + string.digits + ".-~:@!$&'()*+,;=%", max_size=6)
_values = st.text(
    alphabet=st.characters(blacklist_characters="/?", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
)


@fuzz(200)
@given(
    parts=st.lists(
        st.tuples(_literals, _names, _values), min_size=1, max_size=4, unique_by=lambda t: t[1]
    ),
    query=st.text(max_size=20),
)
def test_pattern_parameters_round_trip(parts: list[tuple[str, str, str]], query: str) -> None:
    _count("router")
    pattern = "".join(f"/{re.escape(lit)}(?P<{name}>[^/]+)" for lit, name, _ in parts)
    path = "".join(f"/{lit}{value}" for lit, _, value in parts)
    router = RequestRouter()
    router.add_pattern_route(pattern=pattern, handler=_h2)
    result = router.route_request(session=_Session(f"{path}?{query}"))  # type: ignore[arg-type]
    assert result is not None
    handler, params = result
    assert handler is _h2
    # Each literal starts its segment and the group takes the rest of it: the value.
    assert params == {name: value for _, name, value in parts}


_regex_tokens = st.sampled_from(
    [
        "a",
        "(",
        ")",
        "[",
        "]",
        "*",
        "+",
        "?",
        "{",
        "}",
        "{4294967296}",
        "{2,1}",
        "\\",
        "|",
        "(?P<x>",
        "(?P<1>",
        "(?P=x)",
        "\\N{foo}",
        "(?<=a+)",
        "^",
        "$",
        ".",
        "\\d",
        "(?i)",
        "-",
    ]
)


@fuzz(300)
@given(
    pattern=st.one_of(
        st.text(max_size=20),
        st.lists(_regex_tokens, max_size=12).map("".join),
        st.sampled_from([10, 400, 1200]).map(lambda n: "(" * n + ")" * n),
    )
)
@pytest.mark.filterwarnings("ignore::FutureWarning")  # re's "possible nested set"
def test_invalid_route_patterns_raise_value_error(pattern: str) -> None:
    _count("router")
    router = RequestRouter()
    try:
        router.add_pattern_route(pattern=pattern, handler=_h1)
    except ValueError:
        assert router.get_route_stats()["pattern_routes"] == 0
    else:
        assert router.get_route_stats()["patterns"] == [pattern]


def test_route_patterns_re_refuses_with_other_errors_are_value_errors() -> None:
    # Found by test_invalid_route_patterns_raise_value_error: re.compile raises
    # OverflowError for a repeat count over its limit and RecursionError for groups
    # nested too deeply, which add_pattern_route let through (documented: ValueError).
    router = RequestRouter()
    for pattern in ("a{4294967296}", "(" * 1200 + ")" * 1200):
        with pytest.raises(ValueError, match="invalid route pattern"):
            router.add_pattern_route(pattern=pattern, handler=_h1)


# ---- headers --------------------------------------------------------------------------

_text_or_bytes = st.one_of(
    st.text(max_size=12),
    st.binary(max_size=12),
    st.sampled_from(["Origin", "origin", ":path", ":Authority", "X-Token", "COOKIE", "cookie"]),
    st.sampled_from([b"Origin", b":method", b"X-Token", b"\xc0\xff"]),
)
_pairs = st.lists(st.tuples(_text_or_bytes, _text_or_bytes), max_size=8)


def _expected(pairs: list[tuple[str | bytes, str | bytes]]) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        n = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        v = value.decode("latin-1") if isinstance(value, bytes) else value
        if not n.startswith(":"):
            out.setdefault(n, []).append(v)
    return {n: ", ".join(vs) for n, vs in out.items()}


def _check_header_map(result: Mapping[str, str], want: dict[str, str]) -> None:
    assert dict(result) == want
    for name, value in result.items():
        assert type(name) is str and type(value) is str
        assert name == name.lower()
        assert not name.startswith(":")


@fuzz(300)
@given(pairs=_pairs)
def test_header_map_of_pairs(pairs: list[tuple[str | bytes, str | bytes]]) -> None:
    _count("headers")
    _check_header_map(header_map(pairs), _expected(pairs))
    _check_header_map(header_map(tuple(pairs)), _expected(pairs))


@fuzz(300)
@given(mapping=st.dictionaries(_text_or_bytes, _text_or_bytes, max_size=8))
def test_header_map_of_mappings(mapping: dict[Any, Any]) -> None:
    _count("headers")
    _check_header_map(header_map(mapping), _expected(list(mapping.items())))


def test_header_map_drops_pseudo_headers_from_a_lower_case_mapping() -> None:
    # Found by test_header_map_of_mappings: a mapping whose names were all lower-case
    # str was returned as is, ":path" and all.
    assert dict(header_map({":path": "/x", "origin": "https://a"})) == {"origin": "https://a"}


# ---- session query ------------------------------------------------------------------


class _Handle:
    def __init__(self, path: str) -> None:
        self.path = path


def _session(path: str) -> WebTransportSession:
    return WebTransportSession(_Handle(path), hub=None, is_client=False)  # type: ignore[arg-type]


@fuzz(300)
@given(path=peer_paths)
def test_session_query_of_any_path(path: str) -> None:
    _count("session query")
    session = _session(path)
    query = session.query
    assert all(type(k) is str and type(v) is str for k, v in query.items())
    # The session's path without query is the one the router matches on.
    assert session.path_without_query == path.partition("?")[0]


_query_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10)


@fuzz(200)
@given(
    path=route_paths,
    params=st.dictionaries(_query_text, _query_text, max_size=5),
)
def test_session_query_round_trips(path: str, params: dict[str, str]) -> None:
    _count("session query")
    assert _session(f"{path}?{urlencode(params)}").query == params
    # Percent-encoded with %20 rather than +, and with a repeated key: the last wins.
    encoded = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
    assert _session(f"{path}?{encoded}").query == params
    if params:
        key = next(iter(params))
        again = f"{encoded}&{quote(key, safe='')}=last"
        assert _session(f"{path}?{again}").query == {**params, key: "last"}


def test_session_query_of_a_path_urlsplit_refuses() -> None:
    # Found by test_session_query_of_any_path: a peer's ":path" of "//[x" made
    # `session.query` raise ValueError ("Invalid IPv6 URL", from urlsplit), and
    # "//h/x?a=1" gave path_without_query "/x" while the router matched "//h/x".
    assert _session("//[x?a=1").query == {"a": "1"}
    assert _session("//h/x?a=1").path_without_query == "//h/x"


# ---- config ---------------------------------------------------------------------------

_ints = st.one_of(
    st.integers(-2, 3),
    st.integers(),
    st.sampled_from([2**31, 2**32, 2**62 - 1, 2**62, 2**63, 2**64 - 1, 2**64, 2**70]),
    st.booleans(),
)
_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-9, 1.0, 1e9, 1e15, 1e19, 1e300, math.inf, math.nan]),
    st.integers(-2, 10),
)
_wrong = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.binary(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.floats(),
)
_paths = st.one_of(st.none(), st.text(max_size=10), st.just(Path("x.pem")))
_hash = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64),
    st.text(alphabet="0123456789abcdef: ", min_size=60, max_size=96),
    st.text(max_size=70),
    st.just("é" * 32),
    st.just("zz" * 32),
)

_secs = st.floats(min_value=1e-6, max_value=2**32)
_opt_secs = st.one_of(st.none(), _secs)


def _count_in(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(lo, min(hi, lo + 1000)), st.sampled_from([lo, hi]))


# Per field: values the config should take, and values around them (out of range,
# NaN, infinities, huge ints, bools, other types) it may refuse.
_COMMON: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "max_idle_timeout": (_opt_secs, _floats),
    "keep_alive_interval": (_opt_secs, _floats),
    "datagram_queue_size": (_count_in(1, 2**64 - 1), _ints),
    "datagram_queue_bytes": (_count_in(1, 2**64 - 1), _ints),
    "max_concurrent_bidi_streams": (_count_in(1, 2**31), _ints),
    "max_concurrent_uni_streams": (_count_in(1, 2**31), _ints),
    "stream_receive_window": (_count_in(1, 2**62 - 1), _ints),
    "receive_window": (_count_in(1, 2**62 - 1), _ints),
    "send_window": (_count_in(1, 2**64 - 1), _ints),
    "congestion_control_algorithm": (
        st.sampled_from(["cubic", "bbr", "newreno"]),
        st.one_of(st.sampled_from(["reno", "CUBIC", ""]), st.text(max_size=6)),
    ),
}
_SERVER: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    **_COMMON,
    "bind_host": (
        st.one_of(
            st.sampled_from(["::", "127.0.0.1", "localhost", "", "[::1]", "::ffff:1.2.3.4"]),
            st.lists(st.sampled_from(["::1", "127.0.0.1", "0.0.0.0"]), min_size=1, max_size=3),
            st.ip_addresses().map(str),
        ),
        st.one_of(
            st.sampled_from(["example.com", "1.2.3", "01.2.3.4", "fe80::1%eth0", "[::1", []]),
            st.lists(st.sampled_from(["::1", "nope", ""]), max_size=3),
            st.text(max_size=8),
        ),
    ),
    "bind_port": (_count_in(0, 65535), _ints),
    "max_sessions": (_count_in(1, 2**64 - 1), _ints),
    "max_sessions_per_ip": (st.one_of(st.none(), _count_in(1, 2**64 - 1)), _ints),
    "max_sessions_per_connection": (_count_in(1, 256), _ints),
    "max_handshakes": (_count_in(1, 2**64 - 1), _ints),
    "retry": (st.booleans(), st.one_of(st.integers(0, 1), st.none())),
    "pending_request_capacity": (_count_in(1, 2**64 - 1), _ints),
    "request_timeout": (_secs, _floats),
    "max_datagram_size": (_count_in(1, 2**64 - 1), _ints),
    "shutdown_grace": (st.one_of(st.just(0.0), st.floats(0, 0.01)), _floats),
}
_CLIENT: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    **_COMMON,
    "verify_mode": (st.sampled_from(list(ssl.VerifyMode)), st.sampled_from([0, 2, "none", None])),
    "server_certificate_hashes": (
        st.lists(
            st.one_of(
                st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64),
                st.binary(min_size=32, max_size=32).map(lambda b: b.hex(":").upper()),
            ),
            max_size=2,
        ),
        st.one_of(st.lists(_hash, max_size=2), st.text(max_size=3), st.just([b"00" * 32])),
    ),
    "connect_timeout": (_secs, _floats),
    "headers": (
        st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
        st.one_of(st.just({"a": 1}), st.just([("a", "b")]), st.none()),
    ),
    "user_agent": (
        st.one_of(st.none(), st.text(max_size=8)),
        st.one_of(st.integers(), st.binary()),
    ),
}


def _kwargs(
    fields: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]],
) -> st.SearchStrategy[dict[str, Any]]:
    """Some fields set: either all to values the config should take, or most of them
    and now and then one to a value around them or of another type."""
    good = {name: g for name, (g, _) in fields.items()}
    mixed = {name: st.one_of(g, g, g, g, w, _wrong) for name, (g, w) in fields.items()}
    return st.one_of(
        st.fixed_dictionaries({}, optional=good), st.fixed_dictionaries({}, optional=mixed)
    )


def _start_server(cfg: ServerConfig) -> None:
    """Starts and closes a server with ``cfg`` (on 127.0.0.1, port 0, the development
    certificate: the addresses and files a config names are not ours to use), so every
    value the Rust core is given is taken there too."""
    cfg = dataclasses.replace(cfg, certfile=None, keyfile=None)

    async def run() -> None:
        server = WebTransportServer(config=cfg)
        await server.listen(host="127.0.0.1", port=0)
        await server.close()

    anyio.run(run)


def _start_client(cfg: ClientConfig) -> None:
    """Makes the client's core endpoint with ``cfg`` (files left out, see above)."""
    cfg = dataclasses.replace(
        cfg,
        ca_certs=None,
        certfile=None,
        keyfile=None,
        verify_mode=ssl.CERT_NONE,  # not the system roots: slow to load each time
    )

    async def run() -> None:
        client = WebTransportClient(config=cfg)
        client._core()
        await client.close()

    anyio.run(run)


@fuzz(400)
@given(kwargs=_kwargs(_SERVER))
def test_server_config_builds_or_raises_configuration_error(kwargs: dict[str, Any]) -> None:
    _count("config")
    try:
        cfg = ServerConfig(**kwargs)
    except ConfigurationError:
        return
    _BUILT["server"] = _BUILT.get("server", 0) + 1
    # A config that builds does not fail later, when the server starts or closes.
    _start_server(cfg)
    assert cfg.bind_hosts
    assert dataclasses.replace(cfg) == cfg


@fuzz(300)
@given(
    kwargs=_kwargs(_CLIENT),
    files=st.fixed_dictionaries(
        {}, optional={"ca_certs": _paths, "certfile": _paths, "keyfile": _paths}
    ),
)
def test_client_config_builds_or_raises_configuration_error(
    kwargs: dict[str, Any], files: dict[str, Any]
) -> None:
    _count("config")
    try:
        cfg = ClientConfig(**kwargs, **files)
    except ConfigurationError:
        return
    _BUILT["client"] = _BUILT.get("client", 0) + 1
    _start_client(cfg)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        # Found by the two properties above; before, each built and then failed when the
        # server or client started (or closed), as noted.
        (ServerConfig, {"max_idle_timeout": 1e300}),  # PanicException (Rust panic)
        (ServerConfig, {"request_timeout": 1e300}),  # PanicException
        (ServerConfig, {"shutdown_grace": math.inf}),  # PanicException in close()
        (ClientConfig, {"connect_timeout": 1e300}),  # PanicException
        (ServerConfig, {"max_idle_timeout": math.nan}),  # ValueError
        (ServerConfig, {"request_timeout": math.inf}),  # ValueError
        (ServerConfig, {"stream_receive_window": 2**62}),  # ConfigurationError, late
        (ServerConfig, {"send_window": 2**64}),  # OverflowError
        (ServerConfig, {"max_sessions": 2**64}),  # OverflowError
        (ServerConfig, {"pending_request_capacity": -1}),  # OverflowError
        (ServerConfig, {"max_sessions": 1.5}),  # TypeError
        (ServerConfig, {"bind_host": "example.com"}),  # ValueError
        (ServerConfig, {"bind_host": []}),  # ConfigurationError, late
        (ClientConfig, {"server_certificate_hashes": ["zz" * 32]}),  # ValueError
        (ClientConfig, {"headers": {"a": 1}}),  # TypeError
        # These raised TypeError at once.
        (ServerConfig, {"bind_port": "4433"}),
        (ServerConfig, {"max_handshakes": None}),
        (ClientConfig, {"server_certificate_hashes": None}),
    ],
)
def test_config_values_that_failed_late_fail_early(cls: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        cls(**kwargs)


def test_core_durations_out_of_range_are_errors_not_panics() -> None:
    # The Rust side's own guard (the config checks come first): a duration Duration
    # cannot hold, or one past 2**32 s, was a Rust panic (PanicException).
    from fastwt._core import Transport

    for value in (1e300, math.inf, math.nan, 2.0**32 + 1, -1.0):
        with pytest.raises(ValueError, match="max_idle_timeout"):
            Transport(max_idle_timeout=value)


def test_core_certificate_hash_of_non_ascii_is_an_error_not_a_panic() -> None:
    # Found while reading the hash check the config test relies on: 64 bytes that are
    # not all ASCII ("a" + 31 "é" + "b") made the Rust side slice inside a character
    # (a panic). ClientConfig refuses such a hash before; the core must too.
    from fastwt._core import ClientHandle

    with pytest.raises(ValueError, match="certificate hash"):
        ClientHandle(trust="hashes", certificate_hashes=["a" + "é" * 31 + "b"])


@pytest.mark.anyio
async def test_server_close_with_an_endless_grace_returns() -> None:
    # shutdown_grace=inf passed ServerConfig and made close() panic in Rust; the core
    # takes any float now (inf: the longest grace, which an idle server does not wait).
    server = WebTransportServer(config=ServerConfig(bind_host="127.0.0.1", bind_port=0))
    await server.listen()
    assert server._handle is not None
    with anyio.fail_after(5):
        await _bridge.run_op(_bridge.get_hub(), server._handle.close(0, "bye", math.inf))
    await server.close()


# ---- CORS -----------------------------------------------------------------------------

_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_hosts = st.lists(_labels, min_size=1, max_size=3).map(".".join)
_schemes = st.sampled_from(["https", "http"])


def _allowed(allowed: list[str], origin: str) -> bool:
    middleware = create_cors_middleware(allowed_origins=allowed)

    async def run() -> bool:
        try:
            await middleware(session=_Session(headers={"origin": origin}))  # type: ignore[arg-type]
        except MiddlewareRejected as exc:
            assert exc.status_code == 403
            return False
        return True

    return anyio.run(run)


@fuzz(150)
@given(
    scheme=_schemes,
    suffix=_hosts,
    sub=_hosts,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    junk=st.text(min_size=1, max_size=8),
    sep=st.sampled_from(["/", "?", "#", "@", "\\", " ", "%2e", ":", "_", "\x00", "\n"]),
)
def test_cors_wildcard_never_matches_through_other_characters(
    scheme: str, suffix: str, sub: str, port: int | None, junk: str, sep: str
) -> None:
    _count("cors")
    entry = f"{scheme}://*.{suffix}"
    # A real subdomain matches (any case).
    assert _allowed([entry], f"{scheme}://{sub}.{suffix}")
    assert _allowed([entry], f"{scheme}://{sub}.{suffix}".upper())
    # The bare suffix, another scheme, a port the entry does not allow: refused.
    assert not _allowed([entry], f"{scheme}://{suffix}")
    other = "http" if scheme == "https" else "https"
    assert not _allowed([entry], f"{other}://{sub}.{suffix}")
    if port is not None:
        assert not _allowed([entry], f"{scheme}://{sub}.{suffix}:{port}")
        assert _allowed([f"{entry}:*"], f"{scheme}://{sub}.{suffix}:{port}")
    # A host that merely ends with the suffix through other characters: refused.
    for origin in (
        f"{scheme}://{sub}{sep}.{suffix}",
        f"{scheme}://{sub}{sep}{junk}.{suffix}",
        f"{scheme}://{junk}{sep}{sub}.{suffix}",
        f"{scheme}://{sub}.{suffix}{sep}{junk}",
        f"{scheme}://{sub}{suffix}",
    ):
        host = origin.split("://", 1)[1]
        is_subdomain = re.fullmatch(r"[A-Za-z0-9.-]+", host) is not None and host.lower().endswith(
            "." + suffix
        )
        assert _allowed([entry], origin) == is_subdomain, origin


@fuzz(150)
@given(
    allowed=st.lists(
        st.one_of(
            st.text(max_size=12), st.sampled_from(["*", "https://*", "*.x", "http://localhost:*"])
        ),
        max_size=4,
    ),
    origin=st.one_of(st.none(), st.text(max_size=20), st.sampled_from(["https://a.b", "null", ""])),
)
def test_cors_on_arbitrary_entries_and_origins(allowed: list[str], origin: str | None) -> None:
    _count("cors")
    middleware = create_cors_middleware(allowed_origins=allowed)
    headers = {} if origin is None else {"origin": origin}

    async def run() -> None:
        try:
            await middleware(session=_Session(headers=headers))  # type: ignore[arg-type]
        except MiddlewareRejected as exc:
            assert exc.status_code == 403
            return
        # Let through: some entry allows it.
        assert origin
        entries = [e.strip().rstrip("/").lower() for e in allowed]
        assert "*" in entries or origin.lower() in entries or any("*" in e for e in entries)

    anyio.run(run)

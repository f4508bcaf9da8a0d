"""The whole contract between the framework, its middleware and session handlers.

Everything else in :mod:`fastwt.framework` imports its types from here. The protocols
describe only what the framework itself touches, so a middleware or handler can be
tested against any small object with the same attributes (the unit tests use a fake
session); at run time it is a :class:`fastwt.WebTransportSession`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, TypeAlias, runtime_checkable

__all__ = [
    "AuthHandlerProtocol",
    "Headers",
    "MiddlewareProtocol",
    "ServerProtocol",
    "SessionHandler",
    "SessionProtocol",
    "StatefulMiddlewareProtocol",
]

Headers: TypeAlias = Mapping[str, str] | Sequence[tuple[str | bytes, str | bytes]]
"""HTTP header fields: a mapping (fastwt's sessions give one, names lower-case as HTTP/3
sends them), or ``(name, value)`` pairs as ``str`` or ``bytes`` (other servers and test
doubles). Middleware reads either through :func:`fastwt.framework.headers.header_map`."""

SessionHandler: TypeAlias = Callable[..., Awaitable[None]]
"""``async def handler(session, **params)``; ``params`` are the named groups of the
pattern route that matched (none for exact routes and the default handler)."""


class SessionProtocol(Protocol):
    """What routing and middleware read from a pending session request.

    ``path`` is the raw ``:path`` including any query string; ``query`` is that query
    parsed (last value wins). ``remote_address`` is the peer's ``(ip, port)``.
    """

    @property
    def session_id(self) -> int: ...

    @property
    def path(self) -> str: ...

    @property
    def query(self) -> Mapping[str, str]: ...

    @property
    def headers(self) -> Headers: ...

    @property
    def origin(self) -> str | None: ...

    @property
    def remote_address(self) -> tuple[str, int] | None: ...

    @property
    def is_closed(self) -> bool: ...

    async def accept(
        self, *, headers: dict[str, str] | None = None, wt_protocol: str | None = None
    ) -> Any: ...

    async def reject(
        self, *, headers: dict[str, str] | None = None, status_code: int = 403
    ) -> Any: ...

    async def close(self, *, error_code: int = 0, reason: str | None = None) -> Any: ...


class ServerProtocol(Protocol):
    """What :class:`~fastwt.framework.ServerApp` drives: a
    :class:`fastwt.WebTransportServer` (what it makes itself from ``config``), or any
    object with these members passed as ``ServerApp(server=...)`` (the unit tests pass
    a fake that queues session requests). ``config`` is the server's
    :class:`fastwt.ServerConfig`; ``incoming_sessions()`` yields the session requests;
    ``_replace_config`` takes the config ``ServerApp.serve(**overrides)`` made, before
    ``listen()``. A server may also have ``goaway()``, called at shutdown when present."""

    @property
    def config(self) -> Any: ...

    @property
    def is_serving(self) -> bool: ...

    @property
    def local_addresses(self) -> list[tuple[str, int]]: ...

    @property
    def certificate_hash(self) -> str: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: object) -> Any: ...

    async def listen(self, *, host: str | None = None, port: int | None = None) -> None: ...

    def incoming_sessions(self) -> AsyncIterator[Any]: ...

    async def close(self) -> None: ...

    def _replace_config(self, config: Any) -> None: ...


@runtime_checkable
class MiddlewareProtocol(Protocol):
    """``async def middleware(*, session) -> None``, run before the session is accepted.

    Return to let the request continue; raise
    :class:`~fastwt.framework.MiddlewareRejected` to refuse it with an HTTP status.
    Any other exception refuses it with 500.
    """

    async def __call__(self, *, session: SessionProtocol) -> None: ...


@runtime_checkable
class StatefulMiddlewareProtocol(MiddlewareProtocol, Protocol):
    """A middleware that holds resources: ``ServerApp.startup()`` enters it (as an
    async context manager) and ``ServerApp.shutdown()`` exits it, in reverse order."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None: ...


@runtime_checkable
class AuthHandlerProtocol(Protocol):
    """``async def auth_handler(*, headers) -> bool``: True lets the request through.

    False rejects it with 401; an exception rejects it with 500. Raising
    ``MiddlewareRejected`` chooses the status and headers yourself.
    """

    async def __call__(self, *, headers: Headers) -> bool: ...

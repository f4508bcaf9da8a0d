"""Path routing of session requests to handlers."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastwt.framework.types import SessionHandler, SessionProtocol

__all__ = ["RequestRouter"]

_logger = logging.getLogger(__name__)


class RequestRouter:
    """Route session requests to handlers based on path matching.

    Matching uses the request path without its query string (``/echo?room=1`` routes
    to ``/echo``; the handler reads the query from ``session.query``) and is done on
    the path exactly as sent, without percent-decoding. Order: the exact route, then
    pattern routes in registration order (the pattern must match the whole path), then
    the default handler. Lookups cost one dict access for exact routes, one regex per
    pattern tried otherwise.

    Not thread-safe: configure it before serving, from one thread.
    """

    def __init__(self) -> None:
        self._routes: dict[str, SessionHandler] = {}
        self._pattern_routes: list[tuple[re.Pattern[str], SessionHandler]] = []
        self._default_handler: SessionHandler | None = None

    def add_pattern_route(self, *, pattern: str, handler: SessionHandler) -> None:
        """Register a route for a regular expression pattern.

        The pattern must match the whole path (``re.fullmatch``); its named groups are
        passed to the handler as keyword arguments. Raises ``ValueError`` for an invalid
        regular expression.
        """
        try:
            compiled = re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as exc:
            # re raises OverflowError for a repeat count over its limit ("a{4294967296}")
            # and RecursionError for groups nested too deeply to compile.
            raise ValueError(f"invalid route pattern {pattern!r}: {exc}") from exc
        self._pattern_routes.append((compiled, handler))
        _logger.debug("added pattern route %r", pattern)

    def add_route(self, *, path: str, handler: SessionHandler, override: bool = False) -> None:
        """Register a route for an exact path match.

        Raises ``ValueError`` if ``path`` already has a handler, unless ``override``.
        """
        if not override and path in self._routes:
            raise ValueError(f"a route for path {path!r} already exists (pass override=True)")
        self._routes[path] = handler
        _logger.debug("added route %r", path)

    def get_all_routes(self) -> dict[str, SessionHandler]:
        """Return a copy of all registered exact-match routes."""
        return dict(self._routes)

    def get_route_handler(self, *, path: str) -> SessionHandler | None:
        """Return the handler for a specific path (exact match only)."""
        return self._routes.get(path)

    def get_route_stats(self) -> dict[str, Any]:
        """Return statistics about the configured routes.

        Keys: ``exact_routes`` and ``pattern_routes`` (counts), ``has_default_handler``,
        and ``patterns`` (the pattern strings, in matching order).
        """
        return {
            "exact_routes": len(self._routes),
            "pattern_routes": len(self._pattern_routes),
            "has_default_handler": self._default_handler is not None,
            "patterns": [compiled.pattern for compiled, _ in self._pattern_routes],
        }

    def remove_pattern_route(self, *, pattern: str) -> None:
        """Unregister every route registered with this pattern string (no-op if none)."""
        self._pattern_routes = [
            (compiled, handler)
            for compiled, handler in self._pattern_routes
            if compiled.pattern != pattern
        ]

    def remove_route(self, *, path: str) -> None:
        """Unregister a route for an exact path match (no-op if there is none)."""
        self._routes.pop(path, None)

    def route_request(
        self, *, session: SessionProtocol
    ) -> tuple[SessionHandler, dict[str, Any]] | None:
        """Dispatch a request to the appropriate handler based on the session path.

        Returns ``(handler, params)`` — ``params`` holds the named groups of the
        matching pattern route, empty otherwise — or ``None`` when nothing matches.
        """
        path, _, _ = session.path.partition("?")
        handler = self._routes.get(path)
        if handler is not None:
            return handler, {}
        for compiled, pattern_handler in self._pattern_routes:
            match = compiled.fullmatch(path)
            if match is not None:
                return pattern_handler, match.groupdict()
        if self._default_handler is not None:
            return self._default_handler, {}
        return None

    def set_default_handler(self, *, handler: SessionHandler) -> None:
        """Configure the handler for requests no route matches (instead of a 404)."""
        self._default_handler = handler

"""The middleware chain a session request passes before it is accepted."""

from __future__ import annotations

import inspect
import logging

from fastwt.framework.exceptions import MiddlewareRejected
from fastwt.framework.types import MiddlewareProtocol, SessionProtocol

__all__ = ["MiddlewareManager"]

_logger = logging.getLogger(__name__)

_INTERNAL_SERVER_ERROR = 500


class MiddlewareManager:
    """Manage a chain of server middleware.

    Middleware run in registration order; the first refusal stops the chain. Not
    thread-safe: configure it before serving. Changing the chain while requests are in
    flight is safe (each request runs over the chain as it was when it started).
    """

    def __init__(self) -> None:
        self._middleware: list[MiddlewareProtocol] = []

    def add_middleware(self, *, middleware: MiddlewareProtocol) -> None:
        """Add a middleware to the end of the chain."""
        if not callable(middleware):
            raise TypeError(f"middleware must be callable, got {type(middleware).__name__}")
        self._middleware.append(middleware)

    def get_middleware_count(self) -> int:
        """Return the number of registered middleware."""
        return len(self._middleware)

    async def process_request(self, *, session: SessionProtocol) -> None:
        """Process a request through the middleware chain.

        Returns when every middleware let the request through. Raises
        ``MiddlewareRejected`` for a refusal; a middleware's other exception is logged
        and turned into ``MiddlewareRejected(status_code=500)`` (chained to it).
        Cancellation propagates untouched.
        """
        for middleware in tuple(self._middleware):
            try:
                result = middleware(session=session)
                # A plain function returning None is tolerated; the protocol is async.
                if inspect.isawaitable(result):
                    await result
            except MiddlewareRejected:
                raise
            except Exception as exc:
                _logger.exception(
                    "middleware %r failed for path %r from %s",
                    middleware,
                    session.path,
                    session.remote_address,
                )
                raise MiddlewareRejected(status_code=_INTERNAL_SERVER_ERROR) from exc

    def remove_middleware(self, *, middleware: MiddlewareProtocol) -> None:
        """Remove a middleware from the chain (no-op if it is not in it)."""
        try:
            self._middleware.remove(middleware)
        except ValueError:
            pass

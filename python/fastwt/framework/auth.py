"""Authentication middleware: a callable decides from the request headers."""

from __future__ import annotations

import inspect
import logging

from fastwt.framework.exceptions import MiddlewareRejected
from fastwt.framework.headers import header_map
from fastwt.framework.types import AuthHandlerProtocol, MiddlewareProtocol, SessionProtocol

__all__ = ["create_auth_middleware"]

_logger = logging.getLogger(__name__)

_UNAUTHORIZED = 401
_INTERNAL_SERVER_ERROR = 500


def create_auth_middleware(*, auth_handler: AuthHandlerProtocol) -> MiddlewareProtocol:
    """Instantiate authentication middleware with a custom handler.

    ``await auth_handler(headers=...)`` runs for every request with the request headers
    as a mapping of lower-case names (whatever form the session gives them in): a truthy
    result lets it through, a falsy one rejects it with 401, an exception with 500 (and
    is logged). The handler may raise ``MiddlewareRejected`` to pick status and headers
    itself (e.g. 403, or 401 with a ``www-authenticate`` header).
    """
    if not callable(auth_handler):
        raise TypeError(f"auth_handler must be callable, got {type(auth_handler).__name__}")

    async def auth_middleware(*, session: SessionProtocol) -> None:
        try:
            result: object = auth_handler(headers=header_map(session.headers))
            if inspect.isawaitable(result):
                result = await result
        except MiddlewareRejected:
            raise
        except Exception as exc:
            _logger.exception(
                "auth handler failed for path %r from %s", session.path, session.remote_address
            )
            raise MiddlewareRejected(status_code=_INTERNAL_SERVER_ERROR) from exc
        if not result:
            raise MiddlewareRejected(status_code=_UNAUTHORIZED)

    return auth_middleware

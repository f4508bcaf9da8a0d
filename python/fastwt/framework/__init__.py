"""fastwt.framework — the application layer: ServerApp, routing and middleware.

``ServerApp`` routes each WebTransport session request through middleware and a
router to an ``async def handler(session, **params)``. The API follows pywebtransport's
``ServerApp`` (same names and keyword-only arguments), so handlers written for it run
unchanged.

Modules: ``types`` (the protocols everything shares), ``exceptions``, ``router``,
``middleware`` (the chain), ``headers`` (reading any form of ``Headers``), one module
per bundled middleware (``auth``, ``cors``, ``ratelimit``, ``ratelimit_redis``), ``rooms``
(rooms of sessions), ``cluster`` (the Redis bus rooms use across processes), and ``app``.
"""

from fastwt.framework.app import ServerApp
from fastwt.framework.auth import create_auth_middleware
from fastwt.framework.cors import create_cors_middleware
from fastwt.framework.exceptions import MiddlewareRejected
from fastwt.framework.middleware import MiddlewareManager
from fastwt.framework.ratelimit import RateLimiter, create_rate_limit_middleware
from fastwt.framework.rooms import Room
from fastwt.framework.router import RequestRouter
from fastwt.framework.types import (
    AuthHandlerProtocol,
    Headers,
    MiddlewareProtocol,
    SessionHandler,
    SessionProtocol,
    StatefulMiddlewareProtocol,
)

__all__ = [
    "AuthHandlerProtocol",
    "Headers",
    "MiddlewareManager",
    "MiddlewareProtocol",
    "MiddlewareRejected",
    "RateLimiter",
    "RequestRouter",
    "Room",
    "ServerApp",
    "SessionHandler",
    "SessionProtocol",
    "StatefulMiddlewareProtocol",
    "create_auth_middleware",
    "create_cors_middleware",
    "create_rate_limit_middleware",
]

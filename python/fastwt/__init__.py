"""fastwt: WebTransport for Python at Rust speed.

The session/stream API follows pywebtransport's; ``fastwt.framework`` adds ServerApp,
routing and middleware.
"""

from __future__ import annotations

# First: picks the backend, and stands in for the Rust extension when it is missing.
from . import _backend  # noqa: F401  # isort: skip
from ._bridge import new_event_loop
from ._core import __version__, generate_dev_certificate
from ._types import SessionObserver
from .client import WebTransportClient
from .config import ClientConfig, ServerConfig
from .errors import (
    ClientError,
    ConfigurationError,
    ConnectionError,
    DatagramError,
    ErrorCodes,
    ProtocolError,
    ServerError,
    SessionClosedError,
    SessionError,
    SessionRejectedError,
    StreamError,
    TimeoutError,
    WebTransportError,
)
from .framework import (
    AuthHandlerProtocol,
    MiddlewareManager,
    MiddlewareProtocol,
    MiddlewareRejected,
    RateLimiter,
    RequestRouter,
    ServerApp,
    SessionHandler,
    StatefulMiddlewareProtocol,
    create_auth_middleware,
    create_cors_middleware,
    create_rate_limit_middleware,
)
from .reconnect import Backoff, ReconnectingClient
from .server import WebTransportServer
from .session import WebTransportSession
from .stream import (
    WebTransportBidirectionalStream,
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportStream,
)

__all__ = [
    "AuthHandlerProtocol",
    "Backoff",
    "ClientConfig",
    "ClientError",
    "ConfigurationError",
    "ConnectionError",
    "DatagramError",
    "ErrorCodes",
    "MiddlewareManager",
    "MiddlewareProtocol",
    "MiddlewareRejected",
    "ProtocolError",
    "RateLimiter",
    "ReconnectingClient",
    "RequestRouter",
    "ServerApp",
    "ServerConfig",
    "ServerError",
    "SessionClosedError",
    "SessionError",
    "SessionHandler",
    "SessionObserver",
    "SessionRejectedError",
    "StatefulMiddlewareProtocol",
    "StreamError",
    "TimeoutError",
    "WebTransportBidirectionalStream",
    "WebTransportClient",
    "WebTransportError",
    "WebTransportReceiveStream",
    "WebTransportSendStream",
    "WebTransportServer",
    "WebTransportSession",
    "WebTransportStream",
    "__version__",
    "create_auth_middleware",
    "create_cors_middleware",
    "create_rate_limit_middleware",
    "generate_dev_certificate",
    "new_event_loop",
]

"""fastwt: WebTransport for Python at Rust speed.

The session/stream API follows pywebtransport's; ``fastwt.framework`` adds ServerApp,
routing and middleware.
"""

from __future__ import annotations

from ._core import __version__, generate_dev_certificate
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
from .server import WebTransportServer
from .session import WebTransportSession
from .stream import (
    WebTransportBidirectionalStream,
    WebTransportReceiveStream,
    WebTransportSendStream,
    WebTransportStream,
)

__all__ = [
    "ClientConfig",
    "ClientError",
    "ConfigurationError",
    "ConnectionError",
    "DatagramError",
    "ErrorCodes",
    "ProtocolError",
    "ServerConfig",
    "ServerError",
    "SessionClosedError",
    "SessionError",
    "SessionRejectedError",
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
    "generate_dev_certificate",
]

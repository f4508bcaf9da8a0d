"""The one exception hierarchy of fastwt, and the WebTransport error codes.

Every error raised by fastwt derives from :class:`WebTransportError`; the Rust core
raises these same classes (it looks them up here), so ``except WebTransportError``
catches everything the library raises.
"""

from __future__ import annotations

import builtins
from enum import IntEnum
from typing import Any

__all__ = [
    "ClientError",
    "ConfigurationError",
    "ConnectionError",
    "DatagramError",
    "ErrorCodes",
    "ProtocolError",
    "ServerError",
    "SessionClosedError",
    "SessionError",
    "SessionRejectedError",
    "StreamError",
    "TimeoutError",
    "WebTransportError",
]


try:
    from ._core import ERROR_CODES as _CORE_CODES
except ImportError:  # no extension (_backend.py falls back): the core's codes kept here
    from ._pure.core_values import ERROR_CODES as _CORE_CODES


class ErrorCodes(IntEnum):
    """Application error codes used by fastwt (WebTransport codes are 32-bit). The
    HTTP/3 and WebTransport ones are the core's (``fastwt._core.ERROR_CODES``)."""

    NO_ERROR = 0x0
    APP_NO_ERROR = 0x0
    INTERNAL_ERROR = 0x1
    HANDLER_ERROR = 0x2
    SERVER_SHUTDOWN = 0x3
    PROTOCOL_ERROR = 0x4
    H3_NO_ERROR = _CORE_CODES["H3_NO_ERROR"]
    H3_REQUEST_REJECTED = _CORE_CODES["H3_REQUEST_REJECTED"]
    WEBTRANSPORT_SESSION_GONE = _CORE_CODES["WEBTRANSPORT_SESSION_GONE"]


class WebTransportError(Exception):
    """Root of every fastwt error. ``error_code`` is set when the peer sent one."""

    def __init__(self, message: str = "", *, error_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code

    def __str__(self) -> str:
        return self.message


class ConnectionError(WebTransportError, builtins.ConnectionError):
    """The QUIC connection could not be made or was lost."""


class SessionError(WebTransportError):
    """An operation is not valid for the session, or the session failed."""


class SessionClosedError(SessionError):
    """The session is closed; ``error_code`` and ``reason`` say how it ended."""

    reason: str = ""


class StreamError(WebTransportError):
    """A stream was reset or stopped by the peer (``error_code``), or is closed."""


class DatagramError(WebTransportError):
    """A datagram could not be sent (too large: see ``max_size``) or read."""

    max_size: int | None = None
    size: int | None = None


class TimeoutError(WebTransportError, builtins.TimeoutError):
    """An operation did not finish in time."""


class ConfigurationError(WebTransportError, ValueError):
    """A configuration value or argument is invalid."""


class ClientError(WebTransportError):
    """A client-side failure."""


class SessionRejectedError(ClientError):
    """The server answered the session request with a non-2xx HTTP status."""

    status_code: int = 0
    headers: dict[str, str]

    def __init__(
        self,
        message: str = "",
        *,
        status_code: int = 0,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.status_code = status_code
        self.headers = dict(headers or {})


class ServerError(WebTransportError):
    """A server-side failure (binding, serving)."""


class ProtocolError(WebTransportError):
    """The peer broke the HTTP/3 or WebTransport protocol."""

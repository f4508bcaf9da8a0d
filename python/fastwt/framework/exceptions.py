"""The one exception the framework defines: a middleware's refusal of a session."""

from __future__ import annotations

from collections.abc import Mapping

from .._core import REJECTION_STATUS

__all__ = ["MiddlewareRejected"]


class MiddlewareRejected(Exception):
    """Raised by a middleware to refuse a session request with an HTTP status.

    ``ServerApp`` answers the request with ``status_code`` and ``headers`` instead of
    accepting it; the fastwt client sees both on its ``SessionRejectedError``, a browser
    sees a failed connection. Header names are stored lower-case (HTTP/3 requires it).
    """

    status_code: int
    headers: dict[str, str]

    def __init__(self, *, status_code: int = 403, headers: Mapping[str, str] | None = None) -> None:
        if isinstance(status_code, bool) or not isinstance(status_code, int):
            raise TypeError(f"status_code must be an int, not {type(status_code).__name__}")
        low, high = REJECTION_STATUS
        if not low <= status_code <= high:
            # The core's rule (1xx are interim, 2xx accepts): checked here already so that
            # the middleware that raises learns it, not the request it answers.
            raise ValueError(
                f"status_code must be a refusal status ({low}..{high}), got {status_code}"
            )
        super().__init__(f"session request rejected with status {status_code}")
        self.status_code = int(status_code)
        self.headers = {} if headers is None else {k.lower(): v for k, v in headers.items()}

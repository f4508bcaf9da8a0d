"""Origin check for browser clients: only pages from allowed origins may connect."""

from __future__ import annotations

import logging
import re

from fastwt.framework.exceptions import MiddlewareRejected
from fastwt.framework.headers import header_map
from fastwt.framework.types import MiddlewareProtocol, SessionProtocol

__all__ = ["create_cors_middleware"]

_logger = logging.getLogger(__name__)

_FORBIDDEN = 403

# A wildcard inside an entry stands for host labels or a port, never for the
# characters that end an origin's host (so "https://*.example.com" does not match
# "https://evil.com/.example.com" or "https://evil.com?.example.com").
_WILDCARD = "[A-Za-z0-9.-]+"


def create_cors_middleware(*, allowed_origins: list[str]) -> MiddlewareProtocol:
    """Instantiate CORS middleware to validate the Origin header.

    A request passes when its ``origin`` header equals an entry of ``allowed_origins``
    (an origin is ``scheme://host[:port]``, compared case-insensitively), matches an
    entry with ``*`` wildcards (``https://*.example.com``, ``http://localhost:*``; a
    ``*`` covers host labels or a port), or when an entry is ``"*"`` (any origin). A
    missing or unmatched origin is rejected with 403. Browsers always send ``origin``;
    other clients usually do not, so they are refused unless they add the header —
    this check protects against web pages, not against non-browser clients.
    The list is copied: changing it later has no effect.
    """
    if isinstance(allowed_origins, str):
        raise TypeError("allowed_origins must be a list of origins, not a single string")
    entries = [entry.strip().rstrip("/").lower() for entry in allowed_origins]
    allow_any = "*" in entries
    exact = frozenset(entry for entry in entries if "*" not in entry)
    patterns = tuple(
        re.compile(
            "".join(
                _WILDCARD if part == "*" else re.escape(part) for part in re.split(r"(\*)", entry)
            )
        )
        for entry in entries
        if "*" in entry and entry != "*"
    )

    async def cors_middleware(*, session: SessionProtocol) -> None:
        origin = header_map(session.headers).get("origin") or session.origin
        if not origin:
            _logger.info(
                "rejected %r from %s: no origin header", session.path, session.remote_address
            )
            raise MiddlewareRejected(status_code=_FORBIDDEN)
        if allow_any:
            return
        normalized = origin.lower()
        if normalized in exact:
            return
        for pattern in patterns:
            if pattern.fullmatch(normalized) is not None:
                return
        _logger.info(
            "rejected %r from %s: origin %r not allowed",
            session.path,
            session.remote_address,
            origin,
        )
        raise MiddlewareRejected(status_code=_FORBIDDEN)

    return cors_middleware

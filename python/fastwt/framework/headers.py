"""Request headers in every form the framework's ``Headers`` type allows, read one way.

A session's ``headers`` may be a mapping (fastwt's own sessions) or a list of
``(name, value)`` pairs of ``str`` or ``bytes`` (other servers and test doubles, as
HTTP/3 libraries such as aioquic hand them out). Middleware reads them through
:func:`header_map`, so auth, CORS and the rate limiter behave the same for each.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastwt.framework.types import Headers

__all__ = ["header_map"]


def _text(value: str | bytes) -> str:
    # Header values are ASCII in practice; latin-1 maps any other byte one-to-one
    # instead of failing on it (RFC 9110 treats them as opaque octets).
    return value.decode("latin-1") if isinstance(value, bytes) else value


def header_map(headers: Headers) -> Mapping[str, str]:
    """The header fields as a mapping of lower-case names to ``str`` values.

    A mapping whose names are all lower-case ``str`` (and none a pseudo-header) is
    returned as is (no copy on the common path). Otherwise names are lower-cased and
    ``bytes`` decoded; a name given more than once has its values joined with ``", "``,
    as RFC 9110 combines repeated fields. Pseudo-header fields (``:path``) are dropped.
    """
    pairs: list[tuple[str | bytes, str | bytes]]
    if isinstance(headers, Mapping):
        if all(
            type(k) is str and k.islower() and not k.startswith(":") and type(v) is str
            for k, v in headers.items()
        ):
            return headers
        pairs = list(headers.items())
    else:
        pairs = list(headers)
    fields: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name = _text(raw_name).lower()
        if name.startswith(":"):
            continue
        value = _text(raw_value)
        fields[name] = f"{fields[name]}, {value}" if name in fields else value
    return fields

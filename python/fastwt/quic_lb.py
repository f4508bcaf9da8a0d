"""What a QUIC-LB load balancer (draft-ietf-quic-load-balancers-21) reads from the
connection IDs a fastwt server issues with ``ServerConfig.server_id`` (and
``cid_key``): for a load balancer or a routing tool written in Python, and for checking
a deployment's configuration. The layouts are described in docs/deployment.md."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigurationError

__all__ = ["DecodedCid", "decode_cid"]


@dataclass(frozen=True)
class DecodedCid:
    """The routing fields of one connection ID."""

    config_id: int
    """The 3 config rotation bits (7: unroutable, no server id)."""
    server_id: bytes
    """The configured server id (``ServerConfig.server_id``)."""
    worker: int
    """The worker octet (the worker's socket index under ``--workers``, else 0); with
    the server id it makes the QUIC-LB server ID."""


def decode_cid(cid: bytes, server_id_len: int, key: bytes | None = None) -> DecodedCid | None:
    """The server id and worker in ``cid``, a connection ID of a server whose
    ``server_id`` is ``server_id_len`` octets long, as a load balancer configured with
    server ID length ``server_id_len + 1`` reads them; ``key`` (16 octets, the servers'
    ``cid_key``) decrypts an encrypted one first. ``None`` when ``cid``'s length does
    not fit that configuration. With another key than the servers' the fields come out
    random (no error: a load balancer cannot tell). A key of another length raises
    :class:`~fastwt.ConfigurationError`."""
    if not isinstance(server_id_len, int) or server_id_len < 0:
        raise ConfigurationError(f"server_id_len must be a non-negative int, got {server_id_len!r}")
    from ._core import decode_cid as _decode

    found = _decode(bytes(cid), server_id_len, key)
    return None if found is None else DecodedCid(*found)

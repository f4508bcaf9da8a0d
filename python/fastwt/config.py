"""Server and client configuration: frozen, keyword-only dataclasses with documented
defaults. Values are checked when the config is made, so mistakes fail early."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _backend
from ._core import Transport
from .errors import ConfigurationError

__all__ = ["ClientConfig", "ServerConfig"]

_CONGESTION = ("cubic", "bbr", "newreno")


def _check_common(cfg: ServerConfig | ClientConfig) -> None:
    if cfg.max_idle_timeout is not None and cfg.max_idle_timeout <= 0:
        raise ConfigurationError("max_idle_timeout must be positive or None")
    if cfg.keep_alive_interval is not None and cfg.keep_alive_interval <= 0:
        raise ConfigurationError("keep_alive_interval must be positive or None")
    if cfg.congestion_control_algorithm not in _CONGESTION:
        raise ConfigurationError(f"congestion_control_algorithm must be one of {_CONGESTION}")
    for name in ("stream_receive_window", "receive_window", "send_window"):
        if getattr(cfg, name) <= 0:
            raise ConfigurationError(f"{name} must be positive")
    if cfg.datagram_queue_size < 1:
        raise ConfigurationError("datagram_queue_size must be at least 1")
    if cfg.datagram_queue_bytes < 1:
        raise ConfigurationError("datagram_queue_bytes must be at least 1")
    if not 1 <= cfg.max_concurrent_bidi_streams <= 2**31:
        raise ConfigurationError("max_concurrent_bidi_streams must be in 1..2**31")
    if not 1 <= cfg.max_concurrent_uni_streams <= 2**31:
        raise ConfigurationError("max_concurrent_uni_streams must be in 1..2**31")


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How a :class:`~fastwt.WebTransportServer` binds and behaves.

    Without ``certfile`` and ``keyfile`` a development certificate is generated
    (ECDSA P-256, valid 13 days) that browsers accept through ``serverCertificateHashes``.
    ``bind_host`` may be one address or several (e.g. ``["127.0.0.1", "::1"]``).
    """

    bind_host: str | Sequence[str] = "::"
    bind_port: int = 4433
    certfile: str | Path | None = None
    keyfile: str | Path | None = None
    max_sessions: int = 10_000
    """Sessions open at once; connection attempts beyond it are refused."""
    pending_request_capacity: int = 1024
    """Session requests waiting for the application; beyond it clients get 503."""
    request_timeout: float = 10.0
    """Seconds a client has from connecting to sending its CONNECT request."""
    max_idle_timeout: float | None = 30.0
    keep_alive_interval: float | None = None
    max_datagram_size: int = 65535
    """Upper bound on datagram payloads accepted by ``send_datagram`` (the path MTU
    usually limits them to about 1,200 bytes)."""
    datagram_queue_size: int = 4096
    """Received datagrams buffered per session before the oldest is dropped (counted)."""
    datagram_queue_bytes: int = 1024 * 1024
    """Bytes of received datagram payload buffered per session before the oldest is
    dropped (counted); whichever of this and ``datagram_queue_size`` is reached first."""
    max_concurrent_bidi_streams: int = 100
    """Streams the peer may have open at once (more wait for credit). quinn keeps state
    per allowed stream: 1,024 costs ~130 KiB per session, 100 ~14 KiB."""
    max_concurrent_uni_streams: int = 100
    stream_receive_window: int = 4 * 1024 * 1024
    receive_window: int = 16 * 1024 * 1024
    send_window: int = 16 * 1024 * 1024
    congestion_control_algorithm: str = "cubic"
    shutdown_grace: float = 1.0
    """Seconds ``close()`` waits for peers to acknowledge the session close."""
    backend: str = field(default_factory=_backend.default_backend)
    """``"rust"`` (the compiled core, the default) or ``"python"`` (the pure-Python
    backend on aioquic: no wheel needed, much slower, see docs/pure-python.md). The
    environment variable ``FASTWT_BACKEND`` changes the default; ``"rust"`` runs on
    ``"python"`` when the extension cannot be imported."""

    def __post_init__(self) -> None:
        if not 0 <= self.bind_port <= 65535:
            raise ConfigurationError(f"bind_port must be 0..65535, got {self.bind_port}")
        if (self.certfile is None) != (self.keyfile is None):
            raise ConfigurationError("certfile and keyfile must be given together")
        if self.max_sessions < 1:
            raise ConfigurationError("max_sessions must be at least 1")
        if self.request_timeout <= 0:
            raise ConfigurationError("request_timeout must be positive")
        if self.max_datagram_size < 1:
            raise ConfigurationError("max_datagram_size must be positive")
        _check_common(self)
        _backend.check_config(self)

    @property
    def bind_hosts(self) -> list[str]:
        """``bind_host`` as a list."""
        if isinstance(self.bind_host, str):
            return [self.bind_host]
        return list(self.bind_host)


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """How a :class:`~fastwt.WebTransportClient` connects and whom it trusts.

    Trust, in order: ``server_certificate_hashes`` (hex SHA-256 of the leaf certificate,
    as browsers do), ``ca_certs`` (PEM file), ``verify_mode=ssl.CERT_NONE`` (development
    only), else the system's root certificates. As with OpenSSL, a certificate in
    ``ca_certs`` is trusted itself too, whether or not it is marked ``CA:TRUE`` (what
    ``openssl req -x509`` makes); a refusal names the server certificate's SHA-256.
    """

    ca_certs: str | Path | None = None
    certfile: str | Path | None = None
    keyfile: str | Path | None = None
    verify_mode: ssl.VerifyMode = ssl.CERT_REQUIRED
    server_certificate_hashes: Sequence[str] = ()
    connect_timeout: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)
    user_agent: str | None = "fastwt"
    max_idle_timeout: float | None = 30.0
    keep_alive_interval: float | None = None
    datagram_queue_size: int = 4096
    datagram_queue_bytes: int = 1024 * 1024
    max_concurrent_bidi_streams: int = 100
    max_concurrent_uni_streams: int = 100
    stream_receive_window: int = 4 * 1024 * 1024
    receive_window: int = 16 * 1024 * 1024
    send_window: int = 16 * 1024 * 1024
    congestion_control_algorithm: str = "cubic"
    backend: str = field(default_factory=_backend.default_backend)
    """``"rust"`` or ``"python"``, as for :attr:`ServerConfig.backend`."""

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0:
            raise ConfigurationError("connect_timeout must be positive")
        if (self.certfile is None) != (self.keyfile is None):
            raise ConfigurationError("certfile and keyfile must be given together")
        for h in self.server_certificate_hashes:
            clean = h.replace(":", "").replace(" ", "")
            if len(clean) != 64:
                raise ConfigurationError(f"certificate hash must be 64 hex digits: {h!r}")
        _check_common(self)
        _backend.check_config(self)


def transport_of(cfg: ServerConfig | ClientConfig) -> Transport:
    """The QUIC knobs of a server or client config, for the Rust core."""
    return Transport(
        max_idle_timeout=cfg.max_idle_timeout,
        keep_alive_interval=cfg.keep_alive_interval,
        max_concurrent_bidi_streams=cfg.max_concurrent_bidi_streams,
        max_concurrent_uni_streams=cfg.max_concurrent_uni_streams,
        stream_receive_window=cfg.stream_receive_window,
        receive_window=cfg.receive_window,
        send_window=cfg.send_window,
        datagram_queue_capacity=cfg.datagram_queue_size,
        datagram_queue_bytes=cfg.datagram_queue_bytes,
        congestion_control=cfg.congestion_control_algorithm,
    )

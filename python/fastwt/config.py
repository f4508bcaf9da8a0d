"""Server and client configuration: frozen, keyword-only dataclasses with documented
defaults. Values are checked when the config is made, so mistakes fail early."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
    for name in ("wt_max_data", "wt_max_streams_bidi", "wt_max_streams_uni"):
        if not 1 <= getattr(cfg, name) <= 2**60:
            raise ConfigurationError(f"{name} must be in 1..2**60")


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
    """Sessions (requested or accepted) open at once across every bound address; a
    connection attempt beyond it is refused, a CONNECT request beyond it gets 503."""
    max_sessions_per_ip: int | None = None
    """Sessions one client IP address may hold at once (None: no limit); connection
    attempts beyond it are refused."""
    max_handshakes: int = 1000
    """Connections between their first packet and their CONNECT request at once; a flood
    of handshakes (or of connections that never send CONNECT) is refused beyond it while
    live sessions keep working."""
    retry: bool = False
    """Stateless address validation (QUIC Retry) for every new connection: one round
    trip more, no state kept for spoofed source addresses."""
    pending_request_capacity: int = 1024
    """Session requests waiting for the application; beyond it clients get 503."""
    request_timeout: float = 10.0
    """One deadline, in seconds, from a connection's first packet to the application's
    answer: the handshake and the CONNECT request must arrive within it (else the
    connection is closed), and a request not answered by then gets 503."""
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
    wt_max_data: int = 16 * 1024 * 1024
    """Session flow control of drafts 13+ (Safari, draft-15 clients; draft-02 browsers
    have none): stream bytes a client may send ahead of what the session took in,
    advertised as SETTINGS_WT_INITIAL_MAX_DATA and raised with WT_MAX_DATA capsules as
    data is read."""
    wt_max_streams_bidi: int = 100
    """Bidirectional streams a client of drafts 13+ may open ahead of those it opened
    (SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI, then WT_MAX_STREAMS capsules)."""
    wt_max_streams_uni: int = 100
    """Unidirectional streams a client of drafts 13+ may open ahead of those it opened
    (SETTINGS_WT_INITIAL_MAX_STREAMS_UNI, then WT_MAX_STREAMS capsules)."""
    shutdown_grace: float = 1.0
    """Seconds ``close()`` waits for peers to acknowledge the session close."""
    ca_certs: str | Path | None = None
    """PEM file of the CAs whose client certificates are trusted (mutual TLS); needs
    ``verify_mode`` ``ssl.CERT_REQUIRED`` or ``ssl.CERT_OPTIONAL``."""
    verify_mode: ssl.VerifyMode = ssl.CERT_NONE
    """Client certificates: ``CERT_NONE`` (not asked for, the default),
    ``CERT_OPTIONAL`` (checked against ``ca_certs`` when presented) or
    ``CERT_REQUIRED`` (a client without one is refused in the handshake). The peer's
    certificate is ``session.peer_certificate``."""

    def __post_init__(self) -> None:
        if not 0 <= self.bind_port <= 65535:
            raise ConfigurationError(f"bind_port must be 0..65535, got {self.bind_port}")
        if (self.certfile is None) != (self.keyfile is None):
            raise ConfigurationError("certfile and keyfile must be given together")
        if self.max_sessions < 1:
            raise ConfigurationError("max_sessions must be at least 1")
        if self.max_sessions_per_ip is not None and self.max_sessions_per_ip < 1:
            raise ConfigurationError("max_sessions_per_ip must be at least 1 (or None)")
        if self.max_handshakes < 1:
            raise ConfigurationError("max_handshakes must be at least 1")
        if self.request_timeout <= 0:
            raise ConfigurationError("request_timeout must be positive")
        if self.max_datagram_size < 1:
            raise ConfigurationError("max_datagram_size must be positive")
        if self.verify_mode not in (ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED):
            raise ConfigurationError(
                f"verify_mode must be an ssl.VerifyMode, got {self.verify_mode!r}"
            )
        if self.verify_mode != ssl.CERT_NONE and self.ca_certs is None:
            raise ConfigurationError("verify_mode CERT_REQUIRED/CERT_OPTIONAL needs ca_certs")
        if self.verify_mode == ssl.CERT_NONE and self.ca_certs is not None:
            # Silently not checking clients would be a security hole.
            raise ConfigurationError(
                "ca_certs is for client certificates: set verify_mode=ssl.CERT_REQUIRED "
                "(or ssl.CERT_OPTIONAL)"
            )
        _check_common(self)

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
    wt_max_data: int = 16 * 1024 * 1024
    """Session credit granted to a draft-15 server (see :class:`ServerConfig`)."""
    wt_max_streams_bidi: int = 100
    wt_max_streams_uni: int = 100

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
        wt_max_data=cfg.wt_max_data,
        wt_max_streams_bidi=cfg.wt_max_streams_bidi,
        wt_max_streams_uni=cfg.wt_max_streams_uni,
    )

"""Server and client configuration: frozen, keyword-only dataclasses with documented
defaults. The defaults the Rust core has too (limits, timeouts, QUIC knobs) are the
core's, read from ``fastwt._core.SERVER_DEFAULTS``/``CLIENT_DEFAULTS`` rather than
written here again; the others (``max_datagram_size``, ``shutdown_grace``, TLS files,
``user_agent``) are the Python layer's own and written only here.

Values are checked when the config is made, so mistakes fail early: any value of a
wrong type or out of range raises ``ConfigurationError`` there, and a config that
builds is one the Rust core takes (durations are finite seconds, at most 2**32; sizes
and counts are ints within the core's integer types)."""

from __future__ import annotations

import ipaddress
import ssl
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _backend
from ._core import CLIENT_DEFAULTS as _CLIENT
from ._core import CONGESTION_CONTROLS, MAX_SESSIONS_PER_CONNECTION, Transport
from ._core import SERVER_DEFAULTS as _SERVER
from ._types import TransportDefaults
from .errors import ConfigurationError

__all__ = ["ClientConfig", "ServerConfig", "check_cert_pair"]

_CONGESTION = CONGESTION_CONTROLS

# Bounds of what the Rust core takes: sizes are usize, stream counts u32 (at most 2**31
# here), flow-control windows QUIC varints (send_window a u64), and durations must be
# representable (quinn's idle timeout and deadline arithmetic): at most 2**32 s.
_USIZE = 2**64 - 1
_VARINT = 2**62 - 1
_MAX_SECONDS = float(2**32)
# The core's defaults of the QUIC knobs (a server's and a client's are the same).
_QUIC: TransportDefaults = _SERVER


def _int(cfg: ServerConfig | ClientConfig, name: str, lo: int, hi: int, what: str) -> None:
    """``name`` must be an ``int`` (not a ``bool``) in ``lo..hi``; ``what`` says so."""
    value = getattr(cfg, name)
    if type(value) is bool or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigurationError(f"{name} must be {what}, got {value!r}")


def _seconds(
    cfg: ServerConfig | ClientConfig, name: str, *, optional: bool = False, zero: bool = False
) -> None:
    """``name`` must be a finite number of seconds, positive (or ``zero`` allowed), at
    most 2**32; ``None`` too when ``optional``."""
    value = getattr(cfg, name)
    if value is None and optional:
        return
    number = type(value) is not bool and isinstance(value, int | float)
    if not number or not (0 <= value if zero else 0 < value) or not value <= _MAX_SECONDS:
        sign = "non-negative" if zero else "positive"
        none = " or None" if optional else ""
        raise ConfigurationError(
            f"{name} must be a {sign} number of seconds (at most 2**32){none}, got {value!r}"
        )


def _path(cfg: ServerConfig | ClientConfig, name: str) -> None:
    value = getattr(cfg, name)
    if value is not None and not isinstance(value, str | Path):
        raise ConfigurationError(f"{name} must be a path (str or Path) or None, got {value!r}")


def _check_common(cfg: ServerConfig | ClientConfig) -> None:
    _seconds(cfg, "max_idle_timeout", optional=True)
    _seconds(cfg, "keep_alive_interval", optional=True)
    if not isinstance(cfg.congestion_control_algorithm, str) or (
        cfg.congestion_control_algorithm not in _CONGESTION
    ):
        raise ConfigurationError(f"congestion_control_algorithm must be one of {_CONGESTION}")
    for name in ("stream_receive_window", "receive_window"):
        _int(cfg, name, 1, _VARINT, "positive (at most 2**62 - 1)")
    _int(cfg, "send_window", 1, _USIZE, "positive (at most 2**64 - 1)")
    if cfg.datagram_queue_size is not None:
        _int(cfg, "datagram_queue_size", 1, _USIZE, "at least 1 (or None: no cap)")
    _int(cfg, "datagram_queue_bytes", 1, _USIZE, "at least 1")
    _int(cfg, "max_concurrent_bidi_streams", 1, 2**31, "in 1..2**31")
    _int(cfg, "max_concurrent_uni_streams", 1, 2**31, "in 1..2**31")
    for name in ("wt_max_data", "wt_max_streams_bidi", "wt_max_streams_uni"):
        _int(cfg, name, 1, 2**60, "in 1..2**60")
    _path(cfg, "certfile")
    _path(cfg, "keyfile")
    check_cert_pair(cfg.certfile, cfg.keyfile)


def check_cert_pair(
    certfile: object, keyfile: object, *, names: tuple[str, str] = ("certfile", "keyfile")
) -> None:
    """The one check that a certificate and its key come together (both or neither):
    the configs, ``reload_certificate``, the pure backend and the CLI (with its option
    ``names``) all call it. Raises :class:`ConfigurationError`."""
    if (certfile is None) != (keyfile is None):
        raise ConfigurationError(f"{names[0]} and {names[1]} go together (both or neither)")


def _check_host(host: object) -> None:
    # What WebTransportServer.listen() hands the core: "localhost" and "" are mapped
    # there, anything else must be an IP address (IPv6 with or without brackets).
    if not isinstance(host, str):
        raise ConfigurationError(f"bind_host entries must be str, got {host!r}")
    if host in ("localhost", ""):
        return
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        ok = False
    else:
        ok = "%" not in bare  # a scope id: the core's parser takes none
    if not ok:
        raise ConfigurationError(f"bind_host must be IP addresses or 'localhost', got {host!r}")


def _octets(value: bytes | str | None) -> bytes | None:
    """An octet-string option (``server_id``, ``cid_key``) given as ``bytes`` or hex
    text, as bytes. Raises ``ValueError`` for text that is not hex."""
    return bytes.fromhex(value) if isinstance(value, str) else value


def _check_server_id(value: object) -> None:
    if value is None:
        return
    try:
        octets = _octets(value) if isinstance(value, (bytes, str)) else value
    except ValueError:
        raise ConfigurationError(f"server_id must be hex octets, got {value!r}") from None
    if not isinstance(octets, bytes) or not 1 <= len(octets) <= 9:
        raise ConfigurationError(f"server_id must be 1..9 octets (bytes or hex), got {octets!r}")


def _check_cid_key(value: object, server_id: object) -> None:
    # The key is a secret: errors name its type and length, never its octets.
    if value is None:
        return
    try:
        octets = _octets(value) if isinstance(value, (bytes, str)) else value
    except ValueError:
        raise ConfigurationError("cid_key must be 32 hex digits (16 octets)") from None
    if not isinstance(octets, bytes) or len(octets) != 16:
        got = f"{len(octets)} octets" if isinstance(octets, bytes) else type(octets).__name__
        raise ConfigurationError(
            f"cid_key must be 16 octets (AES-128: bytes or 32 hex digits), got {got}"
        )
    if server_id is None:
        raise ConfigurationError(
            "cid_key needs server_id: encrypted connection IDs are for a load balancer "
            "that routes on the server id"
        )


def cid_key_bytes(cfg: ServerConfig) -> bytes | None:
    """``cfg.cid_key`` as bytes (it may be given as hex)."""
    return _octets(cfg.cid_key)


def server_id_bytes(cfg: ServerConfig) -> bytes | None:
    """``cfg.server_id`` as bytes (it may be given as hex)."""
    return _octets(cfg.server_id)


@dataclass(frozen=True, kw_only=True)
class _QuicOptions:
    """The QUIC and WebTransport knobs servers and clients share, with the core's
    defaults (``fastwt._core.SERVER_DEFAULTS``; a client's are the same)."""

    max_idle_timeout: float | None = _QUIC["max_idle_timeout"]
    """Seconds without any packet after which a connection is closed (None: never)."""
    keep_alive_interval: float | None = _QUIC["keep_alive_interval"]
    """Seconds between keep-alive pings (None: off)."""
    datagram_queue_size: int | None = _QUIC["datagram_queue_size"]
    """An optional cap on the received datagrams buffered per session, on top of
    ``datagram_queue_bytes`` (default None: no cap)."""
    datagram_queue_bytes: int = _QUIC["datagram_queue_bytes"]
    """Bytes of received datagrams buffered per session for the application before the
    oldest is dropped (counted in ``session.stats()["datagrams_dropped"]``): each counts
    its payload plus 48 bytes of bookkeeping, so the default 8 MiB holds about 75,000
    datagrams of 64 bytes (a burst the handler catches up with) or 7,000 of 1,200. This
    is memory a session may hold while its handler falls behind."""
    max_concurrent_bidi_streams: int = _QUIC["max_concurrent_bidi_streams"]
    """Streams the peer may have open at once (more wait for credit). quinn keeps state
    per allowed stream: 1,024 costs ~130 KiB per session, 100 ~14 KiB."""
    max_concurrent_uni_streams: int = _QUIC["max_concurrent_uni_streams"]
    stream_receive_window: int = _QUIC["stream_receive_window"]
    receive_window: int = _QUIC["receive_window"]
    send_window: int = _QUIC["send_window"]
    congestion_control_algorithm: str = _QUIC["congestion_control_algorithm"]
    wt_max_data: int = _QUIC["wt_max_data"]
    """Session flow control of drafts 13+ (Safari, draft-15 peers; draft-02 browsers
    have none): stream bytes the peer may send ahead of what the session took in,
    advertised as SETTINGS_WT_INITIAL_MAX_DATA and raised with WT_MAX_DATA capsules as
    data is read."""
    wt_max_streams_bidi: int = _QUIC["wt_max_streams_bidi"]
    """Bidirectional streams a peer of drafts 13+ may open ahead of those it opened
    (SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI, then WT_MAX_STREAMS capsules)."""
    wt_max_streams_uni: int = _QUIC["wt_max_streams_uni"]
    """Unidirectional streams a peer of drafts 13+ may open ahead of those it opened
    (SETTINGS_WT_INITIAL_MAX_STREAMS_UNI, then WT_MAX_STREAMS capsules)."""


@dataclass(frozen=True, kw_only=True)
class ServerConfig(_QuicOptions):
    """How a :class:`~fastwt.WebTransportServer` binds and behaves.

    Without ``certfile`` and ``keyfile`` a development certificate is generated
    (ECDSA P-256, valid 13 days) that browsers accept through ``serverCertificateHashes``.
    ``bind_host`` may be one address or several (e.g. ``["127.0.0.1", "::1"]``).
    """

    bind_host: str | Sequence[str] = _SERVER["bind_host"]
    bind_port: int = _SERVER["bind_port"]
    certfile: str | Path | None = None
    keyfile: str | Path | None = None
    max_sessions: int = _SERVER["max_sessions"]
    """Sessions (requested or accepted) open at once across every bound address; a
    connection attempt beyond it is refused, a CONNECT request beyond it gets 503."""
    max_sessions_per_ip: int | None = _SERVER["max_sessions_per_ip"]
    """Sessions one client IP address may hold at once (None: no limit); connection
    attempts beyond it are refused."""
    max_sessions_per_connection: int = _SERVER["max_sessions_per_connection"]
    """Sessions one connection may carry at once (1 to ``MAX_SESSIONS_PER_CONNECTION``,
    256), advertised as SETTINGS_WT_MAX_SESSIONS. Above 1, clients of drafts 07+ (Safari,
    draft-15 peers such as pywebtransport 0.21) may pool several sessions on one
    connection, each isolated and each counted in ``max_sessions`` and
    ``max_sessions_per_ip``; a CONNECT beyond the limit gets 429. Draft-02 browsers
    (Chrome, Firefox) never pool: their second CONNECT is refused with
    H3_REQUEST_REJECTED, as is any second CONNECT at the default of 1."""
    max_handshakes: int = _SERVER["max_handshakes"]
    """Connections between their first packet and their CONNECT request at once; a flood
    of handshakes (or of connections that never send CONNECT) is refused beyond it while
    live sessions keep working."""
    retry: bool = _SERVER["retry"]
    """Stateless address validation (QUIC Retry) for every new connection: one round
    trip more, no state kept for spoofed source addresses."""
    pending_request_capacity: int = _SERVER["pending_request_capacity"]
    """Session requests waiting for the application; beyond it clients get 503."""
    request_timeout: float = _SERVER["request_timeout"]
    """One deadline, in seconds, from a connection's first packet to the application's
    answer: the handshake and the CONNECT request must arrive within it (else the
    connection is closed), and a request not answered by then gets 503."""
    max_datagram_size: int = 65535
    """Upper bound on datagram payloads accepted by ``send_datagram`` (the path MTU
    usually limits them to about 1,200 bytes)."""
    server_id: bytes | str | None = None
    """QUIC-LB server id (draft-ietf-quic-load-balancers) written in every connection
    ID the server issues, 1..9 octets (``bytes`` or hex text), so that a CID-aware load
    balancer routes a connection's packets to this machine whatever the client's
    address; ``None`` (default): quinn's random CIDs. ``fastwt run --workers`` adds the
    worker octet either way. See docs/deployment.md."""
    cid_key: bytes | str | None = field(default=None, repr=False)
    """QUIC-LB key (16 octets, ``bytes`` or 32 hex digits; needs ``server_id``): the
    connection IDs are then encrypted (QUIC-LB single pass, AES-128), so only a load
    balancer with the key reads the server id and worker in them, and observers cannot
    tell which CIDs name the same server. ``None`` (default): plaintext QUIC-LB CIDs.
    Hides the worker octet from ``--workers`` steering, which then needs
    ``--no-cid-steering``. Kept out of ``repr``. See docs/deployment.md."""
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
    backend: str = field(default_factory=_backend.default_backend)
    """``"rust"`` (the compiled core, the default) or ``"python"`` (the pure-Python
    backend on aioquic: no wheel needed, much slower, see docs/pure-python.md). The
    environment variable ``FASTWT_BACKEND`` changes the default; ``"rust"`` runs on
    ``"python"`` when the extension cannot be imported."""

    def __post_init__(self) -> None:
        hosts = [self.bind_host] if isinstance(self.bind_host, str) else self.bind_host
        if not isinstance(hosts, Sequence) or not hosts:
            raise ConfigurationError(
                f"bind_host must be an address or a non-empty list of them, got {self.bind_host!r}"
            )
        for host in hosts:
            _check_host(host)
        _int(self, "bind_port", 0, 65535, "0..65535")
        _int(self, "max_sessions", 1, _USIZE, "at least 1")
        if self.max_sessions_per_ip is not None:
            _int(self, "max_sessions_per_ip", 1, _USIZE, "at least 1 (or None)")
        _int(
            self,
            "max_sessions_per_connection",
            1,
            MAX_SESSIONS_PER_CONNECTION,
            f"in 1..{MAX_SESSIONS_PER_CONNECTION}",
        )
        _int(self, "max_handshakes", 1, _USIZE, "at least 1")
        _int(self, "pending_request_capacity", 1, _USIZE, "at least 1")
        if not isinstance(self.retry, bool):
            raise ConfigurationError(f"retry must be a bool, got {self.retry!r}")
        _seconds(self, "request_timeout")
        _int(self, "max_datagram_size", 1, _USIZE, "positive")
        _seconds(self, "shutdown_grace", zero=True)
        _check_server_id(self.server_id)
        _check_cid_key(self.cid_key, self.server_id)
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
        _backend.check_config(self)

    @property
    def bind_hosts(self) -> list[str]:
        """``bind_host`` as a list."""
        if isinstance(self.bind_host, str):
            return [self.bind_host]
        return list(self.bind_host)


@dataclass(frozen=True, kw_only=True)
class ClientConfig(_QuicOptions):
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
    connect_timeout: float = _CLIENT["connect_timeout"]
    headers: dict[str, str] = field(default_factory=dict)
    user_agent: str | None = "fastwt"
    backend: str = field(default_factory=_backend.default_backend)
    """``"rust"`` or ``"python"``, as for :attr:`ServerConfig.backend`."""

    def __post_init__(self) -> None:
        _seconds(self, "connect_timeout")
        _path(self, "ca_certs")
        try:
            ssl.VerifyMode(self.verify_mode)  # ssl.CERT_NONE or its int, 0, and so on
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"verify_mode must be an ssl.VerifyMode, got {self.verify_mode!r}"
            ) from None
        hashes = self.server_certificate_hashes
        if isinstance(hashes, str | bytes) or not isinstance(hashes, Sequence):
            raise ConfigurationError(
                f"server_certificate_hashes must be a list of str, got {hashes!r}"
            )
        for h in hashes:
            clean = h.replace(":", "").replace(" ", "") if isinstance(h, str) else ""
            if len(clean) != 64 or not all(c in string.hexdigits for c in clean):
                raise ConfigurationError(f"certificate hash must be 64 hex digits: {h!r}")
        if not isinstance(self.headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise ConfigurationError(f"headers must map str to str, got {self.headers!r}")
        if self.user_agent is not None and not isinstance(self.user_agent, str):
            raise ConfigurationError(f"user_agent must be a str or None, got {self.user_agent!r}")
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
        wt_max_data=cfg.wt_max_data,
        wt_max_streams_bidi=cfg.wt_max_streams_bidi,
        wt_max_streams_uni=cfg.wt_max_streams_uni,
    )

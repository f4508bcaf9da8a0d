"""Type aliases and protocols shared by the package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeAlias, TypedDict

if TYPE_CHECKING:
    from .session import WebTransportSession

Buffer: TypeAlias = bytes | bytearray | memoryview
"""What send and write calls take: any bytes-like object."""


class SessionObserver(Protocol):
    """Told what becomes of each session request of a server it was added to
    (:meth:`fastwt.WebTransportServer.add_observer`): metrics, access logs and audits
    watch requests this way instead of wrapping the server's or the sessions' methods.

    Called on the event loop's thread, synchronously: an observer must not block.
    ``session_answered`` runs once per request, after the answer went out: 200 when
    accepted, the HTTP status when rejected, 404 when it was closed unanswered. (The
    end of an accepted session has no hook: ``session.is_closed`` and
    ``wait_closed()`` tell it.)
    """

    def session_requested(self, session: WebTransportSession) -> None: ...

    def session_answered(self, session: WebTransportSession, status: int) -> None: ...


class TransportDefaults(TypedDict):
    """The core's defaults of the QUIC knobs both configs have (``fastwt._core``)."""

    max_idle_timeout: float | None
    keep_alive_interval: float | None
    max_concurrent_bidi_streams: int
    max_concurrent_uni_streams: int
    stream_receive_window: int
    receive_window: int
    send_window: int
    datagram_queue_size: int | None
    datagram_queue_bytes: int
    congestion_control_algorithm: str
    wt_max_data: int
    wt_max_streams_bidi: int
    wt_max_streams_uni: int


class ServerDefaults(TransportDefaults):
    """``fastwt._core.SERVER_DEFAULTS``: the core's defaults of a server, by the
    :class:`~fastwt.ServerConfig` field names."""

    bind_host: str
    bind_port: int
    max_sessions: int
    max_sessions_per_ip: int | None
    max_sessions_per_connection: int
    max_handshakes: int
    retry: bool
    pending_request_capacity: int
    request_timeout: float


class ClientDefaults(TransportDefaults):
    """``fastwt._core.CLIENT_DEFAULTS``: the core's defaults of a client."""

    connect_timeout: float


class CoreErrorCodes(TypedDict):
    """``fastwt._core.ERROR_CODES``: the HTTP/3 and WebTransport codes
    :class:`~fastwt.ErrorCodes` takes from the core."""

    H3_NO_ERROR: int
    H3_REQUEST_REJECTED: int
    WEBTRANSPORT_SESSION_GONE: int

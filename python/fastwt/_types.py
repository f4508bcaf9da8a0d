"""Type aliases and protocols shared by the package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeAlias

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

"""A client that keeps a session to one server, reconnecting with backoff.

Devices (sensors, kiosks, game clients) lose their server: it restarts, the network
drops, the server sheds load. Reconnecting at once from every device at the same moment
makes a restart's load spike worse, so, like socket.io's client, each attempt waits
longer than the last (exponential backoff, up to ``max_delay``) and by a random part
of that (jitter), so devices spread out.

Two ways to use it::

    client = ReconnectingClient("https://server:4433/telemetry", config=config)

    # an async iterator: one session per connection
    async for session in client.sessions():
        try:
            await push_readings(session)  # returns or raises when the connection drops
        except WebTransportError:
            pass  # the next iteration reconnects

    # or a callback run for each session
    await client.run(push_readings)
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from .client import WebTransportClient
from .config import ClientConfig
from .errors import SessionRejectedError, WebTransportError

if TYPE_CHECKING:
    from .session import WebTransportSession

__all__ = ["Backoff", "ReconnectingClient"]

logger = logging.getLogger("fastwt.reconnect")

# Rejections worth retrying: the server is overloaded or restarting, not refusing us.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Delays between connection attempts: ``initial * multiplier**n`` for the n-th
    consecutive failure (from 0), capped at ``maximum``, then multiplied by a random
    factor in ``[1 - jitter, 1]`` (so the cap is never exceeded and devices spread
    out; ``jitter=0`` for fixed delays)."""

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial:
            raise ValueError("need 0 <= initial <= maximum")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be in [0, 1]")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retrying after ``attempt + 1`` consecutive failures."""
        # min() before the power would overflow for large attempts: cap the exponent.
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return base * (1 - self.jitter * self.rng.random())


class ReconnectingClient:
    """Keeps one session to ``url`` open, reconnecting after it ends or fails.

    Connection failures (``WebTransportError``: timeouts, refused handshakes, lost
    connections) and rejections with 429 or 5xx are retried after ``backoff``'s delays;
    other rejections (401, 403, 404, ...) will not fix themselves and are raised, as is
    the last failure after ``max_attempts`` consecutive ones (``None``: try forever).
    After a session was established the failure count starts again from zero, and the
    next connection waits ``backoff.delay(0)``, so a server that accepts and drops at
    once is not hammered. ``on_retry(attempt, delay, error)`` is called before each wait
    (e.g. to show "reconnecting in 2.1 s").
    """

    def __init__(
        self,
        url: str,
        *,
        config: ClientConfig | None = None,
        headers: dict[str, str] | None = None,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        on_retry: Callable[[int, float, BaseException], None] | None = None,
    ) -> None:
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 or None")
        self.url = url
        self.config = config or ClientConfig()
        self.headers = headers
        self.backoff = backoff or Backoff()
        self.max_attempts = max_attempts
        self.on_retry = on_retry
        self.connections = 0
        """Sessions established so far."""

    async def sessions(self) -> AsyncIterator[WebTransportSession]:
        """One established session per iteration. When the loop body finishes (or the
        next session is asked for), the current session is closed if still open and a
        new one is opened after ``backoff.delay(0)``."""
        failures = 0
        async with WebTransportClient(config=self.config) as client:
            while True:
                try:
                    session = await client.connect(url=self.url, headers=self.headers)
                except (WebTransportError, OSError) as exc:
                    if not _retryable(exc):
                        raise
                    failures += 1
                    if self.max_attempts is not None and failures >= self.max_attempts:
                        raise
                    await self._wait(failures - 1, exc)
                    continue
                failures = 0
                self.connections += 1
                logger.info("connected to %s (connection %d)", self.url, self.connections)
                try:
                    yield session
                finally:
                    if not session.is_closed:
                        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                            try:
                                await session.close()
                            except WebTransportError:
                                pass
                logger.info("session to %s ended; reconnecting", self.url)
                await anyio.sleep(self.backoff.delay(0))

    async def run(self, handler: Callable[[WebTransportSession], Awaitable[None]]) -> None:
        """Call ``await handler(session)`` for each session, forever (until cancelled,
        or a failure that is not retried). A ``WebTransportError`` raised by the
        handler means the connection went away: it is logged and the client
        reconnects; other exceptions propagate."""
        async for session in self.sessions():
            try:
                await handler(session)
            except WebTransportError as exc:
                logger.info("session to %s failed: %r", self.url, exc)

    async def _wait(self, attempt: int, exc: BaseException) -> None:
        delay = self.backoff.delay(attempt)
        logger.info(
            "connecting to %s failed (%s); retrying in %.2f s", self.url, exc or repr(exc), delay
        )
        if self.on_retry is not None:
            self.on_retry(attempt + 1, delay, exc)
        await anyio.sleep(delay)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, SessionRejectedError):
        return exc.status_code in _RETRY_STATUSES
    return True

"""Per-client rate limiting of new sessions, with bounded memory and O(1) cost."""

from __future__ import annotations

import logging
import math
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

from fastwt.framework.exceptions import MiddlewareRejected
from fastwt.framework.types import SessionProtocol

if TYPE_CHECKING:
    from fastwt.framework.cluster import RedisBus
    from fastwt.framework.ratelimit_redis import RedisRateLimiter

__all__ = ["RateLimiter", "client_ip", "create_rate_limit_middleware"]

_logger = logging.getLogger(__name__)

_WINDOW_REQUEST_LIMIT = 100
_WINDOW_TTL = 60
_CLEANUP_INTERVAL = 300
_TRACKED_IP_CAPACITY = 10000

_TOO_MANY_REQUESTS = 429
_IPV4_MAPPED_PREFIX = "::ffff:"


def client_ip(session: SessionProtocol) -> str:
    """The rate limiter's default key: the peer's IP address.

    An IPv4-mapped IPv6 address (what a dual-stack ``::`` socket reports for an IPv4
    peer) is reduced to the IPv4 address, so one client has one key whichever way the
    server is bound.
    """
    address = session.remote_address
    if address is None:
        return "unknown"
    ip = address[0]
    if ip.startswith(_IPV4_MAPPED_PREFIX) and "." in ip:
        return ip[len(_IPV4_MAPPED_PREFIX) :]
    return ip


class _ClientLog:
    """The start times of a client's last ``max_requests`` admitted sessions.

    A ring buffer: once full, ``times[head]`` is the oldest entry and the slot the
    next admitted session overwrites. 8 bytes per entry.
    """

    __slots__ = ("head", "times")

    def __init__(self) -> None:
        self.times = array("d")
        self.head = 0


class RateLimiter:
    """A stateful rate-limiting middleware: at most ``max_requests`` new sessions per
    client in any ``window_seconds`` long interval (an exact sliding window).

    A refused request gets 429 with a ``retry-after`` header (whole seconds until the
    client's oldest session in the window leaves it) and does not count against the
    client. Clients are keyed by IP address (``key_func`` picks another key, e.g. a user
    id or an IPv6 /64 prefix).

    Memory stays bounded: at most ``max_tracked_ips`` clients are tracked, each with at
    most ``max_requests`` timestamps (8 bytes each). When a new client arrives and the
    table is full, the least recently seen client is forgotten — every request, refused
    ones included, counts as "seen", so a client that keeps hammering is never
    forgotten and stays limited. Every ``cleanup_interval`` seconds a request also
    drops the least recently seen clients whose sessions all left the window. Each
    request costs O(1) (amortized over the cleanup).

    Usable as is, or entered by ``ServerApp.startup()`` as a stateful middleware (exit
    forgets every client). Not thread-safe: one event loop thread only; it never awaits,
    so concurrent tasks on that loop need no lock.

    ``clock`` (seconds, monotonic) is injectable for tests.
    """

    def __init__(
        self,
        *,
        max_requests: int = _WINDOW_REQUEST_LIMIT,
        window_seconds: int = _WINDOW_TTL,
        cleanup_interval: int = _CLEANUP_INTERVAL,
        max_tracked_ips: int = _TRACKED_IP_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
        key_func: Callable[[SessionProtocol], str] = client_ip,
    ) -> None:
        for name, value in (
            ("max_requests", max_requests),
            ("window_seconds", window_seconds),
            ("cleanup_interval", cleanup_interval),
            ("max_tracked_ips", max_tracked_ips),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(max_requests, int) or not isinstance(max_tracked_ips, int):
            raise ValueError("max_requests and max_tracked_ips must be integers")
        self._max_requests = max_requests
        self._window = float(window_seconds)
        self._cleanup_interval = float(cleanup_interval)
        self._max_tracked = max_tracked_ips
        self._clock = clock
        self._key_func = key_func
        # Least recently seen first: move_to_end on every request, popitem(last=False)
        # to evict.
        self._clients: OrderedDict[str, _ClientLog] = OrderedDict()
        self._next_cleanup = clock() + self._cleanup_interval

    @property
    def max_requests(self) -> int:
        return self._max_requests

    @property
    def window_seconds(self) -> float:
        return self._window

    @property
    def max_tracked_ips(self) -> int:
        return self._max_tracked

    @property
    def tracked_clients(self) -> int:
        """How many clients the limiter remembers right now (≤ ``max_tracked_ips``)."""
        return len(self._clients)

    async def __aenter__(self) -> Self:
        from fastwt.framework.rooms import worker_count

        workers = worker_count()
        if workers > 1:
            _logger.warning(
                "rate limiter: this process is one of %d workers and counts alone, so a "
                "client may open up to %d x %d sessions per %g s; "
                "create_rate_limit_middleware(..., backend='redis://...') shares one limit",
                workers,
                workers,
                self._max_requests,
                self._window,
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self._clients.clear()

    async def __call__(self, *, session: SessionProtocol) -> None:
        """Admit the session or raise ``MiddlewareRejected`` (429, ``retry-after``)."""
        key = self._key_func(session)
        retry_after = self.try_acquire(key=key)
        if retry_after is not None:
            _logger.info("rate limit exceeded for %s (path %r)", key, session.path)
            raise MiddlewareRejected(
                status_code=_TOO_MANY_REQUESTS,
                headers={"retry-after": str(max(1, math.ceil(retry_after)))},
            )

    def try_acquire(self, *, key: str) -> float | None:
        """Count a new session for ``key`` if its limit allows it.

        Returns ``None`` when admitted, else the seconds until a retry can succeed (the
        refusal is not counted).
        """
        now = self._clock()
        if now >= self._next_cleanup:
            self._drop_expired(now)
        clients = self._clients
        log = clients.get(key)
        if log is None:
            if len(clients) >= self._max_tracked:
                clients.popitem(last=False)
            log = clients[key] = _ClientLog()
        else:
            clients.move_to_end(key)
        times = log.times
        if len(times) < self._max_requests:
            times.append(now)
            return None
        head = log.head
        oldest = times[head]
        if now - oldest < self._window:
            return oldest + self._window - now
        times[head] = now
        log.head = (head + 1) % self._max_requests
        return None

    def reset(self, *, key: str | None = None) -> None:
        """Forget one client (``key``) or, with no key, every client."""
        if key is None:
            self._clients.clear()
        else:
            self._clients.pop(key, None)

    def _drop_expired(self, now: float) -> None:
        """Forget least recently seen clients whose sessions all left the window.

        Stops at the first client that still has a session in the window: the sweep
        is cheap (each client is dropped at most once per time it was added) and the
        capacity bound holds regardless.
        """
        self._next_cleanup = now + self._cleanup_interval
        clients = self._clients
        dropped = 0
        while clients:
            log = next(iter(clients.values()))
            times = log.times
            newest = times[log.head - 1] if times else -math.inf
            if now - newest < self._window:
                break
            clients.popitem(last=False)
            dropped += 1
        if dropped:
            _logger.debug("rate limiter forgot %d idle clients", dropped)


def create_rate_limit_middleware(
    *,
    max_requests: int = _WINDOW_REQUEST_LIMIT,
    window_seconds: int = _WINDOW_TTL,
    cleanup_interval: int = _CLEANUP_INTERVAL,
    max_tracked_ips: int = _TRACKED_IP_CAPACITY,
    backend: str | RedisBus | None = None,
) -> RateLimiter | RedisRateLimiter:
    """Instantiate a stateful rate-limiting middleware (see :class:`RateLimiter`).

    ``backend`` (a fastwt addition): ``None`` (default) keeps the counts in this
    process; a Redis URL, or the app's cluster bus (``app.broker``), keeps them in Redis
    so that every process and node enforces one limit
    (:class:`~fastwt.framework.ratelimit_redis.RedisRateLimiter`: same window, same
    429 and ``retry-after``; ``cleanup_interval`` and ``max_tracked_ips`` are then
    validated but unused, Redis expiry bounds the memory).
    """
    if backend is not None:
        from fastwt.framework.ratelimit_redis import RedisRateLimiter

        # Same validation as the in-process limiter, so a bad value fails either way.
        RateLimiter(
            max_requests=max_requests,
            window_seconds=window_seconds,
            cleanup_interval=cleanup_interval,
            max_tracked_ips=max_tracked_ips,
        )
        return RedisRateLimiter(
            backend=backend, max_requests=max_requests, window_seconds=window_seconds
        )
    return RateLimiter(
        max_requests=max_requests,
        window_seconds=window_seconds,
        cleanup_interval=cleanup_interval,
        max_tracked_ips=max_tracked_ips,
    )

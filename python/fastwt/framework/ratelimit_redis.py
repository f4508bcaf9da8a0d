"""The rate limiter shared by every process and node: the same sliding window as
:class:`~fastwt.framework.ratelimit.RateLimiter`, kept in Redis.

Made by ``create_rate_limit_middleware(..., backend="redis://...")`` (or
``backend=app.broker`` to use the app's cluster bus connection). Each client key (the
IP by default) is one sorted set ``{prefix}{key}`` of admission times; one Lua script
per request drops the times that left the window, counts the rest and admits (adds
now) or refuses (returns when the oldest leaves), atomically, with Redis' own clock,
so N workers on M nodes enforce one limit with no clock agreement between them.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
from anyio.abc import TaskStatus

from fastwt.errors import ConfigurationError
from fastwt.framework.exceptions import MiddlewareRejected
from fastwt.framework.ratelimit import client_ip
from fastwt.framework.types import SessionProtocol

if TYPE_CHECKING:
    import coredis

    from fastwt.framework.cluster import RedisBus

__all__ = ["RedisRateLimiter"]

_logger = logging.getLogger(__name__)

_TOO_MANY_REQUESTS = 429
_SERVICE_UNAVAILABLE = 503

# KEYS[1]: the client's set; ARGV: max requests, window (µs), a unique member.
# Returns -1 when admitted, else the microseconds until a retry can succeed.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return -1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, math.floor(tonumber(oldest[2]) + window - now))
"""


class RedisRateLimiter:
    """A stateful rate-limiting middleware whose counts live in Redis: at most
    ``max_requests`` new sessions per client in any ``window_seconds`` long interval,
    across every process using the same Redis and ``prefix``.

    Same answers as ``RateLimiter``: a refused request gets 429 with ``retry-after``
    (whole seconds until the client's oldest session leaves the window) and is not
    counted. Memory in Redis is bounded by expiry: a client's key holds at most
    ``max_requests`` entries and vanishes ``window_seconds`` after its last admission
    (so ``cleanup_interval`` and ``max_tracked_ips`` of the in-process limiter have
    nothing to bound here).

    ``backend``: a Redis URL (the limiter holds its own connection while the app
    serves: ``ServerApp.serve()`` runs :meth:`run_in_background`) or the app's
    :class:`~fastwt.framework.cluster.RedisBus` (``app.broker``: its connection).

    When Redis cannot be reached the limiter fails open by default (admits, logs once
    per outage, counts ``backend_errors``): a broken Redis must not take every game
    down. ``fail_open=False`` refuses with 503 instead.
    """

    def __init__(
        self,
        *,
        backend: str | RedisBus,
        max_requests: int,
        window_seconds: float,
        prefix: str = "fastwt:rl:",
        key_func: Callable[[SessionProtocol], str] = client_ip,
        fail_open: bool = True,
    ) -> None:
        for name, value in (("max_requests", max_requests), ("window_seconds", window_seconds)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(max_requests, int):
            raise ValueError("max_requests must be an integer")
        from fastwt.framework.cluster import RedisBus, connect_redis

        if isinstance(backend, str):
            connect_redis(backend)  # validates the URL now, not at the first request
        elif not isinstance(backend, RedisBus):
            raise ConfigurationError(
                f"backend must be a Redis URL or a RedisBus (app.broker), got {backend!r}"
            )
        self._backend = backend
        self._max_requests = max_requests
        self._window = float(window_seconds)
        self._window_us = max(1, round(self._window * 1_000_000))
        self._prefix = prefix
        self._key_func = key_func
        self._fail_open = fail_open
        self._client: coredis.Redis[bytes] | None = None
        self._script: Any = None
        self._script_client: Any = None
        self._uid = secrets.token_hex(8)
        self._counter = itertools.count()
        self._down = False
        self.backend_errors = 0
        """Requests decided without Redis (admitted with ``fail_open``, else 503)."""

    @property
    def max_requests(self) -> int:
        return self._max_requests

    @property
    def window_seconds(self) -> float:
        return self._window

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        return None

    async def run_in_background(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Hold the limiter's own Redis connection (a URL backend) until cancelled;
        ``ServerApp.serve()`` runs it in a task of its own while it serves (the Redis
        client's task groups must live in one task). With ``app.broker`` as backend
        there is nothing to hold: the bus's connection is used."""
        if not isinstance(self._backend, str):
            task_status.started()
            return
        from fastwt.framework.cluster import connect_redis, run_until_cancelled, sole_exception

        url = self._backend

        async def hold(stop: anyio.Event, task_status: TaskStatus[None]) -> None:
            async with connect_redis(url) as client:
                self._client = client
                try:
                    task_status.started()
                    await stop.wait()
                finally:
                    self._client = None

        try:
            await run_until_cancelled(hold, task_status)
        except BaseExceptionGroup as group:
            raise sole_exception(group) from None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        """:meth:`run_in_background` for the ``async with`` block (without a
        ServerApp)."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.run_in_background)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    def _redis(self) -> Any:
        if isinstance(self._backend, str):
            client = self._client
        else:
            client = self._backend._client
        if client is None:
            raise RuntimeError(
                "the Redis rate limiter is not connected: it is connected while the app "
                "serves (add it with app.add_middleware) or in `async with limiter.running()`"
            )
        if self._script_client is not client:
            self._script = client.register_script(_SLIDING_WINDOW)
            self._script_client = client
        return self._script

    async def __call__(self, *, session: SessionProtocol) -> None:
        """Admit the session or raise ``MiddlewareRejected`` (429 with
        ``retry-after``; 503 when Redis is unreachable and ``fail_open`` is off)."""
        key = self._key_func(session)
        try:
            retry_after = await self.try_acquire(key=key)
        except RuntimeError:
            raise  # not connected: a setup error, not an outage
        except Exception as exc:
            self.backend_errors += 1
            if not self._down:
                _logger.warning(
                    "rate limiter: Redis unreachable (%r); %s until it is back",
                    exc,
                    "admitting every session" if self._fail_open else "refusing with 503",
                )
                self._down = True
            if self._fail_open:
                return
            raise MiddlewareRejected(status_code=_SERVICE_UNAVAILABLE) from exc
        if self._down:
            _logger.warning("rate limiter: Redis is reachable again")
            self._down = False
        if retry_after is not None:
            _logger.info("rate limit exceeded for %s (path %r)", key, session.path)
            raise MiddlewareRejected(
                status_code=_TOO_MANY_REQUESTS,
                headers={"retry-after": str(max(1, math.ceil(retry_after)))},
            )

    async def try_acquire(self, *, key: str) -> float | None:
        """Count a new session for ``key`` if its limit allows it: ``None`` when
        admitted, else the seconds until a retry can succeed (not counted). Raises
        the Redis client's error when Redis is unreachable."""
        script = self._redis()
        member = f"{self._uid}:{next(self._counter)}"
        result = await script(
            keys=[f"{self._prefix}{key}"],
            args=[self._max_requests, self._window_us, member],
        )
        wait_us = int(result)
        if wait_us < 0:
            return None
        return wait_us / 1_000_000

    async def reset(self, *, key: str | None = None) -> None:
        """Forget one client (``key``); with no key, every client under ``prefix``."""
        self._redis()
        client = self._script_client
        if key is not None:
            await client.delete([f"{self._prefix}{key}"])
            return
        keys = [k async for k in client.scan_iter(match=f"{self._prefix}*")]
        if keys:
            await client.delete(keys)

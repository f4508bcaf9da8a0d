"""The cluster bus: rooms that span processes and nodes, on Redis.

Why Redis through coredis: coredis (6+) is built on anyio, so the bus runs unchanged on
asyncio and trio, like the rest of fastwt; redis-py's asyncio client does not run on
trio. Install it with ``pip install 'fastwt[cluster]'``.

What goes through Redis (all keys under ``prefix``, default ``"fastwt:"``):

- **Broadcasts**: ``PUBLISH {prefix}room:{name}`` with a small binary header (format
  version, kind: datagram or stream, the publishing node's id) and the payload. Every
  node subscribes to the pattern ``{prefix}room:*`` and hands messages of rooms that have
  local members to the Rust fan-out; a node ignores its own messages (it delivered them
  locally before publishing). Pub/sub is at most once: a node that is disconnected
  misses what was published meanwhile, which is right for ticks.
- **Presence**: each node keeps ``{prefix}node:{node_id}`` alive with a TTL of
  ``presence_ttl`` seconds, refreshed every third of it; a room's members are the set
  ``{prefix}members:{name}`` of ``"{node_id}:{n}"`` ids. ``presence()`` (a Lua script)
  returns the members whose node key still exists and removes the others: a node that
  dies leaves every room within ``presence_ttl``. Each heartbeat also re-adds this
  node's members, so after a Redis restart (an empty Redis) presence is whole again
  within one heartbeat.
- **Lagging**: messages from Redis go into a bounded local queue (``queue_size``,
  default 4096) drained by the fan-out task; when the fan-out falls behind, the oldest
  message is dropped and counted (``stats()["dropped"]``), so a slow node sends fresh
  ticks rather than a growing backlog. Further out, Redis itself disconnects a
  subscriber whose output buffer passes ``client-output-buffer-limit pubsub`` (32 MB,
  or 8 MB for 60 s, by default); the bus then reconnects and resubscribes.

Redis outages: the bus keeps serving. After a failed Redis call the bus counts itself
down: broadcasts reach local members only (each counted in ``publish_errors``; a
warning is logged once per outage), joins and leaves are applied locally and sent by
the next heartbeat, and the heartbeat (every ``presence_ttl / 3``) is the probe that
ends the outage. The subscriber reconnects by itself with backoff (at most 2 s apart)
and resubscribes. A bus that cannot reach Redis when the app starts fails the
startup with a clear error (a wrong URL must not run a silently split cluster).

Scope: one Redis server (or a Sentinel-managed primary behind the URL); the presence
script reads keys it is not passed, so Redis Cluster is not supported.
"""

from __future__ import annotations

import logging
import secrets
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit, urlunsplit

import anyio
from anyio.abc import TaskStatus

from fastwt.errors import ConfigurationError
from fastwt.errors import ConnectionError as WTConnectionError
from fastwt.framework.rooms import DATAGRAM, STREAM

if TYPE_CHECKING:
    import coredis

    from fastwt.framework.rooms import RoomRegistry

__all__ = [
    "BROKER_ENV",
    "RedisBus",
    "connect_redis",
    "redacted",
    "run_until_cancelled",
    "sole_exception",
]

_logger = logging.getLogger(__name__)

BROKER_ENV = "FASTWT_BROKER"
"""The broker URL ``ServerApp`` uses when none is given (``fastwt run --broker`` sets it,
so worker processes inherit it)."""

_MAGIC = b"FW"
_VERSION = 1
# magic, version, kind, node id (16 bytes)
_HEADER = struct.Struct("!2sBB16s")

_PRESENCE_SCRIPT = """
local alive = {}
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local node = string.match(member, '^([^:]+):')
  local ok = false
  if node then
    ok = alive[node]
    if ok == nil then
      ok = redis.call('EXISTS', ARGV[1] .. node) == 1
      alive[node] = ok
    end
  end
  if ok then
    out[#out + 1] = member
  else
    redis.call('SREM', KEYS[1], member)
  end
end
return out
"""

_CONNECT_TIMEOUT = 5.0
_COMMAND_TIMEOUT = 5.0


def redacted(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: what logs, errors and
    ``repr`` show."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connect_redis(url: str) -> coredis.Redis[bytes]:
    """A coredis client for ``url`` (``redis://``, ``rediss://`` or ``unix://``) with
    bounded connect and command timeouts; raises ``ConfigurationError`` when coredis is
    not installed or the URL is not a Redis URL."""
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            "broker must be a redis://, rediss:// or unix:// URL, got "
            f"{redacted(url) if isinstance(url, str) else repr(url)}"
        )
    try:
        import coredis
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ConfigurationError(
            "a Redis broker needs coredis: pip install 'fastwt[cluster]'"
        ) from exc
    client: coredis.Redis[bytes] = coredis.Redis.from_url(
        url,
        decode_responses=False,
        connect_timeout=_CONNECT_TIMEOUT,
        stream_timeout=_COMMAND_TIMEOUT,
    )
    return client


class RedisBus:
    """Rooms across processes and nodes through one Redis server (see the module doc).

    ``ServerApp(broker="redis://host:6379/0")`` makes one with the defaults; pass a
    ``RedisBus`` to choose ``prefix``, ``presence_ttl`` (seconds a dead node stays
    present, default 10), ``queue_size`` (messages waiting for the fan-out, default
    4096) or ``node_id`` (default: 16 random bytes, hex). Runs while the app serves
    (``ServerApp.serve()`` starts :meth:`run` in a task of its own).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "fastwt:",
        presence_ttl: float = 10.0,
        queue_size: int = 4096,
        node_id: str | None = None,
    ) -> None:
        connect_redis(url)  # validates the URL and that coredis is there
        if isinstance(presence_ttl, bool) or not isinstance(presence_ttl, int | float):
            raise ConfigurationError(f"presence_ttl must be a number, got {presence_ttl!r}")
        if not 0.1 <= presence_ttl <= 3600:
            raise ConfigurationError(
                f"presence_ttl must be between 0.1 and 3600 seconds, got {presence_ttl!r}"
            )
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ConfigurationError(f"queue_size must be a positive integer, got {queue_size!r}")
        if not isinstance(prefix, str) or any(c in prefix for c in "*?[]\\"):
            raise ConfigurationError(
                f"prefix must be a string without the glob characters *?[]\\, got {prefix!r}"
            )
        if node_id is None:
            node_bytes = secrets.token_bytes(16)
        else:
            try:
                node_bytes = bytes.fromhex(node_id)
            except ValueError:
                node_bytes = b""
            if len(node_bytes) != 16:
                raise ConfigurationError(f"node_id must be 32 hex digits, got {node_id!r}")
        self.url = url
        self.display_url = redacted(url)
        """The URL without its password, for logs."""
        self.prefix = prefix
        self.presence_ttl = float(presence_ttl)
        self.queue_size = queue_size
        self._node_bytes = node_bytes
        self.node_id = node_bytes.hex()
        self._registry: RoomRegistry | None = None
        self._client: coredis.Redis[bytes] | None = None
        self._presence_script: Any = None
        self._running = False
        self._inbox: deque[tuple[str, int, bytes]] = deque()
        self._wake: anyio.Event | None = None
        self._down = False
        self._counters = {
            "published": 0,
            "publish_errors": 0,
            "received": 0,
            "delivered": 0,
            "dropped": 0,
            "ignored": 0,
            "heartbeats": 0,
            "heartbeat_errors": 0,
        }

    def __repr__(self) -> str:
        return f"<RedisBus {self.display_url!r} node={self.node_id}>"

    def attach(self, registry: RoomRegistry) -> None:
        """Bind the bus to the rooms whose messages it carries (one registry)."""
        if self._registry is not None and self._registry is not registry:
            raise RuntimeError("a RedisBus serves one ServerApp")
        self._registry = registry

    @property
    def connected(self) -> bool:
        """Whether the bus is running and its last Redis call worked."""
        return self._client is not None and not self._down

    def stats(self) -> dict[str, Any]:
        """Counters: ``published``, ``publish_errors``, ``received`` (messages from other
        nodes), ``delivered`` (of those, ones a local room took), ``dropped`` (oldest
        messages dropped because the fan-out lagged), ``ignored`` (messages on the
        room channels not in this bus's format), ``heartbeats``,
        ``heartbeat_errors``; and ``queued`` (waiting for the fan-out now)."""
        return {**self._counters, "queued": len(self._inbox), "node_id": self.node_id}

    # --- keys ---------------------------------------------------------------------
    def _channel(self, room: str) -> bytes:
        return f"{self.prefix}room:{room}".encode()

    def _members_key(self, room: str) -> str:
        return f"{self.prefix}members:{room}"

    def _node_key(self) -> str:
        return f"{self.prefix}node:{self.node_id}"

    # --- lifecycle ----------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, subscribe and keep the bus going until cancelled (then leave Redis
        cleanly: this node's members and heartbeat key are removed at once).

        ``ServerApp.serve()`` runs it in a task of its own for as long as it serves
        (the Redis client's task groups must live in one task); elsewhere use
        ``async with bus.running():``. Reports started once Redis answered; raises
        ``fastwt.ConnectionError`` if it does not within 5 s.
        """
        if self._running:
            raise RuntimeError("RedisBus is already running")
        self._running = True
        try:
            await run_until_cancelled(self._run, task_status)
        except BaseExceptionGroup as group:
            raise sole_exception(group) from None
        finally:
            self._running = False
            self._client = None

    async def _run(self, stop: anyio.Event, task_status: TaskStatus[None]) -> None:
        client = connect_redis(self.url)
        self._wake = anyio.Event()
        self._down = False
        async with client:
            try:
                with anyio.fail_after(_CONNECT_TIMEOUT):
                    await client.ping()
            except Exception as exc:
                raise WTConnectionError(
                    f"cannot reach the broker {self.display_url}: {exc!r} (rooms across processes "
                    "need it; start Redis or fix --broker / FASTWT_BROKER)"
                ) from exc
            self._client = client
            self._presence_script = client.register_script(_PRESENCE_SCRIPT)
            await self._heartbeat_once()
            pubsub = client.pubsub(
                patterns=[f"{self.prefix}room:*"],
                ignore_subscribe_messages=True,
                retry_policy=_subscriber_retry_policy(),
            )
            try:
                async with pubsub, anyio.create_task_group() as tg:
                    tg.start_soon(self._consume, pubsub)
                    tg.start_soon(self._fan_out)
                    tg.start_soon(self._heartbeat)
                    _logger.info("cluster bus on %s, node %s", self.display_url, self.node_id)
                    task_status.started()
                    await stop.wait()
                    tg.cancel_scope.cancel()
            finally:
                # Leave cleanly: other nodes see this node's members go now, not after
                # the TTL.
                with anyio.move_on_after(1.0, shield=True):
                    try:
                        await self._remove_node()
                    except Exception as exc:
                        _logger.debug("cluster bus: leaving Redis failed: %r", exc)
                self._client = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        """``run()`` in a task for the ``async with`` block (for code without
        ``ServerApp.serve()``, e.g. a tool that reads presence)."""
        async with anyio.create_task_group() as tg:
            await tg.start(self.run)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    # --- presence -----------------------------------------------------------------
    async def add_members(self, room: str, member_ids: list[str]) -> None:
        """Adds members to the room's set (not running: the first heartbeat will)."""
        client = self._client
        if client is not None and not self._down:
            await self._best_effort("join", client.sadd, self._members_key(room), member_ids)

    async def remove_members(self, room: str, member_ids: list[str]) -> None:
        """Removes members from the room's set; while Redis is unreachable the removal
        is kept for the next heartbeat (not running: nothing to remove, the node's
        members leave Redis when it stops)."""
        client = self._client
        if client is None:
            return
        if not self._down:
            try:
                await client.srem(self._members_key(room), member_ids)
            except Exception as exc:
                self._note_down("leave", exc)
            else:
                self._note_up()
                return
        if self._registry is not None:
            self._registry.add_stale([(room, member_id) for member_id in member_ids])

    async def presence(self, room: str) -> list[str]:
        """The room's live member ids across the cluster, sorted (raises the coredis
        error when Redis is unreachable)."""
        self._require()
        members = await self._presence_script(
            keys=[self._members_key(room)], args=[f"{self.prefix}node:"]
        )
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def _heartbeat_once(self) -> None:
        client = self._require()
        registry = self._registry
        ttl_ms = max(100, int(self.presence_ttl * 1000))
        stale = list(registry.stale) if registry is not None else []
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(self._node_key(), b"1", px=ttl_ms)
            for room, stale_id in stale:
                pipe.srem(self._members_key(room), [stale_id])
            if registry is not None:
                for room, member_ids in registry.local_members().items():
                    pipe.sadd(self._members_key(room), member_ids)
        if registry is not None:
            # Removed only once Redis took them (an outage keeps them for the next beat).
            del registry.stale[: len(stale)]
        self._counters["heartbeats"] += 1

    async def _heartbeat(self) -> None:
        interval = self.presence_ttl / 3
        while True:
            await anyio.sleep(interval)
            try:
                await self._heartbeat_once()
            except Exception as exc:
                self._counters["heartbeat_errors"] += 1
                self._note_down("heartbeat", exc)
            else:
                self._note_up()

    async def _remove_node(self) -> None:
        client = self._require()
        registry = self._registry
        async with client.pipeline(transaction=False) as pipe:
            pipe.delete([self._node_key()])
            if registry is not None:
                for room, member_ids in registry.local_members().items():
                    pipe.srem(self._members_key(room), member_ids)

    # --- messages -----------------------------------------------------------------
    async def publish(self, room: str, kind: int, payload: bytes) -> None:
        """Publish one broadcast for the other nodes; never raises for Redis errors
        (at most once: counted in ``publish_errors``)."""
        client = self._client
        if client is None or self._down:
            # Down: the heartbeat probes Redis every presence_ttl/3 and ends the outage;
            # until then a publish fails at once instead of waiting for a connect
            # timeout on every broadcast.
            self._counters["publish_errors"] += 1
            return
        message = _HEADER.pack(_MAGIC, _VERSION, kind, self._node_bytes) + payload
        try:
            await client.publish(self._channel(room), message)
        except Exception as exc:
            self._counters["publish_errors"] += 1
            self._note_down("publish", exc)
        else:
            self._counters["published"] += 1
            self._note_up()

    async def _consume(self, pubsub: Any) -> None:
        """Moves messages from the subscription into the bounded inbox."""
        channel_prefix = f"{self.prefix}room:".encode()
        inbox = self._inbox
        while True:
            message = await pubsub.get_message()
            if not message or message.get("type") != "pmessage":
                continue
            data = message.get("data")
            channel = message.get("channel")
            if not isinstance(data, bytes) or not isinstance(channel, bytes):
                continue
            if len(data) < _HEADER.size or not channel.startswith(channel_prefix):
                self._counters["ignored"] += 1
                continue
            magic, version, kind, node = _HEADER.unpack_from(data)
            if magic != _MAGIC or version != _VERSION or kind not in (DATAGRAM, STREAM):
                self._counters["ignored"] += 1
                continue
            if node == self._node_bytes:
                continue
            self._counters["received"] += 1
            try:
                room = channel[len(channel_prefix) :].decode()
            except UnicodeDecodeError:
                continue
            registry = self._registry
            if registry is None or registry.get(room) is None:
                continue  # no local members: not queued (every node hears every room)
            if len(inbox) >= self.queue_size:
                inbox.popleft()
                self._counters["dropped"] += 1
            inbox.append((room, kind, data[_HEADER.size :]))
            if self._wake is not None:
                self._wake.set()

    async def _fan_out(self) -> None:
        """Hands queued messages to the local members of their rooms."""
        inbox = self._inbox
        while True:
            if not inbox:
                wake = self._wake = anyio.Event()
                await wake.wait()
                continue
            name, kind, payload = inbox.popleft()
            registry = self._registry
            room = registry.get(name) if registry is not None else None
            if room is None or not len(room):
                continue
            try:
                await room.deliver(payload, kind=kind)
            except Exception:
                _logger.exception("cluster bus: delivering to room %r failed", name)
                continue
            room.note_received()
            self._counters["delivered"] += 1

    # --- helpers ------------------------------------------------------------------
    def _require(self) -> coredis.Redis[bytes]:
        client = self._client
        if client is None:
            raise RuntimeError(
                "the cluster bus is not running: rooms with a broker reach other nodes "
                "while the app serves (ServerApp.serve() runs the bus)"
            )
        return client

    async def _best_effort(self, what: str, command: Any, *args: Any) -> None:
        try:
            await command(*args)
        except Exception as exc:
            self._note_down(what, exc)
        else:
            self._note_up()

    def _note_down(self, what: str, exc: BaseException) -> None:
        if not self._down:
            _logger.warning(
                "cluster bus: %s on %s failed (%r); serving local members only until Redis is back",
                what,
                self.display_url,
                exc,
            )
        self._down = True

    def _note_up(self) -> None:
        if self._down:
            _logger.warning("cluster bus: %s is reachable again", self.display_url)
        self._down = False


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested task-group groups (coredis nests several), or
    the group itself when it holds more than one."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def run_until_cancelled(
    main: Callable[[anyio.Event, TaskStatus[None]], Awaitable[None]],
    task_status: TaskStatus[None],
    *,
    grace: float = 3.0,
) -> None:
    """Run ``main(stop, task_status)`` shielded, and on cancellation set ``stop`` and
    give it ``grace`` seconds to return by itself.

    coredis's clients and subscriptions must be left by returning from their ``async
    with`` blocks: cancelled from outside, their cleanup writes to a connection that
    is already closed and raises. So the client code runs in a shielded scope and
    leaves its blocks normally when told to stop; past ``grace`` it is cancelled.
    """
    stop = anyio.Event()
    watch_scope: list[anyio.CancelScope | None] = [None]

    async def shielded(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.CancelScope(shield=True) as scope:
            watch_scope[0] = scope
            await main(stop, task_status)

    async with anyio.create_task_group() as tg:
        await tg.start(shielded)
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            stop.set()
            scope = watch_scope[0]
            if scope is not None:
                scope.deadline = anyio.current_time() + grace


def _subscriber_retry_policy() -> Any:
    """Reconnect forever, at most 2 s apart (coredis's default backs off to 16 s)."""
    from coredis.exceptions import ConnectionError as RedisConnectionError
    from coredis.retry import (
        CompositeRetryPolicy,
        ConstantRetryPolicy,
        ExponentialBackoffRetryPolicy,
    )

    return CompositeRetryPolicy(
        ExponentialBackoffRetryPolicy(
            (RedisConnectionError,), retries=None, base_delay=0.05, max_delay=2, jitter=True
        ),
        ConstantRetryPolicy((TimeoutError,), retries=2, delay=0.1),
    )

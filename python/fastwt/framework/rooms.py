"""Rooms: named groups of sessions that a broadcast reaches all at once.

``room = app.room("lobby")``, ``await room.join(session)``, ``await
room.broadcast(data)``. With no broker a room lives in one process (the default, no
Redis needed). With a broker (``ServerApp(broker="redis://...")``, ``fastwt run
--broker``, ``FASTWT_BROKER``) every process and node that uses the same room name
shares it: a broadcast is published on Redis and each node sends it to its own
members (see :mod:`fastwt.framework.cluster` and docs/rooms.md).

Sending to the local members is done by the Rust core in one call
(``_core.broadcast_datagram`` / ``broadcast_stream``): no Python code runs per
recipient (rooms of 1,000 sessions or more are sent to with the GIL released).
"""

from __future__ import annotations

import itertools
import logging
import os
import weakref
from typing import TYPE_CHECKING, Any

from fastwt import _core
from fastwt._types import Buffer
from fastwt.errors import ConfigurationError
from fastwt.framework.types import SessionProtocol
from fastwt.session import WebTransportSession

if TYPE_CHECKING:
    from fastwt.framework.cluster import RedisBus

__all__ = [
    "DATAGRAM",
    "MAX_ROOM_NAME",
    "STREAM",
    "STREAM_TIMEOUT",
    "WORKER_COUNT_ENV",
    "Room",
    "RoomRegistry",
]

_logger = logging.getLogger(__name__)

WORKER_COUNT_ENV = "FASTWT_WORKER_COUNT"
"""Set by the worker supervisor (``fastwt run --workers N``) in every worker: with more
than one worker, a room without a broker would be split between processes, so
``app.room()`` refuses it."""

MAX_STALE = 100_000
"""Member removals kept for Redis while it is unreachable (see ``RoomRegistry.add_stale``)."""

MAX_ROOM_NAME = 200
"""Longest room name, in characters (it becomes part of Redis keys and channels)."""

DATAGRAM = 0
"""Message kind on the bus: a datagram to every member."""
STREAM = 1
"""Message kind on the bus: a unidirectional stream holding the payload to every member."""

STREAM_TIMEOUT = 10.0
"""Seconds a member's broadcast stream may take to be written before it is reset."""


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a room name must be a non-empty string, got {name!r}")
    if len(name) > MAX_ROOM_NAME:
        raise ValueError(f"room name longer than {MAX_ROOM_NAME} characters: {name[:40]!r}...")
    if not name.isprintable():
        raise ValueError(f"room name with unprintable characters: {name!r}")
    return name


def worker_count() -> int:
    """The worker count the supervisor announced in ``FASTWT_WORKER_COUNT`` (1 when
    unset); a value that is not a positive integer is a ``ConfigurationError``."""
    raw = os.environ.get(WORKER_COUNT_ENV, "").strip()
    if not raw:
        return 1
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigurationError(f"{WORKER_COUNT_ENV} must be a positive integer, got {raw!r}")
    return count


class Room:
    """A named group of sessions. Obtain it with ``app.room(name)`` (the same object for
    the same name); use it from the app's event loop.

    - ``await join(session)`` / ``await leave(session)``: membership. A session leaves
      every room by itself when its handler returns, and a closed session is never
      sent to.
    - ``await broadcast(data, datagram=True, exclude=None)``: to every member, on
      every node when a broker is configured. Returns how many *local* members got it.
    - ``members()``: this process's members (sessions). ``await presence()``: the
      member ids of every node (``"<node id>:<n>"``), from Redis with a broker; a node
      that died drops out once its heartbeat expires (``RedisBus.presence_ttl``).
    """

    def __init__(self, name: str, registry: RoomRegistry) -> None:
        self._name = name
        self._registry = registry
        # id(session) -> session, in join order.
        self._members: dict[int, SessionProtocol] = {}
        self._sent = 0
        self._skipped = 0
        self._broadcasts = 0
        self._received = 0

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<Room {self._name!r} local_members={len(self._members)}>"

    def __len__(self) -> int:
        """The number of local members."""
        return len(self._members)

    def __contains__(self, session: object) -> bool:
        return self._members.get(id(session)) is session

    def members(self) -> list[SessionProtocol]:
        """This process's members, in join order (closed sessions left out)."""
        self._prune()
        return list(self._members.values())

    async def presence(self) -> list[str]:
        """Every member's id across the cluster (``"<node id>:<n>"``, sorted); without
        a broker, this process's members. Members of a node whose heartbeat expired
        are dropped from Redis by this call."""
        bus = self._registry.bus
        if bus is None:
            self._prune()
            return sorted(self._registry.member_id(s) for s in self._members.values())
        return await bus.presence(self._name)

    async def join(self, session: SessionProtocol) -> None:
        """Add ``session`` (joining twice is harmless). With a broker its member id is
        added to the room's set in Redis; when Redis is unreachable the session still
        joins locally and the heartbeat adds it once Redis is back."""
        if session.is_closed:
            raise ValueError("a closed session cannot join a room")
        if id(session) in self._members:
            return
        if not self._members:
            self._registry.activate(self)
        self._members[id(session)] = session
        member_id = self._registry.track(session, self)
        bus = self._registry.bus
        if bus is not None:
            await bus.add_members(self._name, [member_id])

    async def leave(self, session: SessionProtocol) -> None:
        """Remove ``session`` (no error if it is not a member)."""
        if self._members.pop(id(session), None) is None:
            return
        if not self._members:
            self._registry.deactivate(self)
        member_id = self._registry.untrack(session, self)
        bus = self._registry.bus
        if bus is not None and member_id is not None:
            await bus.remove_members(self._name, [member_id])

    async def broadcast(
        self,
        data: Buffer,
        *,
        datagram: bool = True,
        exclude: SessionProtocol | None = None,
        stream_timeout: float = STREAM_TIMEOUT,
    ) -> int:
        """Send ``data`` to every member (``exclude``: one local session to skip, e.g.
        the sender) and return how many local members it was handed to.

        ``datagram=True``: one datagram each (unreliable, at most once: a member
        whose ``max_datagram_size`` is below ``len(data)`` is skipped, counted in
        ``stats()["skipped"]``). ``datagram=False``: each member gets a new
        unidirectional stream carrying exactly ``data``, then its end (read it with
        ``read_all()``); a member whose stream is not written within
        ``stream_timeout`` seconds (default 10; it does not read, or grants no
        stream) has it reset with code 0x10b, so it holds at most one message for
        that long. (Other nodes deliver with the default.)

        With a broker the message is also published for the other nodes (at most
        once: while Redis is unreachable remote members miss it; the local ones do
        not, and ``RedisBus.stats()["publish_errors"]`` counts it).
        """
        payload = bytes(data) if not isinstance(data, bytes) else data
        sent = await self.deliver(
            payload,
            kind=DATAGRAM if datagram else STREAM,
            exclude=exclude,
            stream_timeout=stream_timeout,
        )
        self._broadcasts += 1
        bus = self._registry.bus
        if bus is not None:
            await bus.publish(self._name, DATAGRAM if datagram else STREAM, payload)
        return sent

    async def deliver(
        self,
        data: bytes,
        *,
        kind: int,
        exclude: SessionProtocol | None = None,
        stream_timeout: float = 0.0,
    ) -> int:
        """Hand ``data`` to the local members now; the bus calls this for messages
        from other nodes. Returns how many members took it.

        fastwt's own sessions are sent to by the Rust core in one call; any other
        session object (a test double, another implementation) gets its own
        ``send_datagram`` / unidirectional stream call.
        """
        handles: list[_core.SessionHandle] = []
        others: list[Any] = []
        for session in self._members.values():
            if session is exclude:
                continue
            handle = getattr(session, "_handle", None)
            if isinstance(handle, _core.SessionHandle):
                handles.append(handle)
            else:
                others.append(session)
        sent = 0
        if handles:
            if kind == DATAGRAM:
                sent = _core.broadcast_datagram(handles, data)
            else:
                sent = _core.broadcast_stream(handles, data, stream_timeout or STREAM_TIMEOUT)
        for session in others:
            if session.is_closed:
                continue
            try:
                if kind == DATAGRAM and isinstance(session, WebTransportSession):
                    # Never waits, as the Rust fan-out: a slow member must not hold up
                    # the others (the pure backend drops this datagram instead).
                    await session.send_datagram(data=data, wait=False)
                elif kind == DATAGRAM:
                    await session.send_datagram(data=data)
                else:
                    stream = await session.create_unidirectional_stream()
                    await stream.write(data=data, end_stream=True)
            except Exception as exc:
                _logger.debug("room %r: a member could not take a message: %r", self._name, exc)
                continue
            sent += 1
        skipped = len(handles) + len(others) - sent
        if skipped:
            self._skipped += skipped
            self._prune()
        self._sent += sent
        return sent

    def note_received(self) -> None:
        """Counts a message that came from another node."""
        self._received += 1

    def stats(self) -> dict[str, Any]:
        """``local_members``, ``broadcasts`` (sent from here), ``received`` (from other
        nodes), ``sent`` (deliveries to local members), ``skipped`` (local members that
        could not take a message: closed, or a datagram too large for them)."""
        return {
            "name": self._name,
            "local_members": len(self._members),
            "broadcasts": self._broadcasts,
            "received": self._received,
            "sent": self._sent,
            "skipped": self._skipped,
        }

    def _prune(self) -> None:
        """Drop closed sessions from the local member table (Redis forgets them at
        their handler's end or the next heartbeat)."""
        gone = [key for key, s in self._members.items() if s.is_closed]
        for key in gone:
            session = self._members.pop(key)
            self._registry.untrack(session, self, stale=True)
        if gone and not self._members:
            self._registry.deactivate(self)


class RoomRegistry:
    """The rooms of one app: names to :class:`Room`, each session's member id, and the
    bus (``None``: rooms are local to this process)."""

    def __init__(self, *, bus: RedisBus | None = None) -> None:
        self.bus = bus
        # Rooms with local members are held here; the others only while someone holds
        # them, so names that come and go (one room per match) cost no memory once
        # empty. Either way one name has one Room object at a time.
        self._rooms: dict[str, Room] = {}
        self._idle: weakref.WeakValueDictionary[str, Room] = weakref.WeakValueDictionary()
        self._counter = itertools.count(1)
        # id(session) -> (session, member id, rooms it is in)
        self._sessions: dict[int, tuple[SessionProtocol, str, set[str]]] = {}
        # (room, member id)s the bus still has to remove from Redis (sessions pruned
        # while closed, leaves that failed during an outage); sent by the heartbeat.
        self.stale: list[tuple[str, str]] = []
        if bus is not None:
            bus.attach(self)

    @property
    def node_id(self) -> str:
        return self.bus.node_id if self.bus is not None else "local"

    def room(self, name: str) -> Room:
        name = _check_name(name)
        if self.bus is None and (count := worker_count()) > 1:
            raise ConfigurationError(
                f"room {name!r} would be split between {count} worker processes: "
                "rooms across processes need a broker (ServerApp(broker='redis://...'), "
                "fastwt run --broker redis://..., or FASTWT_BROKER)"
            )
        room = self._rooms.get(name)
        if room is None:
            room = self._idle.get(name)  # (a Room's truth is its member count)
        if room is None:
            room = self._idle[name] = Room(name, self)
        return room

    def get(self, name: str) -> Room | None:
        """The room called ``name`` if it has local members."""
        return self._rooms.get(name)

    @property
    def rooms(self) -> dict[str, Room]:
        """The rooms that have local members now."""
        return dict(self._rooms)

    def activate(self, room: Room) -> None:
        """``room`` got its first member: hold it."""
        self._idle.pop(room.name, None)
        self._rooms[room.name] = room

    def deactivate(self, room: Room) -> None:
        """``room`` lost its last member: hold it only while someone else does."""
        if self._rooms.get(room.name) is room:
            del self._rooms[room.name]
            self._idle[room.name] = room

    def member_id(self, session: SessionProtocol) -> str:
        entry = self._sessions.get(id(session))
        if entry is None:
            raise KeyError("session is in no room")
        return entry[1]

    def track(self, session: SessionProtocol, room: Room) -> str:
        entry = self._sessions.get(id(session))
        if entry is None or entry[0] is not session:
            entry = (session, f"{self.node_id}:{next(self._counter)}", set())
            self._sessions[id(session)] = entry
        entry[2].add(room.name)
        return entry[1]

    def untrack(self, session: SessionProtocol, room: Room, *, stale: bool = False) -> str | None:
        entry = self._sessions.get(id(session))
        if entry is None or entry[0] is not session:
            return None
        entry[2].discard(room.name)
        if not entry[2]:
            del self._sessions[id(session)]
        if stale:
            self.add_stale([(room.name, entry[1])])
        return entry[1]

    def add_stale(self, removals: list[tuple[str, str]]) -> None:
        """Queue removals for the heartbeat (only with a bus; bounded: past
        ``MAX_STALE`` the oldest are given up, and those members stay listed in Redis
        until this node stops)."""
        if self.bus is None:
            return
        self.stale.extend(removals)
        excess = len(self.stale) - MAX_STALE
        if excess > 0:
            del self.stale[:excess]
            _logger.warning(
                "cluster bus: %d member removals given up (Redis unreachable too long)",
                excess,
            )

    async def forget(self, session: SessionProtocol) -> None:
        """Take ``session`` out of every room (ServerApp calls it when its handler
        ends)."""
        entry = self._sessions.get(id(session))
        if entry is None or entry[0] is not session:
            return
        for name in list(entry[2]):
            room = self._rooms.get(name)
            if room is not None:
                await room.leave(session)

    def local_members(self) -> dict[str, list[str]]:
        """Room name -> member ids of this process (the heartbeat re-adds them)."""
        out: dict[str, list[str]] = {}
        for room in list(self._rooms.values()):
            room._prune()
            if room._members:
                out[room.name] = [self.member_id(s) for s in room._members.values()]
        return out

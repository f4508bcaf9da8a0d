"""The event-loop side of the pure-Python backend.

The Rust backend's handles wake Python through a ``Notifier`` (tokens written by tokio
threads, drained by the loop). The pure handles run *on* the loop, so a wake-up is a
direct call: a handle that becomes ready calls ``notify(token)`` and the tasks parked on
that token are resumed, with no pipe and no thread. The hub also gives the QUIC engine
what it needs from the loop — a clock, ``call_soon``, timers, socket readiness and
background tasks — once for asyncio (and uvloop) and once for trio, so the engine itself
is the same on both.

``session.py`` and ``stream.py`` only use ``hub.notifier``, ``park``, ``flush_soon``,
``pending`` and ``is_waiting``; this hub offers them with the same meaning as
``_bridge``'s hubs.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import socket
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import sniffio

__all__ = ["PureHub", "TimerHandle", "get_pure_hub", "private_token"]

logger = logging.getLogger("fastwt.pure")

# Tokens of the backend's own waits: negative, so they never meet _bridge's (positive)
# ones.
_private_tokens = itertools.count(-1, -1)


def private_token() -> int:
    """A token for a wait inside the backend (a sleep, a connect)."""
    return next(_private_tokens)


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class PureHub:
    """One per running event loop: parks tasks on tokens, wakes them on ``notify``,
    and runs the engine's callbacks, timers and readers."""

    def __init__(self) -> None:
        self._waiters: dict[int, list[Any]] = {}

    # --- the Hub protocol of _bridge ------------------------------------------------
    @property
    def notifier(self) -> PureHub:
        """The pure handles take the hub itself where Rust handles take a Notifier."""
        return self

    def is_waiting(self, token: int) -> bool:
        return bool(self._waiters.get(token))

    def flush_soon(self) -> None:
        """Nothing to hand over: each connection transmits at the end of the loop's turn
        by itself (see ``Connection.schedule_transmit``)."""

    async def park(self, token: int) -> None:
        raise NotImplementedError

    def notify(self, token: int) -> None:
        raise NotImplementedError

    # --- what the engine needs --------------------------------------------------------
    def time(self) -> float:
        raise NotImplementedError

    def call_soon(self, fn: Callable[[], None]) -> None:
        raise NotImplementedError

    def call_at(self, when: float, fn: Callable[[], None]) -> TimerHandle:
        raise NotImplementedError

    def add_reader(self, sock: socket.socket, fn: Callable[[], None]) -> None:
        raise NotImplementedError

    def remove_reader(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def spawn(self, fn: Callable[[], Awaitable[None]], name: str) -> None:
        """Runs ``fn()`` in the background (a connect, a graceful close); exceptions are
        logged, never propagated into the application's tasks."""
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        """Sleeps on the hub's own timers (works in background tasks of both loops)."""
        token = private_token()
        timer = self.call_at(self.time() + seconds, lambda: self.notify(token))
        try:
            await self.park(token)
        finally:
            timer.cancel()


def _discard(waiters: dict[int, list[Any]], token: int, waiter: Any) -> None:
    remaining = waiters.get(token)
    if remaining is not None and waiter in remaining:
        remaining.remove(waiter)
        if not remaining:
            del waiters[token]


class _AsyncioHub(PureHub):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        # Weak: hubs live in a WeakKeyDictionary keyed by their loop.
        self._loop_ref = weakref.ref(loop)
        self._tasks: set[asyncio.Task[None]] = set()

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop_ref()
        if loop is None:
            raise RuntimeError("the event loop this fastwt object belongs to is gone")
        return loop

    async def park(self, token: int) -> None:
        fut: asyncio.Future[None] = self._loop().create_future()
        self._waiters.setdefault(token, []).append(fut)
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()
            _discard(self._waiters, token, fut)

    def notify(self, token: int) -> None:
        futures = self._waiters.pop(token, None)
        if futures:
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)

    def time(self) -> float:
        return self._loop().time()

    def call_soon(self, fn: Callable[[], None]) -> None:
        loop = self._loop()
        if not loop.is_closed():
            loop.call_soon(fn)

    def call_at(self, when: float, fn: Callable[[], None]) -> TimerHandle:
        return self._loop().call_at(when, fn)

    def add_reader(self, sock: socket.socket, fn: Callable[[], None]) -> None:
        try:
            self._loop().add_reader(sock.fileno(), fn)
        except NotImplementedError:
            from ..errors import ConfigurationError

            raise ConfigurationError(
                "the pure-Python backend needs an event loop with add_reader (asyncio's "
                "Proactor loop on Windows has none: use the selector loop or the Rust "
                "backend)"
            ) from None

    def remove_reader(self, sock: socket.socket) -> None:
        loop = self._loop_ref()
        if loop is not None and not loop.is_closed():
            loop.remove_reader(sock.fileno())

    def spawn(self, fn: Callable[[], Awaitable[None]], name: str) -> None:
        async def guarded() -> None:
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("background task %s failed", name)

        task = self._loop().create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _TrioTimer:
    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _TrioHub(PureHub):
    """trio has no ``call_at`` or ``add_reader``: one system task runs the timers (a
    heap), one per socket waits for readability, and ``call_soon`` goes through the run's
    ``TrioToken.run_sync_soon`` queue."""

    def __init__(self) -> None:
        import trio

        super().__init__()
        self._trio = trio
        self._token = trio.lowlevel.current_trio_token()
        self._heap: list[tuple[float, int, _TrioTimer]] = []
        self._seq = itertools.count()
        self._wakeup = trio.Event()
        self._readers: dict[int, Any] = {}  # fd -> CancelScope
        trio.lowlevel.spawn_system_task(self._run_timers, name="fastwt-pure-timers")

    async def park(self, token: int) -> None:
        ev = self._trio.Event()
        self._waiters.setdefault(token, []).append(ev)
        try:
            await ev.wait()
        finally:
            _discard(self._waiters, token, ev)

    def notify(self, token: int) -> None:
        events = self._waiters.pop(token, None)
        if events:
            for ev in events:
                ev.set()

    def time(self) -> float:
        return float(self._trio.current_time())

    def call_soon(self, fn: Callable[[], None]) -> None:
        try:
            self._token.run_sync_soon(self._guard, fn)
        except self._trio.RunFinishedError:
            pass

    @staticmethod
    def _guard(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            logger.exception("fastwt pure-backend callback failed")

    def call_at(self, when: float, fn: Callable[[], None]) -> TimerHandle:
        timer = _TrioTimer(when, fn)
        earliest = self._heap[0][0] if self._heap else math.inf
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        if when < earliest:
            self._wakeup.set()
        return timer

    async def _run_timers(self) -> None:
        trio = self._trio
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, timer = heapq.heappop(heap)
                if not timer.cancelled:
                    self._guard(timer.fn)
            # Cancelled timers at the top only delay the next wake-up; drop them.
            while heap and heap[0][2].cancelled:
                heapq.heappop(heap)
            self._wakeup = trio.Event()
            deadline = heap[0][0] if heap else math.inf
            with trio.move_on_at(deadline):
                await self._wakeup.wait()

    def add_reader(self, sock: socket.socket, fn: Callable[[], None]) -> None:
        trio = self._trio
        scope = trio.CancelScope()
        self._readers[sock.fileno()] = scope

        async def watch() -> None:
            # A system task that raises would crash the whole trio run: a socket closed
            # before this task first ran (fileno -1) or while it waited ends it quietly.
            with scope:
                try:
                    while not scope.cancel_called:
                        await trio.lowlevel.wait_readable(sock)
                        self._guard(fn)
                except (trio.ClosedResourceError, OSError, ValueError):
                    return

        trio.lowlevel.spawn_system_task(watch, name="fastwt-pure-reader")

    def remove_reader(self, sock: socket.socket) -> None:
        scope = self._readers.pop(sock.fileno(), None)
        if scope is not None:
            # Cancelling unregisters the wait at once, so the socket may be closed next.
            scope.cancel()

    def spawn(self, fn: Callable[[], Awaitable[None]], name: str) -> None:
        async def guarded() -> None:
            try:
                await fn()
            except self._trio.Cancelled:
                raise
            except Exception:
                logger.exception("background task %s failed", name)

        self._trio.lowlevel.spawn_system_task(guarded, name=name)


_asyncio_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncioHub] = (
    weakref.WeakKeyDictionary()
)
_trio_hubs: weakref.WeakKeyDictionary[Any, _TrioHub] = weakref.WeakKeyDictionary()


def get_pure_hub() -> PureHub:
    """The pure hub of the running event loop (made on first use)."""
    library = sniffio.current_async_library()
    if library == "asyncio":
        loop = asyncio.get_running_loop()
        hub = _asyncio_hubs.get(loop)
        if hub is None:
            hub = _asyncio_hubs[loop] = _AsyncioHub(loop)
        return hub
    if library == "trio":
        import trio

        key = trio.lowlevel.current_trio_token()
        thub = _trio_hubs.get(key)
        if thub is None:
            thub = _trio_hubs[key] = _TrioHub()
        return thub
    raise RuntimeError(f"fastwt supports asyncio and trio, not {library!r}")

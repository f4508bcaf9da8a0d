"""The event-loop side of the Rust bridge (see docs/bridge.md).

Rust calls are polled with a *token*. A call whose result is ready returns it at once,
with no trip through the event loop. Otherwise the call registers a waker; when Rust
fires it (on a tokio thread) the token is queued in the loop's ``Notifier`` and one
byte is written to its pipe per batch. The loop then drains all ready tokens in one
call and resumes every task parked on them (asyncio watches the pipe with
``add_reader``; a loop without it, such as Windows' Proactor loop, gets a reader
thread). Tokens belong to a resource (a stream's reads, a session's datagrams...), so
several tasks waiting on one resource all wake and re-poll: no wake-up can be lost by
a waker being replaced.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import select
import selectors
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import sniffio

from ._core import LoopDriver, Notifier, io_driver_stats, io_spin_us

T = TypeVar("T")

__all__ = [
    "Hub",
    "asyncio_backend_options",
    "get_hub",
    "new_event_loop",
    "new_token",
    "run",
]

_tokens = itertools.count(1)

# Microseconds the asyncio loop waits for a reply after a flush before it sleeps (the
# I/O thread's busy-poll window; 0 turns both off).
_SPIN_US = io_spin_us()

# Whether a loop's thread may drive the I/O runtime while it waits (``FASTWT_INLINE_IO``;
# see docs/bridge.md, "The loop drives the runtime").
_INLINE = bool(io_driver_stats()["enabled"])


# Seconds between the reader thread's checks that its loop is still open: a loop closed
# but still referenced gives the thread no other sign (a collected one wakes it at once).
_READER_CHECK_S = 0.5


def _reader_thread_forced() -> bool:
    """``FASTWT_NOTIFIER_THREAD=1`` makes every asyncio hub use the reader thread, as on
    a loop without ``add_reader``, so that path can be tested (and compared) anywhere.
    Read at each hub's creation, not at import, so a test can set it per loop."""
    return os.environ.get("FASTWT_NOTIFIER_THREAD", "") not in ("", "0")


new_token: Callable[[], int] = _tokens.__next__
"""A fresh token for one resource's waits (unique process-wide). The counter's own
``__next__``: a C call, with no Python frame, for the two tokens of every stream."""


class Hub(Protocol):
    """One per running event loop: parks tasks on tokens until Rust reports them."""

    notifier: Notifier

    async def park(self, token: int) -> None: ...

    def is_waiting(self, token: int) -> bool: ...

    def flush_soon(self) -> None: ...


def _discard(waiters: dict[int, list[Any]], token: int, waiter: Any) -> None:
    """Forgets one parked waiter (done or cancelled) so the hub holds nothing stale."""
    remaining = waiters.get(token)
    if remaining is not None and waiter in remaining:
        remaining.remove(waiter)
        if not remaining:
            del waiters[token]


class _HubBase:
    """What both hubs share: the parked waiters per token and the busy-poll for a reply."""

    notifier: Notifier
    _waiters: dict[int, list[Any]]
    # A flush went out since the loop last waited: a reply may be on its way.
    _reply_expected: bool

    def is_waiting(self, token: int) -> bool:
        """Whether any task is parked on ``token``."""
        return bool(self._waiters.get(token))

    def _spin(self, timeout: float | None) -> float | None:
        """Called where the loop would sleep up to ``timeout`` seconds (``None``: until
        I/O). After a flush, with tasks parked on tokens, it waits for them up to the
        busy-poll window without sleeping (GIL released): a sleeping thread's wake-up costs
        more than a small request's round trip on loaded machines. ``None`` when tokens
        came (the loop must not sleep), else the seconds it spent spinning."""
        micros = self.spin_budget(timeout)
        if micros <= 0:
            return 0.0
        # The notifier spins only while this loop's recent waits for a token were short
        # (at moderate load a reply is far off and the spin would only burn the window).
        return self.notifier.idle_spin(micros)

    def spin_budget(self, timeout: float | None) -> int:
        """Microseconds the loop may spin for a reply where it would sleep up to
        ``timeout``: the window after a flush with tasks parked on tokens, else 0 (also
        used by a drive, which spins the runtime instead, see ``LoopDriver.drive``)."""
        if timeout is not None and timeout <= 0:
            return 0  # the loop has work: the reply is still expected at its next wait
        if not (self._reply_expected and self._waiters):
            return 0
        self._reply_expected = False
        return _SPIN_US if timeout is None else min(_SPIN_US, int(timeout * 1e6))


class _ReaderThread:
    """Watches the notifier's descriptor for a loop that has no ``add_reader`` (asyncio's
    Proactor loop, Windows' default). A daemon thread blocks in ``select`` until the
    descriptor is readable, schedules one dispatch on the loop, and waits for it to have
    run before it looks again (the descriptor stays readable until the dispatch drains
    it): a batch costs one hand-off, however many tokens or bytes it brought.

    The thread holds the loop and the hub only weakly (a parked future holds its loop,
    and a thread is a GC root: a strong reference would keep both alive forever), and the
    notifier strongly, so its descriptor stays open while ``select`` waits on it. It ends
    when stopped (the hub's ``close``), when the loop is closed or collected, or when the
    loop refuses the hand-off."""

    def __init__(
        self,
        notifier: Notifier,
        loop: asyncio.AbstractEventLoop,
        dispatch: Callable[[], None],
    ) -> None:
        self._notifier = notifier
        self._loop_ref = weakref.ref(loop)
        self._dispatch_ref = weakref.WeakMethod(dispatch)
        self._stopped = False
        # Set by the loop once the scheduled dispatch has drained the descriptor.
        self._resumed = threading.Event()
        # A collected loop stops the thread at once instead of at its next check.
        self._finalizer = weakref.finalize(loop, self.stop)
        self._finalizer.atexit = False
        self.thread = threading.Thread(target=self._run, name="fastwt-notifier-reader", daemon=True)
        self.thread.start()

    def resume(self) -> None:
        """Called on the loop after each dispatch: the thread may watch again."""
        self._resumed.set()

    def stop(self) -> None:
        """Ends the thread soon (callable from any thread, also from a finalizer on the
        reader thread itself, so it does not join): ``poke`` writes a byte to the pipe,
        which wakes the thread's ``select``."""
        self._stopped = True
        self._finalizer.detach()
        self._resumed.set()
        self._notifier.poke()

    def _loop_open(self) -> bool:
        loop = self._loop_ref()
        return loop is not None and not loop.is_closed()

    def _hand_off(self) -> bool:
        """Schedules one dispatch on the loop; False when the loop or hub is gone."""
        loop = self._loop_ref()
        dispatch = self._dispatch_ref()
        if loop is None or dispatch is None:
            return False
        try:
            loop.call_soon_threadsafe(dispatch)
        except RuntimeError:  # the loop was closed meanwhile
            return False
        return True

    def _run(self) -> None:
        fd = self._notifier.fileno()
        while not self._stopped:
            readable, _, _ = select.select([fd], [], [], _READER_CHECK_S)
            if self._stopped or not self._loop_open():
                return
            if not readable:
                continue
            self._resumed.clear()
            if not self._hand_off():
                return
            # A loop stopped before it ran the dispatch never resumes the thread.
            while not self._resumed.wait(_READER_CHECK_S):
                if self._stopped or not self._loop_open():
                    return


class _AsyncioHub(_HubBase):
    """asyncio (and uvloop): the notifier's fd is watched with ``loop.add_reader``, or
    by a ``_ReaderThread`` where the loop has none (or ``FASTWT_NOTIFIER_THREAD=1``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.notifier = Notifier()
        # Weak: the hub lives in a WeakKeyDictionary keyed by its loop (and the loop keeps
        # the hub through its reader callback), so a closed loop takes its hub and the
        # notifier's descriptors with it.
        self._loop_ref = weakref.ref(loop)
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._flush_scheduled = False
        self._reply_expected = False
        self._spinning_selector: _SpinningSelector | None = None
        self._reader: _ReaderThread | None = None
        if _reader_thread_forced():
            self._reader = _ReaderThread(self.notifier, loop, self._dispatch_from_reader)
        else:
            try:
                loop.add_reader(self.notifier.fileno(), self._dispatch)
            except NotImplementedError:  # asyncio's Proactor loop (Windows' default)
                self._reader = _ReaderThread(self.notifier, loop, self._dispatch_from_reader)
        selector = own = _own_selectors.get(loop)
        if own is None:
            # The fallback for loops fastwt did not make (asyncio.run's, a framework's):
            # only asyncio's own selector loops (uvloop has no `_selector`) get their
            # selector wrapped, through asyncio's private attribute, so that the loop
            # drives the runtime or spins before it sleeps (see `_SpinningSelector`).
            # new_event_loop() needs none of this.
            inner = getattr(loop, "_selector", None)
            if (_SPIN_US or _INLINE) and isinstance(inner, selectors.BaseSelector):
                selector = self._spinning_selector = _SpinningSelector(inner)
                setattr(loop, "_selector", selector)  # noqa: B010 (private)
        # The selector whose waits drive the runtime, if any (see `_flush`).
        self._driven_selector: _SpinningSelector | None = None
        if selector is not None:
            driver = self._new_driver(selector.inner) if self._reader is None else None
            selector.bind(self, driver)
            if driver is not None:
                self._driven_selector = selector

    def _new_driver(self, inner: selectors.BaseSelector) -> LoopDriver | None:
        """This loop's turn at driving the runtime, for a selector with a descriptor of
        its own (epoll, kqueue); None when inline driving is off or impossible."""
        if not _INLINE:
            return None
        try:
            return LoopDriver(inner.fileno(), self.notifier)  # type: ignore[attr-defined]
        except (AttributeError, OSError, ValueError):
            return None

    def flush_soon(self) -> None:
        """Stream writes leave the I/O thread asleep until the loop's next turn, so that
        one wake-up carries every write of this turn (and a reply's data and FIN leave as
        one packet). With a selector that drives the runtime, the flush is left to its
        next ``select`` (the end of this turn, as a callback would run, without a turn of
        its own), which flushes from inside the drive when it drives."""
        selector = self._driven_selector
        if selector is not None:
            self._reply_expected = True
            selector.flush_at_select()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._reply_expected = True
        self.notifier.flush()

    def _idle(self, timeout: float | None) -> float | None:
        """The selector's hook (see ``_HubBase._spin``): dispatches the tokens that came
        during the spin; the seconds spun are taken off the loop's sleep, so timers stay
        on time."""
        spent = self._spin(timeout)
        if spent is None:
            self._dispatch(read_pipe=False)
        return spent

    def _dispatch(self, read_pipe: bool = True) -> None:
        waiters = self._waiters
        for token in self.notifier.drain(read_pipe):
            futures = waiters.pop(token, None)
            if futures:
                for fut in futures:
                    if not fut.done():
                        fut.set_result(None)

    def _dispatch_from_reader(self) -> None:
        """The reader thread's hand-off, run on the loop: a dispatch, after which the
        thread may watch the descriptor again (it is not readable until new tokens)."""
        try:
            self._dispatch()
        finally:
            if self._reader is not None:
                self._reader.resume()

    async def park(self, token: int) -> None:
        fut: asyncio.Future[None] = self._loop().create_future()
        futures = self._waiters.setdefault(token, [])
        futures.append(fut)
        try:
            await fut
        finally:
            if not fut.done():  # cancelled: forget this waiter so nothing stays pending
                fut.cancel()
            _discard(self._waiters, token, fut)

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop_ref()
        if loop is None:
            raise RuntimeError("the event loop this fastwt object belongs to is gone")
        return loop

    def close(self) -> None:
        self.notifier.flush()
        if self._reader is not None:
            self._reader.stop()
        loop = self._loop_ref()
        if loop is None:
            return
        if self._reader is None and not loop.is_closed():
            loop.remove_reader(self.notifier.fileno())
        own = _own_selectors.get(loop)
        self._driven_selector = None
        if own is not None:
            own.bind(None)
        wrapper = self._spinning_selector
        if wrapper is not None:
            wrapper.bind(None)
            inner = wrapper.inner
            if getattr(loop, "_selector", None) is wrapper:
                setattr(loop, "_selector", inner)  # noqa: B010 (asyncio's private)


class _SpinningSelector(selectors.BaseSelector):
    """An asyncio loop's selector, unchanged except where a wait would sleep: there the
    loop's thread drives the I/O runtime itself while the runtime is free for it (see
    ``LoopDriver``), or else first gives the hub its chance to spin for a reply."""

    def __init__(self, inner: selectors.BaseSelector):
        self.inner = inner
        self._hub: _AsyncioHub | None = None
        self._driver: LoopDriver | None = None
        # The hub's flush was left to this selector's next wait (`flush_at_select`).
        self._flush_pending = False
        # The last look at the real selector found nothing (see `_look`).
        self._quiet = False

    def bind(self, hub: _AsyncioHub | None, driver: LoopDriver | None = None) -> None:
        """The loop's hub (``None``: none, the selector then only waits) and, when its
        waits may drive the runtime, its ``LoopDriver``."""
        self._flush_now()
        self._hub = hub
        old, self._driver = self._driver, driver
        if old is not None and old is not driver:
            old.close()

    def flush_at_select(self) -> None:
        """The hub's writes of this turn are flushed at the next ``select``: from inside
        the drive when it drives (the writes' tasks are then woken without a system call
        each), else before it waits."""
        self._flush_pending = True

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        hub, driver = self._hub, self._driver
        if hub is None or (timeout is not None and timeout <= 0):
            self._flush_now()
            return self._look(timeout)
        if driver is not None and driver.available:
            if not self._quiet:
                events = self._look(0)
                if events:
                    self._flush_now()
                    return events
            tokens = driver.drive(timeout, hub.spin_budget(timeout))
            if tokens is not None:
                self._flush_pending = False  # the drive flushed first
                if not tokens:
                    return self._look(0)
                # Woken by its own tokens (no pipe byte): other ready I/O is seen at the
                # next select, which does not wait (the tokens' tasks are ready to run).
                # No look is needed before the next drive either: a selector event that
                # came during this one is kept as the watched descriptor's readiness
                # (cleared only where the drive returns for it), so the next drive
                # returns at once for it.
                hub._dispatch(read_pipe=False)
                return []
        self._flush_now()
        spent = hub._idle(timeout)
        if spent is None:
            timeout = 0  # tasks were woken: collect other ready I/O, do not sleep
        elif timeout is not None:
            timeout = max(0.0, timeout - spent)
        if driver is None or timeout == 0:
            return self._look(timeout)
        driver.wait_begin()
        try:
            return self._look(timeout)
        finally:
            driver.wait_end()

    def _look(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        """The real selector's events. After a look that found none, the next drive need
        not look again first: any descriptor ready since then (registered ready, too)
        made the selector's own descriptor readable anew, which wakes the drive."""
        events = self.inner.select(timeout)
        self._quiet = not events
        return events

    def _flush_now(self) -> None:
        """The hub's deferred flush, where no drive came to do it: from this thread, in
        one runtime turn that does not wait, while the runtime is free for it (see
        ``LoopDriver.flush``), else by waking the writes' tasks from outside."""
        if not self._flush_pending:
            return
        self._flush_pending = False
        hub, driver = self._hub, self._driver
        if hub is None:
            return
        tokens = driver.flush() if driver is not None else None
        if tokens is None:
            hub.notifier.flush()
        elif tokens:
            hub._dispatch(read_pipe=False)

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self.inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.inner.modify(fileobj, events, data)

    def close(self) -> None:
        self.bind(None)
        self.inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self.inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self.inner.get_map()


class _TrioHub(_HubBase):
    """trio: a system task waits for the notifier's fd with ``wait_readable``."""

    def __init__(self) -> None:
        import trio

        self._trio = trio
        self.notifier = Notifier()
        self._waiters: dict[int, list[Any]] = {}
        self._reply_expected = False
        trio.lowlevel.spawn_system_task(self._reader, name="fastwt-notifier")
        if _SPIN_US:
            hub = self

            class SpinBeforeSleep(trio.abc.Instrument):
                """Gives the hub its chance to spin where the run loop would sleep."""

                def before_io_wait(self, timeout: float) -> None:
                    hub._idle(timeout)

            trio.lowlevel.add_instrument(SpinBeforeSleep())

    def flush_soon(self) -> None:
        """trio has no cheap end-of-turn hook: writes wake the I/O side at once."""
        self._reply_expected = True
        self.notifier.flush()

    def _idle(self, timeout: float) -> None:
        """The instrument's hook (see ``_HubBase._spin``): when tokens came, makes the
        notifier's descriptor readable, so the run loop's wait returns at once and the
        reader task dispatches them. (trio's wait keeps its timeout: after a spin that
        found nothing, a timer can fire up to the window late.)"""
        if self._spin(timeout) is None:
            self.notifier.poke()

    async def _reader(self) -> None:
        fd = self.notifier.fileno()
        while True:
            await self._trio.lowlevel.wait_readable(fd)
            waiters = self._waiters
            for token in self.notifier.drain():
                events = waiters.pop(token, None)
                if events:
                    for ev in events:
                        ev.set()

    async def park(self, token: int) -> None:
        ev = self._trio.Event()
        events = self._waiters.setdefault(token, [])
        events.append(ev)
        try:
            await ev.wait()
        finally:
            _discard(self._waiters, token, ev)


_asyncio_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncioHub] = (
    weakref.WeakKeyDictionary()
)
_trio_hubs: weakref.WeakKeyDictionary[Any, _TrioHub] = weakref.WeakKeyDictionary()


# The selectors of the loops new_event_loop() made, by loop.
_own_selectors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SpinningSelector] = (
    weakref.WeakKeyDictionary()
)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An asyncio event loop made for fastwt: ``asyncio.SelectorEventLoop`` (asyncio's
    public constructor) with a selector that, where the loop would sleep waiting for
    I/O, lets fastwt busy-poll for a reply first (see docs/bridge.md). Pass it as a loop
    factory: ``asyncio.Runner(loop_factory=fastwt.new_event_loop)``,
    ``anyio.run(main, backend_options={"loop_factory": fastwt.new_event_loop})``;
    ``ServerApp.run`` and ``fastwt run`` use it. Other asyncio loops work too: on those
    fastwt wraps the loop's selector in place (asyncio's private ``_selector``), and
    uvloop, which has none, does not spin."""
    selector = _SpinningSelector(selectors.DefaultSelector())
    loop = asyncio.SelectorEventLoop(selector)
    _own_selectors[loop] = selector
    return loop


def asyncio_backend_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``anyio.run``'s asyncio options with :func:`new_event_loop` as the loop factory,
    unless they choose another loop (``use_uvloop``, their own ``loop_factory``)."""
    out = dict(options or {})
    if not out.get("use_uvloop") and "loop_factory" not in out:
        out["loop_factory"] = new_event_loop
    return out


def run(main: Callable[[], Any], *, backend: str = "asyncio", backend_options: Any = None) -> Any:
    """``anyio.run(main, ...)`` on :func:`new_event_loop` where asyncio is asked for its
    default loop: how fastwt's own entry points (``ServerApp.run``, the CLI, workers)
    start their event loop."""
    import anyio

    if backend == "asyncio":
        backend_options = asyncio_backend_options(backend_options)
    return anyio.run(main, backend=backend, backend_options=backend_options)


def get_hub() -> Hub:
    """The hub of the running event loop (made on first use)."""
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


async def wait(hub: Hub, poll: Callable[[Notifier, int], T | None], token: int) -> T:
    """Polls until a result is ready, parking on ``token`` in between."""
    notifier = hub.notifier
    result = poll(notifier, token)
    while result is None:
        await hub.park(token)
        result = poll(notifier, token)
    return result


async def run_op(hub: Hub, op: Any) -> Any:
    """Awaits a spawned Rust operation (``_core.Op``)."""
    token = new_token()
    notifier = hub.notifier
    result = op.poll(notifier, token)
    while result is None:
        await hub.park(token)
        result = op.poll(notifier, token)
    return result

"""One handler call per peer-opened stream, for ``WebTransportSession.handle_*_streams``.

A request/reply stream usually arrives whole (its data and FIN in one packet), and its
handler then reads, writes and returns without ever waiting. On asyncio such a handler
runs *eagerly*: its first step runs at once in the task that accepted its stream, and a
handler that never waits costs no task and no extra loop turns (no ``Task`` object, no
``call_soon`` for its first step, no turn for its done callback: in the benchmarks'
paced request/reply, a fifth less server CPU per request).

A handler that has to wait keeps the task it started in: that task goes on with the
handler, and a new task takes over accepting the session's streams. So a handler runs in
one task from its first step to its end, as with Python 3.12's eager tasks, and what it
enters before its first wait and that belongs to "the current task" (``asyncio.timeout``,
``anyio.fail_after``, a ``TaskGroup``) is its own, not the accepting task's. On trio, and
on any other library anyio runs on, every handler is a task of the session's task group.

A handler's exception is logged (``fastwt.session``) and resets its stream with
``ErrorCodes.HANDLER_ERROR``; the other streams go on. When the session closes, the
handlers still running are cancelled and awaited before ``handle_*_streams`` returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

import anyio
import sniffio

from .errors import ErrorCodes, SessionClosedError
from .stream import WebTransportStream

__all__ = ["serve_streams", "wait_for_stream"]

logger = logging.getLogger("fastwt.session")

S = TypeVar("S", bound=WebTransportStream)


async def wait_for_stream(poll: Callable[[], S | None], park: Callable[[], Awaitable[None]]) -> S:
    """The next stream, after a ``poll()`` that returned ``None``: parks, then polls
    again, until it returns one (``poll`` raises ``SessionClosedError`` once the session
    has closed). The caller polls first itself, so that a stream already there costs no
    coroutine."""
    while True:
        await park()
        stream = poll()
        if stream is not None:
            return stream


async def serve_streams(
    poll: Callable[[], S | None],
    park: Callable[[], Awaitable[None]],
    handler: Callable[[S], Awaitable[None]],
) -> None:
    """Calls ``handler`` on each stream accepted, until the session closes (``poll``
    raises ``SessionClosedError``); then cancels the handlers still running and waits for
    them. ``poll`` returns the next stream if one is ready, else ``None``, and ``park``
    waits until it may have one."""
    if sniffio.current_async_library() == "asyncio":
        await _serve_eagerly(poll, park, handler)
        return
    async with anyio.create_task_group() as group:
        while True:
            try:
                stream = poll()
                if stream is None:
                    stream = await wait_for_stream(poll, park)
            except SessionClosedError:
                break
            group.start_soon(_guarded, handler, stream)
        group.cancel_scope.cancel()


async def _serve_eagerly(
    poll: Callable[[], S | None],
    park: Callable[[], Awaitable[None]],
    handler: Callable[[S], Awaitable[None]],
) -> None:
    serving = _EagerServing(poll, park, handler)
    try:
        try:
            await serving.take_turn()
            if not serving.ended.done():  # this task went on with a handler: another accepts
                await serving.ended
        except asyncio.CancelledError:
            if not serving.host_cancel_was_ours():
                raise
        else:
            serving.host_cancel_was_ours()
    finally:
        await serving.stop()
    if serving.error is not None:
        raise serving.error


class _EagerServing(Generic[S]):
    """The streams of one ``handle_*_streams`` call on asyncio. One task accepts at a
    time and runs each handler's first step itself; when a handler waits, that task goes
    on with it and a new task takes the accepting over (``take_turn``). The task that
    called ``handle_*_streams`` (the host) is the first to accept; it returns from the
    call once the session has closed and every handler has ended."""

    def __init__(
        self,
        poll: Callable[[], S | None],
        park: Callable[[], Awaitable[None]],
        handler: Callable[[S], Awaitable[None]],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        host = asyncio.current_task()
        if host is None:
            raise RuntimeError("handle_*_streams must be awaited in a task")
        self.host = host
        self.poll = poll
        self.park = park
        self.handler = handler
        # Every task started here (accepting, or going on with a handler), until it ends.
        self.tasks: set[asyncio.Task[None]] = set()
        # Done once the session has closed (or accepting failed: ``error``).
        self.ended: asyncio.Future[None] = self.loop.create_future()
        self.error: BaseException | None = None
        # The host is going on with a handler (so the session's end must cancel it), and
        # whether that cancellation was sent (``host_cancel_was_ours`` takes it back).
        self.host_in_handler = False
        self.host_cancelled = False

    async def take_turn(self) -> None:
        """Accepts streams and runs their handlers' first steps until the session closes
        or a handler waits; then this task goes on with that handler and another task
        accepts from here on."""
        task = asyncio.current_task()
        poll, park = self.poll, self.park
        while True:
            try:
                # No coroutine for a stream that is there already (most, under load).
                stream = poll()
                if stream is None:
                    stream = await wait_for_stream(poll, park)
            except SessionClosedError:
                self._end(None)
                return
            except Exception as exc:
                self._end(exc)
                return
            awaitable = self.handler(stream)
            if not isinstance(awaitable, types.CoroutineType):
                self._spawn(_run(awaitable, self.handler, stream))
                continue
            # The handler's own context from its first step on, as a task would have it.
            context = contextvars.copy_context()
            try:
                yielded = context.run(awaitable.send, None)
            except StopIteration:
                continue
            except asyncio.CancelledError:
                continue  # it awaited something cancelled and let that end it
            except Exception as exc:
                self._spawn(_report(self.handler, stream, exc), context)
                continue
            self._spawn(self.take_turn())
            self.host_in_handler = task is self.host
            try:
                await _run(_adopt(awaitable, yielded, context), self.handler, stream)
            except asyncio.CancelledError:
                if task is not None and task.cancelling():
                    raise  # this task is being cancelled (or the session's end stops it)
                # else the handler itself ended by a cancellation of its own
            finally:
                self.host_in_handler = False
            return

    def _spawn(self, coro: Coroutine[Any, Any, None], context: Any = None) -> None:
        task = self.loop.create_task(coro, context=context)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _end(self, error: BaseException | None) -> None:
        """The session has closed (or accepting failed): the host returns from its
        ``handle_*_streams`` call (cancelling the handler it goes on with, if any), and
        then stops the rest."""
        if self.ended.done():
            return
        self.error = error
        self.ended.set_result(None)
        if self.host_in_handler:  # (so this runs in another task: the accepting one)
            self.host_cancelled = True
            self.host.cancel()

    def host_cancel_was_ours(self) -> bool:
        """Takes back the cancellation ``_end`` sent the host (True when no other is
        pending: the host then returns normally)."""
        if not self.host_cancelled:
            return False
        self.host_cancelled = False
        return self.host.uncancel() == 0

    async def stop(self) -> None:
        """Cancels the tasks still running and waits for them to end."""
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            # Shielded: should the host be cancelled again meanwhile, the handlers still
            # end their own cancellation (the gather is not cancelled with it).
            await asyncio.shield(asyncio.gather(*self.tasks, return_exceptions=True))


@types.coroutine
def _adopt(
    coro: Coroutine[Any, Any, None], yielded: Any, context: contextvars.Context
) -> Generator[Any, Any, None]:
    """Continues ``coro``, which stopped at ``yielded`` (what it awaits: a future, or
    ``None`` for a bare yield), in the awaiting task and in the handler's ``context``:
    the task waits on what the coroutine yields, and sends and throws into it what the
    task is sent and thrown (a cancellation too), as ``await`` would from the
    coroutine's first step on."""
    while True:
        try:
            value = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = context.run(coro.throw, exc)
            except StopIteration:
                return
        else:
            try:
                yielded = context.run(coro.send, value)
            except StopIteration:
                return


async def _guarded(handler: Callable[[S], Awaitable[None]], stream: S) -> None:
    await _run(handler(stream), handler, stream)


async def _run(
    awaitable: Awaitable[None], handler: Callable[[S], Awaitable[None]], stream: S
) -> None:
    try:
        await awaitable
    except Exception as exc:
        await _report(handler, stream, exc)


async def _report(handler: Callable[[S], Awaitable[None]], stream: S, exc: Exception) -> None:
    """A handler failed: logged with its traceback, and its stream reset both ways so
    that the peer is not left waiting for a reply."""
    logger.error(
        "stream handler %s failed on stream %d",
        getattr(handler, "__qualname__", repr(handler)),
        stream.stream_id,
        exc_info=exc,
    )
    reset = getattr(stream, "reset", None)
    if reset is not None:
        await reset(error_code=ErrorCodes.HANDLER_ERROR)
    stop = getattr(stream, "stop_receiving", None)
    if stop is not None:
        await stop(error_code=ErrorCodes.HANDLER_ERROR)

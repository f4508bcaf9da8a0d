"""One handler call per peer-opened stream, for ``WebTransportSession.handle_*_streams``.

A request/reply stream usually arrives whole (its data and FIN in one packet), and its
handler then reads, writes and returns without ever waiting. On asyncio such a handler
runs *eagerly*: its first step runs at once in the accepting task, and only a handler
that has to wait becomes a task of its own, which takes over the coroutine where it
stopped (what Python 3.12's eager tasks do, on 3.11 as well). A stream whose handler
never waits then costs no task and no extra loop turns: no ``Task`` object, no
``call_soon`` for its first step, no turn for its done callback (in the benchmarks'
paced request/reply, a fifth less server CPU per request). On trio, and on any other
library anyio runs on, every handler is a task of the session's task group.

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
from typing import Any, TypeVar

import anyio
import sniffio

from .errors import ErrorCodes, SessionClosedError
from .stream import WebTransportStream

__all__ = ["serve_streams"]

logger = logging.getLogger("fastwt.session")

S = TypeVar("S", bound=WebTransportStream)


async def serve_streams(
    accept: Callable[[], Awaitable[S]], handler: Callable[[S], Awaitable[None]]
) -> None:
    """Calls ``handler`` on each stream ``accept`` returns, until it raises
    ``SessionClosedError``; then cancels the handlers still running and waits for them."""
    if sniffio.current_async_library() == "asyncio":
        await _serve_eagerly(accept, handler)
        return
    async with anyio.create_task_group() as group:
        while True:
            try:
                stream = await accept()
            except SessionClosedError:
                break
            group.start_soon(_guarded, handler, stream)
        group.cancel_scope.cancel()


async def _serve_eagerly(
    accept: Callable[[], Awaitable[S]], handler: Callable[[S], Awaitable[None]]
) -> None:
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                stream = await accept()
            except SessionClosedError:
                break
            task = _start(loop, handler, stream)
            if task is not None:
                running.add(task)
                task.add_done_callback(running.discard)
    finally:
        for task in running:
            task.cancel()
        if running:
            # Shielded: should this task be cancelled again meanwhile, the handlers still
            # end their own cancellation (the gather is not cancelled with it).
            await asyncio.shield(asyncio.gather(*running, return_exceptions=True))


def _start(
    loop: asyncio.AbstractEventLoop, handler: Callable[[S], Awaitable[None]], stream: S
) -> asyncio.Task[None] | None:
    """Runs the handler's first step now; the task that goes on with it if it waits."""
    awaitable = handler(stream)
    if not isinstance(awaitable, types.CoroutineType):
        return loop.create_task(_run(awaitable, handler, stream))
    # The handler's own context from its first step on, as a task would have it.
    context = contextvars.copy_context()
    try:
        yielded = context.run(awaitable.send, None)
    except StopIteration:
        return None
    except asyncio.CancelledError:
        return None  # it awaited something cancelled and let that end it
    except Exception as exc:
        return loop.create_task(_report(handler, stream, exc), context=context)
    go_on = _run(_adopt(awaitable, yielded), handler, stream)
    return loop.create_task(go_on, context=context)


@types.coroutine
def _adopt(coro: Coroutine[Any, Any, None], yielded: Any) -> Generator[Any, Any, None]:
    """Continues ``coro``, which stopped at ``yielded`` (what it awaits: a future, or
    ``None`` for a bare yield), as the body of the awaiting task: the task waits on what
    the coroutine yields, and sends and throws into it what the task is sent and thrown
    (a cancellation too), as ``await`` would from the coroutine's first step on."""
    while True:
        try:
            value = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(value)
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

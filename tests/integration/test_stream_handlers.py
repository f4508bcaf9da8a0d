"""``WebTransportSession.handle_bidirectional_streams`` / ``handle_unidirectional_streams``
over real QUIC on loopback, on asyncio and trio and on both backends: every stream gets
its handler, a handler that waits goes on in a task of its own, a failing handler resets
its stream (and only it), and the session's close ends the handlers still running."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import sniffio

from fastwt import (
    ClientConfig,
    ErrorCodes,
    ServerConfig,
    StreamError,
    WebTransportBidirectionalStream,
    WebTransportClient,
    WebTransportReceiveStream,
    WebTransportServer,
    WebTransportSession,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("backend")]

Handler = Callable[[WebTransportSession], Awaitable[None]]


@dataclass
class Served:
    url: str
    client: WebTransportClient
    returned: anyio.Event = field(default_factory=anyio.Event)
    events: list[Any] = field(default_factory=list)
    # How a session handler ended before the test was done with the server. A child's
    # cancellation would otherwise cancel the test's own body through the task group,
    # and the test would end early and pass.
    failures: list[BaseException] = field(default_factory=list)
    closing: bool = False


@asynccontextmanager
async def serving(
    session_handler: Callable[[WebTransportSession, Served], Awaitable[None]],
) -> AsyncIterator[Served]:
    """A server whose every session runs ``session_handler``, and a client for it."""
    config = ServerConfig(bind_host="127.0.0.1", bind_port=0)
    async with WebTransportServer(config=config) as server, anyio.create_task_group() as tg:
        await server.listen()
        url = f"https://127.0.0.1:{server.local_addresses[0][1]}/x"
        client = WebTransportClient(
            config=ClientConfig(server_certificate_hashes=[server.certificate_hash])
        )
        served = Served(url, client)

        async def one(session: WebTransportSession) -> None:
            await session.accept()
            try:
                await session_handler(session, served)
            except BaseException as exc:
                if not served.closing:
                    served.failures.append(exc)
                raise
            served.returned.set()

        async def accept_loop() -> None:
            async for session in server.incoming_sessions():
                tg.start_soon(one, session)

        tg.start_soon(accept_loop)
        try:
            async with client:
                yield served
        finally:
            served.closing = True
        await server.close()
        tg.cancel_scope.cancel()
    assert not served.failures, f"a session handler ended early: {served.failures!r}"


def serving_streams(
    handler: Callable[[WebTransportBidirectionalStream], Awaitable[None]],
) -> AbstractAsyncContextManager[Served]:
    """``serving`` where every session hands its bidirectional streams to ``handler``."""

    async def handle(session: WebTransportSession, served: Served) -> None:
        await session.handle_bidirectional_streams(handler)

    return serving(handle)


async def echo(stream: WebTransportBidirectionalStream) -> None:
    data = await stream.read_all()
    await stream.write(data=data, end_stream=True)


async def request(session: WebTransportSession, payload: bytes) -> bytes:
    stream = await session.create_bidirectional_stream()
    await stream.write(data=payload, end_stream=True)
    return await stream.read_all()


async def test_every_stream_gets_its_handler_concurrently() -> None:
    async with serving_streams(echo) as served:
        session = await served.client.connect(url=served.url)
        replies: dict[int, bytes] = {}

        async def one(i: int) -> None:
            replies[i] = await request(session, b"request %d" % i)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(one, i)
        assert replies == {i: b"request %d" % i for i in range(200)}
        await session.close()


async def test_a_handler_that_waits_goes_on_and_others_are_not_held_up() -> None:
    """The first stream's handler waits for the second's: both must answer, which they
    can only if the first went on in a task of its own while the second was accepted."""
    second_came = anyio.Event()

    async def handler(stream: WebTransportBidirectionalStream) -> None:
        data = await stream.read_all()
        if data == b"first":
            await second_came.wait()
            await anyio.sleep(0.01)  # waits once more, in its own task
        else:
            second_came.set()
        await stream.write(data=data.upper(), end_stream=True)

    async with serving_streams(handler) as served:
        session = await served.client.connect(url=served.url)
        with anyio.fail_after(10):
            first = await session.create_bidirectional_stream()
            await first.write(data=b"first", end_stream=True)
            assert await request(session, b"second") == b"SECOND"
            assert await first.read_all() == b"FIRST"
        await session.close()


async def test_a_failing_handler_resets_its_stream_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Failing before and after its first wait: the peer sees its stream reset with
    HANDLER_ERROR (not a hang), the other streams are answered, the error is logged."""

    async def handler(stream: WebTransportBidirectionalStream) -> None:
        data = await stream.read_all()
        if data == b"fail now":
            raise ValueError("bad request")
        if data == b"fail later":
            await anyio.sleep(0.01)
            raise ValueError("bad request, later")
        await stream.write(data=data, end_stream=True)

    async def handle(session: WebTransportSession, served: Served) -> None:
        await session.handle_bidirectional_streams(handler)

    caplog.set_level(logging.ERROR, logger="fastwt.session")
    async with serving(handle) as served:
        session = await served.client.connect(url=served.url)
        with anyio.fail_after(10):
            for payload in (b"fail now", b"fail later"):
                with pytest.raises(StreamError) as raised:
                    await request(session, payload)
                assert raised.value.error_code == ErrorCodes.HANDLER_ERROR
            assert await request(session, b"fine") == b"fine"
        await session.close()
    failures = [r for r in caplog.records if "stream handler" in r.getMessage()]
    assert len(failures) == 2, [r.getMessage() for r in caplog.records]
    assert {str(r.exc_info[1]) for r in failures if r.exc_info} == {
        "bad request",
        "bad request, later",
    }


async def test_the_session_close_ends_the_handlers_still_running() -> None:
    """A handler that waits forever is cancelled when the peer closes the session, and
    ``handle_bidirectional_streams`` returns (nothing is left holding the session)."""
    cancelled = anyio.Event()

    async def handler(stream: WebTransportBidirectionalStream) -> None:
        await stream.read_all()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with serving_streams(handler) as served:
        session = await served.client.connect(url=served.url)
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"hold", end_stream=True)
        await anyio.sleep(0.2)
        assert not served.returned.is_set()
        await session.close()
        with anyio.fail_after(10):
            await cancelled.wait()
            await served.returned.wait()


async def test_unidirectional_streams_get_their_handler() -> None:
    async def handle(session: WebTransportSession, served: Served) -> None:
        async def handler(stream: WebTransportReceiveStream) -> None:
            data = await stream.read_all()
            reply = await session.create_unidirectional_stream()
            await reply.write(data=data[::-1], end_stream=True)

        await session.handle_unidirectional_streams(handler)

    async with serving(handle) as served:
        session = await served.client.connect(url=served.url)
        with anyio.fail_after(10):
            for i in range(5):
                out = await session.create_unidirectional_stream()
                await out.write(data=b"abc%d" % i, end_stream=True)
                back = await session.accept_unidirectional_stream()
                assert await back.read_all() == b"%dcba" % i
        await session.close()


CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="unset")


async def test_a_handler_starts_at_once_on_asyncio_in_a_context_of_its_own() -> None:
    """On asyncio a handler runs in the task that accepted its stream: one that answers
    without waiting gets no task of its own (the handlers that never wait all run in
    the one accepting task); one that waits keeps the task it started in, from its first
    step to its end. Each handler's context changes stay its own, as with a task per
    stream."""
    if sniffio.current_async_library() != "asyncio":
        pytest.skip("eager handlers are asyncio's; trio runs each in a task")
    seen: dict[bytes, tuple[bool, asyncio.Task[Any] | None, asyncio.Task[Any] | None, str]] = {}

    async def handle(session: WebTransportSession, served: Served) -> None:
        accepting = asyncio.current_task()

        async def handler(stream: WebTransportBidirectionalStream) -> None:
            started_in = asyncio.current_task()
            data = await stream.read_all()
            before = CURRENT.get()
            CURRENT.set(data.decode())
            if data == b"waits":
                await asyncio.sleep(0.01)
            seen[data] = (started_in is accepting, started_in, asyncio.current_task(), before)
            await stream.write(data=CURRENT.get().encode(), end_stream=True)

        await session.handle_bidirectional_streams(handler)

    later = [b"answers %d" % i for i in range(5)]
    async with serving(handle) as served:
        session = await served.client.connect(url=served.url)
        with anyio.fail_after(10):
            assert await request(session, b"answers") == b"answers"
            assert await request(session, b"waits") == b"waits"
            for payload in later:
                assert await request(session, payload) == payload
        await session.close()
    # The session's own task accepts first.
    assert seen[b"answers"][0] is True
    # A handler that waited went on in the task it started in.
    assert seen[b"waits"][1] is seen[b"waits"][2]
    # After it, one task accepts and runs every handler that does not wait: no task
    # per stream (a handler may wait for its data, and then has a task of its own, so
    # most, not all, of them share it).
    tasks = [seen[p][1] for p in later]
    assert max(tasks.count(t) for t in tasks) >= 3, tasks
    # No handler saw another's context value.
    assert {seen[p][3] for p in seen} == {"unset"}


async def test_a_deadline_entered_before_the_first_wait_ends_only_its_handler() -> None:
    """A handler that enters a deadline (``anyio.fail_after``, ``asyncio.timeout``) before
    its first wait and then overruns it: the deadline ends that handler alone (its stream
    is reset with HANDLER_ERROR), and the session's other streams are still answered.
    The deadline belongs to the task that runs the handler from its first step on, so
    that task must be the one that goes on with it after the wait."""
    started = anyio.Event()

    async def handler(stream: WebTransportBidirectionalStream) -> None:
        if sniffio.current_async_library() == "asyncio":
            deadline: Any = asyncio.timeout(0.3)
        else:
            deadline = anyio.fail_after(0.3)
        async with _maybe_async(deadline):
            data = await stream.read(max_size=100)
            if data == b"slow":
                started.set()
                await stream.read_all()  # the peer never ends it: the deadline must
        await stream.write(data=data, end_stream=True)

    async with serving_streams(handler) as served:
        session = await served.client.connect(url=served.url)
        with anyio.fail_after(10):
            slow = await session.create_bidirectional_stream()
            await slow.write(data=b"slow")
            await started.wait()
            with pytest.raises(StreamError) as raised:
                await slow.read_all()
            assert raised.value.error_code == ErrorCodes.HANDLER_ERROR
            assert await request(session, b"after") == b"after"
            assert not served.returned.is_set()
        await session.close()


@asynccontextmanager
async def _maybe_async(manager: Any) -> AsyncIterator[None]:
    """``asyncio.timeout`` is an async context manager, anyio's ``fail_after`` a plain one."""
    if hasattr(manager, "__aenter__"):
        async with manager:
            yield
    else:
        with manager:
            yield


async def test_a_deadline_around_the_call_stops_every_handler() -> None:
    """``handle_bidirectional_streams`` under the caller's own deadline: when it passes,
    the handlers still waiting (one of them going on in the caller's task itself, on
    asyncio) are cancelled and the call ends by the deadline's cancellation, not
    normally (the session's end is not mistaken for it)."""
    cancelled: list[bytes] = []
    ended: list[str] = []

    async def handler(stream: WebTransportBidirectionalStream) -> None:
        data = await stream.read_all()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(data)

    async def handle(session: WebTransportSession, served: Served) -> None:
        with anyio.move_on_after(0.5) as scope:
            await session.handle_bidirectional_streams(handler)
            ended.append("returned")
        ended.append("cancelled" if scope.cancelled_caught else "not cancelled")

    async with serving(handle) as served:
        session = await served.client.connect(url=served.url)
        with anyio.fail_after(10):
            for payload in (b"one", b"two"):
                stream = await session.create_bidirectional_stream()
                await stream.write(data=payload, end_stream=True)
            await served.returned.wait()
        assert ended == ["cancelled"]
        assert sorted(cancelled) == [b"one", b"two"]
        await session.close()

"""The notifier's reader-thread fallback, for asyncio loops without ``add_reader``
(Windows' Proactor loop): real echoes over loopback with the thread forced
(``FASTWT_NOTIFIER_THREAD=1``) and on a loop whose ``add_reader`` is not implemented,
and the thread gone once its loop (or hub) is closed."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from .echo_server import echo_server

THREAD_NAME = "fastwt-notifier-reader"


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


class NoReaderLoop(asyncio.SelectorEventLoop):
    """A selector loop that, like the Proactor loop, has no ``add_reader``."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[Any] = []

    def add_reader(self, fd: Any, callback: Callable[..., Any], *args: Any) -> None:
        self.refused.append(fd)
        raise NotImplementedError

    def remove_reader(self, fd: Any) -> bool:
        raise NotImplementedError


async def echo_both_ways() -> list[threading.Thread]:
    """Streams (one at a time and 50 at once) and datagrams round-trip; returns the
    reader threads seen while they did."""
    async with echo_server() as echo, echo.client() as client:
        session = await client.connect(url=f"{echo.url}/echo")
        with anyio.fail_after(20):
            for i in range(20):
                stream = await session.create_bidirectional_stream()
                await stream.write(data=b"seq%d" % i, end_stream=True)
                assert await stream.read_all() == b"seq%d" % i

            got: dict[int, bytes] = {}

            async def one(i: int) -> None:
                stream = await session.create_bidirectional_stream()
                await stream.write(data=b"c%d" % i * 1000, end_stream=True)
                got[i] = await stream.read_all()

            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(one, i)
            assert got == {i: b"c%d" % i * 1000 for i in range(50)}

            payload = os.urandom(64 * 1024)
            stream = await session.create_bidirectional_stream()
            await stream.write(data=payload, end_stream=True)
            assert await stream.read_all() == payload

            for i in range(20):
                await session.send_datagram(data=b"d%d" % i)
                with anyio.fail_after(5):
                    assert await session.read_datagram() == b"d%d" % i
        return reader_threads()


def assert_gone(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    assert reader_threads() == []


@pytest.fixture(autouse=True)
def no_reader_thread_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASTWT_NOTIFIER_THREAD", raising=False)
    assert_gone(reader_threads())  # none from an earlier test


def test_forced_reader_thread_echoes_and_ends_with_its_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FASTWT_NOTIFIER_THREAD", "1")
    threads = asyncio.run(echo_both_ways())
    assert len(threads) == 1 and threads[0].daemon
    assert_gone(threads)


def test_without_the_variable_the_loop_watches_the_descriptor() -> None:
    """A loop with ``add_reader`` starts no thread (a selector loop: Windows' default,
    the Proactor loop, would)."""
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        assert runner.run(echo_both_ways()) == []


def test_loop_without_add_reader_falls_back_to_the_thread() -> None:
    loop = NoReaderLoop()
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        threads = runner.run(echo_both_ways())
    assert loop.is_closed()
    assert len(loop.refused) == 1  # the hub tried add_reader first
    assert len(threads) == 1
    # Gone even though the (closed) loop is still referenced here.
    assert_gone(threads)


def test_hub_close_stops_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastwt import _bridge

    monkeypatch.setenv("FASTWT_NOTIFIER_THREAD", "1")

    async def main() -> list[threading.Thread]:
        threads = await echo_both_ways()
        hub = _bridge.get_hub()
        assert isinstance(hub, _bridge._AsyncioHub)
        hub.close()
        for t in threads:
            await asyncio.to_thread(t.join, 5)
        return threads

    loop = asyncio.new_event_loop()
    try:
        threads = loop.run_until_complete(main())
        assert len(threads) == 1 and not threads[0].is_alive()  # before the loop closes
    finally:
        loop.close()


def test_one_hand_off_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens notified during one loop turn (and any number of pipe bytes) cost one
    scheduled dispatch, not one each: the thread waits for it before it looks again."""
    from fastwt import _bridge

    monkeypatch.setenv("FASTWT_NOTIFIER_THREAD", "1")
    monkeypatch.setattr(_bridge, "_SPIN_US", 0)

    async def main() -> int:
        hub = _bridge.get_hub()
        assert isinstance(hub, _bridge._AsyncioHub)
        calls = 0
        dispatch = hub._dispatch

        def counting(read_pipe: bool = True) -> None:
            nonlocal calls
            calls += 1
            dispatch(read_pipe)

        hub._dispatch = counting  # type: ignore[method-assign]
        tokens = [_bridge.new_token() for _ in range(100)]
        waiters = [asyncio.ensure_future(hub.park(t)) for t in tokens]
        await asyncio.sleep(0)

        for t in tokens:  # one turn: the loop runs no dispatch meanwhile
            hub.notifier.notify(t)
            hub.notifier.poke()  # extra bytes in the pipe
            if t == tokens[0]:
                # Blocks the loop on purpose: the thread sees the first byte, hands off.
                time.sleep(0.05)  # noqa: ASYNC251
        await asyncio.wait_for(asyncio.gather(*waiters), 5)
        return calls

    assert asyncio.run(main()) == 1

"""The I/O thread's busy-poll window (``FASTWT_IO_SPIN_US``): read at start-up, and
streams and datagrams work with it off and on (each case in a fresh process, since the
runtime is made once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .child_process import run_reporting

ECHO = textwrap.dedent(
    """
    import anyio, sys
    sys.path.insert(0, {tests!r})
    from fastwt._core import io_spin_us
    from integration.echo_server import echo_server

    async def main():
        async with echo_server() as echo, echo.client() as client:
            session = await client.connect(url=echo.url + "/echo")
            replies = []
            for i in range(50):
                stream = await session.create_bidirectional_stream()
                await stream.write(data=b"ping %d" % i, end_stream=True)
                replies.append(await stream.read_all())
            await session.send_datagram(data=b"dgram")
            with anyio.fail_after(5):
                dgram = await session.read_datagram()
            assert replies == [b"ping %d" % i for i in range(50)], replies
            assert dgram == b"dgram"
        print("SPIN", io_spin_us())

    anyio.run(main)
    """
)


def run_with(spin: str | None) -> int:
    env = dict(os.environ)
    env.pop("FASTWT_IO_SPIN_US", None)
    if spin is not None:
        env["FASTWT_IO_SPIN_US"] = spin
    tests = str(Path(__file__).resolve().parents[1])
    p = subprocess.run(
        [sys.executable, "-c", ECHO.format(tests=tests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("SPIN ")][-1]
    return int(line.split()[1])


@pytest.mark.parametrize(
    ("spin", "expected"),
    [(None, 200), ("0", 0), ("50", 50), ("999999", 10_000), ("not-a-number", 200)],
)
def test_spin_window_and_echo(spin: str | None, expected: int) -> None:
    assert run_with(spin) == expected


def test_notifier_spin_wait_sees_a_token_or_times_out() -> None:
    """The loop's short wait for a reply: true as soon as a token is ready, false after
    the window without one (it never sleeps past it)."""
    import time

    from fastwt._core import Notifier

    n = Notifier()
    start = time.perf_counter()
    assert n.spin_wait(2_000) is False
    assert 0.0015 < time.perf_counter() - start < 0.5
    n.notify(7)
    assert n.spin_wait(2_000) is True
    assert n.drain() == [7]


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


def test_token_queued_while_the_loop_spins_writes_no_pipe_byte() -> None:
    """While the loop's thread is in ``spin_wait`` a token costs no pipe write (the
    spinner finds it in the queue); outside it, the pipe becomes readable as before."""
    import threading
    import time

    from fastwt._core import Notifier

    n = Notifier()

    def notify_once_spinning() -> None:
        # The token must land while the test thread spins: wait for it to be in
        # spin_wait (a timer alone raced with a loaded machine's scheduler in CI).
        deadline = time.monotonic() + 5
        while not n.spinning and time.monotonic() < deadline:
            time.sleep(0.0005)
        n.notify(11)

    t = threading.Thread(target=notify_once_spinning)
    t.start()
    start = time.perf_counter()
    assert n.spin_wait(2_000_000) is True
    assert time.perf_counter() - start < 1.9
    t.join()
    assert not n.spinning
    assert not _readable(n.fileno())
    assert n.drain(False) == [11]

    n.notify(12)  # nobody spinning: the selector must be woken
    assert _readable(n.fileno())
    assert n.drain(False) == [12]
    assert not _readable(n.fileno())


def test_asyncio_loop_spins_for_a_reply_instead_of_sleeping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a flush, with a task parked on a token, the loop's wait for I/O first spins:
    a token notified from another thread is dispatched from inside the selector call, so
    the real selector is only ever polled (timeout 0), never slept in. (The window is
    widened so that a slow machine's timer thread still lands inside it.)"""
    import asyncio
    import threading

    from fastwt import _bridge

    monkeypatch.setattr(_bridge, "_SPIN_US", 2_000_000)
    timeouts: list[float | None] = []

    class Recording:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def select(self, timeout: float | None = None) -> Any:
            timeouts.append(timeout)
            return self.inner.select(timeout)

    async def main() -> bool:
        hub = _bridge.get_hub()
        wrapper = hub._spinning_selector  # type: ignore[attr-defined]
        assert wrapper is not None
        wrapper.inner = Recording(wrapper.inner)
        await asyncio.sleep(0)
        timeouts.clear()
        token = _bridge.new_token()
        hub.flush_soon()  # as a stream write does
        threading.Timer(0.003, hub.notifier.notify, args=(token,)).start()
        await asyncio.wait_for(hub.park(token), 5)
        waiting = hub.is_waiting(token)
        wrapper.inner = wrapper.inner.inner
        return waiting

    assert asyncio.run(main()) is False
    assert timeouts, "the loop never reached its selector"
    assert all(t == 0 for t in timeouts), timeouts


def test_asyncio_hub_goes_with_its_loop() -> None:
    """A hub (and its notifier's two descriptors) does not outlive its event loop."""
    import asyncio
    import gc

    from fastwt import _bridge

    async def touch() -> None:
        _bridge.get_hub()

    asyncio.run(touch())
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        asyncio.run(touch())
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= before
    assert len(_bridge._asyncio_hubs) <= 1


def test_spinning_does_not_make_timers_late(monkeypatch: pytest.MonkeyPatch) -> None:
    """A spin that finds no token is taken off the loop's sleep: a timer still fires on
    time (here: a wide window, a 0.1 s sleep, no reply ever coming)."""
    import asyncio
    import time

    from fastwt import _bridge

    monkeypatch.setattr(_bridge, "_SPIN_US", 1_000_000)

    async def main() -> float:
        hub = _bridge.get_hub()
        token = _bridge.new_token()
        waiter = asyncio.ensure_future(hub.park(token))  # a task waits for a reply
        await asyncio.sleep(0)
        hub.flush_soon()
        start = time.perf_counter()
        await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - start
        waiter.cancel()
        return elapsed

    elapsed = asyncio.run(main())
    assert 0.095 < elapsed < 0.18, elapsed


def test_trio_run_loop_spins_for_a_reply_instead_of_sleeping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """trio: after a flush, with a task parked on a token, the run loop spins (in an
    instrument's ``before_io_wait``) instead of sleeping in its I/O wait; a token notified
    from another thread 20 ms later is seen by the spin, and the I/O wait that follows
    returns at once (without the spin it would last the 20 ms)."""
    import threading
    import time

    import trio

    from fastwt import _bridge

    monkeypatch.setattr(_bridge, "_SPIN_US", 2_000_000)
    waits: list[float] = []

    class WaitTimer(trio.abc.Instrument):
        started = 0.0

        def before_io_wait(self, timeout: float) -> None:
            self.started = time.perf_counter()

        def after_io_wait(self, timeout: float) -> None:
            waits.append(time.perf_counter() - self.started)

    async def main() -> bool:
        hub = _bridge.get_hub()
        token = _bridge.new_token()
        trio.lowlevel.add_instrument(WaitTimer())  # after the hub's: times the real wait
        hub.flush_soon()
        threading.Timer(0.02, hub.notifier.notify, args=(token,)).start()
        with trio.fail_after(5):
            await hub.park(token)
        return hub.is_waiting(token)

    assert trio.run(main) is False
    assert waits, "the run loop never waited"
    assert max(waits) < 0.01, waits


# The adaptive spin (rust/bindings/src/spin.rs): each case in a fresh process, since the
# I/O thread's site is made once per process.
ADAPTIVE = textwrap.dedent(
    """
    import anyio, json, sys
    sys.path.insert(0, {tests!r})
    from fastwt._core import spin_stats
    from integration.echo_server import echo_server

    async def main():
        async with echo_server() as echo, echo.client() as client:
            session = await client.connect(url=echo.url + "/echo")
            for i in range({requests}):
                stream = await session.create_bidirectional_stream()
                await stream.write(data=b"ping %d" % i, end_stream=True)
                assert await stream.read_all() == b"ping %d" % i
                if {pause}:
                    await anyio.sleep({pause})
            info = await session.diagnose()
        print("SPIN", json.dumps({{"diagnose": info["spin"], "stats": spin_stats()}}))

    anyio.run(main)
    """
)


def adaptive_run(requests: int, pause: float, **env_extra: str) -> dict[str, Any]:
    env = dict(os.environ)
    for name in ("FASTWT_IO_SPIN_US", "FASTWT_IO_SPIN_ADAPT", "FASTWT_IO_THREADS"):
        env.pop(name, None)
    # The I/O thread's spin site works while that thread drives the runtime; with loops
    # driving it themselves (the default, rust/bindings/src/baton.rs) it has no hand-offs
    # to spin after, so these cases pin the threaded mode.
    env["FASTWT_INLINE_IO"] = "0"
    env.update(env_extra)
    tests = str(Path(__file__).resolve().parents[1])
    script = ADAPTIVE.format(tests=tests, requests=requests, pause=pause)
    return run_reporting(script, env, "SPIN", timeout=60)


def test_spin_stops_when_replies_are_far_apart() -> None:
    """Requests 5 ms apart (25 windows): after a few measured idle stretches the I/O
    thread no longer spins for them; it passes its chances up (``skips``) and keeps
    measuring (``waits``). Before the adaptive spin it spun at every chance. (Client and
    server share this process's loop, whose own waits are each other's short round
    trips: its site is tested with late tokens below.)"""
    result = adaptive_run(requests=80, pause=0.005)
    loop, io = result["diagnose"]["loop"], result["diagnose"]["io"]
    assert result["stats"]["adaptive"] is True
    assert result["stats"]["io"]["skips"] >= io["skips"]
    assert io["spinning"] is False, io
    assert io["skips"] > 80, io
    assert io["spins"] < 40, io
    assert io["waits"] > io["spins"], io
    assert loop["waits"] > 0, loop


def test_loop_spin_stops_for_late_tokens_and_resumes_for_prompt_ones() -> None:
    """The event loop's site (``Notifier.idle_spin``): tokens that come 3 ms after the
    loop went idle (15 windows) stop its spin after a few waits, so it returns at once
    instead of burning the window; tokens that are ready promptly bring it back."""
    import threading
    import time

    from fastwt._core import Notifier

    n = Notifier()
    for i in range(12):
        t = threading.Timer(0.003, n.notify, args=(i,))
        t.start()
        spun = n.idle_spin(200)
        t.join()
        assert n.drain() == [i]
        assert spun is None or spun >= 0.0
    stats = n.spin_stats()
    assert stats["spinning"] is False, stats
    # (A token can beat a slow main thread to idle_spin: then there was no wait.)
    assert stats["waits"] >= 9 and stats["spins"] < 12, stats
    start = time.perf_counter()
    assert n.idle_spin(200_000) == 0.0  # skipped: no 0.2 s spin
    assert time.perf_counter() - start < 0.1
    n.notify(99)  # the token that ends the skipped wait (a short one, this time)
    assert n.drain() == [99]
    for i in range(40):  # tokens within microseconds: the mean wait falls again
        if n.spin_stats()["spinning"]:
            break
        assert n.idle_spin(200) == 0.0  # still skipped, and still measured
        n.notify(i)
        assert n.drain() == [i]
    assert n.spin_stats()["spinning"] is True, n.spin_stats()


def test_spin_pays_for_back_to_back_requests() -> None:
    """Back-to-back requests (each reply a few tens of µs away): the loop spins and its
    spins catch the replies (hits), and the I/O thread spins too."""
    result = adaptive_run(requests=300, pause=0)
    loop, io = result["diagnose"]["loop"], result["diagnose"]["io"]
    assert loop["spins"] > 0 and loop["hits"] > 0, loop
    assert loop["hits"] >= loop["spins"] // 2, loop
    assert io["spins"] > 0 and io["hits"] > 0, io


def test_spin_adapt_off_spins_every_time() -> None:
    """``FASTWT_IO_SPIN_ADAPT=0``: the old behaviour, a spin at every chance however far
    off the reply is (nothing skipped, nothing measured)."""
    result = adaptive_run(requests=40, pause=0.005, FASTWT_IO_SPIN_ADAPT="0")
    loop, io = result["diagnose"]["loop"], result["diagnose"]["io"]
    assert result["stats"]["adaptive"] is False
    assert loop["skips"] == 0 and loop["spins"] >= 40, loop
    assert io["skips"] == 0 and io["spins"] > 0, io
    assert loop["waits"] == 0 and io["waits"] == 0


def test_spin_off_reports_no_io_site() -> None:
    """``FASTWT_IO_SPIN_US=0``: the I/O thread has no spin site and the loop never spins."""
    result = adaptive_run(requests=20, pause=0, FASTWT_IO_SPIN_US="0")
    assert result["diagnose"]["io"] is None
    assert result["diagnose"]["loop"]["spins"] == 0


def test_fastwts_own_loop_spins_without_patching_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    """``fastwt.new_event_loop()`` is asyncio's ``SelectorEventLoop`` built with fastwt's
    selector: the hub binds its hook to that selector instead of replacing the loop's
    private ``_selector``, and the loop still spins for a reply (the real selector is
    only polled, never slept in). After the hub closes, the selector only waits."""
    import asyncio
    import threading

    import fastwt
    from fastwt import _bridge

    monkeypatch.setattr(_bridge, "_SPIN_US", 2_000_000)
    timeouts: list[float | None] = []

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        own = _bridge._own_selectors[loop]
        hub = _bridge.get_hub()
        assert hub._spinning_selector is None  # type: ignore[attr-defined]  # nothing patched
        inner = own.inner

        class Recording:
            def select(self, timeout: float | None = None) -> Any:
                timeouts.append(timeout)
                return inner.select(timeout)

        own.inner = Recording()  # type: ignore[assignment]
        await asyncio.sleep(0)
        timeouts.clear()
        token = _bridge.new_token()
        hub.flush_soon()  # as a stream write does
        threading.Timer(0.003, hub.notifier.notify, args=(token,)).start()
        await asyncio.wait_for(hub.park(token), 5)
        own.inner = inner
        return hub.is_waiting(token)

    with asyncio.Runner(loop_factory=fastwt.new_event_loop) as runner:
        assert runner.run(main()) is False
    assert timeouts, "the loop never reached its selector"
    assert all(t == 0 for t in timeouts), timeouts


def test_fastwt_entry_points_run_asyncio_on_fastwts_own_loop() -> None:
    """``ServerApp.run`` and the CLI start asyncio through ``_bridge.run``, which gives
    anyio fastwt's loop factory unless uvloop or another factory is asked for."""
    from fastwt import _bridge

    assert _bridge.asyncio_backend_options(None) == {"loop_factory": _bridge.new_event_loop}
    assert _bridge.asyncio_backend_options({"use_uvloop": True}) == {"use_uvloop": True}
    mine = object()
    assert _bridge.asyncio_backend_options({"loop_factory": mine}) == {"loop_factory": mine}

    async def which() -> type:
        import asyncio

        return type(asyncio.get_running_loop()._selector)  # type: ignore[attr-defined]

    assert _bridge.run(which) is _bridge._SpinningSelector

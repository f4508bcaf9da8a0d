"""An event loop's thread drives the I/O runtime while it waits (rust/bindings/src/baton.rs,
docs/bridge.md "The loop drives the runtime"), and the I/O thread takes it back when no
loop can.

Each case runs in a fresh process: who drives is process-wide state, and the counters
of ``fastwt._core.io_driver_stats()`` start at zero there. The work's place is read from
``/proc`` (each thread's on-CPU time), so the checks are about where the work ran, not
about how fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from fastwt import _backend

from .child_process import run_reporting, thread_cpu_ns

pytestmark = [
    pytest.mark.skipif(not _backend.rust_available(), reason="needs the Rust extension"),
    pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc"),
]

TESTS = str(Path(__file__).resolve().parents[1])

# Paced requests on one session, each a new bidirectional stream; prints the driver
# stats and the on-CPU nanoseconds of each thread (by name) spent on them.
PACED = textwrap.dedent(
    """
    import anyio, json, os, sys
    sys.path.insert(0, {tests!r})
    from fastwt._core import io_driver_stats
    from integration.child_process import thread_cpu_ns
    from integration.echo_server import echo_server

    def cpu_by_thread():
        return thread_cpu_ns(os.getpid())

    async def main():
        async with echo_server() as echo, echo.client() as client:
            session = await client.connect(url=echo.url + "/echo")
            await anyio.sleep(0.1)  # the start-up hand-over settles
            before = cpu_by_thread()
            for i in range({requests}):
                stream = await session.create_bidirectional_stream()
                await stream.write(data=b"ping %d" % i, end_stream=True)
                assert await stream.read_all() == b"ping %d" % i
                await anyio.sleep({pause})
            after = cpu_by_thread()
        cpu = {{k: after.get(k, 0) - before.get(k, 0) for k in after}}
        print("RESULT", json.dumps({{"stats": io_driver_stats(), "cpu": cpu}}))

    anyio.run(main, backend={backend!r})
    """
)


def default_env(**extra: str) -> dict[str, str]:
    """This process's environment without the settings that choose who drives (and the
    backend), plus ``extra``: the children run fastwt's defaults."""
    env = dict(os.environ)
    for name in ("FASTWT_INLINE_IO", "FASTWT_IO_THREADS", "FASTWT_BACKEND"):
        env.pop(name, None)
    env.update(extra)
    return env


def run_script(script: str, **env_extra: str) -> dict[str, Any]:
    return run_reporting(script, default_env(**env_extra), "RESULT", timeout=120)


def io_share(cpu: dict[str, int]) -> float:
    """The I/O thread's part of the process's on-CPU time."""
    total = sum(cpu.values())
    assert total > 0, cpu
    return cpu.get("fastwt-io", 0) / total


def test_a_waiting_loop_drives_the_runtime_itself() -> None:
    """At moderate load the loop's thread runs quinn and the session driver while it
    waits: the I/O thread does almost none of the work (about 4% of the process's CPU
    here, against about 32% with ``FASTWT_INLINE_IO=0``; the bounds leave room for a
    loaded machine)."""
    requests = 60
    result = run_script(
        PACED.format(tests=TESTS, requests=requests, pause=0.005, backend="asyncio")
    )
    stats = result["stats"]
    assert stats["enabled"] is True
    # Every request's wait for its reply was spent driving the runtime.
    assert stats["loop_drives"] >= requests, stats
    share = io_share(result["cpu"])
    assert share < 0.12, (share, result)


def test_inline_io_off_keeps_the_work_on_the_io_thread() -> None:
    """``FASTWT_INLINE_IO=0``: the loop never drives, the I/O thread does the I/O work
    (the measurement above can tell the two apart)."""
    result = run_script(
        PACED.format(tests=TESTS, requests=60, pause=0.005, backend="asyncio"),
        FASTWT_INLINE_IO="0",
    )
    stats = result["stats"]
    assert stats["enabled"] is False
    assert stats["loop_drives"] == 0
    assert stats["driver"] == "io"
    share = io_share(result["cpu"])
    assert share > 0.18, (share, result)


def test_a_trio_loop_leaves_the_runtime_to_the_io_thread() -> None:
    """trio has no selector to drive from: the I/O thread drives, as before."""
    result = run_script(PACED.format(tests=TESTS, requests=30, pause=0.005, backend="trio"))
    stats = result["stats"]
    assert stats["enabled"] is True
    assert stats["loop_drives"] == 0
    assert stats["driver"] == "io"


# The server's loop runs in a thread of its own and blocks it (time.sleep) right after a
# reply was handed over; the client is a trio loop (which never drives). The reply can
# only leave while the server's loop is blocked if the I/O thread takes the runtime.
BLOCKED = textwrap.dedent(
    """
    import asyncio, json, sys, threading, time
    import anyio
    sys.path.insert(0, {tests!r})
    import fastwt
    from fastwt import ClientConfig, WebTransportClient
    from fastwt._core import io_driver_stats
    from integration.echo_server import echo_server

    BLOCK = {block}
    ready = threading.Event()
    box = {{}}

    async def serve():
        from fastwt import ServerConfig, WebTransportServer
        cfg = ServerConfig(bind_host="127.0.0.1", bind_port=0)
        async with WebTransportServer(config=cfg) as server:
            await server.listen()
            box["url"] = "https://127.0.0.1:%d/x" % server.local_addresses[0][1]
            box["hash"] = server.certificate_hash
            ready.set()
            async for session in server.incoming_sessions():
                await session.accept()
                stream = await session.accept_bidirectional_stream()
                data = await stream.read_all()
                await stream.write(data=data, end_stream=True)
                await asyncio.sleep(0)  # one loop turn: the write is handed over
                box["blocked_at"] = time.monotonic()
                time.sleep(BLOCK)  # the loop's thread is stuck in a handler
                box["driver_after"] = io_driver_stats()
                await session.wait_closed()
                return

    def server_thread():
        loop = fastwt.new_event_loop()
        try:
            loop.run_until_complete(serve())
        finally:
            loop.close()

    t = threading.Thread(target=server_thread, daemon=True)
    t.start()
    assert ready.wait(10)

    async def client():
        config = ClientConfig(server_certificate_hashes=[box["hash"]])
        async with WebTransportClient(config=config) as c:
            session = await c.connect(url=box["url"])
            stream = await session.create_bidirectional_stream()
            sent = time.monotonic()
            await stream.write(data=b"hello", end_stream=True)
            reply = await stream.read_all()
            got = time.monotonic()
            await session.close()
        return reply, got - sent, got - box.get("blocked_at", got)

    reply, latency, after_block = anyio.run(client, backend="trio")
    t.join(BLOCK + 10)
    print("RESULT", json.dumps({{"reply": reply.decode(), "latency": latency,
                                "after_block": after_block, "stats": io_driver_stats(),
                                "driver_after": box.get("driver_after")}}))
    """
)


def test_a_blocked_loop_does_not_hold_the_io_back() -> None:
    """A handler that blocks its loop's thread for 1.5 s: the reply it wrote just before
    still leaves at once, because the I/O thread takes the runtime a tick after the loop
    stopped driving it (before the baton, the I/O thread always drove)."""
    block = 1.5
    result = run_script(BLOCKED.format(tests=TESTS, block=block))
    assert result["reply"] == "hello"
    assert result["latency"] < block / 2, result
    stats = result["stats"]
    assert stats["takeovers"] >= 1, result
    assert 0 <= stats["load_takeovers"] <= stats["takeovers"], result


# An idle server on asyncio.run's own loop (its selector wrapped, so its waits drive the
# runtime): Ctrl-C must still stop it promptly, although tokio retries a wait that a
# signal interrupts (the drive returns to Python at least every 50 ms for this).
IDLE_SERVER = textwrap.dedent(
    """
    import asyncio
    from fastwt import ServerConfig, WebTransportServer
    from fastwt._core import io_driver_stats

    async def main():
        cfg = ServerConfig(bind_host="127.0.0.1", bind_port=0)
        async with WebTransportServer(config=cfg) as server:
            await server.listen()
            await asyncio.sleep(0.2)
            print("READY", io_driver_stats()["loop_drives"], flush=True)
            await asyncio.sleep(3600)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("INTERRUPTED", io_driver_stats()["loop_drives"], flush=True)
    """
)


def test_ctrl_c_stops_a_loop_that_drives_the_runtime() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", IDLE_SERVER],
        env=default_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            ready = child.stdout.readline().split()
            assert ready[:1] == ["READY"], (ready, child.stderr.read() if child.stderr else "")
            time.sleep(0.3)
            sent = time.monotonic()
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=10)
            took = time.monotonic() - sent
        finally:
            if child.poll() is None:
                child.kill()
    done = out.split()
    assert done[:1] == ["INTERRUPTED"], (out, err)
    # The idle loop was driving the runtime when the signal came.
    assert int(done[1]) > int(ready[1]) >= 1, (ready, done)
    assert took < 2.0, took


def _one_in_flight_io_share() -> tuple[float, dict[str, int], str]:
    """One run of the benchmarks' echo server under their client with one request in
    flight (another process, 2 s): the I/O thread's share of the server's CPU, the CPU
    by thread, and the client's report."""
    env = default_env()
    server = subprocess.Popen(
        [sys.executable, "-m", "fastwt.bench.server", "--seconds", "30"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().split()
        cert = server.stdout.readline().split()
        assert port[:1] == ["PORT"] and cert[:1] == ["HASH"], (port, cert)
        url = f"https://127.0.0.1:{port[1]}/echo"
        client = [sys.executable, "-m", "fastwt.bench.client", "reqresp", "--url", url]
        client += ["--cert-hash", cert[1], "--concurrency", "1", "--duration", "2"]
        before = thread_cpu_ns(server.pid)
        done = subprocess.run(client, env=env, capture_output=True, text=True, timeout=60)
        after = thread_cpu_ns(server.pid)
    finally:
        server.kill()
        server.wait()
    assert done.returncode == 0, done.stderr
    assert '"errors": 0' in done.stdout, done.stdout
    cpu = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return io_share(cpu), cpu, done.stdout


def test_one_request_in_flight_stays_on_the_loop() -> None:
    """The benchmarks' echo server (``fastwt.bench.server``) under their client with one
    request in flight (``reqresp --concurrency 1``, another process): the server's loop
    is busy nearly all the time, spinning for the next request, yet every drive waits
    for it (it comes only once the reply left), so a second thread could only add a
    hand-off each way. The loop keeps the runtime: the I/O thread does little of the
    server's work (quiet: about 0.01 of its CPU; before the I/O thread looked at whether
    work was waiting for the drives, it took the runtime here and spun, 0.48-0.55 in
    every run, as with ``FASTWT_INLINE_IO=0``).

    On a loaded machine the loop's thread is preempted, its next drives find packets
    waiting, and the I/O thread takes the runtime as for a busy loop (``load_takeovers``,
    3-4 in a 3 s run beside two CPU hogs); each take within four holds of the last
    quadruples the hold, so the I/O thread then drives for most of a run (beside the
    hogs, 0.26 and 0.43 in 2 runs of 5, 0.01 in the others; in CI at a3ccc19, 0.40 once).
    Up to three runs: the defect shows in each, a loaded machine's trials in some."""
    runs = []
    for _ in range(3):
        share, cpu, report = _one_in_flight_io_share()
        runs.append((share, cpu, report))
        if share < 0.35:
            return
    pytest.fail(f"the I/O thread's share was 0.35 or more in 3 runs: {runs}")


# A server's loop (asyncio, driving the runtime while it waits) answers requests that a
# client in another thread sends 5 ms apart (trio: its loop never drives), and also
# serves a socket of its own: each ping, written by a third thread, must be answered by
# the loop's reader at once. The server's loop has no other work, so it looks at its
# selector only where its drives return for it.
OTHER_IO = textwrap.dedent(
    """
    import asyncio, json, socket, sys, threading, time
    import anyio
    sys.path.insert(0, {tests!r})
    from fastwt._core import io_driver_stats
    from integration.echo_server import echo_server

    def traffic(echo, stop):
        async def run():
            async with echo.client() as client:
                session = await client.connect(url=echo.url + "/echo")
                while not stop.is_set():
                    stream = await session.create_bidirectional_stream()
                    await stream.write(data=b"x" * 64, end_stream=True)
                    await stream.read_all()
                    await anyio.sleep(0.005)
                await session.close()
        anyio.run(run, backend="trio")

    def pinger(sock, rounds, out):
        for _ in range(rounds):
            sent = time.monotonic()
            sock.sendall(b"p")
            sock.recv(1)
            out.append(time.monotonic() - sent)
            time.sleep(0.002)

    async def main():
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        loop.add_reader(ours, lambda: ours.send(ours.recv(1)))
        async with echo_server() as echo:
            stop = threading.Event()
            client = threading.Thread(target=traffic, args=(echo, stop))
            client.start()
            await asyncio.sleep(0.3)
            drives_before = io_driver_stats()["loop_drives"]
            times = []
            t = threading.Thread(target=pinger, args=(theirs, {rounds}, times))
            t.start()
            while t.is_alive():
                await asyncio.sleep(0.01)
            drives = io_driver_stats()["loop_drives"] - drives_before
            stop.set()
            while client.is_alive():
                await asyncio.sleep(0.01)
        loop.remove_reader(ours)
        times.sort()
        print("RESULT", json.dumps({{"median": times[len(times) // 2], "max": times[-1],
                                    "drives": drives}}))

    asyncio.run(main())
    """
)


def test_the_loops_own_descriptors_are_served_while_it_drives() -> None:
    """While the loop drives the runtime for requests 5 ms apart, a descriptor it watches
    itself (``add_reader``) is answered at once: a drive returns for the selector's
    events as for the runtime's tokens. Answered 20-100 us after the ping here; where a
    drive returned for the selector without the loop looking at it, the ping waited for
    the next request's wake-up (a median of 0.5 ms with requests 0.5 ms apart)."""
    rounds = 200
    result = run_script(OTHER_IO.format(tests=TESTS, rounds=rounds))
    assert result["drives"] > rounds, result  # the loop was driving meanwhile
    assert result["median"] < 0.0015, result
    assert result["max"] < 0.2, result

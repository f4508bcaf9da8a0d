"""``fastwt run --workers N``: real worker processes on one UDP port (127.0.0.1, port
0), steered by connection ID; clients are fastwt clients over loopback.

The app (tests/integration/workers_app.py) answers each stream on ``/who`` with the
worker index and pid that hold the session.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from cid_tap import CidTap
from process_support import CliProcess, PythonScript

from fastwt import ClientConfig, WebTransportClient, WebTransportError, WebTransportSession
from fastwt.cli import write_dev_certificate
from fastwt.quic_lb import decode_cid

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers need Linux"),
]

APP = "tests.integration.workers_app:app"
SCRIPT = Path(__file__).with_name("workers_run_app.py")


@pytest.fixture
def anyio_backend() -> str:
    """The clients run on asyncio only: what is tested is in the worker processes."""
    return "asyncio"


Start = Callable[..., CliProcess]


class Workers:
    """A running ``fastwt run --workers`` and how to reach it."""

    def __init__(self, process: CliProcess) -> None:
        self.process = process
        match = process.wait_for(r"workers serving on ([\d.]+):(\d+)")
        self.url = f"https://{match.group(1)}:{match.group(2)}/who"
        self.digest = process.wait_for(r"certificate SHA-256:\s+([0-9a-f]{64})").group(1)

    def client(self) -> WebTransportClient:
        config = ClientConfig(server_certificate_hashes=[self.digest], connect_timeout=5)
        return WebTransportClient(config=config)

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.process.output))


def start_args(n: int, *extra: str) -> tuple[str, ...]:
    """``fastwt run`` arguments for ``n`` workers of the test app on a free port."""
    return (
        "run",
        APP,
        "--workers",
        str(n),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--drain-timeout",
        "1",
        "--shutdown-timeout",
        "3",
        *extra,
    )


def start_workers(fastwt_cli: Start, n: int, *extra: str) -> Workers:
    return Workers(fastwt_cli(*start_args(n, *extra)))


async def who(session: WebTransportSession, within: float = 5) -> tuple[int, int]:
    """(worker index, pid) of the worker holding ``session``."""
    with anyio.fail_after(within):
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"?", end_stream=True)
        index, pid = (await stream.read_all()).decode().split()
    return int(index), int(pid)


@asynccontextmanager
async def session_on(
    workers: Workers,
) -> AsyncIterator[tuple[WebTransportClient, WebTransportSession]]:
    """A session from a client of its own (its own UDP port)."""
    async with workers.client() as client:
        session = await client.connect(url=workers.url)
        try:
            yield client, session
        finally:
            with anyio.move_on_after(2, shield=True):
                try:
                    await session.close()
                except WebTransportError:
                    pass


async def test_sessions_spread_over_the_workers_and_each_stays_on_one(fastwt_cli: Start) -> None:
    workers = start_workers(fastwt_cli, 2)
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for _ in range(12):
        async with session_on(workers) as (_, session):
            first = await who(session)
            for _ in range(3):
                assert await who(session) == first, "a session moved between workers"
            seen[first[0]].add(first[1])
    # 12 sessions, each worker equally likely: all on one has odds 2**-11.
    assert all(len(pids) == 1 for pids in seen.values()), seen


async def rebind_until_lost(workers: Workers, times: int) -> tuple[int, str | None]:
    """One session, then its client moves to a new local port ``times`` times, asking
    who holds the session after each move. Returns how many moves it survived and what
    broke it (``None``: it survived every move)."""
    async with session_on(workers) as (client, session):
        holder = await who(session)
        for moved in range(times):
            client.rebind()
            try:
                now = await who(session, within=3)
            except (WebTransportError, TimeoutError) as exc:
                return moved, repr(exc)
            assert now == holder, f"answered by another worker: {now} != {holder}"
        return times, None


async def test_a_client_changing_address_keeps_its_session_on_its_worker(
    fastwt_cli: Start,
) -> None:
    workers = start_workers(fastwt_cli, 2)
    survived, broken = await rebind_until_lost(workers, 12)
    assert broken is None, f"lost after {survived} moves: {broken}"


async def test_steering_reads_the_worker_octet_after_a_server_id(fastwt_cli: Start) -> None:
    """With a 3-octet QUIC-LB server id the worker octet moves to CID offset 4; the
    kernel must still steer by it."""
    workers = start_workers(fastwt_cli, 2, "--server-id", "0a0b0c")
    survived, broken = await rebind_until_lost(workers, 12)
    assert broken is None, f"lost after {survived} moves: {broken}"


async def test_workers_on_trio_keep_sessions_across_address_changes(fastwt_cli: Start) -> None:
    workers = start_workers(fastwt_cli, 2, "--loop", "trio")
    survived, broken = await rebind_until_lost(workers, 6)
    assert broken is None, f"lost after {survived} moves: {broken}"


async def test_without_cid_steering_a_client_changing_address_loses_its_session(
    fastwt_cli: Start,
) -> None:
    """The same moves with the kernel's 4-tuple hash alone (--no-cid-steering): each
    move lands on the other worker with odds 1/2, whose quinn does not know the
    connection (and, sharing the reset key, resets it). 16 moves all on the same
    worker: odds 2**-16."""
    workers = start_workers(fastwt_cli, 2, "--no-cid-steering")
    _, broken = await rebind_until_lost(workers, 16)
    assert broken is not None, "the session survived 16 address changes without steering"


CID_KEY = bytes(range(0x10, 0x20))


def test_encrypted_cids_are_refused_with_cid_steering(
    fastwt_cli: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key hides the worker octet from the BPF program: a clear error, whether the
    key comes from --cid-key or FASTWT_CID_KEY."""
    process = fastwt_cli(*start_args(2, "--server-id", "0a", "--cid-key", CID_KEY.hex()))
    assert process.proc.wait(30) == 1
    assert "hides their worker octet" in process.output and "--no-cid-steering" in process.output
    assert "Traceback" not in process.output and CID_KEY.hex() not in process.output
    monkeypatch.setenv("FASTWT_CID_KEY", CID_KEY.hex())
    process = fastwt_cli(*start_args(1, "--server-id", "0a"))
    assert process.proc.wait(30) == 1
    assert "--no-cid-steering" in process.output


def test_server_app_run_with_a_cid_key_needs_cid_steering_off() -> None:
    from fastwt.workers import WorkersError
    from tests.integration.workers_app import app

    with pytest.raises(WorkersError, match="cid_steering=False"):
        app.run(workers=2, server_id="0a", cid_key=CID_KEY.hex())
    with pytest.raises(TypeError, match="workers=N"):
        app.run(server_id="0a", cid_steering=False)
    with pytest.raises(TypeError, match="cid_steering must be a bool"):
        app.run(workers=2, cid_steering="no")


async def test_encrypted_cids_name_the_worker_for_a_load_balancer_with_the_key(
    fastwt_cli: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--cid-key (here from FASTWT_CID_KEY) with --no-cid-steering: sessions are
    served, and the CIDs each client was given decrypt with the key to the server id
    and the index of the worker that holds its session. Each session goes through a
    relay of its own (its own 4-tuple to the group, so the kernel spreads them)."""
    monkeypatch.setenv("FASTWT_CID_KEY", CID_KEY.hex())
    workers = start_workers(fastwt_cli, 2, "--no-cid-steering", "--server-id", "0a0b")
    port = int(workers.url.rsplit(":", 1)[1].split("/")[0])
    held: set[int] = set()
    for _ in range(20):
        with CidTap(("127.0.0.1", port), 17) as tap:
            async with workers.client() as client:
                session = await client.connect(url=f"https://127.0.0.1:{tap.port}/who")
                index, _ = await who(session)
                await who(session)  # more short-header packets
                await session.close()
        assert tap.dcids, f"no short-header packet among {tap.packets}"
        for cid in tap.dcids:
            decoded = decode_cid(cid, 2, CID_KEY)
            assert decoded is not None
            assert (decoded.server_id, decoded.worker) == (b"\x0a\x0b", index), cid.hex()
            assert cid[1:3] != b"\x0a\x0b", "the server id is not in the clear"
        held.add(index)
        if held == {0, 1}:
            break
    # 20 sessions all on one worker: odds 2**-19.
    assert held == {0, 1}, held


async def test_a_killed_worker_is_restarted_and_the_other_sessions_live_on(
    fastwt_cli: Start,
) -> None:
    workers = start_workers(fastwt_cli, 2)
    if True:
        clients: dict[int, tuple[WebTransportClient, WebTransportSession, int]] = {}
        opened: list[WebTransportClient] = []
        try:
            for _ in range(30):
                client = workers.client()
                opened.append(client)
                session = await client.connect(url=workers.url)
                index, pid = await who(session)
                clients.setdefault(index, (client, session, pid))
                if len(clients) == 2:
                    break
            assert len(clients) == 2, "30 sessions all on one worker"
            _, doomed, doomed_pid = clients[0]
            _, survivor, survivor_pid = clients[1]
            os.kill(doomed_pid, signal.SIGKILL)
            # The supervisor starts worker 0 again on the same socket.
            deadline = time.monotonic() + 30
            while workers.count(r"worker 0 \(slot 0\) ready") < 2:
                assert time.monotonic() < deadline, workers.process.output
                await anyio.sleep(0.1)
            assert await who(survivor) == (1, survivor_pid), "the other worker's session"
            # The new worker 0 reads the dead one's socket: sharing the group's reset
            # key, it resets the dead worker's connection at its next packet.
            with pytest.raises((WebTransportError, TimeoutError)):
                await who(doomed, within=5)
            fresh: set[int] = set()
            for _ in range(30):
                async with session_on(workers) as (_, session):
                    index, pid = await who(session)
                    if index == 0:
                        fresh.add(pid)
                        break
            assert fresh and doomed_pid not in fresh, fresh
        finally:
            for client in opened:
                await client.close()


async def test_sighup_replaces_every_worker_without_refusing_sessions(fastwt_cli: Start) -> None:
    workers = start_workers(fastwt_cli, 2)
    before: set[int] = set()
    for _ in range(8):
        async with session_on(workers) as (_, session):
            before.add((await who(session))[1])
    results: list[tuple[float, int | str]] = []
    stop = anyio.Event()

    async def keep_connecting() -> None:
        while not stop.is_set():
            # an attempt is dated by its start: one begun before the replacement may
            # still land on an old worker, which drains the sessions it has
            started = time.monotonic()
            try:
                async with session_on(workers) as (_, session):
                    results.append((started, (await who(session))[1]))
            except (WebTransportError, TimeoutError) as exc:
                results.append((started, repr(exc)))
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as tg:
        tg.start_soon(keep_connecting)
        await anyio.sleep(0.5)
        workers.process.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while workers.count("every worker replaced") < 1:
            assert time.monotonic() < deadline, workers.process.output
            await anyio.sleep(0.1)
        replaced_at = time.monotonic()
        while time.monotonic() < replaced_at + 1.0 or len(results) < 20:
            await anyio.sleep(0.1)
        stop.set()
    failures = [r for _, r in results if isinstance(r, str)]
    assert not failures, failures
    after = {pid for t, pid in results if t > replaced_at and isinstance(pid, int)}
    assert after and not after & before, (before, after)


def test_sigterm_stops_every_worker_within_a_bound(fastwt_cli: Start) -> None:
    workers = start_workers(fastwt_cli, 2)
    pids = [int(p) for p in re.findall(r"started, pid (\d+)", workers.process.output)]
    assert len(pids) == 2
    started = time.monotonic()
    workers.process.proc.send_signal(signal.SIGTERM)
    assert workers.process.proc.wait(20) == 0
    # drain 1 s + shutdown 3 s + 2 s margin is the bound; idle workers go at once.
    assert time.monotonic() - started < 6.5
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_workers_report_a_bad_app_and_exit(fastwt_cli: Start) -> None:
    process = fastwt_cli(
        "run", "tests.integration.workers_app:nope", "--workers", "2", "--port", "0"
    )
    assert process.proc.wait(30) != 0
    assert "no attribute" in process.output


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    digest = write_dev_certificate(tmp_path)
    monkeypatch.setenv("WORKERS_TEST_CERT", str(tmp_path / "cert.pem"))
    monkeypatch.setenv("WORKERS_TEST_KEY", str(tmp_path / "key.pem"))
    return digest


async def test_server_app_run_with_workers(certificate: str) -> None:
    """``app.run(workers=2)`` from a script: the workers import the script again (not
    as ``__main__``) and find its app; sessions reach both."""
    script = PythonScript(SCRIPT)
    try:
        port = script.wait_for(r"2 workers serving on 127.0.0.1 port (\d+)").group(1)
        config = ClientConfig(server_certificate_hashes=[certificate], connect_timeout=5)
        indices: set[int] = set()
        for _ in range(12):
            async with WebTransportClient(config=config) as client:
                session = await client.connect(url=f"https://127.0.0.1:{port}/who")
                indices.add((await who(session))[0])
                await session.close()
        assert indices == {0, 1}
    finally:
        assert script.stop() == 0, script.output


def test_a_hung_worker_is_killed_and_replaced(certificate: str) -> None:
    """A worker that stops answering (SIGSTOP: no heartbeat) is killed after the
    heartbeat timeout (2 s here) and started again on its socket."""
    script = PythonScript(SCRIPT, "--supervisor")
    try:
        script.wait_for(r"supervisor serving on")
        pid = int(script.wait_for(r"worker 1 \(slot 1\) started, pid (\d+)").group(1))
        os.kill(pid, signal.SIGSTOP)
        script.wait_for(rf"worker 1 \(pid {pid}\) stopped answering: killed", timeout=15)
        deadline = time.monotonic() + 15
        while len(pids := re.findall(r"worker 1 \(slot 1\) started, pid (\d+)", script.output)) < 2:
            assert time.monotonic() < deadline, script.output
            time.sleep(0.1)
        assert int(pids[1]) != pid
        while script.output.count("worker 1 (slot 1) ready") < 2:
            assert time.monotonic() < deadline, script.output
            time.sleep(0.1)
    finally:
        assert script.stop() == 0, script.output


def test_workers_are_linux_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastwt.workers import Supervisor, WorkerOptions, WorkersError

    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(WorkersError, match="needs Linux"):
        Supervisor(WorkerOptions(app="x:app", workers=2))


def test_a_taken_port_is_a_one_line_error(fastwt_cli: Start) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        process = fastwt_cli(
            "run", APP, "--workers", "2", "--host", "127.0.0.1", "--port", str(port)
        )
        assert process.proc.wait(30) == 1
    assert re.search(r"fastwt run: error: cannot bind UDP 127.0.0.1 port \d+", process.output)
    assert "Traceback" not in process.output


def test_workers_of_a_killed_supervisor_stop_by_themselves(fastwt_cli: Start) -> None:
    """SIGKILL leaves the supervisor no say: its workers notice the broken status pipe
    at their next heartbeat and stop, which frees the port (a plain socket can bind it
    again once every socket of the group is closed)."""
    workers = start_workers(fastwt_cli, 2)
    port = int(workers.url.rsplit(":", 1)[1].split("/")[0])
    workers.process.proc.kill()
    workers.process.proc.wait()
    deadline = time.monotonic() + 15
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline, "the workers kept the port"
        time.sleep(0.1)


async def test_sigterm_drains_open_sessions_then_stops(fastwt_cli: Start) -> None:
    """Open sessions see GOAWAY (``draining``), and are closed at the end of the drain
    (1 s here) by the graceful close; the supervisor exits 0 within drain + shutdown
    (3 s) + 2 s."""
    workers = start_workers(fastwt_cli, 2)
    async with workers.client() as client:
        sessions = [await client.connect(url=workers.url) for _ in range(4)]
        for session in sessions:
            await who(session)
        started = time.monotonic()
        workers.process.proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(6):
            for session in sessions:
                await session.wait_closed()
        assert all(session.draining for session in sessions), "no GOAWAY before the close"
        assert time.monotonic() - started >= 0.9, "closed before the drain timeout"
    assert await anyio.to_thread.run_sync(workers.process.proc.wait, 10) == 0
    assert time.monotonic() - started < 6.5


async def test_rooms_without_a_broker_are_refused_in_workers(fastwt_cli: Start) -> None:
    """The supervisor tells its workers how many they are (FASTWT_WORKER_COUNT), so a
    room that would be split between them without a broker is a clear error."""
    workers = start_workers(fastwt_cli, 2)
    async with workers.client() as client:
        session = await client.connect(url=workers.url.replace("/who", "/room"))
        with anyio.fail_after(5):
            stream = await session.create_bidirectional_stream()
            await stream.write(data=b"?", end_stream=True)
            answer = (await stream.read_all()).decode()
    assert answer.startswith("error: ") and "broker" in answer, answer

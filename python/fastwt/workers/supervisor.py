"""The supervisor of ``fastwt run --workers N``: pure Python, it never loads the Rust
runtime (which does not survive ``fork``).

It makes the ``SO_REUSEPORT`` UDP sockets of the group and holds them for its whole
life, so that socket indices (which the connection IDs name) never shift; attaches the
steering BPF program; starts each worker as a fresh interpreter (``spawn`` semantics:
``subprocess`` with the worker's socket in ``pass_fds``), hands it its socket, slot and
the group's secret on a pipe; watches each worker's heartbeat and restarts one that
dies or hangs (same index, same socket); on SIGTERM/SIGINT drains every worker
(HTTP/3 GOAWAY, then the graceful close) and stops within a bound; on SIGHUP replaces
the workers one by one.

Rolling replacement (SIGHUP). One UDP socket carries every connection of its worker,
so a replacement cannot share the old worker's socket (it would read, and reset, the
old worker's packets). With steering the group holds ``2 N`` sockets, two slots per
worker index (``i`` and ``N + i``): the replacement starts on the idle slot, and once it
is ready the BPF program sends new connections to it while the old worker's
connections, whose CIDs name the old slot, keep reaching the old worker as it drains.
Without steering (``steering=False``, a diagnostic mode) the group holds ``N`` sockets
and the replacement gets a duplicate of the old worker's socket: during the overlap
the two share its packets, and the old worker's sessions may break.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ServerError
from . import bpf

__all__ = ["Supervisor", "WorkerOptions", "WorkersError"]

_log = logging.getLogger("fastwt.workers")

NONCE_LEN = 9
"""Octets of the nonce of fastwt's CIDs (``fastwt_core::cid::NONCE_LEN``); the worker
octet comes before it, right after the configured server id."""
MAX_SERVER_ID_LEN = 9


class WorkersError(ServerError):
    """The workers could not be started (bad options, an unsupported platform, a port
    that cannot be bound, a worker that fails before it is ready)."""


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    """What the supervisor needs; the defaults are those of ``fastwt run --workers``."""

    app: str
    """``module:attribute`` or ``path/to/file.py:attribute`` of the ``ServerApp``."""
    workers: int
    host: str = "::"
    port: int = 4433
    steering: bool = True
    """Connection-ID steering (the BPF program and the worker octet in CIDs). Off, the
    kernel's 4-tuple hash alone picks a worker: a client whose address changes lands
    on another worker (a diagnostic mode, to see why steering exists)."""
    server_id: bytes = b""
    """QUIC-LB server id written in every CID (0..9 octets)."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """``ServerConfig`` fields for every worker (JSON-serialisable values)."""
    backend: str = "asyncio"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    drain_timeout: float = 5.0
    """On stop and on replacement: seconds a worker waits after GOAWAY for its sessions
    to end before it closes them."""
    shutdown_timeout: float = 10.0
    """Seconds past the drain a worker is given to close before it is killed."""
    ready_timeout: float = 30.0
    """Seconds a new worker has to import the app and listen."""
    heartbeat_timeout: float = 10.0
    """A worker silent this long is considered hung, killed and restarted."""
    env: Mapping[str, str] = field(default_factory=dict)
    log_level: str | None = None
    """``fastwt run --log-level`` for the workers (None: info)."""
    log_config: str | None = None
    """``fastwt run --log-config`` for the workers."""
    access_log: bool = True


@dataclass
class _Worker:
    index: int
    slot: int
    proc: subprocess.Popen[bytes]
    status: int  # read end of the worker's status pipe
    started: float
    ready: bool = False
    last_beat: float = 0.0
    stopping_since: float | None = None
    buffer: bytes = b""


class Supervisor:
    """Runs ``options.workers`` workers of one app on one UDP port until stopped."""

    def __init__(self, options: WorkerOptions) -> None:
        if not sys.platform.startswith("linux"):
            raise WorkersError(
                "--workers needs Linux (SO_REUSEPORT groups steered by BPF); "
                f"this is {sys.platform}"
            )
        if not 1 <= options.workers <= bpf.MAX_WORKERS:
            raise WorkersError(f"workers must be 1..{bpf.MAX_WORKERS}, got {options.workers}")
        if len(options.server_id) > MAX_SERVER_ID_LEN:
            raise WorkersError(f"server_id must be at most {MAX_SERVER_ID_LEN} octets")
        self.options = options
        self.cid_len = 1 + len(options.server_id) + 1 + NONCE_LEN
        self.secret = os.urandom(32)
        self.sockets: list[socket.socket] = []
        # active[i]: the slot (socket index) of worker i's current process.
        self.active = list(range(options.workers))
        self.workers: dict[int, _Worker] = {}  # by slot
        self.retiring: list[_Worker] = []
        self._signals: list[int] = []
        self._wake_r, self._wake_w = os.pipe()
        # The signal handler must never block on a full pipe.
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._restarts: dict[int, list[float]] = {}
        self._deferred: list[tuple[float, int]] = []
        self.address: tuple[str, int] | None = None

    # ------------------------------------------------------------------ sockets

    def bind(self) -> tuple[str, int]:
        """Makes the group's sockets (``2 N`` with steering, ``N`` without) on one port and
        attaches the BPF program; returns the bound (host, port)."""
        opts = self.options
        host = {"localhost": "127.0.0.1", "": "::"}.get(opts.host, opts.host).strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        count = 2 * opts.workers if opts.steering else opts.workers
        port = opts.port
        try:
            for _ in range(count):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                self.sockets.append(sock)  # closed below if anything fails
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind((host, port))
                port = sock.getsockname()[1]
            if opts.steering:
                self._attach()
        except OSError as exc:
            self.close_sockets()
            raise WorkersError(f"cannot bind UDP {host} port {opts.port}: {exc}") from exc
        self.address = (host, port)
        return self.address

    def _attach(self) -> None:
        # fastwt_core::cid: config rotation 0b111 (unroutable) without a server id, 0
        # with one; then the CID's length - 1.
        config = 0 if self.options.server_id else 0b111
        prog = bpf.program(
            cid_len=self.cid_len,
            worker_at=1 + len(self.options.server_id),
            first_octet=(config << 5) | (self.cid_len - 1),
            active=self.active,
            slots=len(self.sockets),
        )
        bpf.attach(self.sockets[0], prog)

    def close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    # ------------------------------------------------------------------ workers

    def _spawn(self, index: int, slot: int) -> _Worker:
        opts = self.options
        fd = os.dup(self.sockets[slot].fileno())
        status_r, status_w = os.pipe()
        config = {
            "app": opts.app,
            "index": index,
            "slot": slot,
            "workers": opts.workers,
            "fd": fd,
            "status_fd": status_w,
            "steering": opts.steering,
            "server_id": opts.server_id.hex(),
            "secret": self.secret.hex(),
            "overrides": dict(opts.overrides),
            "backend": opts.backend,
            "backend_options": dict(opts.backend_options),
            "drain_timeout": opts.drain_timeout,
            "shutdown_timeout": opts.shutdown_timeout,
            "log_level": opts.log_level,
            "log_config": opts.log_config,
            "access_log": opts.access_log,
            "cwd": os.getcwd(),
            "sys_path": [p for p in sys.path if p],
        }
        env = {
            **os.environ,
            **opts.env,
            "FASTWT_WORKER_INDEX": str(index),
            # Read by rooms (framework/rooms.py): without a broker, rooms split over
            # several workers are refused instead of silently split.
            "FASTWT_WORKER_COUNT": str(opts.workers),
        }
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fastwt.workers._worker"],
                stdin=subprocess.PIPE,
                pass_fds=(fd, status_w),
                env=env,
                # A process group of its own, so that a terminal's Ctrl-C reaches the
                # supervisor only (it stops the workers); not a new session, which
                # with the kernel's autogroup scheduling (sched_autogroup_enabled)
                # puts the worker in a CPU group of its own: measured here, that cut
                # one worker's request rate to 0.4-0.6 of one process's.
                process_group=0,
            )
        finally:
            os.close(fd)
            os.close(status_w)
        assert proc.stdin is not None  # stdin=PIPE
        # The secret goes on the pipe, not in argv or the environment.
        proc.stdin.write(json.dumps(config).encode())
        proc.stdin.close()
        os.set_blocking(status_r, False)
        now = time.monotonic()
        worker = _Worker(index=index, slot=slot, proc=proc, status=status_r, started=now)
        worker.last_beat = now
        self.workers[slot] = worker
        _log.info("worker %d (slot %d) started, pid %d", index, slot, proc.pid)
        return worker

    def _read_status(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.status, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return
        worker.last_beat = time.monotonic()
        worker.buffer += data
        while b"\n" in worker.buffer:
            line, worker.buffer = worker.buffer.split(b"\n", 1)
            if line == b"ready" and not worker.ready:
                worker.ready = True
                _log.info("worker %d (slot %d) ready", worker.index, worker.slot)

    def _pump(self, timeout: float) -> None:
        """Waits up to ``timeout`` for worker status or a signal, and reads them."""
        fds = [self._wake_r] + [w.status for w in self._all()]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            readable = []
        if self._wake_r in readable:
            try:
                os.read(self._wake_r, 512)
            except BlockingIOError:
                pass
        for worker in self._all():
            if worker.status in readable:
                self._read_status(worker)

    def _all(self) -> list[_Worker]:
        return [*self.workers.values(), *self.retiring]

    def _wait_ready(self, worker: _Worker) -> bool:
        deadline = time.monotonic() + self.options.ready_timeout
        while not worker.ready:
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                return False
            if self._stop_requested():
                return False
            self._pump(0.1)
        return True

    def _stop(self, worker: _Worker) -> None:
        """Asks a worker to drain and stop (SIGTERM); it is reaped later."""
        if worker.stopping_since is None and worker.proc.poll() is None:
            worker.stopping_since = time.monotonic()
            worker.proc.send_signal(signal.SIGTERM)

    def _stop_bound(self) -> float:
        return self.options.drain_timeout + self.options.shutdown_timeout + 2.0

    def _reap(self, worker: _Worker) -> bool:
        """True once the worker's process is gone (killed if past its stop bound)."""
        if worker.proc.poll() is not None:
            os.close(worker.status)
            return True
        if (
            worker.stopping_since is not None
            and time.monotonic() - worker.stopping_since > self._stop_bound()
        ):
            _log.warning("worker %d (pid %d) did not stop: killed", worker.index, worker.proc.pid)
            worker.proc.kill()
            worker.proc.wait()
            os.close(worker.status)
            return True
        return False

    # ------------------------------------------------------------------ signals

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)
        try:
            os.write(self._wake_w, b"s")
        except OSError:  # pragma: no cover - a full pipe already wakes the loop
            pass

    def _stop_requested(self) -> bool:
        return any(s in (signal.SIGTERM, signal.SIGINT) for s in self._signals)

    # ------------------------------------------------------------------ main loop

    def run(self, *, on_ready: Any = None) -> int:
        """Binds, starts the workers and supervises them until SIGTERM or SIGINT; returns
        the exit status (0 after a clean stop, 1 when the workers could not start)."""
        if not self.sockets:
            self.bind()
        if threading.current_thread() is not threading.main_thread():
            self.close_sockets()
            raise WorkersError("the workers' supervisor must run in the main thread (signals)")
        previous = {
            s: signal.signal(s, self._on_signal)
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            for index in range(self.options.workers):
                worker = self._spawn(index, self.active[index])
                if not self._wait_ready(worker):
                    if self._stop_requested():
                        break
                    raise WorkersError(
                        f"worker {index} failed to start (exit status {worker.proc.poll()})"
                    )
            else:
                assert self.address is not None  # bound above
                host, port = self.address
                _log.info(
                    "%d workers serving on %s port %d (steering %s)",
                    self.options.workers,
                    host,
                    port,
                    "on" if self.options.steering else "off",
                )
                if on_ready is not None:
                    on_ready(self.address)
            while True:
                if self._stop_requested():
                    break
                if signal.SIGHUP in self._signals:
                    self._signals = [s for s in self._signals if s != signal.SIGHUP]
                    self._roll()
                    continue
                self._pump(0.2)
                self._supervise()
            return 0
        except WorkersError as exc:
            _log.error("%s", exc)
            return 1
        finally:
            self._shutdown()
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.close_sockets()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _supervise(self) -> None:
        now = time.monotonic()
        self._run_deferred()
        self.retiring = [w for w in self.retiring if not self._reap(w)]
        for slot, worker in list(self.workers.items()):
            code = worker.proc.poll()
            hung = worker.ready and now - worker.last_beat > self.options.heartbeat_timeout
            stuck = not worker.ready and now - worker.started > self.options.ready_timeout
            if code is None and not hung and not stuck:
                continue
            if stuck:
                _log.warning(
                    "worker %d (pid %d) not ready after %.0f s: killed",
                    worker.index,
                    worker.proc.pid,
                    self.options.ready_timeout,
                )
                worker.proc.kill()
                worker.proc.wait()
            elif hung:
                _log.warning(
                    "worker %d (pid %d) stopped answering: killed", worker.index, worker.proc.pid
                )
                worker.proc.kill()
                worker.proc.wait()
            else:
                _log.warning(
                    "worker %d (pid %d) exited with status %s", worker.index, worker.proc.pid, code
                )
            os.close(worker.status)
            del self.workers[slot]
            if self._backoff(worker.index):
                self._spawn(worker.index, slot)

    def _backoff(self, index: int) -> bool:
        """Restarts are immediate, except after 5 within 10 s (a crash loop): then the
        slot is filled again 2 s later."""
        now = time.monotonic()
        times = [t for t in self._restarts.get(index, []) if now - t < 10.0]
        self._restarts[index] = times
        if len(times) >= 5:
            self._deferred.append((now + 2.0, index))
            _log.warning("worker %d keeps failing: next start in 2 s", index)
            return False
        times.append(now)
        return True

    def _run_deferred(self) -> None:
        now = time.monotonic()
        due = [(t, i) for t, i in self._deferred if t <= now]
        self._deferred = [(t, i) for t, i in self._deferred if t > now]
        for _, index in due:
            slot = self.active[index]
            if slot not in self.workers:
                self._restarts.setdefault(index, []).append(now)
                self._spawn(index, slot)

    def _roll(self) -> None:
        """SIGHUP: each worker in turn gets a new process, which must be ready before
        the old one is told to drain; new sessions are never refused meanwhile."""
        _log.info("SIGHUP: replacing %d workers one by one", self.options.workers)
        n = self.options.workers
        for index in range(n):
            old_slot = self.active[index]
            new_slot = (old_slot + n) % (2 * n) if self.options.steering else old_slot
            if self.options.steering:
                # An old process from a previous SIGHUP may still drain on that slot.
                for worker in [w for w in self.retiring if w.slot == new_slot]:
                    while not self._reap(worker):
                        self._pump(0.05)
                    self.retiring.remove(worker)
            old = self.workers.pop(old_slot, None)
            new = self._spawn(index, new_slot)
            if not self._wait_ready(new):
                if self._stop_requested():
                    _log.info("SIGHUP: replacement interrupted by a stop")
                else:
                    _log.error("SIGHUP: the new worker %d did not start; the old one stays", index)
                self.workers.pop(new_slot, None)
                self._stop(new)
                self.retiring.append(new)
                if old is not None:
                    self.workers[old_slot] = old
                return
            self.active[index] = new_slot
            if self.options.steering:
                self._attach()
            if old is not None:
                self._stop(old)
                self.retiring.append(old)
        _log.info("SIGHUP: every worker replaced")

    def _shutdown(self) -> None:
        """Drains and stops every worker, killing those past the bound."""
        everyone = self._all()
        for worker in everyone:
            self._stop(worker)
        pending = list(everyone)
        while pending:
            pending = [w for w in pending if not self._reap(w)]
            if pending:
                if sum(1 for s in self._signals if s == signal.SIGINT) >= 2:
                    for w in pending:  # a second Ctrl-C: no more waiting
                        w.stopping_since = -1e9
                time.sleep(0.05)
        self.workers.clear()
        self.retiring.clear()


def run(options: WorkerOptions, *, on_ready: Any = None) -> int:
    """Runs the supervisor in this (main) thread until SIGTERM/SIGINT."""
    return Supervisor(options).run(on_ready=on_ready)


def parse_server_id(text: str | bytes | None) -> bytes:
    """A server id from hex text (``"0a0b"``) or bytes."""
    if text is None:
        return b""
    if isinstance(text, bytes):
        return text
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise WorkersError(f"server_id must be hex octets, got {text!r}") from None

"""Type stubs of the compiled module ``fastwt._core`` (checked by ``mypy.stubtest``).

The contract is in docs/bridge.md: ``poll_*`` methods and ``Op.poll`` return a result
when one is ready, else ``None`` after registering ``token`` with ``notifier``.
"""

from collections.abc import Iterable, Iterator
from typing import Any, final

from ._types import ClientDefaults, CoreErrorCodes, ServerDefaults

__all__ = [
    "CLIENT_DEFAULTS",
    "CONGESTION_CONTROLS",
    "ERROR_CODES",
    "MAX_SESSIONS_PER_CONNECTION",
    "REJECTION_STATUS",
    "SERVER_DEFAULTS",
    "ClientHandle",
    "LoopDriver",
    "Notifier",
    "Op",
    "RecvStreamHandle",
    "SendStreamHandle",
    "ServerHandle",
    "SessionHandle",
    "Transport",
    "__version__",
    "broadcast_datagram",
    "broadcast_stream",
    "decode_cid",
    "dropped_log_records",
    "generate_dev_certificate",
    "io_driver_stats",
    "io_spin_us",
    "io_threads",
    "next_log_records",
    "set_log_level",
    "spin_stats",
]

__version__: str
# The core's defaults, bounds and codes (rust/bindings/src/defaults.rs): config.py and
# errors.py derive from these instead of writing the values again.
SERVER_DEFAULTS: ServerDefaults
CLIENT_DEFAULTS: ClientDefaults
ERROR_CODES: CoreErrorCodes
REJECTION_STATUS: tuple[int, int]
CONGESTION_CONTROLS: tuple[str, ...]
MAX_SESSIONS_PER_CONNECTION: int

def decode_cid(
    cid: bytes, server_id_len: int, key: bytes | None = None
) -> tuple[int, bytes, int] | None:
    """What a QUIC-LB load balancer reads from a fastwt CID: (config rotation, server id,
    worker octet), decrypting it first with ``key``; None if the length does not fit."""

def generate_dev_certificate(names: list[str] | None = None) -> tuple[str, str, str]:
    """(certificate PEM, key PEM, hex SHA-256): ECDSA P-256, valid 13 days, for
    localhost, 127.0.0.1, ::1 and ``names``."""

def broadcast_datagram(
    handles: Iterable[SessionHandle], data: bytes | bytearray | memoryview
) -> int:
    """Sends ``data`` as one datagram on every session of ``handles`` in one call (the
    GIL released from 1,000 sessions on); returns how many took it. Closed sessions,
    sessions without datagrams and sessions whose limit is below ``len(data)`` are
    skipped, never raised for."""

def broadcast_stream(
    handles: Iterable[SessionHandle], data: bytes | bytearray | memoryview, timeout: float = 10.0
) -> int:
    """Sends ``data`` on a new unidirectional stream of every open session of
    ``handles`` (the stream holds exactly ``data``, then ends); returns how many were
    started. A stream not written within ``timeout`` s is reset with code 0x10b."""

def set_log_level(level: int) -> None:
    """The most verbose Python logging level the Rust side produces records for."""

def next_log_records(timeout: float) -> list[tuple[int, str, str]]:
    """Waits up to ``timeout`` s (GIL released); returns (level, target, message)s."""

def dropped_log_records() -> int:
    """Records lost because the queue (10,000) was full."""

def io_threads() -> int:
    """How many tokio I/O threads the extension runs (env ``FASTWT_IO_THREADS``)."""

def io_spin_us() -> int:
    """Microseconds the I/O thread polls after activity before sleeping
    (env ``FASTWT_IO_SPIN_US``; 0: it does not spin)."""

def io_driver_stats() -> dict[str, Any]:
    """Who drives the I/O runtime: ``enabled`` (``FASTWT_INLINE_IO``), ``driver``
    ("loop", "io" or "free"), ``loop_drives``, ``takeovers`` (of which
    ``load_takeovers`` were for a busy loop with work waiting, the rest for a loop that
    left the runtime unattended), ``handbacks``, and the averages it decides by:
    ``loop_idle``, ``io_busy`` (shares of the time) and ``work_waiting`` (the share of
    the loops' recent drives that found work waiting)."""

def spin_stats() -> dict[str, Any]:
    """The I/O thread's spin site (``"io"``, None when it does not spin): spins, hits,
    skips, waits, mean_wait_us, spinning; and ``"adaptive"`` (``FASTWT_IO_SPIN_ADAPT``)."""

@final
class Notifier:
    """Collects tokens woken on tokio threads for one event loop."""

    def __new__(cls) -> Notifier: ...
    def fileno(self) -> int:
        """Readable when tokens are ready."""
    def drain(self, read_pipe: bool = True) -> list[int]:
        """Every ready token since the last call; ``read_pipe=False`` after a successful
        ``spin_wait`` skips the pipe read when no byte was written."""
    def notify(self, token: int) -> None:
        """Marks ``token`` ready from Python."""
    def poke(self) -> None:
        """Makes ``fileno()`` readable (after a ``spin_wait`` that found tokens)."""
    def flush(self) -> None:
        """Wakes the I/O side for every write deferred since the last flush."""
    @property
    def spinning(self) -> bool:
        """Whether this loop's thread is in ``spin_wait`` now (diagnostics)."""
    def spin_wait(self, micros: int) -> bool:
        """Waits up to ``micros`` for a token without sleeping; True when one is ready."""
    def idle_spin(self, micros: int) -> float | None:
        """``spin_wait`` only while this loop's recent waits for a token were short (each
        measured); None when tokens are ready, else the seconds spun (0.0: skipped)."""
    def spin_stats(self) -> dict[str, Any]:
        """This loop's spin site: spins, hits, skips, waits, mean_wait_us, spinning."""

@final
class LoopDriver:
    """One event loop's turn at driving the I/O runtime where it would sleep."""

    def __new__(cls, selector_fd: int, notifier: Notifier) -> LoopDriver: ...
    @property
    def available(self) -> bool:
        """Whether ``drive()`` would drive now (the runtime is free for a loop)."""
    def drive(self, timeout: float | None = None, spin_us: int = 0) -> bool | None:
        """Runs the runtime on this thread until the selector has events, a token is
        ready, ``timeout`` passes (at most 50 ms) or the I/O thread wants it, busy-polling
        it for up to ``spin_us`` first while this loop's waits are short. None when it
        could not; else whether tokens are ready (they wrote no pipe byte)."""
    def flush(self) -> bool | None:
        """Hands the writes deferred since the last flush to the runtime in one runtime
        turn on this thread that does not wait. None when the runtime is not free for it
        (flush the notifier instead); else whether tokens are ready, as for ``drive``."""
    def wait_begin(self) -> None:
        """The loop sleeps in its own selector (counted as idle)."""
    def wait_end(self) -> None:
        """The loop woke from its selector."""
    def close(self) -> None:
        """Stops watching the selector and leaves the runtime's loops."""

@final
class Op:
    """A spawned Rust operation."""

    def poll(self, notifier: Notifier, token: int) -> Any | None:
        """The result (``True`` when there is none) or ``None`` while pending."""

@final
class Transport:
    """QUIC knobs shared by servers and clients (checked when made)."""

    def __new__(
        cls,
        *,
        max_idle_timeout: float | None = ...,
        keep_alive_interval: float | None = ...,
        max_concurrent_bidi_streams: int = ...,
        max_concurrent_uni_streams: int = ...,
        stream_receive_window: int = ...,
        receive_window: int = ...,
        send_window: int = ...,
        datagram_queue_capacity: int | None = ...,
        datagram_queue_bytes: int = ...,
        congestion_control: str = ...,
        wt_max_data: int = ...,
        wt_max_streams_bidi: int = ...,
        wt_max_streams_uni: int = ...,
    ) -> Transport: ...

@final
class ServerHandle:
    # The `...` defaults are fastwt-core's ServerOptions::default() (SERVER_DEFAULTS).
    def __new__(
        cls,
        *,
        bind: list[tuple[str, int]],
        certfile: str | None = None,
        keyfile: str | None = None,
        max_sessions: int = ...,
        pending_request_capacity: int = ...,
        request_timeout: float = ...,
        transport: Transport | None = None,
        max_sessions_per_ip: int | None = ...,
        max_handshakes: int = ...,
        retry: bool = ...,
        client_auth: str = "none",
        client_ca: str | None = None,
        sockets: list[int] = ...,
        server_id: bytes | None = None,
        cid_config_id: int = 0,
        worker: int | None = None,
        worker_secret: bytes | None = None,
        max_sessions_per_connection: int = ...,
        cid_key: bytes | None = None,
    ) -> ServerHandle: ...
    def local_addresses(self) -> list[tuple[str, int]]: ...
    def certificate_hash(self) -> str: ...
    def session_count(self) -> int: ...
    def handshake_count(self) -> int: ...
    def goaway(self) -> None: ...
    def set_identity(self, certfile: str | None = None, keyfile: str | None = None) -> None: ...
    def poll_request(self, notifier: Notifier, token: int) -> SessionHandle | None: ...
    def close(self, code: int, reason: str, grace: float) -> Op: ...

@final
class ClientHandle:
    def __new__(
        cls,
        *,
        trust: str = "system",
        ca_certs: str | None = None,
        certificate_hashes: list[str] = ...,
        certfile: str | None = None,
        keyfile: str | None = None,
        connect_timeout: float | None = None,
        headers: list[tuple[str, str]] = ...,
        user_agent: str | None = None,
        transport: Transport | None = None,
    ) -> ClientHandle: ...
    def connect(
        self, url: str, headers: list[tuple[str, str]] = ..., timeout: float | None = None
    ) -> Op: ...
    def rebind(self) -> list[tuple[str, int]]: ...
    def close(self) -> None: ...

@final
class SessionHandle:
    @property
    def session_id(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def authority(self) -> str: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def remote_address(self) -> tuple[str, int]: ...
    @property
    def peer_certificates(self) -> list[bytes]: ...
    @property
    def phase(self) -> str: ...
    @property
    def close_info(self) -> tuple[int, str, bool] | None: ...
    @property
    def max_datagram_size(self) -> int | None: ...
    @property
    def draft(self) -> str: ...
    @property
    def protocol(self) -> str | None: ...
    @property
    def draining(self) -> bool: ...
    def flow_control(self) -> dict[str, int | None] | None: ...
    def drain(self) -> None: ...
    def accept(
        self, headers: list[tuple[str, str]] = ..., wt_protocol: str | None = None
    ) -> bool | Op: ...
    def reject(self, status_code: int, headers: list[tuple[str, str]] = ...) -> bool | Op: ...
    def close(self, code: int = 0, reason: str = ...) -> bool | Op: ...
    def open_bi(self, notifier: Notifier) -> tuple[SendStreamHandle, RecvStreamHandle] | Op:
        """A new stream, its pumps started by the notifier's next ``flush()``."""
    def open_uni(self, notifier: Notifier) -> SendStreamHandle | Op:
        """A new stream, its pump started by the notifier's next ``flush()``."""
    def poll_closed(self, notifier: Notifier, token: int) -> tuple[int, str, bool] | None: ...
    def poll_accept_bi(
        self, notifier: Notifier, token: int
    ) -> tuple[SendStreamHandle, RecvStreamHandle] | None: ...
    def poll_accept_uni(self, notifier: Notifier, token: int) -> RecvStreamHandle | None: ...
    def poll_datagram(self, notifier: Notifier, token: int) -> bytes | None: ...
    def poll_datagrams(
        self, max_count: int, notifier: Notifier, token: int
    ) -> list[bytes] | None: ...
    def send_datagram(self, data: bytes | bytearray | memoryview, wait: bool = True) -> Op | None:
        """``None`` when queued at once, else an ``Op`` queuing it once quinn's send buffer
        has room (``wait=False``: never an ``Op``, quinn drops its oldest instead)."""
    def send_datagrams(
        self, data: Iterator[bytes | bytearray | memoryview], wait: bool = True
    ) -> tuple[int, Op | None]:
        """Sends from ``data`` until it ends, ``(queued, None)``, or until one must wait,
        ``(queued, op)`` with that one in ``op`` (``data`` resumes after it)."""
    def export_keying_material(self, label: bytes, context: bytes, length: int) -> bytes: ...
    def stats(self) -> dict[str, int | float]: ...

@final
class SendStreamHandle:
    @property
    def stream_id(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    def poll_write(
        self,
        data: bytes | bytearray | memoryview,
        offset: int,
        notifier: Notifier,
        token: int,
        finish: bool = False,
    ) -> int: ...
    def finish(self) -> None: ...
    def reset(self, code: int) -> None: ...

@final
class RecvStreamHandle:
    @property
    def stream_id(self) -> int: ...
    @property
    def is_finished(self) -> bool: ...
    @property
    def bytes_received(self) -> int: ...
    @property
    def at_eof(self) -> bool: ...
    def poll_read(self, max_size: int, notifier: Notifier, token: int) -> bytes | None: ...
    def poll_read_exactly(self, size: int, notifier: Notifier, token: int) -> bytes | None: ...
    def poll_read_until(
        self, separator: bytes, max_size: int, notifier: Notifier, token: int
    ) -> bytes | None: ...
    def stop(self, code: int) -> None: ...

"""Stands in for the compiled ``fastwt._core`` when it cannot be imported (no wheel
for this platform, a build without the extension), so that ``import fastwt`` works and
every server and client runs on the pure-Python backend. It has the names the Python
layer imports from ``_core``; those only the Rust backend uses refuse to be used."""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

from .certs import generate_dev_certificate

# The core's defaults, bounds and codes: the one copy kept for a process without the
# extension.
from .core_values import (
    CLIENT_DEFAULTS,
    CONGESTION_CONTROLS,
    ERROR_CODES,
    MAX_SESSIONS_PER_CONNECTION,
    REJECTION_STATUS,
    SERVER_DEFAULTS,
)

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
    "dropped_log_records",
    "generate_dev_certificate",
    "io_driver_stats",
    "io_spin_us",
    "io_threads",
    "next_log_records",
    "set_log_level",
    "spin_stats",
]

try:
    __version__ = metadata.version("fastwt")
except metadata.PackageNotFoundError:
    __version__ = "0+unknown"

IS_STANDIN = True


def _unavailable(*_args: Any, **_kwargs: Any) -> Any:
    from .._backend import rust_import_error

    raise RuntimeError(
        "fastwt's Rust extension is not available "
        f"({rust_import_error()}); this process runs on the pure-Python backend"
    )


# Room fan-out: only ever handed Rust session handles, which this process has none of.
broadcast_datagram = _unavailable
broadcast_stream = _unavailable


class _Unavailable:
    """A Rust class: making one explains that the extension is missing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _unavailable()


class Notifier(_Unavailable):
    pass


class LoopDriver(_Unavailable):
    pass


class ServerHandle(_Unavailable):
    pass


class ClientHandle(_Unavailable):
    pass


class Op:
    """Never made: the pure handles return their own operations."""


class SessionHandle:
    pass


class SendStreamHandle:
    pass


class RecvStreamHandle:
    pass


class Transport:
    """The QUIC knobs (``config.transport_of``); only the Rust backend reads them."""

    def __init__(self, **kwargs: Any) -> None:
        self.options = kwargs


def set_log_level(level: int) -> None:
    """The pure backend logs through Python's ``logging`` directly."""


def next_log_records(timeout: float) -> list[tuple[int, str, str]]:
    time.sleep(timeout)
    return []


def dropped_log_records() -> int:
    return 0


def io_threads() -> int:
    return 0


def io_spin_us() -> int:
    return 0


def io_driver_stats() -> dict[str, Any]:
    """No runtime to drive: loops never drive one."""
    return {
        "enabled": False,
        "driver": "io",
        "loop_drives": 0,
        "takeovers": 0,
        "load_takeovers": 0,
        "handbacks": 0,
        "loop_idle": 1.0,
        "io_busy": 0.0,
        "work_waiting": 0.0,
    }


def spin_stats() -> dict[str, Any]:
    return {"io": None, "adaptive": False}

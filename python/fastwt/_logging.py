"""Forwards the Rust side's log records to Python ``logging``.

Rust code (fastwt-core under the target ``fastwt.core``, and quinn) logs into a bounded
queue inside the extension; a daemon thread started here waits on it with the GIL
released and emits each record on the ``fastwt`` logger tree (quinn's records under
``fastwt.quic``). Only levels enabled on those loggers are produced in Rust at all;
the thread re-reads the levels about once a second, and :func:`refresh_logging` does
it at once.
"""

from __future__ import annotations

import logging
import threading

from ._core import next_log_records, set_log_level

__all__ = ["refresh_logging", "start_log_forwarding"]

_started = False
_lock = threading.Lock()


def _logger_for(target: str) -> logging.Logger:
    if target.startswith("fastwt"):
        return logging.getLogger(target)
    return logging.getLogger("fastwt.quic." + target.replace("::", "."))


def refresh_logging() -> None:
    """Makes Rust produce exactly the levels the ``fastwt`` loggers now enable."""
    levels = [
        logging.getLogger(name).getEffectiveLevel()
        for name in ("fastwt", "fastwt.core", "fastwt.quic")
    ]
    set_log_level(min(levels))


def _forward() -> None:
    while True:
        refresh_logging()
        for level, target, message in next_log_records(1.0):
            _logger_for(target).log(level, message)


def start_log_forwarding() -> None:
    """Starts the forwarding thread once per process (servers and clients call it)."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
        refresh_logging()
        threading.Thread(target=_forward, name="fastwt-log", daemon=True).start()

"""The one copy of the Rust core's defaults, bounds and error codes for a process
without the compiled extension.

They are written in rust/core/src/config.rs and h3.rs and exported by the extension
(rust/bindings/src/defaults.rs) as ``fastwt._core.SERVER_DEFAULTS`` and so on, which
``config.py`` and ``errors.py`` read. Without the extension ``fastwt._core`` is the
stand-in (``_core_standin.py``), which takes these; ``errors.py``, imported before the
stand-in is installed, reads ``ERROR_CODES`` from here directly. This module imports
nothing of fastwt's but types, so either may import it first.
``tests/unit/test_core_values.py`` checks that every value equals the extension's.
"""

from __future__ import annotations

from .._types import ClientDefaults, CoreErrorCodes, ServerDefaults, TransportDefaults

# The names, as the extension exports them (tests/unit/test_core_values.py compares them).
NAMES = (
    "SERVER_DEFAULTS",
    "CLIENT_DEFAULTS",
    "ERROR_CODES",
    "CONGESTION_CONTROLS",
    "REJECTION_STATUS",
    "MAX_SESSIONS_PER_CONNECTION",
)

_TRANSPORT_DEFAULTS: TransportDefaults = {
    "max_idle_timeout": 30.0,
    "keep_alive_interval": None,
    "max_concurrent_bidi_streams": 100,
    "max_concurrent_uni_streams": 100,
    "stream_receive_window": 4 * 1024 * 1024,
    "receive_window": 16 * 1024 * 1024,
    "send_window": 16 * 1024 * 1024,
    "datagram_queue_size": None,
    "datagram_queue_bytes": 8 * 1024 * 1024,
    "congestion_control_algorithm": "cubic",
    "wt_max_data": 16 * 1024 * 1024,
    "wt_max_streams_bidi": 100,
    "wt_max_streams_uni": 100,
}
SERVER_DEFAULTS: ServerDefaults = {
    **_TRANSPORT_DEFAULTS,
    "bind_host": "::",
    "bind_port": 4433,
    "max_sessions": 10_000,
    "max_sessions_per_ip": None,
    "max_sessions_per_connection": 1,
    "max_handshakes": 1000,
    "retry": False,
    "pending_request_capacity": 1024,
    "request_timeout": 10.0,
}
CLIENT_DEFAULTS: ClientDefaults = {**_TRANSPORT_DEFAULTS, "connect_timeout": 10.0}
ERROR_CODES: CoreErrorCodes = {
    "H3_NO_ERROR": 0x100,
    "H3_REQUEST_REJECTED": 0x10B,
    "WEBTRANSPORT_SESSION_GONE": 0x170D7B68,
}
REJECTION_STATUS = (300, 599)
CONGESTION_CONTROLS = ("cubic", "bbr", "newreno")
# The pure backend itself carries one session per connection (options.check_supported),
# so only validation reads this bound.
MAX_SESSIONS_PER_CONNECTION = 256

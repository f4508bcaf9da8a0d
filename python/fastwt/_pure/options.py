"""What the pure-Python backend takes from ``ServerConfig``/``ClientConfig``, and what it
refuses. aioquic has no knob for some of fastwt's options; a value the backend cannot
honour is refused when the configuration is made (``ConfigurationError``), never
silently ignored."""

from __future__ import annotations

import ssl
import sys
from typing import TYPE_CHECKING, Any

from aioquic.quic.configuration import QuicConfiguration

from .._core import SERVER_DEFAULTS
from ..errors import ConfigurationError
from .engine import Limits

if TYPE_CHECKING:
    from ..config import ClientConfig, ServerConfig

__all__ = ["check_supported", "limits_of", "quic_configuration"]

# fastwt's names for aioquic's congestion controllers (aioquic has no BBR).
_CONGESTION = {"cubic": "cubic", "newreno": "reno"}
# The config defaults (the core's) the backend can only take as they are (see
# check_supported).
_FIXED_DEFAULTS = {
    "max_concurrent_bidi_streams": SERVER_DEFAULTS["max_concurrent_bidi_streams"],
    "max_concurrent_uni_streams": SERVER_DEFAULTS["max_concurrent_uni_streams"],
    "send_window": SERVER_DEFAULTS["send_window"],
}
# aioquic takes the idle timeout in seconds and has no "none": a century stands for it.
_NO_IDLE_TIMEOUT = 100 * 365 * 86400.0


def check_supported(cfg: ServerConfig | ClientConfig) -> None:
    """Refuses the options the pure-Python backend cannot honour."""
    if cfg.congestion_control_algorithm not in _CONGESTION:
        raise ConfigurationError(
            f"congestion_control_algorithm={cfg.congestion_control_algorithm!r} is not "
            f"supported by the pure-Python backend (aioquic has {sorted(_CONGESTION)}); "
            "use backend='rust' for it"
        )
    if getattr(cfg, "retry", False):
        raise ConfigurationError(
            "retry=True is not supported by the pure-Python backend (its server does not "
            "send QUIC Retry packets); use backend='rust' for it"
        )
    if getattr(cfg, "verify_mode", ssl.CERT_NONE) != ssl.CERT_NONE and hasattr(cfg, "bind_port"):
        raise ConfigurationError(
            "client certificates (verify_mode/ca_certs) are not supported by the pure-Python "
            "backend's server (aioquic does not ask for them); use backend='rust' for it"
        )
    if getattr(cfg, "max_sessions_per_connection", 1) != 1:
        raise ConfigurationError(
            "max_sessions_per_connection above 1 (pooling) is not supported by the "
            "pure-Python backend (it speaks draft-02 only, which has no pooling); use "
            "backend='rust' for it"
        )
    # (cid_key needs server_id: refused with it.)
    if getattr(cfg, "server_id", None) is not None:
        raise ConfigurationError(
            "server_id (QUIC-LB connection IDs, plaintext or with cid_key) is not "
            "supported by the pure-Python backend (aioquic draws its connection IDs at "
            "random and has no hook for them); use backend='rust' for it"
        )
    for name, default in _FIXED_DEFAULTS.items():
        if getattr(cfg, name) != default:
            why = (
                "aioquic lets the peer open 128 streams at once and has no setting for it"
                if name.startswith("max_concurrent")
                else "aioquic has no send window: the backend buffers up to 1 MiB per "
                "connection instead"
            )
            raise ConfigurationError(
                f"{name} cannot be changed on the pure-Python backend ({why}); "
                "use backend='rust' for it"
            )


def limits_of(cfg: ServerConfig | ClientConfig) -> Limits:
    return Limits(
        datagram_queue_size=sys.maxsize
        if cfg.datagram_queue_size is None
        else cfg.datagram_queue_size,
        datagram_queue_bytes=cfg.datagram_queue_bytes,
        keep_alive_interval=cfg.keep_alive_interval,
        max_datagram_size=getattr(cfg, "max_datagram_size", 65535),
    )


def quic_configuration(cfg: ServerConfig | ClientConfig, *, is_client: bool) -> QuicConfiguration:
    """aioquic's configuration for ``cfg`` (without certificates and trust)."""
    kwargs: dict[str, Any] = {}
    return QuicConfiguration(
        alpn_protocols=["h3"],
        is_client=is_client,
        congestion_control_algorithm=_CONGESTION[cfg.congestion_control_algorithm],
        idle_timeout=(
            _NO_IDLE_TIMEOUT if cfg.max_idle_timeout is None else float(cfg.max_idle_timeout)
        ),
        max_data=cfg.receive_window,
        max_stream_data=cfg.stream_receive_window,
        max_datagram_frame_size=65536,
        verify_mode=ssl.CERT_REQUIRED if is_client else None,
        **kwargs,
    )

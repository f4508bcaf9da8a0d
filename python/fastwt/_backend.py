"""Which implementation serves a server or client: the Rust extension (``"rust"``, the
default) or the pure-Python backend on aioquic (``"python"``, ``fastwt/_pure``).

Imported first by ``fastwt/__init__.py``. When the compiled extension cannot be
imported (no wheel for this platform or Python), a stand-in takes its module name so
that ``import fastwt`` still works, a warning says so once (``logging`` and
``warnings``), and every configuration asking for ``"rust"`` runs on ``"python"``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import warnings
from typing import TYPE_CHECKING

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .config import ClientConfig, ServerConfig

__all__ = [
    "BACKENDS",
    "check_config",
    "default_backend",
    "resolve",
    "rust_available",
    "rust_import_error",
]

BACKENDS = ("rust", "python")
_LOOP_NAMES = ("asyncio", "uvloop", "trio")

logger = logging.getLogger("fastwt")

_RUST_ERROR: ImportError | None = None

try:
    from . import _core  # noqa: F401  (the compiled extension)
except ImportError as _e:
    _RUST_ERROR = _e
    if importlib.util.find_spec("aioquic") is None:
        raise ImportError(
            f"fastwt's Rust extension cannot be imported ({_e}) and the pure-Python "
            "backend needs aioquic: pip install 'fastwt[pure]'"
        ) from _e
    from ._pure import _core_standin

    sys.modules[f"{__package__}._core"] = _core_standin
    _message = (
        f"fastwt's Rust extension cannot be imported ({_e}); using the pure-Python "
        "backend (aioquic), which is much slower: install a fastwt wheel for this "
        "platform for the Rust backend"
    )
    logger.warning(_message)
    warnings.warn(_message, RuntimeWarning, stacklevel=2)


def default_backend() -> str:
    """The configs' default: ``FASTWT_BACKEND`` when set (run an application, or a test
    suite, on the other backend without changing its code), else ``"rust"``."""
    value = os.environ.get("FASTWT_BACKEND", "")
    # ``fastwt run --backend trio`` (FASTWT_BACKEND=trio) named the event loop before the
    # pure-Python backend existed: a loop name there leaves the implementation alone.
    if value in _LOOP_NAMES:
        return "rust"
    return value or "rust"


def rust_available() -> bool:
    """Whether the compiled extension was imported."""
    return _RUST_ERROR is None


def rust_import_error() -> str:
    """Why the extension could not be imported ("" when it was)."""
    return "" if _RUST_ERROR is None else str(_RUST_ERROR)


def resolve(name: str) -> str:
    """The backend that serves a configuration asking for ``name``: ``"rust"`` falls
    back to ``"python"`` when the extension is missing (warned about at import)."""
    if name == "rust" and _RUST_ERROR is not None:
        return "python"
    return name


def check_config(cfg: ServerConfig | ClientConfig) -> None:
    """Called by the configs' ``__post_init__``: a known backend, whose dependencies are
    installed, and options it supports."""
    if cfg.backend not in BACKENDS:
        raise ConfigurationError(f"backend must be one of {BACKENDS}, got {cfg.backend!r}")
    if resolve(cfg.backend) != "python":
        return
    if importlib.util.find_spec("aioquic") is None:
        raise ConfigurationError("backend='python' needs aioquic: pip install 'fastwt[pure]'")
    from ._pure.options import check_supported

    check_supported(cfg)

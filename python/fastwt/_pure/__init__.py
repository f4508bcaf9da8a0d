"""fastwt's pure-Python backend: the handles of the Rust extension (``_core.pyi``)
implemented a second time on aioquic, so that ``WebTransportServer``,
``WebTransportClient``, sessions, streams and the whole framework run unchanged on it.
Selected with ``ServerConfig(backend="python")`` / ``ClientConfig(backend="python")``,
or automatically when the extension cannot be imported (see ``fastwt/_backend.py``).
Works on asyncio (and uvloop) and trio: aioquic's QUIC and HTTP/3 layers are sans-IO,
and this package drives them on either loop (``hub.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from .._bridge import Hub
    from .._core import ClientHandle as RustClientHandle
    from .._core import ServerHandle as RustServerHandle
    from ..config import ClientConfig, ServerConfig

__all__ = ["client_handle", "current_hub", "server_handle"]


def server_handle(
    *, bind: list[tuple[str, int]], config: ServerConfig
) -> tuple[Hub, RustServerHandle]:
    """The pure hub of the running loop and a bound server handle. Typed as the Rust
    classes it stands in for: it has their methods, arguments and results
    (tests/unit/test_pure_surface.py checks that)."""
    from .hub import get_pure_hub
    from .server import ServerHandle

    hub = get_pure_hub()
    return cast("Hub", hub), cast("RustServerHandle", ServerHandle(bind=bind, config=config))


def client_handle(*, config: ClientConfig) -> RustClientHandle:
    """A pure client handle (see :func:`server_handle` for the typing)."""
    from .client import ClientHandle

    return cast("RustClientHandle", ClientHandle(config=config))


def current_hub() -> Hub:
    """The pure hub of the running event loop."""
    from .hub import get_pure_hub

    return cast("Hub", get_pure_hub())

"""Several worker processes of one app on one UDP port (Linux): ``fastwt run
--workers N`` and ``ServerApp.run(workers=N)``.

A pure-Python supervisor (:mod:`fastwt.workers.supervisor`) holds the
``SO_REUSEPORT`` sockets and a BPF program (:mod:`fastwt.workers.bpf`) that steers
each packet to the worker named in its connection ID, so a session stays on its worker
when the client's address changes. Inside a worker, :func:`worker_index` says which
one it is. See docs/deployment.md.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from .supervisor import Supervisor, WorkerOptions, WorkersError, parse_server_id, run

if TYPE_CHECKING:
    from fastwt.framework.app import ServerApp

__all__ = [
    "Supervisor",
    "WorkerOptions",
    "WorkersError",
    "parse_server_id",
    "run",
    "serve_app",
    "worker_count",
    "worker_index",
]

_current: tuple[int, int] | None = None


def _set_current(index: int, count: int) -> None:
    global _current
    _current = (index, count)


def worker_index() -> int | None:
    """This process's worker index (0..N-1) under ``--workers N``; ``None`` outside."""
    return _current[0] if _current is not None else None


def worker_count() -> int | None:
    """N under ``--workers N``; ``None`` outside a worker."""
    return _current[1] if _current is not None else None


def serve_app(
    app: ServerApp,
    *,
    spec: str,
    workers: int,
    host: str | None = None,
    port: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    on_ready: Callable[[tuple[str, int], str | None], None] | None = None,
    **options: Any,
) -> int:
    """Runs ``workers`` processes of ``app`` (found again by each worker at ``spec``)
    on one port until SIGTERM/SIGINT; returns the exit status.

    ``host``/``port``/``overrides`` are applied to the app's configuration as in
    ``ServerApp.run``; more than one bind address is refused. Without a certificate
    configured, one development certificate is made for every worker (so they all
    serve the same hash), in a private temporary directory removed at the end;
    ``on_ready((host, port), digest)`` gets its SHA-256 (``None`` with a configured
    certificate). Other keyword arguments go to :class:`WorkerOptions`.
    """
    plain: dict[str, Any] = {}
    for name, value in (overrides or {}).items():
        value = str(value) if isinstance(value, PurePath) else value
        if not isinstance(value, str | int | float | bool | type(None)):
            raise WorkersError(
                f"workers get configuration overrides as plain values; {name}={value!r} is not one"
            )
        plain[name] = value
    cfg = dataclasses.replace(app.server.config, **plain)
    from fastwt import _backend

    if _backend.resolve(cfg.backend) != "rust":
        raise WorkersError("workers need the Rust backend (ServerConfig.backend='rust')")
    hosts = [host] if host is not None else cfg.bind_hosts
    if len(hosts) != 1:
        raise WorkersError(f"workers serve on one address, got {hosts}")
    server_id = parse_server_id(cfg.server_id)
    if cfg.cid_key is not None and options.get("steering", True):
        raise WorkersError(
            "cid_key encrypts the connection IDs, which hides their worker octet from the "
            "BPF steering program: add --no-cid-steering (ServerApp.run(..., "
            "cid_steering=False)); a client whose address changes may then land on "
            "another worker and lose its session (see docs/deployment.md)"
        )
    with tempfile.TemporaryDirectory(prefix="fastwt-workers-") as tmp:
        digest: str | None = None
        if cfg.certfile is None:
            from fastwt._core import generate_dev_certificate

            cert_pem, key_pem, digest = generate_dev_certificate([])
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert.write_text(cert_pem)
            key.touch(mode=0o600)
            key.write_text(key_pem)
            plain.update(certfile=str(cert), keyfile=str(key))

        def ready(address: tuple[str, int]) -> None:
            if on_ready is not None:
                on_ready(address, digest)

        return run(
            WorkerOptions(
                app=spec,
                workers=workers,
                host=hosts[0],
                port=cfg.bind_port if port is None else port,
                overrides=plain,
                server_id=server_id,
                **options,
            ),
            on_ready=ready,
        )

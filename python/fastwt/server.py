"""The WebTransport server: binds, then yields session requests to accept or reject."""

from __future__ import annotations

import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from . import _backend, _bridge
from ._core import ServerHandle
from ._logging import start_log_forwarding
from ._types import SessionObserver
from .config import (
    ServerConfig,
    check_cert_pair,
    cid_key_bytes,
    server_id_bytes,
    transport_of,
)
from .errors import ConnectionError, ErrorCodes, ServerError
from .session import WebTransportSession

__all__ = ["WebTransportServer"]


def _client_auth_of(cfg: ServerConfig) -> dict[str, Any]:
    """The core's client-certificate settings (mutual TLS) from ``verify_mode``."""
    if cfg.verify_mode == ssl.CERT_NONE:
        return {}
    mode = "required" if cfg.verify_mode == ssl.CERT_REQUIRED else "optional"
    return {"client_auth": mode, "client_ca": str(cfg.ca_certs)}


logger = logging.getLogger("fastwt.server")


class WebTransportServer:
    """A server endpoint. ``async with WebTransportServer(config=...) as server``, then
    ``await server.listen()`` and iterate ``server.incoming_sessions()``."""

    def __init__(self, *, config: ServerConfig | None = None) -> None:
        self._config = config or ServerConfig()
        self._handle: ServerHandle | None = None
        self._hub: _bridge.Hub | None = None
        self._token = _bridge.new_token()
        self._closed_event: anyio.Event | None = None
        self._closing = False
        # Set by a worker of ``--workers`` before listen(): its inherited socket and
        # connection-ID settings.
        self._adopted: tuple[int, dict[str, Any]] | None = None
        self._observers: tuple[SessionObserver, ...] = ()

    def add_observer(self, observer: SessionObserver) -> None:
        """Tells ``observer`` of every session request from now on, and how it was
        answered (:class:`fastwt.SessionObserver`; metrics use it). Idempotent."""
        if observer not in self._observers:
            self._observers = (*self._observers, observer)

    def remove_observer(self, observer: SessionObserver) -> None:
        """Stops telling ``observer`` of new requests (no error if it was not added)."""
        self._observers = tuple(o for o in self._observers if o is not observer)

    @property
    def config(self) -> ServerConfig:
        return self._config

    def _replace_config(self, config: ServerConfig) -> None:
        """Use ``config`` instead (``ServerApp.run``/``serve`` keyword overrides); only
        before ``listen()``, which is when the configuration is read."""
        if self._handle is not None:
            raise ServerError("the configuration cannot change after listen()")
        self._config = config

    @property
    def is_serving(self) -> bool:
        return self._handle is not None and not self._closing

    @property
    def local_addresses(self) -> list[tuple[str, int]]:
        """Bound (host, port) pairs, with the real ports when port 0 was asked."""
        return self._handle.local_addresses() if self._handle else []

    @property
    def certificate_hash(self) -> str:
        """Hex SHA-256 of the certificate, for browsers' ``serverCertificateHashes``."""
        if self._handle is None:
            raise ServerError("server is not listening")
        return self._handle.certificate_hash()

    @property
    def handshake_count(self) -> int:
        """Connections between their first packet and their CONNECT request."""
        return self._handle.handshake_count() if self._handle is not None else 0

    @property
    def session_count(self) -> int:
        return self._handle.session_count() if self._handle else 0

    async def __aenter__(self) -> WebTransportServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _adopt_socket(
        self, fd: int, *, server_id: bytes, worker: int | None, secret: bytes
    ) -> None:
        """For a worker of ``--workers``: serve on ``fd`` (ownership passes to the
        server), with CIDs naming ``server_id`` and ``worker`` keyed by the group's
        ``secret``. ``listen()`` then binds nothing."""
        cid: dict[str, Any] = {"server_id": server_id, "worker_secret": secret}
        if worker is not None:
            cid["worker"] = worker
        self._adopted = (fd, cid)

    async def listen(
        self,
        *,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        """Binds the sockets (``host``/``port`` override the config) and starts accepting.

        With ``sock`` (a bound UDP socket, e.g. one inherited from a process manager)
        the server serves on a duplicate of it instead of binding; the caller still owns
        ``sock`` and may close it.
        """
        if self._handle is not None:
            raise ServerError("server is already listening")
        if sock is not None and sock.type != socket.SOCK_DGRAM:
            raise ServerError(f"sock must be a UDP socket, got {sock!r}")
        cfg = self._config
        hosts = [host] if isinstance(host, str) else list(host) if host else cfg.bind_hosts
        bind_port = cfg.bind_port if port is None else port
        if not 0 <= bind_port <= 65535:
            raise ServerError(f"port must be 0..65535, got {bind_port}")
        bind = [({"localhost": "127.0.0.1", "": "::"}.get(h, h), bind_port) for h in hosts]
        self._closed_event = anyio.Event()
        try:
            # With port 0, every address gets the port the OS picked for the first.
            self._hub, self._handle = self._open(bind, sock)
        except ConnectionError as e:
            raise ServerError(str(e)) from e
        for h, p in self._handle.local_addresses():
            logger.info("listening on %s port %d", h, p)

    def _open(
        self, bind: list[tuple[str, int]], sock: socket.socket | None
    ) -> tuple[_bridge.Hub, ServerHandle]:
        """The hub and the bound handle of the configured backend (``_backend.py``);
        with ``sock`` or an adopted worker socket, serving on that instead."""
        if _backend.resolve(self._config.backend) == "python":
            if sock is not None or self._adopted is not None:
                raise ServerError(
                    "serving on a given socket (listen(sock=...), --workers) needs the Rust backend"
                )
            from ._pure import server_handle

            return server_handle(bind=bind, config=self._config)
        hub = _bridge.get_hub()
        start_log_forwarding()
        kwargs = self._core_kwargs()
        if sock is not None and self._adopted is None:
            # The core takes ownership of the duplicate (and closes it on any error).
            self._adopted = (os.dup(sock.fileno()), {})
        if self._adopted is not None:
            fd, cid = self._adopted
            self._adopted = None
            kwargs.update(cid, sockets=[fd])
            bind = []
        return hub, ServerHandle(bind=bind, **kwargs)

    def _core_kwargs(self) -> dict[str, Any]:
        cfg = self._config
        return {
            "certfile": str(cfg.certfile) if cfg.certfile else None,
            "keyfile": str(cfg.keyfile) if cfg.keyfile else None,
            "max_sessions": cfg.max_sessions,
            "max_sessions_per_ip": cfg.max_sessions_per_ip,
            "max_sessions_per_connection": cfg.max_sessions_per_connection,
            "max_handshakes": cfg.max_handshakes,
            "retry": cfg.retry,
            "pending_request_capacity": cfg.pending_request_capacity,
            "request_timeout": cfg.request_timeout,
            "transport": transport_of(cfg),
            "server_id": server_id_bytes(cfg),
            "cid_key": cid_key_bytes(cfg),
            **_client_auth_of(cfg),
        }

    async def accept(self) -> WebTransportSession:
        """The next session request (not yet accepted). Raises when the server closes."""
        if self._handle is None or self._hub is None:
            raise ServerError("call listen() first")
        handle = await _bridge.wait(self._hub, self._handle.poll_request, self._token)
        observers = self._observers
        session = WebTransportSession(handle, hub=self._hub, is_client=False, observers=observers)
        for observer in observers:
            try:
                observer.session_requested(session)
            except Exception:  # an observer's bug must not lose the request
                logger.exception("session observer %r failed", observer)
        return session

    async def incoming_sessions(self) -> AsyncIterator[WebTransportSession]:
        """Session requests until the server closes; each must be accepted or rejected."""
        while True:
            try:
                session = await self.accept()
            except ConnectionError:
                return
            yield session

    async def serve_forever(self) -> None:
        """Waits until the server is closed (the application reads
        ``incoming_sessions()`` elsewhere)."""
        if self._handle is None:
            await self.listen()
        if self._closed_event is not None and not self._closing:
            await self._closed_event.wait()

    def reload_certificate(
        self, *, certfile: str | Path | None = None, keyfile: str | Path | None = None
    ) -> str:
        """Serves a new certificate to new connections; open sessions are not touched.

        Reads ``certfile``/``keyfile``, by default the config's (re-read from disk:
        replace the files, then call this); without any files it makes a fresh
        development certificate (they expire within 14 days). Returns the new
        certificate's SHA-256 (hex), which browsers pinning the old hash need.
        """
        if self._handle is None:
            raise ServerError("the server is not listening")
        certfile = certfile if certfile is not None else self._config.certfile
        keyfile = keyfile if keyfile is not None else self._config.keyfile
        check_cert_pair(certfile, keyfile)
        self._handle.set_identity(
            str(certfile) if certfile is not None else None,
            str(keyfile) if keyfile is not None else None,
        )
        digest = self._handle.certificate_hash()
        logger.info("certificate reloaded: SHA-256 %s", digest)
        return digest

    def goaway(self) -> None:
        """Tells every connected client the server is going away (HTTP/3 GOAWAY; a fastwt
        client's ``session.draining`` turns true): the first step of a graceful
        shutdown. Sessions keep working until they are closed."""
        if self._handle is not None:
            self._handle.goaway()

    async def close(
        self, *, error_code: int = ErrorCodes.NO_ERROR, reason: str = "server shutdown"
    ) -> None:
        """Closes every session with ``error_code``/``reason`` (peers see them) and then the
        sockets. Idempotent."""
        if self._handle is None or self._closing or self._hub is None:
            self._closing = True
            return
        self._closing = True
        if self._closed_event is not None:
            self._closed_event.set()
        op = self._handle.close(int(error_code), reason, self._config.shutdown_grace)
        with anyio.CancelScope(shield=True):
            await _bridge.run_op(self._hub, op)
        logger.info("server closed")

"""The WebTransport client."""

from __future__ import annotations

import ssl
from typing import Any

from . import _backend, _bridge
from ._core import ClientHandle
from ._logging import start_log_forwarding
from .config import ClientConfig, transport_of
from .errors import ClientError
from .session import WebTransportSession

__all__ = ["WebTransportClient"]


class WebTransportClient:
    """Opens sessions to WebTransport servers. ``async with WebTransportClient(config=...)
    as client: session = await client.connect(url="https://host:port/path")``."""

    def __init__(self, *, config: ClientConfig | None = None) -> None:
        self._config = config or ClientConfig()
        self._handle: ClientHandle | None = None
        self._closed = False

    @property
    def config(self) -> ClientConfig:
        return self._config

    def _core(self) -> ClientHandle:
        if self._closed:
            raise ClientError("client is closed")
        if self._handle is None and self._is_pure():
            from ._pure import client_handle

            self._handle = client_handle(config=self._config)
        if self._handle is None:
            cfg = self._config
            kwargs: dict[str, Any] = {}
            if cfg.server_certificate_hashes:
                kwargs.update(
                    trust="hashes", certificate_hashes=list(cfg.server_certificate_hashes)
                )
            elif cfg.ca_certs is not None:
                kwargs.update(trust="ca", ca_certs=str(cfg.ca_certs))
            elif cfg.verify_mode == ssl.CERT_NONE:
                kwargs.update(trust="insecure")
            else:
                kwargs.update(trust="system")
            self._handle = ClientHandle(
                certfile=str(cfg.certfile) if cfg.certfile else None,
                keyfile=str(cfg.keyfile) if cfg.keyfile else None,
                connect_timeout=cfg.connect_timeout,
                headers=list(cfg.headers.items()),
                user_agent=cfg.user_agent,
                transport=transport_of(cfg),
                **kwargs,
            )
        return self._handle

    def _is_pure(self) -> bool:
        return _backend.resolve(self._config.backend) == "python"

    async def __aenter__(self) -> WebTransportClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(
        self,
        *,
        url: str,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the reference API's parameter
    ) -> WebTransportSession:
        """Opens a session. A non-2xx answer raises :class:`SessionRejectedError`
        carrying ``status_code`` and ``headers``; no answer in ``timeout`` (default
        ``config.connect_timeout``) raises :class:`fastwt.errors.TimeoutError`."""
        if self._is_pure():
            from ._pure import current_hub

            hub = current_hub()
        else:
            hub = _bridge.get_hub()
            start_log_forwarding()
        op = self._core().connect(url, list((headers or {}).items()), timeout)
        handle = await _bridge.run_op(hub, op)
        return WebTransportSession(handle, hub=hub, is_client=True)

    async def close(self) -> None:
        """Closes the client's sockets; open sessions end."""
        self._closed = True
        if self._handle is not None:
            self._handle.close()

"""Test doubles for the framework's unit tests: a session request and a server.

They implement exactly the attributes the framework reads (``SessionProtocol`` and the
part of ``WebTransportServer`` that ``ServerApp`` drives) and record every call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from fastwt.framework.headers import header_map
from fastwt.framework.types import Headers


class FakeSession:
    """A pending session request; ``calls`` records accept/reject/close in order."""

    _next_id = 0

    def __init__(
        self,
        path: str = "/",
        *,
        headers: Headers | None = None,
        remote_address: tuple[str, int] | None = ("127.0.0.1", 50000),
    ) -> None:
        FakeSession._next_id += 4
        self.session_id = FakeSession._next_id
        self.path = path
        # Kept in the form given: the framework must read every form ``Headers`` allows.
        self.headers: Headers = {} if headers is None else headers
        self.remote_address = remote_address
        self.is_closed = False
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.closed = anyio.Event()

    @property
    def query(self) -> dict[str, str]:
        _, _, query = self.path.partition("?")
        return dict(parse_qsl(query))

    @property
    def origin(self) -> str | None:
        return header_map(self.headers).get("origin")

    async def accept(
        self, *, headers: dict[str, str] | None = None, wt_protocol: str | None = None
    ) -> None:
        self.calls.append(("accept", {"headers": headers, "wt_protocol": wt_protocol}))

    async def reject(
        self, *, headers: dict[str, str] | None = None, status_code: int = 403
    ) -> None:
        self.calls.append(("reject", {"headers": headers, "status_code": status_code}))
        self._mark_closed()

    async def close(self, *, error_code: int = 0, reason: str | None = None) -> None:
        self.calls.append(("close", {"error_code": error_code, "reason": reason}))
        self._mark_closed()

    def _mark_closed(self) -> None:
        self.is_closed = True
        self.closed.set()

    @property
    def call_names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def rejection(self) -> tuple[int, dict[str, str] | None] | None:
        for name, kwargs in self.calls:
            if name == "reject":
                return kwargs["status_code"], kwargs["headers"]
        return None

    def close_code(self) -> int | None:
        for name, kwargs in self.calls:
            if name == "close":
                return int(kwargs["error_code"])
        return None


class FakeServer:
    """A ``ServerProtocol`` for ``ServerApp(server=...)``: ``push()`` queues a session
    request."""

    certificate_hash = "00" * 32

    def __init__(self, *, config: Any) -> None:
        self.config = config
        self.local_addresses: list[tuple[str, int]] = []
        self.listened: tuple[str | None, int | None] | None = None
        self.close_count = 0
        self.entered = 0
        send: MemoryObjectSendStream[FakeSession]
        receive: MemoryObjectReceiveStream[FakeSession]
        send, receive = anyio.create_memory_object_stream(max_buffer_size=1000)
        self._send, self._receive = send, receive

    @property
    def is_serving(self) -> bool:
        return self.listened is not None and self.close_count == 0

    async def __aenter__(self) -> FakeServer:
        self.entered += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _replace_config(self, config: Any) -> None:
        assert self.listened is None, "the configuration is read by listen()"
        self.config = config

    async def listen(self, *, host: str | None = None, port: int | None = None) -> None:
        self.listened = (host, port)
        self.local_addresses = [("127.0.0.1", 4433 if port is None else port)]

    def push(self, session: FakeSession) -> None:
        self._send.send_nowait(session)

    async def incoming_sessions(self) -> AsyncIterator[FakeSession]:
        async for session in self._receive:
            yield session

    async def close(self) -> None:
        self.close_count += 1
        self._send.close()


def fake_server(app: Any) -> FakeServer:
    """The ``FakeServer`` behind an app built by the ``app`` fixture."""
    server = app.server
    assert isinstance(server, FakeServer)
    return server

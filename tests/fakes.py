"""The test doubles of the unit tests that need no network: a session request and a
server (the framework's unit tests and the metrics tests share them).

``FakeSession`` has what the framework, its middleware and ``fastwt.metrics`` read from
a session request, records every answer in ``calls`` and tells its server's observers
how it was answered, as ``WebTransportSession`` does (200 accepted, the status when
rejected, 404 closed unanswered). ``FakeServer`` is a ``ServerProtocol`` for
``ServerApp(server=...)``: ``push()`` queues a request for ``incoming_sessions()``, and
``next_request()`` takes one directly (what a server's observers see either way).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from fastwt import metrics
from fastwt.framework.headers import header_map
from fastwt.framework.types import Headers


class FakeSession:
    """A pending session request. ``state`` is "requested", "accepted", "rejected" or
    "closed"; ``counters`` are what ``stats()`` returns."""

    _next_id = 0

    def __init__(
        self,
        path: str = "/",
        *,
        session_id: int | None = None,
        headers: Headers | None = None,
        remote_address: tuple[str, int] | None = ("127.0.0.1", 50000),
    ) -> None:
        if session_id is None:
            FakeSession._next_id += 4
            session_id = FakeSession._next_id
        self.session_id = session_id
        self.path = path
        # Kept in the form given: the framework must read every form ``Headers`` allows.
        self.headers: Headers = {} if headers is None else headers
        self.remote_address = remote_address
        self.state = "requested"
        self.counters: dict[str, Any] = {k: 0 for k in metrics.COUNTER_KEYS} | {"rtt": 0.0}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.observers: list[Any] = []
        self.closed = anyio.Event()

    @property
    def is_closed(self) -> bool:
        return self.state in ("closed", "rejected")

    @property
    def query(self) -> dict[str, str]:
        _, _, query = self.path.partition("?")
        return dict(parse_qsl(query))

    @property
    def origin(self) -> str | None:
        return header_map(self.headers).get("origin")

    def stats(self) -> Mapping[str, Any]:
        return dict(self.counters)

    def _answered(self, status: int) -> None:
        for observer in self.observers:
            observer.session_answered(self, status)
        self.observers = []

    async def accept(
        self, *, headers: dict[str, str] | None = None, wt_protocol: str | None = None
    ) -> None:
        self.calls.append(("accept", {"headers": headers, "wt_protocol": wt_protocol}))
        self.state = "accepted"
        self._answered(200)

    async def reject(
        self, *, headers: dict[str, str] | None = None, status_code: int = 403
    ) -> None:
        self.calls.append(("reject", {"headers": headers, "status_code": status_code}))
        self.state = "rejected"
        self.closed.set()
        self._answered(status_code)

    async def close(self, *, error_code: int = 0, reason: str | None = None) -> None:
        self.calls.append(("close", {"error_code": error_code, "reason": reason}))
        unanswered = self.state == "requested"
        self.state = "closed"
        self.closed.set()
        if unanswered:
            self._answered(404)

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
    """Stands in for ``WebTransportServer``; ``session_count`` is set by the test."""

    certificate_hash = "00" * 32

    def __init__(self, *, config: Any = None) -> None:
        self.config = config
        self.local_addresses: list[tuple[str, int]] = []
        self.listened: tuple[str | None, int | None] | None = None
        self.close_count = 0
        self.entered = 0
        self.session_count = 0
        self.observers: list[Any] = []
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

    def add_observer(self, observer: Any) -> None:
        if observer not in self.observers:
            self.observers.append(observer)

    async def listen(self, *, host: str | None = None, port: int | None = None) -> None:
        self.listened = (host, port)
        self.local_addresses = [("127.0.0.1", 4433 if port is None else port)]

    def push(self, *sessions: FakeSession) -> None:
        """Queue session requests, in order."""
        for session in sessions:
            self._send.send_nowait(session)

    def _requested(self, session: FakeSession) -> FakeSession:
        session.observers = list(self.observers)
        for observer in self.observers:
            observer.session_requested(session)
        return session

    async def next_request(self) -> FakeSession:
        """The next queued request, its observers told (as ``incoming_sessions`` does)."""
        return self._requested(await self._receive.receive())

    async def incoming_sessions(self) -> AsyncIterator[FakeSession]:
        async for session in self._receive:
            yield self._requested(session)

    async def close(self) -> None:
        self.close_count += 1
        self._send.close()


def fake_server(app: Any) -> FakeServer:
    """The ``FakeServer`` behind an app built by the ``app`` fixture."""
    server = app.server
    assert isinstance(server, FakeServer)
    return server

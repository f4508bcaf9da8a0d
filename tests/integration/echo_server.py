"""An in-process echo server for integration tests: real QUIC on 127.0.0.1, port 0.

Paths: ``/echo`` echoes bidirectional streams (read to end, write back, finish),
unidirectional streams (echoed on a new server-opened unidirectional stream) and
datagrams; ``/reject/<status>`` rejects with that status and an ``x-reason`` header;
``/close/<code>`` accepts, then closes with that code and reason ``"server says bye"``;
``/push-uni`` opens a unidirectional stream to the client with ``b"from server"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from fastwt import (
    ClientConfig,
    ServerConfig,
    WebTransportClient,
    WebTransportError,
    WebTransportServer,
    WebTransportSession,
)


@dataclass
class EchoServer:
    server: WebTransportServer
    url: str
    certificate_hash: str
    sessions: list[WebTransportSession] = field(default_factory=list)
    closes: list[tuple[int, str]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def client(self, **kwargs: object) -> WebTransportClient:
        return WebTransportClient(
            config=ClientConfig(server_certificate_hashes=[self.certificate_hash], **kwargs)  # type: ignore[arg-type]
        )


async def _handle(echo: EchoServer, session: WebTransportSession, tg: TaskGroup) -> None:
    path = session.path.split("?", 1)[0]
    if path.startswith("/reject/"):
        status = int(path.rsplit("/", 1)[1])
        await session.reject(status_code=status, headers={"x-reason": f"status {status}"})
        return
    await session.accept()
    echo.sessions.append(session)
    if path.startswith("/close/"):
        await session.close(error_code=int(path.rsplit("/", 1)[1]), reason="server says bye")
        return
    if path == "/push-uni":
        stream = await session.create_unidirectional_stream()
        await stream.write(data=b"from server", end_stream=True)

    async def bidi() -> None:
        async with anyio.create_task_group() as inner:
            async for stream in session.incoming_bidirectional_streams():

                async def one(stream=stream) -> None:  # type: ignore[no-untyped-def]
                    try:
                        data = await stream.read_all()
                        await stream.write(data=data, end_stream=True)
                    except WebTransportError as e:
                        echo.errors.append(e)

                inner.start_soon(one)

    async def uni() -> None:
        async for stream in session.incoming_unidirectional_streams():
            data = await stream.read_all()
            out = await session.create_unidirectional_stream()
            await out.write(data=data, end_stream=True)

    async def datagrams() -> None:
        async for d in session.datagrams():
            await session.send_datagram(data=d)

    async def watch() -> None:
        echo.closes.append(await session.wait_closed())

    async def guarded(fn: Callable[[], Awaitable[None]]) -> None:
        # A peer going away mid-echo is normal for an echo server.
        try:
            await fn()
        except WebTransportError as e:
            echo.errors.append(e)

    for fn in (bidi, uni, datagrams, watch):
        tg.start_soon(guarded, fn)


@asynccontextmanager
async def echo_server(**config: object) -> AsyncIterator[EchoServer]:
    settings: dict[str, object] = {"bind_host": "127.0.0.1", "bind_port": 0, **config}
    cfg = ServerConfig(**settings)  # type: ignore[arg-type]
    async with WebTransportServer(config=cfg) as server, anyio.create_task_group() as tg:
        await server.listen()
        port = server.local_addresses[0][1]
        echo = EchoServer(server, f"https://127.0.0.1:{port}", server.certificate_hash)

        async def accept_loop() -> None:
            async for session in server.incoming_sessions():
                tg.start_soon(_handle, echo, session, tg)

        tg.start_soon(accept_loop)
        try:
            yield echo
        finally:
            await server.close()
            tg.cancel_scope.cancel()

"""Test a ``ServerApp`` in process, over real QUIC on loopback.

``TestClient`` is to a fastwt app what ``starlette.testclient.TestClient`` is to a web
app: it serves the app on ``127.0.0.1`` with a port the OS picks, in the current event
loop (asyncio or trio), trusts the app's certificate by its SHA-256 (the development
certificate, or the app's own files), and connects to it::

    from fastwt.testing import TestClient

    async def test_echo() -> None:
        async with TestClient(app) as client:
            session = await client.connect("/echo")
            stream = await session.create_bidirectional_stream()
            await stream.write(data=b"hi", end_stream=True)
            assert await stream.read_all() == b"hi"

Nothing is mocked: the app's middleware, router, handlers, startup and shutdown hooks
run as they do in production, and the client is the real ``WebTransportClient``. On
exit, sessions the test left open are closed and the app is shut down cleanly (as on
SIGTERM). The app's configured ``bind_host``/``bind_port`` are not used, so tests
never collide on a port.
"""

from __future__ import annotations

import dataclasses
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Self

import anyio

from .client import WebTransportClient
from .config import ClientConfig
from .errors import SessionRejectedError

if TYPE_CHECKING:
    from ._types import Buffer
    from .framework.app import ServerApp
    from .session import WebTransportSession

__all__ = ["TestClient", "echo_once", "serve_echo"]


class TestClient:
    """Serve ``app`` on ``127.0.0.1`` port 0 for the ``async with`` block and open
    sessions to it.

    ``client_config`` sets the client's other options (timeouts, headers, a client
    certificate); its ``server_certificate_hashes`` is replaced by the app's
    certificate hash. ``host`` is the loopback address to serve on (``"::1"`` for
    IPv6).
    """

    __test__ = False  # pytest: a helper, not a test class

    def __init__(
        self,
        app: ServerApp,
        *,
        client_config: ClientConfig | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.app = app
        self.host = host
        self._client_config = client_config or ClientConfig()
        self._client: WebTransportClient | None = None
        self._stack: AsyncExitStack | None = None
        self._sessions: list[WebTransportSession] = []
        self.port = 0

    # --- lifecycle -----------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("TestClient is already entered")
        stack = AsyncExitStack()
        try:
            tg = await stack.enter_async_context(anyio.create_task_group())
            # Cancelling serve() is the clean shutdown ServerApp.run() does on SIGTERM.
            stack.callback(tg.cancel_scope.cancel)
            addresses = await tg.start(self._serve)
            self.port = addresses[0][1]
            config = dataclasses.replace(
                self._client_config,
                server_certificate_hashes=[self.app.server.certificate_hash],
                ca_certs=None,
            )
            self._client = await stack.enter_async_context(WebTransportClient(config=config))
            stack.push_async_callback(self._close_sessions)
        except BaseException:
            # Not shielded: the task group's exit must not sit inside a newer scope.
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _serve(self, *, task_status: anyio.abc.TaskStatus[Any]) -> None:
        await self.app.serve(host=self.host, port=0, task_status=task_status)

    async def _close_sessions(self) -> None:
        for session in self._sessions:
            if not session.is_closed:
                with anyio.move_on_after(5, shield=True):
                    try:
                        await session.close()
                    except Exception:  # the test may have broken it on purpose
                        pass

    # --- connecting ----------------------------------------------------------------
    @property
    def client(self) -> WebTransportClient:
        """The underlying ``WebTransportClient`` (inside the ``async with`` block)."""
        if self._client is None:
            raise RuntimeError("use TestClient inside 'async with'")
        return self._client

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT`` (brackets around an IPv6 host)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def url(self, path: str) -> str:
        """The URL of ``path`` (with its query) on the served app."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        return self.base_url + path

    async def connect(
        self,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = 10.0,  # noqa: ASYNC109 - as WebTransportClient.connect
    ) -> WebTransportSession:
        """Open a session to ``path``. A rejection raises ``SessionRejectedError`` with
        the app's status and headers, as for any client. The session is closed at the
        end of the ``async with`` block if the test has not closed it."""
        session = await self.client.connect(url=self.url(path), headers=headers, timeout=timeout)
        self._sessions.append(session)
        return session

    async def rejection(
        self, path: str, *, headers: dict[str, str] | None = None
    ) -> SessionRejectedError:
        """The ``SessionRejectedError`` a request for ``path`` gets; raises
        ``AssertionError`` if the app accepts it instead."""
        try:
            session = await self.connect(path, headers=headers)
        except SessionRejectedError as exc:
            return exc
        await session.close()
        raise AssertionError(f"{path!r} was accepted, expected a rejection")


async def serve_echo(session: WebTransportSession, *, prefix: bytes = b"") -> None:
    """A session handler for test apps: answers each bidirectional stream the peer opens
    with ``prefix`` and everything it sent (read to its end), until the session ends.
    Route it as is (``app.route(path="/echo")(serve_echo)``) or call it from a handler."""
    async for stream in session.incoming_bidirectional_streams():
        data = await stream.read_all()
        await stream.write(data=prefix + data, end_stream=True)


async def echo_once(
    session: WebTransportSession,
    data: Buffer,
    *,
    timeout: float | None = 10.0,  # noqa: ASYNC109 - one limit for the whole round trip
) -> bytes:
    """Opens a bidirectional stream, sends ``data`` and ends it, and returns what the
    peer sends back until it ends its side (what ``serve_echo`` answers). Raises
    ``TimeoutError`` when the round trip takes longer than ``timeout`` seconds (``None``:
    no limit)."""
    with anyio.fail_after(timeout):
        stream = await session.create_bidirectional_stream()
        await stream.write(data=data, end_stream=True)
        return await stream.read_all()

"""ServerApp: routing, middleware and lifecycle glue over ``WebTransportServer``."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

import anyio
from anyio.abc import TaskStatus

from fastwt import _bridge
from fastwt.config import ServerConfig
from fastwt.errors import ErrorCodes
from fastwt.framework.exceptions import MiddlewareRejected
from fastwt.framework.middleware import MiddlewareManager
from fastwt.framework.rooms import Room, RoomRegistry
from fastwt.framework.router import RequestRouter
from fastwt.framework.types import (
    MiddlewareProtocol,
    ServerProtocol,
    SessionHandler,
    SessionProtocol,
    StatefulMiddlewareProtocol,
)
from fastwt.server import WebTransportServer

if TYPE_CHECKING:
    from fastwt.framework.cluster import RedisBus

__all__ = ["ServerApp"]

_logger = logging.getLogger(__name__)
access_logger = logging.getLogger("fastwt.access")
"""One INFO record per session request, as web servers' access logs (see
:func:`_log_access`); set it to WARNING to turn them off."""

F = TypeVar("F", bound=Callable[..., Any])

_OK = 200
_NOT_FOUND = 404
_INTERNAL_SERVER_ERROR = 500
_SERVICE_UNAVAILABLE = 503
# Closing one session or answering one request must not hold up a shutdown.
_SESSION_CLOSE_TIMEOUT = 5.0
# Keyword arguments of run()/serve() that override the app's ServerConfig.
_CONFIG_FIELDS = tuple(sorted(f.name for f in dataclasses.fields(ServerConfig)))


class _State(enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"


class ServerApp:
    """Implement a high-level WebTransport application with routing and middleware.

    Register routes, middleware and lifecycle hooks first, then run it one of three ways:

    - ``app.run()`` — blocking; owns its event loop and stops cleanly on SIGINT/SIGTERM.
    - ``await app.serve()`` — in your own asyncio or trio program; starts the app,
      serves until cancelled or until the server closes, then shuts it down.
    - ``async with app: await app.serve()`` — the same, with the lifecycle tied to the
      ``async with`` block (as in pywebtransport).

    Each session request runs in its own task: middleware (in registration order),
    then routing (no route: 404), then ``accept()``, then ``await handler(session,
    **params)``. When the handler returns the session is closed with code 0; when it
    raises, the error is logged with the session's path and peer and the session is
    closed with ``handler_error_code``; on shutdown, sessions still open are closed with
    ``shutdown_error_code``. One session's failure never affects another.

    Configuration is frozen once ``startup()`` begins: adding routes, middleware or
    hooks afterwards raises ``RuntimeError`` instead of being silently ignored.
    """

    handler_error_code: int = ErrorCodes.HANDLER_ERROR
    """Session close code sent to the peer after the handler raised."""
    shutdown_error_code: int = ErrorCodes.SERVER_SHUTDOWN
    """Session close code for sessions still open when the app shuts down."""
    shutdown_timeout: float = 10.0
    """Seconds ``shutdown()`` may take (closing sessions, hooks, middleware exit)."""
    handler_timeout: float | None = None
    """Seconds a session handler may run before it is cancelled and the session closed
    with ``handler_error_code`` (reason ``"handler timed out"``); None: no limit."""

    def __init__(
        self,
        *,
        config: ServerConfig | None = None,
        broker: str | RedisBus | None = None,
        server: ServerProtocol | None = None,
    ) -> None:
        """Create the app and its server; with no ``config``, a ``ServerConfig()``
        whose development certificate is generated at startup (no files needed).

        ``server``: the server to drive instead of a ``WebTransportServer(config=...)``
        made here (a :class:`~fastwt.framework.types.ServerProtocol`: another
        implementation, or a test double); ``config`` is then the server's own and must
        not be given too.

        ``broker``: where rooms meet across processes and nodes — a Redis URL
        (``redis://host:6379/0``, ``unix:///path/redis.sock``) or a configured
        :class:`~fastwt.framework.cluster.RedisBus`; default the ``FASTWT_BROKER``
        environment variable (``fastwt run --broker`` sets it), else none: rooms are
        local to this process. The broker is connected by ``startup()``, which fails
        when it is unreachable.
        """
        if server is not None and config is not None:
            raise TypeError("pass config or server to ServerApp, not both")
        self._server: ServerProtocol = (
            server
            if server is not None
            else WebTransportServer(config=config if config is not None else ServerConfig())
        )
        if broker is None:
            broker = os.environ.get("FASTWT_BROKER", "").strip() or None
        bus: RedisBus | None = None
        if isinstance(broker, str):
            from fastwt.framework.cluster import RedisBus

            bus = RedisBus(broker)
        elif broker is not None:
            bus = broker
        self._rooms = RoomRegistry(bus=bus)
        self._router = RequestRouter()
        self._middleware = MiddlewareManager()
        self._stateful_middleware: list[StatefulMiddlewareProtocol] = []
        self._startup_handlers: list[Callable[[], Any]] = []
        self._shutdown_handlers: list[Callable[[], Any]] = []
        self._state = _State.CREATED
        self._lifespan_stack: AsyncExitStack | None = None
        self._context_stack: AsyncExitStack | None = None
        self._serve_scope: anyio.CancelScope | None = None
        self._serve_done: anyio.Event | None = None

    async def __aenter__(self) -> Self:
        """Enter the server's context, then ``startup()``."""
        if self._context_stack is not None:
            raise RuntimeError("ServerApp is already entered")
        stack = AsyncExitStack()
        await stack.enter_async_context(self._server)
        try:
            await self.startup()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        stack.push_async_callback(self.shutdown)
        self._context_stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """``shutdown()``, then close the server; shielded from cancellation, bounded
        by ``shutdown_timeout``."""
        stack, self._context_stack = self._context_stack, None
        if stack is None:
            return
        with anyio.move_on_after(self.shutdown_timeout, shield=True) as scope:
            await stack.aclose()
        if scope.cancelled_caught:
            _logger.warning("ServerApp shutdown exceeded %.1f s", self.shutdown_timeout)

    @property
    def server(self) -> WebTransportServer:
        """Return the underlying WebTransportServer instance: the one the app made, or
        the object passed as ``server``, which stands in for it (only its
        ``ServerProtocol`` members are then sure to exist; ``webtransport_server_of``
        checks for a real one)."""
        return cast("WebTransportServer", self._server)

    @property
    def broker(self) -> RedisBus | None:
        """The cluster bus rooms use across processes (``None``: rooms are local)."""
        return self._rooms.bus

    def room(self, name: str) -> Room:
        """The room called ``name`` (the same object on every call; see
        :class:`~fastwt.framework.rooms.Room`). With a broker it spans every process
        and node using that broker. Without one it is local to this process, and when
        ``FASTWT_WORKER_COUNT`` says this is one of several workers it raises
        ``ConfigurationError`` instead of splitting the room silently."""
        return self._rooms.room(name)

    @property
    def rooms(self) -> dict[str, Room]:
        """The rooms that have members in this process, by name (an empty room is
        forgotten once nothing holds it: names that come and go cost no memory)."""
        return self._rooms.rooms

    @property
    def router(self) -> RequestRouter:
        """The app's router, e.g. for ``set_default_handler`` or ``get_route_stats``.
        Change routes through it only before startup."""
        return self._router

    def add_middleware(self, *, middleware: MiddlewareProtocol) -> None:
        """Add a middleware to the processing chain.

        A middleware that is also an async context manager (``StatefulMiddlewareProtocol``,
        e.g. ``RateLimiter``) is entered by ``startup()`` and exited by ``shutdown()``.
        """
        self._ensure_configurable("add middleware")
        self._middleware.add_middleware(middleware=middleware)
        if isinstance(middleware, StatefulMiddlewareProtocol):
            self._stateful_middleware.append(middleware)

    def middleware(self, middleware_func: MiddlewareProtocol) -> MiddlewareProtocol:
        """Register a middleware function (decorator)."""
        self.add_middleware(middleware=middleware_func)
        return middleware_func

    def on_shutdown(self, handler: F) -> F:
        """Register a handler (sync or async, no arguments) to run on shutdown.

        Handlers run in registration order; one that raises is logged and the others
        still run.
        """
        self._ensure_configurable("add a shutdown handler")
        self._shutdown_handlers.append(handler)
        return handler

    def on_startup(self, handler: F) -> F:
        """Register a handler (sync or async, no arguments) to run on startup.

        Handlers run in registration order after stateful middleware were entered; one
        that raises aborts the startup (middleware already entered are exited).
        """
        self._ensure_configurable("add a startup handler")
        self._startup_handlers.append(handler)
        return handler

    def pattern_route(self, *, pattern: str) -> Callable[[SessionHandler], SessionHandler]:
        """Register a session handler for a URL pattern (a regex matching the whole path
        without the query; named groups become keyword arguments)."""

        def decorator(handler: SessionHandler) -> SessionHandler:
            self._ensure_configurable("add a route")
            self._router.add_pattern_route(pattern=pattern, handler=handler)
            return handler

        return decorator

    def route(self, *, path: str) -> Callable[[SessionHandler], SessionHandler]:
        """Register a session handler for a specific path (the query string is ignored
        for matching; the handler reads it from ``session.query``)."""

        def decorator(handler: SessionHandler) -> SessionHandler:
            self._ensure_configurable("add a route")
            self._router.add_route(path=path, handler=handler)
            return handler

        return decorator

    def run(self, *, host: str | None = None, port: int | None = None, **kwargs: Any) -> None:
        """Execute the server application in a new event loop (blocks until stopped).

        SIGINT and SIGTERM (when called from the main thread) stop it cleanly: open
        sessions are closed with ``shutdown_error_code``, shutdown handlers run and
        stateful middleware exit. ``backend="trio"`` (default ``"asyncio"``) and
        ``backend_options`` choose the event loop, as for ``anyio.run``;
        ``backend="python"`` or ``"rust"`` chooses the WebTransport implementation
        instead (``ServerConfig.backend``; then ``loop=`` names the event loop). Any
        ``ServerConfig`` field (``certfile=``, ``keyfile=``, ``max_sessions=``, ...)
        overrides the app's configuration, as for ``serve()``; any other keyword
        argument raises ``TypeError``. ``host``/``port`` default to the config's
        ``bind_host``/``bind_port``.

        ``workers=N`` (Linux) runs N worker processes on one UDP port instead, under
        a supervisor in this process (see :mod:`fastwt.workers` and
        docs/deployment.md): each worker imports the app anew, so it must live at
        module level of an importable module or of the main script (guard the
        ``run`` call with ``if __name__ == "__main__":``), and keyword overrides
        must be plain values (str, numbers, bools, None, paths). ``cid_steering=False``
        turns the BPF steering by connection ID off (``fastwt run --no-cid-steering``),
        which encrypted connection IDs (``cid_key``) need.
        """
        backend: str = kwargs.pop("backend", "asyncio")
        if backend in ("rust", "python"):
            # A WebTransport implementation (``ServerConfig.backend``), not an event loop.
            kwargs["backend"] = backend
            backend = kwargs.pop("loop", "asyncio")
        backend_options: dict[str, Any] | None = kwargs.pop("backend_options", None)
        workers: int | None = kwargs.pop("workers", None)
        cid_steering: bool = kwargs.pop("cid_steering", True)
        _check_kwargs(
            "run",
            kwargs,
            host=host,
            port=port,
            extra=("backend", "backend_options", "workers", "cid_steering"),
        )
        if type(cid_steering) is not bool:
            raise TypeError(f"cid_steering must be a bool, got {cid_steering!r}")
        if workers is None and not cid_steering:
            raise TypeError("ServerApp.run(cid_steering=False) is for workers=N")
        if workers is not None:
            self._run_workers(
                workers,
                host=host,
                port=port,
                backend=backend,
                backend_options=backend_options,
                overrides=kwargs,
                steering=cid_steering,
            )
            return
        self._apply_config_overrides(kwargs)

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                if threading.current_thread() is threading.main_thread():
                    await tg.start(_cancel_on_signals, tg.cancel_scope)
                await self.serve(host=host, port=port)
                tg.cancel_scope.cancel()

        try:
            _bridge.run(main, backend=backend, backend_options=backend_options)
        except KeyboardInterrupt:
            _logger.info("ServerApp interrupted")

    def _run_workers(
        self,
        workers: int,
        *,
        host: str | None,
        port: int | None,
        backend: str,
        backend_options: dict[str, Any] | None,
        overrides: dict[str, Any],
        steering: bool,
    ) -> None:
        """``run(workers=N)``: the supervisor, in this process; the app is found again
        by each worker through its import spec."""
        from fastwt.workers import WorkersError, serve_app

        if type(workers) is not int or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        code = serve_app(
            self,
            spec=_import_spec(self),
            workers=workers,
            host=host,
            port=port,
            overrides=overrides,
            backend=backend,
            backend_options=backend_options or {},
            shutdown_timeout=self.shutdown_timeout,
            steering=steering,
        )
        if code != 0:
            raise WorkersError("the workers could not start (see the log)")

    async def serve(
        self, *, host: str | None = None, port: int | None = None, **kwargs: Any
    ) -> None:
        """Start the server and listen for connections indefinitely.

        Runs ``startup()`` first and ``shutdown()`` on the way out unless called inside
        ``async with app``. Returns when the server stops accepting sessions (after the
        sessions in progress end), or is cancelled; cancellation closes the open
        sessions with ``shutdown_error_code``. Works under asyncio and trio.

        Keyword arguments named like ``ServerConfig`` fields (``certfile=``,
        ``keyfile=``, ``max_sessions=``, ...) replace those values of the app's
        configuration (``dataclasses.replace``, so they are validated the same way)
        before the server binds; ``app.server.config`` shows the result. Any other
        keyword argument raises ``TypeError``, as does giving both ``host`` and
        ``bind_host`` (or ``port`` and ``bind_port``).

        With ``anyio``'s ``await task_group.start(app.serve, ...)`` it reports the
        bound ``local_addresses`` once listening (handy with ``port=0``).

        With a broker, the cluster bus (and any middleware's ``run_in_background``,
        e.g. a Redis rate limiter's connection) runs in a task of its own for as long
        as it serves; a broker that cannot be reached raises ``fastwt.ConnectionError``
        before the server binds.
        """
        task_status: TaskStatus[Any] = kwargs.pop("task_status", anyio.TASK_STATUS_IGNORED)
        _check_kwargs("serve", kwargs, host=host, port=port, extra=("task_status",))
        if self._serve_done is not None:
            raise RuntimeError("ServerApp is already serving")
        self._apply_config_overrides(kwargs)
        self._serve_done = anyio.Event()
        try:
            # The broker and middleware that hold a connection run in tasks of their
            # own for as long as the app serves (their clients' task groups must live
            # in one task, not in the lifespan stack); a broker that cannot be reached
            # fails here, before the server binds.
            background = self._background_services()
            if not background:
                await self._serve_sessions(host, port, task_status)
                return
            try:
                async with anyio.create_task_group() as services:
                    for service in background:
                        await services.start(service)
                    try:
                        await self._serve_sessions(host, port, task_status)
                    finally:
                        services.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # One failure (the usual case) surfaces as itself, as without services.
                error: BaseException = group
                while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
                    error = error.exceptions[0]
                if error is group:
                    raise
                raise error from None
        finally:
            done, self._serve_done = self._serve_done, None
            done.set()

    def _background_services(self) -> list[Callable[..., Any]]:
        """``run(*, task_status)`` callables to run while serving: the broker's, and
        each middleware's ``run_in_background`` (e.g. a Redis rate limiter's)."""
        services: list[Callable[..., Any]] = []
        if self._rooms.bus is not None:
            services.append(self._rooms.bus.run)
        for middleware in self._stateful_middleware:
            run = getattr(middleware, "run_in_background", None)
            if callable(run):
                services.append(run)
        return services

    async def _serve_sessions(
        self, host: str | None, port: int | None, task_status: TaskStatus[Any]
    ) -> None:
        async with AsyncExitStack() as stack:
            if self._context_stack is None:
                await stack.enter_async_context(self)
            await self._server.listen(host=host, port=port)
            addresses = list(self._server.local_addresses)
            _logger.info("ServerApp serving on %s", addresses)
            with anyio.CancelScope() as scope:
                self._serve_scope = scope
                try:
                    async with anyio.create_task_group() as tg:
                        task_status.started(addresses)
                        async for session in self._server.incoming_sessions():
                            tg.start_soon(self._handle_session_request, session)
                finally:
                    self._serve_scope = None

    async def shutdown(self) -> None:
        """Run shutdown handlers and exit stateful middleware.

        Stops a ``serve()`` running in another task first (its open sessions are closed
        with ``shutdown_error_code``) — so do not await it from a session handler, which
        that would wait for until ``shutdown_timeout``. Runs once: later calls, and calls before
        ``startup()``, do nothing. Shielded from cancellation, bounded by
        ``shutdown_timeout``.
        """
        if self._state is not _State.STARTED:
            return
        self._state = _State.STOPPING
        with anyio.move_on_after(self.shutdown_timeout, shield=True) as scope:
            serve_scope, serve_done = self._serve_scope, self._serve_done
            if serve_scope is not None and serve_done is not None:
                serve_scope.cancel()
                await serve_done.wait()
            for handler in self._shutdown_handlers:
                try:
                    await _call_hook(handler)
                except Exception:
                    _logger.exception("shutdown handler %r failed", handler)
            stack, self._lifespan_stack = self._lifespan_stack, None
            if stack is not None:
                try:
                    await stack.aclose()
                except Exception:
                    _logger.exception("exiting stateful middleware failed")
        if scope.cancelled_caught:
            _logger.warning("ServerApp.shutdown() exceeded %.1f s", self.shutdown_timeout)
        self._state = _State.STOPPED

    async def startup(self) -> None:
        """Run startup handlers and enter stateful middleware.

        Middleware are entered first (registration order), then handlers run. Runs
        once: later calls do nothing; after ``shutdown()`` it raises ``RuntimeError``.
        If it fails, whatever was entered is exited and the exception propagates.
        """
        if self._state is _State.STOPPED:
            raise RuntimeError("ServerApp cannot start again after shutdown")
        if self._state is not _State.CREATED:
            return
        self._state = _State.STARTING
        stack = AsyncExitStack()
        try:
            for middleware in self._stateful_middleware:
                await stack.enter_async_context(middleware)
            for handler in self._startup_handlers:
                await _call_hook(handler)
        except BaseException:
            self._state = _State.STOPPED
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        self._lifespan_stack = stack
        self._state = _State.STARTED

    def _apply_config_overrides(self, overrides: dict[str, Any]) -> None:
        """Give the server ``dataclasses.replace(config, **overrides)`` (same server
        object, so hooks such as ``ServerStats.attach`` stay in place)."""
        if not overrides:
            return
        server = self._server
        if server.is_serving:
            raise RuntimeError("cannot change the configuration of a server already listening")
        server._replace_config(dataclasses.replace(server.config, **overrides))

    def _ensure_configurable(self, action: str) -> None:
        if self._state is not _State.CREATED:
            raise RuntimeError(
                f"cannot {action} after the ServerApp started; "
                "configure routes, middleware and hooks before startup()"
            )

    async def _handle_session_request(self, session: SessionProtocol) -> None:
        """Middleware, routing, accept and handler for one request; never raises
        (except cancellation), so one request cannot disturb the others. Logs one
        access line when the request is answered and, if accepted, closed."""
        started = time.monotonic()
        status: int | None = None
        try:
            status = await self._answer_request(session)
        finally:
            _log_access(session, status, started)

    async def _answer_request(self, session: SessionProtocol) -> int | None:
        """Everything but the access log; returns the HTTP status sent (None if the
        request could not be answered)."""
        # Middleware must answer within the server's request_timeout: past it the server
        # has refused the request with 503, so a middleware still running is cancelled
        # rather than left behind. A server without the setting (a test double) sets none.
        limit: float | None = getattr(self._server.config, "request_timeout", None)
        try:
            with anyio.move_on_after(limit) as deadline:
                await self._middleware.process_request(session=session)
            if deadline.cancelled_caught:
                _logger.warning(
                    "middleware did not answer %r from %s within request_timeout (%s s): "
                    "refused with 503",
                    session.path,
                    session.remote_address,
                    limit,
                )
                await _reject(session, status_code=_SERVICE_UNAVAILABLE, headers=None)
                return _SERVICE_UNAVAILABLE
            route = self._router.route_request(session=session)
        except MiddlewareRejected as exc:
            await _reject(session, status_code=exc.status_code, headers=exc.headers)
            return exc.status_code
        except Exception:
            _logger.exception(
                "session request for %r from %s failed", session.path, session.remote_address
            )
            await _reject(session, status_code=_INTERNAL_SERVER_ERROR, headers=None)
            return _INTERNAL_SERVER_ERROR
        if route is None:
            _logger.info("no route for %r from %s", session.path, session.remote_address)
            await _reject(session, status_code=_NOT_FOUND, headers=None)
            return _NOT_FOUND
        handler, params = route
        try:
            await session.accept()
        except Exception as exc:
            _logger.info(
                "could not accept session for %r from %s: %r",
                session.path,
                session.remote_address,
                exc,
            )
            return None
        await self._run_handler(session, handler, params)
        return _OK

    async def _run_handler(
        self, session: SessionProtocol, handler: SessionHandler, params: dict[str, Any]
    ) -> None:
        error_code, reason = 0, None
        try:
            with anyio.move_on_after(self.handler_timeout) as deadline:
                await handler(session, **params)
            if deadline.cancelled_caught:
                _logger.warning(
                    "handler %s for session %s (path %r, peer %s) exceeded handler_timeout "
                    "(%.1f s): cancelled",
                    getattr(handler, "__qualname__", handler),
                    session.session_id,
                    session.path,
                    session.remote_address,
                    self.handler_timeout,
                )
                error_code, reason = self.handler_error_code, "handler timed out"
        except Exception:
            _logger.exception(
                "handler %s failed for session %s (path %r, peer %s)",
                getattr(handler, "__qualname__", handler),
                session.session_id,
                session.path,
                session.remote_address,
            )
            error_code, reason = self.handler_error_code, "internal server error"
        except BaseException:
            error_code, reason = self.shutdown_error_code, "server shutting down"
            # GOAWAY on every connection before the first close capsule goes out.
            goaway = getattr(self._server, "goaway", None)
            if goaway is not None:
                goaway()
            raise
        finally:
            await self._leave_rooms(session)
            await _close_session(session, error_code=error_code, reason=reason)

    async def _leave_rooms(self, session: SessionProtocol) -> None:
        """A session whose handler ended leaves its rooms (shielded, bounded: Redis may
        be slow or gone; the heartbeat and presence expiry clean up after it)."""
        with anyio.move_on_after(_SESSION_CLOSE_TIMEOUT, shield=True):
            try:
                await self._rooms.forget(session)
            except Exception as exc:
                _logger.debug("session %s: leaving its rooms failed: %r", session.session_id, exc)


def _import_spec(app: ServerApp) -> str:
    """Where a worker process finds ``app`` again: ``path/to/script.py:name`` for the
    main script, ``module:name`` otherwise."""
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main is not None and main_file:
        for name, value in vars(main).items():
            if value is app:
                return f"{os.path.abspath(main_file)}:{name}"
    for module_name, module in list(sys.modules.items()):
        if module_name == "__main__" or module is None:
            continue
        for name, value in list(getattr(module, "__dict__", {}).items()):
            if value is app:
                return f"{module_name}:{name}"
    from fastwt.workers import WorkersError

    raise WorkersError(
        "run(workers=...) needs the ServerApp at module level (of the main script or an "
        "importable module), where each worker process can import it again"
    )


def _check_kwargs(
    method: str,
    kwargs: dict[str, Any],
    *,
    host: str | None,
    port: int | None,
    extra: tuple[str, ...],
) -> None:
    """``TypeError`` unless ``kwargs`` are all ServerConfig fields and none of them
    duplicates ``host``/``port``."""
    unknown = sorted(set(kwargs) - set(_CONFIG_FIELDS))
    if unknown:
        raise TypeError(
            f"ServerApp.{method}() got unexpected keyword arguments {unknown}; it takes "
            f"host, port, {', '.join(extra)} and the ServerConfig fields: "
            f"{', '.join(_CONFIG_FIELDS)}"
        )
    for given, field_name in ((host, "host"), (port, "port")):
        if given is not None and kwargs.get(f"bind_{field_name}") is not None:
            raise TypeError(
                f"ServerApp.{method}() got both {field_name}= and bind_{field_name}=; "
                "give one of them"
            )


def _log_access(session: SessionProtocol, status: int | None, started: float) -> None:
    """The access line: ``PEER - "PATH" STATUS DURATIONs sent=B received=B close=CODE``,
    with the same values as record attributes (``peer``, ``path``, ``status``,
    ``duration``, ``bytes_sent``, ``bytes_received``, ``close_code``,
    ``close_reason``, ``session_id``) for JSON formatters. Bytes are the QUIC
    connection's (so they include protocol overhead); the close code is the one the
    session ended with, from either side (None for a rejected request)."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    duration = time.monotonic() - started
    address = session.remote_address
    if address is None:
        peer = "-"
    else:
        host, port = address[0], address[1]
        peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    stats: dict[str, Any] = {}
    stats_of = getattr(session, "stats", None)
    if callable(stats_of):
        try:
            stats = dict(stats_of())
        except Exception:  # a vanished session must not break logging
            stats = {}
    sent, received = int(stats.get("bytes_sent", 0)), int(stats.get("bytes_received", 0))
    close_code = getattr(session, "close_code", None) if status == _OK else None
    close_reason = getattr(session, "close_reason", None) if status == _OK else None
    access_logger.info(
        '%s - "%s" %s %.3fs sent=%d received=%d close=%s',
        peer,
        session.path,
        "-" if status is None else status,
        duration,
        sent,
        received,
        "-" if close_code is None else close_code,
        extra={
            "session_id": session.session_id,
            "peer": peer,
            "path": session.path,
            "status": status,
            "duration": round(duration, 6),
            "bytes_sent": sent,
            "bytes_received": received,
            "close_code": close_code,
            "close_reason": close_reason,
        },
    )


async def _call_hook(handler: Callable[[], Any]) -> None:
    result = handler()
    if inspect.isawaitable(result):
        await result


async def _reject(
    session: SessionProtocol, *, status_code: int, headers: dict[str, str] | None
) -> None:
    """Answer a request with an HTTP status; the peer may be gone already."""
    try:
        with anyio.fail_after(_SESSION_CLOSE_TIMEOUT):
            await session.reject(status_code=status_code, headers=headers or None)
    except Exception as exc:
        _logger.debug("rejecting %r with %d failed: %r", session.path, status_code, exc)


def webtransport_server_of(app: ServerApp, *, needs: str) -> WebTransportServer:
    """``app.server`` when it is a :class:`fastwt.WebTransportServer`; ``needs`` names
    what asked (metrics, workers, certificate reload), which then fails clearly with
    ``TypeError`` for an app driving another server."""
    server = app.server
    if not isinstance(server, WebTransportServer):
        raise TypeError(f"{needs} needs a fastwt WebTransportServer, got {type(server).__name__}")
    return server


async def _close_session(session: SessionProtocol, *, error_code: int, reason: str | None) -> None:
    """Close a session unless its handler did; runs even during cancellation."""
    if session.is_closed:
        return
    with anyio.move_on_after(_SESSION_CLOSE_TIMEOUT, shield=True):
        try:
            await session.close(error_code=error_code, reason=reason)
        except Exception as exc:
            _logger.debug("closing session %s failed: %r", session.session_id, exc)


async def _cancel_on_signals(
    scope: anyio.CancelScope,
    *,
    on_hangup: Callable[[], None] | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Cancel ``scope`` on the first SIGINT or SIGTERM (a second one, during shutdown,
    gets Python's default behaviour). With ``on_hangup``, SIGHUP calls it instead (one
    receiver for every signal: a second receiver changed how the first one is removed)."""
    signals = [signal.SIGINT]
    if hasattr(signal, "SIGTERM"):
        signals.append(signal.SIGTERM)
    if on_hangup is not None and hasattr(signal, "SIGHUP"):
        signals.append(signal.SIGHUP)
    try:
        receiver = anyio.open_signal_receiver(*signals)
        received = receiver.__enter__()
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        # No signal support here (e.g. Windows' asyncio): Ctrl-C still raises
        # KeyboardInterrupt, which run() catches.
        _logger.debug("signal handling unavailable: %r", exc)
        task_status.started()
        return
    with receiver:
        task_status.started()
        async for signum in received:
            if on_hangup is not None and signum == getattr(signal, "SIGHUP", None):
                on_hangup()
                continue
            _logger.info("received %s; shutting down", signal.Signals(signum).name)
            scope.cancel()
            return

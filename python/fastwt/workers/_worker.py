"""One worker of ``fastwt run --workers``: a fresh interpreter started by the
supervisor (``python -m fastwt.workers._worker``), its settings as JSON on stdin.

It imports the app, serves it on the inherited socket with CIDs naming its slot, writes
``ready`` then a heartbeat every second on its status pipe, and on SIGTERM drains
(GOAWAY, then waits up to ``drain_timeout`` for the sessions to end) before the
app's graceful close. A supervisor that vanishes (the pipe breaks) stops it too.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
from typing import Any

import anyio


def _load(spec: str) -> Any:
    """``module:attr``, or ``path/to/file.py:attr`` (run as ``__mp_main__``, so a
    script's ``if __name__ == "__main__":`` block does not run again)."""
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        namespace = runpy.run_path(target, run_name="__mp_main__")
        obj: Any = namespace[attr.split(".")[0]]
        for part in attr.split(".")[1:]:
            obj = getattr(obj, part)
        return obj
    from fastwt.cli import load_app

    return load_app(spec)


def main() -> None:
    config = json.loads(sys.stdin.read())
    # The supervisor decides: Ctrl-C reaches it alone, and SIGHUP is its (it replaces
    # the workers; a worker's default action would be to die).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.chdir(config["cwd"])
    for path in reversed(config["sys_path"]):
        if path not in sys.path:
            sys.path.insert(0, path)
    import logging

    from fastwt import workers
    from fastwt.cli import configure_logging
    from fastwt.framework.app import ServerApp, webtransport_server_of

    configure_logging(config["log_level"], config["log_config"])
    if not config["access_log"]:
        logging.getLogger("fastwt.access").setLevel(logging.WARNING)
    workers._set_current(config["index"], config["workers"])
    app = _load(config["app"])
    if not isinstance(app, ServerApp):
        raise SystemExit(f"{config['app']} is a {type(app).__name__}, not a fastwt ServerApp")
    app.shutdown_timeout = config["shutdown_timeout"]
    if config["overrides"]:
        app._apply_config_overrides(config["overrides"])
    server = webtransport_server_of(app, needs="fastwt run --workers")
    steering = bool(config["steering"])
    # Encrypted CIDs (never steered) name the slot too: the load balancer reads the
    # worker, and each worker's nonces stay apart from the others'.
    named = steering or server.config.cid_key is not None
    server._adopt_socket(
        config["fd"],
        server_id=bytes.fromhex(config["server_id"]),
        worker=config["slot"] if named else None,
        secret=bytes.fromhex(config["secret"]),
    )
    status_fd: int = config["status_fd"]
    drain: float = config["drain_timeout"]

    async def run() -> None:
        async with anyio.create_task_group() as tg:

            async def beat() -> None:
                while True:
                    try:
                        os.write(status_fd, b"beat\n")
                    except OSError:  # the supervisor is gone
                        tg.cancel_scope.cancel()
                        return
                    await anyio.sleep(1.0)

            async def on_term() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM) as received:
                    async for _ in received:
                        break
                server.goaway()
                with anyio.move_on_after(drain):
                    # The core's counts have no event to wait on: poll them. Connections
                    # still in their handshake count too: one whose first packet reached
                    # this worker's socket before the supervisor re-steered the group
                    # sends its CONNECT here, and is served rather than refused.
                    while server.session_count > 0 or server.handshake_count > 0:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                tg.cancel_scope.cancel()

            tg.start_soon(on_term)
            await tg.start(app.serve)
            os.write(status_fd, b"ready\n")
            tg.start_soon(beat)

    from fastwt import _bridge

    _bridge.run(run, backend=config["backend"], backend_options=config["backend_options"] or None)


if __name__ == "__main__":
    main()

"""A script whose ServerApp runs itself with ``app.run(workers=2)`` (for
tests/integration/test_workers.py); certificate paths come from the environment
(``WORKERS_TEST_CERT``/``WORKERS_TEST_KEY``), which the worker processes inherit.

With ``--supervisor`` it runs ``fastwt.workers.run`` directly with a 2-second heartbeat
timeout instead, and prints the bound port."""

from __future__ import annotations

import logging
import os
import sys

from fastwt import ServerConfig, WebTransportError, WebTransportSession
from fastwt.framework import ServerApp
from fastwt.workers import worker_index

app = ServerApp(
    config=ServerConfig(
        certfile=os.environ["WORKERS_TEST_CERT"], keyfile=os.environ["WORKERS_TEST_KEY"]
    )
)


@app.route(path="/who")
async def who(session: WebTransportSession) -> None:
    answer = f"{worker_index()} {os.getpid()}".encode()
    while True:
        try:
            stream = await session.accept_bidirectional_stream()
        except WebTransportError:
            return
        await stream.read_all()
        await stream.write(data=answer, end_stream=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if sys.argv[1:] == ["--supervisor"]:
        from fastwt.workers import WorkerOptions, run

        def ready(address: tuple[str, int]) -> None:
            print(f"supervisor serving on {address[0]}:{address[1]}", flush=True)

        options = WorkerOptions(
            app=f"{os.path.abspath(__file__)}:app",
            workers=2,
            host="127.0.0.1",
            port=0,
            heartbeat_timeout=2.0,
        )
        sys.exit(run(options, on_ready=ready))
    app.run(workers=2, host="127.0.0.1", port=0, max_sessions=50)

"""fork() after fastwt started: the child has the runtime's state but not its I/O thread.
It must fail at once with an error that says what to do, never hang."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os
    import anyio
    from fastwt import ServerConfig, WebTransportServer

    async def serve_once() -> None:
        config = ServerConfig(bind_host="127.0.0.1", bind_port=0)
        async with WebTransportServer(config=config) as server:
            await server.listen()

    anyio.run(serve_once)  # the parent starts the runtime
    pid = os.fork()
    if pid == 0:
        try:
            anyio.run(serve_once)
        except RuntimeError as e:
            print("child error:", e, flush=True)
            os._exit(0 if "spawn" in str(e) else 4)
        os._exit(3)
    _, status = os.waitpid(pid, 0)
    print("child exit", os.waitstatus_to_exitcode(status), flush=True)
    anyio.run(serve_once)  # the parent still works
    print("parent ok", flush=True)
    """
)


def test_a_forked_child_fails_clearly_and_the_parent_keeps_working() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    out = done.stdout + done.stderr
    assert "child exit 0" in out, out
    assert "forked" in out and "parent ok" in out, out

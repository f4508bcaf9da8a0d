"""Python objects are made only after the bindings release their locks: allocating one can
run the garbage collector, and a finalizer may call back into the same session. Holding
the lock then deadlocked the thread on itself (the lock is not re-entrant)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import gc
    import anyio
    from fastwt import _bridge
    from integration.echo_server import echo_server

    class Finalizer:
        def __init__(self, poll, notifier, token):
            self.poll, self.notifier, self.token = poll, notifier, token
            self.cycle = self
        def __del__(self):
            # Re-enters the session while its datagram list is being made.
            RESULTS.append(self.poll(1, self.notifier, self.token))

    RESULTS = []

    async def main() -> None:
        async with echo_server() as echo, echo.client() as client:
            session = await client.connect(url=f"{echo.url}/echo")
            for i in range(5):
                await session.send_datagram(data=bytes([i]))
            await anyio.sleep(0.5)  # the echoes are queued on the client side
            hub = _bridge.get_hub()
            poll = session._handle.poll_datagrams
            notifier, token = hub.notifier, _bridge.new_token()
            threshold = gc.get_threshold()
            reentered = 0
            for _ in range(20):
                await session.send_datagram(data=b"again")
                await anyio.sleep(0.05)
                gc.collect()
                Finalizer(poll, notifier, token)  # garbage in a cycle, for the collector
                count = gc.get_count()[0]
                gc.set_threshold(count)  # the next tracked allocation collects
                try:
                    poll(10, notifier, token)  # its list allocation runs the collector
                finally:
                    gc.set_threshold(*threshold)
                reentered += len(RESULTS)
                RESULTS.clear()
            print("reentered", reentered, flush=True)

    anyio.run(main)
    """
)


def test_a_finalizer_calling_back_during_an_allocation_does_not_deadlock() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=__import__("pathlib").Path(__file__).resolve().parents[1],
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "reentered" in out, out
    # The finalizer did run inside the poll (else this test would prove nothing).
    assert int(out.split("reentered", 1)[1].split()[0]) > 0, out

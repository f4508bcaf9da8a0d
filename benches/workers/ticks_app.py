"""The app of ``benches/workers/run.py --mode fanout``: every session on ``/ticks`` gets a
64-byte datagram 20 times a second from its worker's tick loop (one loop per process
sends to that process's sessions, as a game server's tick does; it runs in the task of
the first session to find it idle, until the last session leaves)."""

from __future__ import annotations

import anyio
from fastwt import WebTransportError, WebTransportSession
from fastwt.framework import ServerApp

HZ = 20
TICK = b"t" * 64

app = ServerApp()
_sessions: set[WebTransportSession] = set()
_ticking = False


async def _tick_loop() -> None:
    global _ticking
    period = 1 / HZ
    deadline = anyio.current_time()
    try:
        while _sessions:
            deadline = max(deadline + period, anyio.current_time() - period)
            await anyio.sleep_until(deadline)
            for session in list(_sessions):
                try:
                    await session.send_datagram(data=TICK)
                except WebTransportError:
                    _sessions.discard(session)
    finally:
        _ticking = False


@app.route(path="/ticks")
async def ticks(session: WebTransportSession) -> None:
    global _ticking
    _sessions.add(session)
    async with anyio.create_task_group() as tg:
        if not _ticking:
            _ticking = True
            tg.start_soon(_tick_loop)
        try:
            await session.wait_closed()
        finally:
            _sessions.discard(session)

"""The app of benches/workers/run.py: ``/echo`` echoes every bidirectional stream."""

from __future__ import annotations

import anyio
from fastwt import WebTransportError, WebTransportSession
from fastwt.framework import ServerApp
from fastwt.stream import WebTransportBidirectionalStream

app = ServerApp()


@app.route(path="/echo")
async def echo(session: WebTransportSession) -> None:
    async def one(stream: WebTransportBidirectionalStream) -> None:
        try:
            await stream.write(data=await stream.read_all(), end_stream=True)
        except WebTransportError:
            pass

    async with anyio.create_task_group() as tg:
        while True:
            try:
                stream = await session.accept_bidirectional_stream()
            except WebTransportError:
                return
            tg.start_soon(one, stream)

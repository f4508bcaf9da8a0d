"""The app of tests/integration/test_workers.py, run by ``fastwt run --workers``.

``/who``: each bidirectional stream the client opens gets back ``"<worker index>
<pid>"`` (whatever it carried), so a client can tell which worker holds its session,
before and after its address changes. ``/room``: one stream gets back what
``app.room("lobby")`` did in this worker ("ok", or the error it raised).
"""

from __future__ import annotations

import os

import anyio

from fastwt import ConfigurationError, WebTransportError, WebTransportSession
from fastwt.framework import ServerApp
from fastwt.stream import WebTransportBidirectionalStream
from fastwt.workers import worker_index

app = ServerApp()


@app.route(path="/who")
async def who(session: WebTransportSession) -> None:
    answer = f"{worker_index()} {os.getpid()}".encode()

    async def reply(stream: WebTransportBidirectionalStream) -> None:
        await stream.read_all()
        await stream.write(data=answer, end_stream=True)

    async with anyio.create_task_group() as tg:
        while True:
            try:
                stream = await session.accept_bidirectional_stream()
            except WebTransportError:
                break
            tg.start_soon(reply, stream)


@app.route(path="/room")
async def room(session: WebTransportSession) -> None:
    try:
        app.room("lobby")
        answer = b"ok"
    except ConfigurationError as exc:
        answer = f"error: {exc}".encode()
    stream = await session.accept_bidirectional_stream()
    await stream.read_all()
    await stream.write(data=answer, end_stream=True)

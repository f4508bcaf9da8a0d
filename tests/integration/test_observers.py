"""``WebTransportServer.add_observer``: an observer hears of every session request and of
its answer (200, the rejection status, 404 for one closed unanswered), once each, on
both backends; a failing observer does not cost the request; a removed one hears
nothing more."""

from __future__ import annotations

import anyio
import pytest

from fastwt import (
    ClientConfig,
    ServerConfig,
    SessionRejectedError,
    WebTransportClient,
    WebTransportServer,
    WebTransportSession,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("backend")]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int | None]] = []

    def session_requested(self, session: WebTransportSession) -> None:
        self.events.append(("requested", session.path, None))

    def session_answered(self, session: WebTransportSession, status: int) -> None:
        self.events.append(("answered", session.path, status))


class Broken:
    def session_requested(self, session: WebTransportSession) -> None:
        raise RuntimeError("observer bug")

    def session_answered(self, session: WebTransportSession, status: int) -> None:
        raise RuntimeError("observer bug")


async def test_observers_hear_each_request_and_its_answer_once() -> None:
    recorder, broken, removed = Recorder(), Broken(), Recorder()
    config = ServerConfig(bind_host="127.0.0.1", bind_port=0)
    async with WebTransportServer(config=config) as server, anyio.create_task_group() as tg:
        await server.listen()
        server.add_observer(broken)
        server.add_observer(recorder)
        server.add_observer(recorder)  # idempotent
        server.add_observer(removed)
        server.remove_observer(removed)
        port = server.local_addresses[0][1]

        async def answer() -> None:
            async for request in server.incoming_sessions():
                if request.path == "/ok":
                    await request.accept()
                    await request.close()  # closing an accepted session is no answer
                elif request.path == "/no":
                    await request.reject(status_code=429)
                else:
                    await request.close()  # unanswered: the peer gets 404

        tg.start_soon(answer)
        client_config = ClientConfig(server_certificate_hashes=[server.certificate_hash])
        async with WebTransportClient(config=client_config) as client:
            with anyio.fail_after(10):
                session = await client.connect(url=f"https://127.0.0.1:{port}/ok")
                await session.wait_closed()
                for path, status in (("/no", 429), ("/gone", 404)):
                    with pytest.raises(SessionRejectedError) as rejected:
                        await client.connect(url=f"https://127.0.0.1:{port}{path}")
                    assert rejected.value.status_code == status
        tg.cancel_scope.cancel()
    assert recorder.events == [
        ("requested", "/ok", None),
        ("answered", "/ok", 200),
        ("requested", "/no", None),
        ("answered", "/no", 429),
        ("requested", "/gone", None),
        ("answered", "/gone", 404),
    ]
    assert removed.events == []

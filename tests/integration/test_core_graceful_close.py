"""A session closed right after its last reply: the reply arrives before the close.

The close (CLOSE_WEBTRANSPORT_SESSION on the CONNECT stream) travels on another QUIC
stream than the reply, so without care it overtakes a reply stream finished just
before it, and the peer, whose session is gone, throws the late stream away. A close
waits (up to a bound) until the peer has acknowledged every send stream the
application finished."""

from __future__ import annotations

import anyio
import pytest

from fastwt import (
    ClientConfig,
    ServerConfig,
    WebTransportClient,
    WebTransportServer,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("backend")]

ROUNDS = 20
REPLY = b"r" * 3000  # more than one packet


async def _serve(server: WebTransportServer, answer: str, rounds: int) -> None:
    """Answers `rounds` sessions: each gets its reply on a stream, then the close."""
    for _ in range(rounds):
        session = await server.accept()
        await session.accept()
        if answer == "uni":
            stream = await session.create_unidirectional_stream()
            await stream.write(data=REPLY, end_stream=True)
        else:
            bidi = await session.accept_bidirectional_stream()
            await bidi.read_all()
            await bidi.write(data=REPLY, end_stream=True)
        await session.close(error_code=7, reason="done")


@pytest.mark.parametrize("answer", ["uni", "bidi"])
async def test_reply_finished_just_before_the_close_reaches_the_client(answer: str) -> None:
    async with (
        WebTransportServer(config=ServerConfig(bind_host="127.0.0.1", bind_port=0)) as server,
        anyio.create_task_group() as tg,
    ):
        await server.listen()
        tg.start_soon(_serve, server, answer, ROUNDS)
        port = server.local_addresses[0][1]
        config = ClientConfig(server_certificate_hashes=[server.certificate_hash])
        got: list[bytes] = []
        codes: list[int] = []
        async with WebTransportClient(config=config) as client:
            for _ in range(ROUNDS):
                with anyio.fail_after(10):
                    session = await client.connect(url=f"https://127.0.0.1:{port}/")
                    if answer == "uni":
                        stream = await session.accept_unidirectional_stream()
                        got.append(await stream.read_all())
                    else:
                        bidi = await session.create_bidirectional_stream()
                        await bidi.write(data=b"q", end_stream=True)
                        got.append(await bidi.read_all())
                    code, _ = await session.wait_closed()
                    codes.append(code)
        assert got == [REPLY] * ROUNDS
        assert codes == [7] * ROUNDS


async def test_close_behind_a_reply_the_peer_never_reads_returns_within_the_linger(
    backend: str,
) -> None:
    """A peer that stops reading holds a finished reply back (flow control), so it is
    never acknowledged: the close waits at most its linger (2 s), then goes out anyway;
    the session is closed for the server at once. (The pure backend waits for a PING's
    acknowledgement instead, which flow control does not hold back: its close goes out
    after one round trip.)"""
    async with (
        WebTransportServer(config=ServerConfig(bind_host="127.0.0.1", bind_port=0)) as server,
        anyio.create_task_group() as tg,
    ):
        await server.listen()
        closed_in: list[float] = []

        async def answer() -> None:
            session = await server.accept()
            await session.accept()
            stream = await session.create_unidirectional_stream()
            await stream.write(data=b"x" * 512 * 1024, end_stream=True)  # beyond the window
            start = anyio.current_time()
            with anyio.fail_after(10):
                await session.close(error_code=9, reason="bye")
            closed_in.append(anyio.current_time() - start)
            assert session.is_closed

        tg.start_soon(answer)
        port = server.local_addresses[0][1]
        config = ClientConfig(
            server_certificate_hashes=[server.certificate_hash],
            stream_receive_window=64 * 1024,
        )
        async with WebTransportClient(config=config) as client:
            session = await client.connect(url=f"https://127.0.0.1:{port}/")
            # Taken and kept, never read (dropping it would stop the stream: STOP_SENDING
            # ends the wait as surely as an acknowledgement).
            unread = await session.accept_unidirectional_stream()
            with anyio.fail_after(10):
                code, reason = await session.wait_closed()
            del unread
        assert (code, reason) == (9, "bye")
        # The client may see the close a moment before the server's close() returns.
        with anyio.fail_after(10):
            while not closed_in:
                await anyio.sleep(0.01)
        assert len(closed_in) == 1 and closed_in[0] <= 5.0, closed_in
        if backend == "rust":
            assert closed_in[0] >= 1.5, closed_in

"""The examples in ``examples/`` (chat room, game broadcast, telemetry ingest), each
served in process on 127.0.0.1 port 0 and exercised with the fastwt client, on asyncio
and trio; and each run once as a script (prints its URL and certificate hash, serves a
client, stops cleanly on SIGINT)."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.from_thread import start_blocking_portal
from browser_support import Browser, require_chromium, serve_html
from example_support import EXAMPLES, load_example
from process_support import PythonScript

from fastwt import (
    ClientConfig,
    ServerConfig,
    SessionRejectedError,
    WebTransportClient,
    WebTransportSession,
)
from fastwt.devserver import start_page_server
from fastwt.stream import WebTransportBidirectionalStream
from fastwt.testing import TestClient

pytestmark = pytest.mark.timeout(120)


chat_room = load_example("chat_room")
cluster_room = load_example("cluster_room")
game_broadcast = load_example("game_broadcast")
telemetry_ingest = load_example("telemetry_ingest")


def loopback() -> ServerConfig:
    return ServerConfig(bind_host="127.0.0.1", bind_port=0)


# --------------------------------------------------------------------------- chat room


class ChatMember:
    def __init__(self, session: WebTransportSession, stream: WebTransportBidirectionalStream):
        self.session = session
        self.stream = stream

    @classmethod
    async def join(cls, served: TestClient, room: str, nick: str) -> tuple[ChatMember, str]:
        session = await served.connect(f"/chat/{room}?nick={nick}")
        stream = await session.create_bidirectional_stream()
        # An empty line (never relayed): some clients announce a stream only with data.
        await stream.write(data=b"\n")
        member = cls(session, stream)
        return member, await member.line()

    async def say(self, text: str) -> None:
        await self.stream.write(data=text.encode() + b"\n")

    async def line(self) -> str:
        with anyio.fail_after(10):
            line = await self.stream.readline()
        assert line.endswith(b"\n"), line
        return line.decode().rstrip("\n")

    async def nothing_more(self, wait: float = 0.3) -> None:
        with anyio.move_on_after(wait):
            extra = await self.stream.readline()
            pytest.fail(f"unexpected line {extra!r}")


@pytest.mark.anyio
async def test_chat_room_broadcasts_to_the_others_and_handles_leaving() -> None:
    chat = chat_room.ChatServer()
    app = chat_room.create_app(config=loopback(), chat=chat)
    async with TestClient(app) as served:
        ada, welcome = await ChatMember.join(served, "lobby", "ada")
        assert welcome == "* welcome ada, in lobby: nobody else"
        bob, welcome = await ChatMember.join(served, "lobby", "bob")
        assert welcome == "* welcome bob, in lobby: ada"
        assert await ada.line() == "* bob joined"
        cy, welcome = await ChatMember.join(served, "lobby", "cy")
        assert welcome == "* welcome cy, in lobby: ada, bob"
        assert await ada.line() == "* cy joined"
        assert await bob.line() == "* cy joined"
        # Another room hears nothing of the lobby.
        eve, welcome = await ChatMember.join(served, "attic", "eve")
        assert welcome == "* welcome eve, in attic: nobody else"
        assert chat.members("lobby") == ["ada", "bob", "cy"]

        await ada.say("hello")
        assert await bob.line() == "ada: hello"
        assert await cy.line() == "ada: hello"
        # Several lines in one write, and a line split over two writes.
        await bob.stream.write(data=b"one\ntw")
        await bob.stream.write(data=b"o\n")
        assert [await ada.line(), await ada.line()] == ["bob: one", "bob: two"]
        assert [await cy.line(), await cy.line()] == ["bob: one", "bob: two"]

        # cy leaves by ending its stream; ada leaves by closing the session.
        await cy.stream.write(data=b"", end_stream=True)
        assert await ada.line() == "* cy left"
        assert await bob.line() == "* cy left"
        await ada.session.close()
        assert await bob.line() == "* ada left"
        with anyio.fail_after(10):
            while chat.members("lobby") != ["bob"]:
                await anyio.sleep(0.01)

        await bob.say("anyone?")
        # Nobody hears their own words; the other room heard nothing at all.
        await bob.nothing_more()
        await eve.nothing_more(wait=0.05)
        assert chat.members("attic") == ["eve"]
        await bob.session.close()
        await eve.session.close()
        with anyio.fail_after(10):
            while chat.rooms:
                await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_chat_room_disconnects_a_member_that_does_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chat_room, "OUTBOX_SIZE", 4)
    chat = chat_room.ChatServer()
    app = chat_room.create_app(config=loopback(), chat=chat)
    async with TestClient(app) as served:
        sleeper, _ = await ChatMember.join(served, "lobby", "sleeper")
        talker, _ = await ChatMember.join(served, "lobby", "talker")
        # The sleeper never reads; its outbox is tiny, but the stream's flow-control
        # window absorbs a lot first. Keep talking until the server gives up on it.
        line = "x" * 1000
        with anyio.fail_after(30):
            while "sleeper" in chat.members("lobby"):
                await talker.say(line)
                await anyio.lowlevel.checkpoint()
        assert chat.members("lobby") == ["talker"]
        # Its session is closed with the code that says why, even though the server's
        # writes to it were stuck on flow control.
        with anyio.fail_after(10):
            code, reason = await sleeper.session.wait_closed()
        assert (code, reason) == (chat_room.SLOW_READER, "not reading fast enough")
        with anyio.fail_after(10):
            while (await talker.line()) != "* sleeper was disconnected (not reading)":
                pass
        await talker.session.close()


# --------------------------------------------------------------------------- game broadcast


class GamePlayer:
    """A fastwt client of the game: its welcome, and every state it received."""

    def __init__(self, session: WebTransportSession, welcome: tuple[int, int, int, int]):
        self.session = session
        self.id, self.tick_rate, self.width, self.height = welcome
        self.states: dict[int, dict[int, tuple[int, int]]] = {}

    @classmethod
    async def join(cls, served: TestClient) -> GamePlayer:
        session = await served.connect("/game")
        with anyio.fail_after(10):
            stream = await session.accept_unidirectional_stream()
            welcome = game_broadcast.WELCOME.unpack(await stream.read_all())
        return cls(session, welcome)

    async def receive(self) -> None:
        async for data in self.session.datagrams():
            tick, players = game_broadcast.parse_state(data)
            self.states.setdefault(tick, {}).update(players)

    async def send_input(self, dx: int, dy: int) -> None:
        await self.session.send_datagram(data=game_broadcast.INPUT.pack(dx, dy))


DIRECTIONS = [(1, 0), (-1, 0), (0, 1), (0, -1), (0, 0)]


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


@pytest.mark.anyio
async def test_game_broadcast_reaches_50_clients_at_20_hz_and_follows_inputs() -> None:
    game = game_broadcast.Game(tick_rate=20, seed=7)
    app = game_broadcast.create_app(config=loopback(), game=game)
    async with TestClient(app) as served:
        players: list[GamePlayer] = []

        async def join() -> None:
            players.append(await GamePlayer.join(served))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(join)
        assert len(game.players) == 50
        assert len({p.id for p in players}) == 50
        assert all(p.tick_rate == 20 for p in players)

        async def steer() -> None:
            # Like a game client: the current input, every tick (datagrams may be lost).
            while True:
                for i, p in enumerate(players):
                    await p.send_input(*DIRECTIONS[i % len(DIRECTIONS)])
                await anyio.sleep(0.05)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for p in players:
                    tg.start_soon(p.receive)
                tg.start_soon(steer)
                # A full garbage collection inside the measured second (50-120 ms with
                # this process's heap on a loaded 2-core machine) makes the tick loop skip
                # ticks: the test failed 3 of 3 times when the datagram burst tests had run
                # earlier in the same process. Collect now, before the settling time.
                gc.collect()
                await anyio.sleep(0.2)  # everyone is receiving and steering
                first_tick, start = game.tick, anyio.current_time()
                await anyio.sleep(1.0)
                last_tick, elapsed = game.tick, anyio.current_time() - start
                await anyio.sleep(0.2)  # the last ticks' datagrams are on their way
                tg.cancel_scope.cancel()

        sent = last_tick - first_tick
        # 75%, not 90%: this process also runs the 50 clients, and under a loaded machine
        # a stall longer than a tick makes the loop skip ticks (by design, not a burst):
        # CI saw 18 ticks in 1.05 s. A loop that drifted or ticked at half rate fails.
        assert sent >= 0.75 * 20 * elapsed, f"the server ticked {sent} times in {elapsed:.2f} s"
        window = range(first_tick + 1, last_tick + 1)
        for p in players:
            got = sum(1 for tick in window if tick in p.states)
            assert got >= 0.9 * sent, f"player {p.id} got {got} of {sent} ticks"

        # Every state carries all 50 players, and every client saw the same world.
        common = max(set.intersection(*(set(p.states) for p in players)))
        reference = players[0].states[common]
        assert len(reference) == 50
        assert all(p.states[common] == reference for p in players)

        # Each player moved the way it steered, and only that way.
        for i, p in enumerate(players):
            dx, dy = DIRECTIONS[i % len(DIRECTIONS)]
            ticks = sorted(p.states)
            (x0, y0), (x1, y1) = p.states[ticks[0]][p.id], p.states[ticks[-1]][p.id]
            assert (_sign(x1 - x0), _sign(y1 - y0)) == (dx, dy), (i, (x0, y0), (x1, y1))
            assert game.players[p.id].inputs > 0
        for p in players:
            await p.session.close()
        with anyio.fail_after(10):
            while game.players:
                await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_game_ticks_only_while_someone_plays_and_refuses_when_full() -> None:
    game = game_broadcast.Game(tick_rate=50, max_players=2)
    app = game_broadcast.create_app(config=loopback(), game=game)
    async with TestClient(app) as served:
        await anyio.sleep(0.1)
        assert game.tick == 0  # nobody yet: no tick loop
        first = await GamePlayer.join(served)
        second = await GamePlayer.join(served)
        with pytest.raises(SessionRejectedError) as caught:
            await served.connect("/game")
        assert caught.value.status_code == 503
        # The player running the tick loop leaves: the other still gets states.
        runner, other = (first, second)
        await runner.session.close()
        with anyio.fail_after(10):
            while len(game.players) != 1:
                await anyio.sleep(0.01)
            tick, _ = game_broadcast.parse_state(await other.session.read_datagram())
            later, players = game_broadcast.parse_state(await other.session.read_datagram())
        assert later > tick and list(players) == [other.id]
        await other.session.close()
        with anyio.fail_after(10):
            while game.players:
                await anyio.sleep(0.01)
        await anyio.sleep(0.1)
        stopped = game.tick
        await anyio.sleep(0.1)
        assert game.tick == stopped  # the loop stopped with the last player
        # ... and starts again with the next one.
        again = await GamePlayer.join(served)
        with anyio.fail_after(10):
            tick, players = game_broadcast.parse_state(await again.session.read_datagram())
        assert tick > stopped and list(players) == [again.id]
        await again.session.close()


def test_game_state_is_split_over_datagrams_that_fit() -> None:
    game = game_broadcast.Game(seed=1)
    for pid in range(1, 501):
        game.players[pid] = game_broadcast.Player(pid, None, pid, 1000 - pid)
    game.step()
    packets = game.packets()
    assert len(packets) == -(-500 // game_broadcast.PLAYERS_PER_DATAGRAM) > 1
    assert all(len(p) <= game_broadcast.DATAGRAM_BUDGET for p in packets)
    merged: dict[int, tuple[int, int]] = {}
    for packet in packets:
        tick, players = game_broadcast.parse_state(packet)
        assert tick == 1
        merged.update(players)
    assert merged == {pid: (pid, 1000 - pid) for pid in range(1, 501)}


def test_game_page_carries_the_url_and_hash() -> None:
    import urllib.request

    url, digest = "https://127.0.0.1:4433/game", "ab" * 32
    httpd = start_page_server(game_broadcast.game_page(url, digest))
    try:
        page = f"http://127.0.0.1:{httpd.server_address[1]}/"
        with urllib.request.urlopen(page, timeout=10) as response:
            html = response.read().decode()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert url in html and digest in html and "serverCertificateHashes" in html


@pytest.mark.browser
def test_game_page_in_chromium_three_tabs_play_together(tmp_path: Path) -> None:
    """The page served by ``--http-port``: three tabs join, see each other, and one
    moves right when told to."""
    require_chromium()

    game = game_broadcast.Game(tick_rate=20, seed=3)
    app = game_broadcast.create_app(config=loopback(), game=game)
    with start_blocking_portal() as portal:
        future, addresses = portal.start_task(app.serve)
        url = f"https://127.0.0.1:{addresses[0][1]}/game"
        page_html = game_broadcast.game_page(url, app.server.certificate_hash)
        try:
            with serve_html(page_html) as page_url, Browser(tmp_path / "profile") as browser:
                console = browser.console
                pages = [browser.open(page_url) for _ in range(3)]
                for page in pages:
                    page.wait_for_function(
                        "window.game.error || (window.game.players.size === 3"
                        " && window.game.states > 5)",
                        timeout=30_000,
                    )
                    assert page.evaluate("window.game.error") is None, console
                ids = {page.evaluate("window.game.id") for page in pages}
                assert ids == set(game.players), console
                mover = pages[0]
                x0 = mover.evaluate("window.game.players.get(window.game.id)[0]")
                mover.evaluate("window.move(1, 0)")
                mover.wait_for_function(
                    f"window.game.players.get(window.game.id)[0] > {x0} + 20",
                    timeout=10_000,
                )
                # The others see it move too (the same broadcast).
                mover_id = mover.evaluate("window.game.id")
                pages[1].wait_for_function(
                    f"window.game.players.get({mover_id})[0] > {x0} + 20", timeout=10_000
                )
        finally:
            future.cancel()


# --------------------------------------------------------------------------- telemetry


@pytest.mark.anyio
async def test_telemetry_counts_10000_stream_records_exactly_and_datagrams_roughly() -> None:
    store = telemetry_ingest.TelemetryStore()
    app = telemetry_ingest.create_app(config=loopback(), store=store)
    devices = [f"dev-{i}" for i in range(5)]
    per_device = 2000  # 5 x 2000 = 10,000 records over streams
    datagram_records = 600
    async with TestClient(app) as served:
        sessions: list[WebTransportSession] = []

        async def device(i: int, name: str) -> None:
            # Devices 0-2 name themselves in the path, 3-4 in a header.
            if i < 3:
                session = await served.connect(f"/ingest/{name}")
            else:
                session = await served.connect("/ingest", headers={"x-device-id": name})
            sessions.append(session)
            quarter = per_device // 4
            # Four streams: two of JSON lines, two of packed records; value = 1..2000.
            await telemetry_ingest.push_json_records(
                session, [{"metric": "temp", "value": v} for v in range(1, quarter + 1)]
            )
            await telemetry_ingest.push_json_records(
                session,
                [{"metric": "hum", "value": v} for v in range(quarter + 1, 2 * quarter + 1)],
            )
            await telemetry_ingest.push_records(
                session,
                [(7, 1_000_000 + v, float(v)) for v in range(2 * quarter + 1, 3 * quarter + 1)],
            )
            await telemetry_ingest.push_records(
                session,
                [(8, 2_000_000 + v, float(v)) for v in range(3 * quarter + 1, per_device + 1)],
            )
            # Datagrams, paced a little: they may be dropped, never duplicated.
            records = [(9, v, 1.0) for v in range(datagram_records)]
            for packet in telemetry_ingest.pack_datagrams(records):
                await session.send_datagram(data=packet)
                await anyio.sleep(0.001)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i, name in enumerate(devices):
                    tg.start_soon(device, i, name)

        # Streams are reliable: wait until every record is in, over the /totals API.
        reader = await served.connect("/totals")
        with anyio.fail_after(30):
            while True:
                totals = await telemetry_ingest.fetch_totals(reader)
                if sum(t["stream_records"] for t in totals.values()) >= 5 * per_device:
                    break
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)  # the last datagrams
        totals = await telemetry_ingest.fetch_totals(reader)
        assert sorted(totals) == devices
        expected_sum = per_device * (per_device + 1) / 2
        for name in devices:
            t = totals[name]
            assert t["stream_records"] == per_device, (name, t)
            assert t["rejected"] == 0, (name, t)
            assert t["metrics"]["temp"] == t["metrics"]["hum"] == per_device // 4
            assert t["metrics"]["7"] == t["metrics"]["8"] == per_device // 4
            assert datagram_records // 2 <= t["datagram_records"] <= datagram_records, t
            assert t["metrics"]["9"] == t["datagram_records"]
            assert t["value_sum"] == expected_sum + t["datagram_records"]
        # One device's totals; the in-process store agrees with the wire.
        one = await telemetry_ingest.fetch_totals(reader, "dev-3")
        assert one == {"dev-3": totals["dev-3"]}
        assert store.totals() == totals
        for session in [*sessions, reader]:
            await session.close()


@pytest.mark.anyio
async def test_telemetry_refuses_unnamed_devices_and_counts_bad_records() -> None:
    store = telemetry_ingest.TelemetryStore()
    app = telemetry_ingest.create_app(config=loopback(), store=store)
    async with TestClient(app) as served:
        for path, headers in [("/ingest", {}), ("/ingest", {"x-device-id": "bad/name"})]:
            with pytest.raises(SessionRejectedError) as caught:
                await served.connect(path, headers=headers)
            assert caught.value.status_code == 400
            assert "x-device-id" in caught.value.headers["x-error"]

        session = await served.connect("/ingest/probe")
        stream = await session.create_unidirectional_stream()
        # JSON messages, framed by hand: good, malformed, not JSON, non-finite (which
        # JsonCodec would refuse to send), good; written in pieces that split frames.
        bodies = [
            b'{"metric":"a","value":1}',
            b'{"metric":"a"}',
            b"nope",
            b'{"metric":"a","value":NaN}',
            b'{"metric":"a","value":2}',
        ]
        body = b"".join(len(b).to_bytes(4, "big") + b for b in bodies)
        for i in range(0, len(body), 7):
            await stream.write(data=body[i : i + 7])
        await stream.write(data=b"", end_stream=True)
        # A message over MAX_MESSAGE: refused from its length, ending that stream.
        oversize = await session.create_unidirectional_stream()
        length = telemetry_ingest.MAX_MESSAGE + 1
        await oversize.write(data=length.to_bytes(4, "big") + b"{", end_stream=True)
        # A packed stream with a torn last record.
        packed = await session.create_unidirectional_stream()
        data = telemetry_ingest.STREAM_MAGIC + telemetry_ingest.RECORD.pack(1, 0, 5.0)
        await packed.write(data=data + b"\x01\x02", end_stream=True)
        # Datagrams whose count does not match their size.
        await session.send_datagram(data=b"\x05\x00" + telemetry_ingest.RECORD.pack(1, 0, 1.0))
        await session.send_datagram(data=b"\x01")
        with anyio.fail_after(10):
            while store.totals().get("probe", {}).get("rejected", 0) < 7:
                await anyio.sleep(0.01)
        totals = store.totals("probe")["probe"]
        assert totals["stream_records"] == 3
        assert totals["value_sum"] == 8.0
        assert totals["rejected"] == 7
        assert totals["datagram_records"] == 0
        await session.close()


# --------------------------------------------------------------------------- cluster room


async def _welcome(session: WebTransportSession) -> dict[str, Any]:
    with anyio.fail_after(10):
        stream = await session.accept_unidirectional_stream()
        welcome: dict[str, Any] = json.loads(await stream.read_all())
    return welcome


@pytest.mark.anyio
async def test_cluster_room_relays_datagrams_and_streams_in_one_process() -> None:
    app = cluster_room.create_app(config=loopback())
    assert app.broker is None  # no FASTWT_BROKER here: rooms in this process
    async with TestClient(app) as served:
        ada = await served.connect("/room/lobby?nick=ada")
        assert await _welcome(ada) == {
            "room": "lobby",
            "nick": "ada",
            "node": "local",
            "present": 1,
        }
        bob = await served.connect("/room/lobby?nick=bob")
        assert (await _welcome(bob))["present"] == 2
        eve = await served.connect("/room/attic?nick=eve")
        assert (await _welcome(eve))["present"] == 1
        await ada.send_datagram(data=b"x=1,y=2")
        with anyio.fail_after(10):
            assert await bob.read_datagram() == b"ada:x=1,y=2"
        stream = await bob.create_unidirectional_stream()
        await stream.write(data=b"hello " * 2000, end_stream=True)
        with anyio.fail_after(10):
            relayed = await ada.accept_unidirectional_stream()
            assert await relayed.read_all() == b"bob:" + b"hello " * 2000
        # Nothing reached the other room, nor the sender.
        with anyio.move_on_after(0.2):
            extra = await eve.read_datagram()
            pytest.fail(f"another room got {extra!r}")
        with anyio.move_on_after(0.05):
            extra = await ada.read_datagram()
            pytest.fail(f"the sender got {extra!r}")
        # A message over the limit is refused, not relayed.
        big = await bob.create_unidirectional_stream()
        await big.write(data=b"x" * (cluster_room.MAX_MESSAGE + 10), end_stream=True)
        with anyio.move_on_after(0.5):
            relayed = await ada.accept_unidirectional_stream()
            pytest.fail("an oversized message was relayed")
        assert app.room("lobby").stats()["broadcasts"] == 2


# --------------------------------------------------------------------------- as scripts


async def _chat_script_client(url: str, cert_hash: str) -> None:
    config = ClientConfig(server_certificate_hashes=[cert_hash])
    async with WebTransportClient(config=config) as client:
        session = await client.connect(url=url, timeout=10)
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"\n")
        with anyio.fail_after(10):
            assert (await stream.readline()).startswith(b"* welcome script")
        await session.close()


async def _game_script_client(url: str, cert_hash: str) -> None:
    config = ClientConfig(server_certificate_hashes=[cert_hash])
    async with WebTransportClient(config=config) as client:
        session = await client.connect(url=url, timeout=10)
        with anyio.fail_after(10):
            stream = await session.accept_unidirectional_stream()
            pid, rate, _, _ = game_broadcast.WELCOME.unpack(await stream.read_all())
            _, players = game_broadcast.parse_state(await session.read_datagram())
        assert rate == 20 and pid in players
        await session.close()


async def _telemetry_script_client(url: str, cert_hash: str) -> None:
    config = ClientConfig(server_certificate_hashes=[cert_hash])
    async with WebTransportClient(config=config) as client:
        session = await client.connect(url=url, timeout=10)
        await telemetry_ingest.push_json_records(session, [{"metric": "x", "value": 1}] * 10)
        totals_url = url.replace("/ingest/script", "/totals")
        reader = await client.connect(url=totals_url, timeout=10)
        with anyio.fail_after(10):
            while (await telemetry_ingest.fetch_totals(reader, "script")).get("script", {}).get(
                "stream_records"
            ) != 10:
                await anyio.sleep(0.05)
        await session.close()
        await reader.close()


def _game_page(script: PythonScript, url: str, cert_hash: str) -> None:
    import urllib.request

    page = script.wait_for(r"page: +(http://\S+)")[1]
    with urllib.request.urlopen(page, timeout=10) as response:
        html = response.read().decode()
    assert url in html and cert_hash in html


def _telemetry_metrics(script: PythonScript) -> None:
    import urllib.request

    url = script.wait_for(r"metrics: +(http://\S+)")[1]
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    # The script client's two sessions (ingest and totals).
    assert "fastwt_sessions_accepted_total 2.0" in text, text


SCRIPT_CLIENTS: dict[str, Any] = {
    "game_broadcast": (r"URL: +(https://\S+)", _game_script_client, "/game", "--http-port", "0"),
    "telemetry_ingest": (
        r"URL: +(https://\S+)",
        _telemetry_script_client,
        "/ingest/script",
        "--metrics-port",
        "0",
    ),
    "chat_room": (r"URL: +(https://\S+)", _chat_script_client, "/chat/lobby?nick=script"),
}


@pytest.mark.parametrize("name", sorted(SCRIPT_CLIENTS))
def test_example_runs_as_a_script(name: str) -> None:
    url_pattern, client, path, *extra_args = SCRIPT_CLIENTS[name]
    script = PythonScript(
        EXAMPLES / f"{name}.py", "--host", "127.0.0.1", "--port", "0", *extra_args
    )
    try:
        url = script.wait_for(url_pattern)[1]
        cert_hash = script.wait_for(r"SHA-256: +([0-9a-f]{64})")[1]
        base = re.match(r"https://[^/]+", url)
        assert base is not None
        anyio.run(client, base[0] + path, cert_hash)
        if name == "telemetry_ingest":
            _telemetry_metrics(script)
        if name == "game_broadcast":
            _game_page(script, url, cert_hash)
    finally:
        status = script.stop()
    assert status == 0, script.output

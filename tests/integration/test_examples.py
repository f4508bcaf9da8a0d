"""The examples in ``examples/`` (chat room, game broadcast, telemetry ingest), each
served in process on 127.0.0.1 port 0 and exercised with the fastwt client, on asyncio
and trio; and each run once as a script (prints its URL and certificate hash, serves a
client, stops cleanly on SIGINT)."""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from fastwt import (
    ClientConfig,
    ServerConfig,
    WebTransportClient,
    WebTransportSession,
)
from fastwt.framework import ServerApp
from fastwt.stream import WebTransportBidirectionalStream

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.timeout(120)


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` under a unique module name."""
    spec = importlib.util.spec_from_file_location(f"fastwt_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


chat_room = load_example("chat_room")


def loopback() -> ServerConfig:
    return ServerConfig(bind_host="127.0.0.1", bind_port=0)


class Served:
    def __init__(self, app: ServerApp, port: int, client: WebTransportClient) -> None:
        self.app = app
        self.port = port
        self.client = client

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    async def connect(self, path: str, **headers: str) -> WebTransportSession:
        return await self.client.connect(url=self.url(path), headers=headers or None, timeout=10)


@asynccontextmanager
async def serving(app: ServerApp) -> AsyncIterator[Served]:
    async with anyio.create_task_group() as tg:
        addresses = await tg.start(lambda task_status: app.serve(task_status=task_status))
        config = ClientConfig(server_certificate_hashes=[app.server.certificate_hash])
        async with WebTransportClient(config=config) as client:
            yield Served(app, addresses[0][1], client)
        tg.cancel_scope.cancel()


# --------------------------------------------------------------------------- chat room


class ChatMember:
    def __init__(self, session: WebTransportSession, stream: WebTransportBidirectionalStream):
        self.session = session
        self.stream = stream

    @classmethod
    async def join(cls, served: Served, room: str, nick: str) -> tuple[ChatMember, str]:
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
    async with serving(app) as served:
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
    async with serving(app) as served:
        _sleeper, _ = await ChatMember.join(served, "lobby", "sleeper")
        talker, _ = await ChatMember.join(served, "lobby", "talker")
        # The sleeper never reads; its outbox is tiny, but the stream's flow-control
        # window absorbs a lot first. Keep talking until the server gives up on it.
        line = "x" * 1000
        with anyio.fail_after(30):
            while "sleeper" in chat.members("lobby"):
                await talker.say(line)
                await anyio.lowlevel.checkpoint()
        assert chat.members("lobby") == ["talker"]
        await talker.session.close()


# --------------------------------------------------------------------------- as scripts


class Script:
    """``python examples/<name>.py ARGS``, its output collected line by line."""

    def __init__(self, name: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        regex = re.compile(pattern)
        with self._changed:
            ok = self._changed.wait_for(
                lambda: any(regex.search(x) for x in self.lines) or not self._reader.is_alive(),
                timeout,
            )
            for line in self.lines:
                if m := regex.search(line):
                    return m
        pytest.fail(f"no {pattern!r} (ok={ok}) in output:\n{''.join(self.lines)}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


async def _chat_script_client(url: str, cert_hash: str) -> None:
    config = ClientConfig(server_certificate_hashes=[cert_hash])
    async with WebTransportClient(config=config) as client:
        session = await client.connect(url=url, timeout=10)
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"\n")
        with anyio.fail_after(10):
            assert (await stream.readline()).startswith(b"* welcome script")
        await session.close()


SCRIPT_CLIENTS: dict[str, Any] = {
    "chat_room": (r"URL: +(https://\S+)", _chat_script_client, "/chat/lobby?nick=script"),
}


@pytest.mark.parametrize("name", sorted(SCRIPT_CLIENTS))
def test_example_runs_as_a_script(name: str) -> None:
    url_pattern, client, path = SCRIPT_CLIENTS[name]
    script = Script(name, "--host", "127.0.0.1", "--port", "0")
    try:
        url = script.wait_for(url_pattern)[1]
        cert_hash = script.wait_for(r"SHA-256: +([0-9a-f]{64})")[1]
        base = re.match(r"https://[^/]+", url)
        assert base is not None
        anyio.run(client, base[0] + path, cert_hash)
    finally:
        status = script.stop()
    assert status == 0, "".join(script.lines)

"""Game-state broadcast at a fixed tick over datagrams, to many (browser) clients.

Players connect to ``/game``. The server

1. opens a unidirectional stream to the newcomer carrying :data:`WELCOME`
   (``<HHHH``: its player id, the tick rate in Hz, the world's width and height), then
   ends it — reliable, because a lost welcome would leave the client guessing;
2. every tick (default 20 Hz) moves every player and sends the whole state to every
   session as datagrams: :data:`STATE_HEADER` (``<IH``: tick number, players in this
   datagram) followed by that many :data:`PLAYER` entries (``<HHH``: id, x, y). When
   the players do not fit in one datagram the state is split over several datagrams
   with the same tick number; all of a tick's datagrams go out in one
   ``send_datagrams`` call per session;
3. reads input datagrams, :data:`INPUT` (``<bb``: dx, dy, each -1, 0 or 1): the
   player's direction until the next input. Datagrams may be lost, so clients resend
   their input regularly (the page below sends it on every key change and every
   100 ms); a direction is idempotent, so duplicates are harmless.

The tick loop runs while anyone is playing and stops when the last player leaves: the
handler of the player who found the game idle runs it (even after that player has
left, for as long as others play), so the app needs nothing but ``app.serve()``.

Run it with a page that many browser tabs can join (arrow keys or WASD move)::

    python examples/game_broadcast.py --port 4433 --http-port 8000 [--tick-rate 30]

then open http://127.0.0.1:8000/ (the page is given the server's URL and the
development certificate's SHA-256 for ``serverCertificateHashes``; it is served with
``fastwt.devserver.start_page_server``, like ``fastwt demo``'s page).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import random
import signal
import struct
from dataclasses import dataclass

import anyio

from fastwt import ServerConfig, WebTransportError, WebTransportSession
from fastwt.devserver import start_page_server
from fastwt.framework import MiddlewareRejected, ServerApp
from fastwt.framework.types import SessionProtocol

__all__ = [
    "INPUT",
    "PLAYER",
    "STATE_HEADER",
    "WELCOME",
    "Game",
    "Player",
    "create_app",
    "game_page",
    "main",
    "parse_state",
]

logger = logging.getLogger("game_broadcast")

WELCOME = struct.Struct("<HHHH")
"""Player id, tick rate (Hz), world width, world height."""
STATE_HEADER = struct.Struct("<IH")
"""Tick number (wraps at 2**32), number of :data:`PLAYER` entries that follow."""
PLAYER = struct.Struct("<HHH")
"""Player id, x, y (world units, rounded)."""
INPUT = struct.Struct("<bb")
"""dx, dy in {-1, 0, 1}: the direction the player moves in from now on."""

DATAGRAM_BUDGET = 1100
"""Bytes per state datagram: below the ~1,200-byte payload QUIC guarantees on any path."""
PLAYERS_PER_DATAGRAM = (DATAGRAM_BUDGET - STATE_HEADER.size) // PLAYER.size


@dataclass(eq=False)
class Player:
    id: int
    session: WebTransportSession
    x: float
    y: float
    dx: int = 0
    dy: int = 0
    inputs: int = 0


def parse_state(data: bytes) -> tuple[int, dict[int, tuple[int, int]]]:
    """One state datagram: ``(tick, {player id: (x, y)})``."""
    tick, count = STATE_HEADER.unpack_from(data)
    players = {}
    for i in range(count):
        pid, x, y = PLAYER.unpack_from(data, STATE_HEADER.size + i * PLAYER.size)
        players[pid] = (x, y)
    return tick, players


def _clamp(value: int) -> int:
    return -1 if value < 0 else 1 if value > 0 else 0


class Game:
    """The world and its players. Everything runs on the app's event loop, so there
    is no lock: the tick and the input handlers never interleave mid-update.

    ``max_players`` is enforced before the session is accepted (the request gets 503),
    because the game is also added as a middleware by :func:`create_app`.
    """

    def __init__(
        self,
        *,
        tick_rate: float = 20.0,
        speed: float = 200.0,
        width: int = 1000,
        height: int = 1000,
        max_players: int = 1000,
        seed: int | None = None,
    ) -> None:
        if not 1 <= tick_rate <= 1000:
            raise ValueError("tick_rate must be in 1..1000 Hz")
        if not 1 <= max_players <= 65535:
            raise ValueError("max_players must be in 1..65535")
        self.tick_rate = tick_rate
        self.speed = speed
        self.width = width
        self.height = height
        self.max_players = max_players
        self.tick = 0
        """Ticks played so far (the number in the latest state sent)."""
        self.players: dict[int, Player] = {}
        self.datagrams_sent = 0
        self._random = random.Random(seed)
        self._next_id = 1
        self._ticking = False

    # --- as a middleware: refuse when full -------------------------------------
    async def __call__(self, *, session: SessionProtocol) -> None:
        if len(self.players) >= self.max_players:
            raise MiddlewareRejected(status_code=503, headers={"retry-after": "5"})

    # --- players ---------------------------------------------------------------
    def join(self, session: WebTransportSession) -> Player:
        while self._next_id in self.players or self._next_id == 0:
            self._next_id = (self._next_id + 1) & 0xFFFF
        pid = self._next_id
        self._next_id = (pid + 1) & 0xFFFF
        x = self._random.uniform(0.2, 0.8) * self.width
        y = self._random.uniform(0.2, 0.8) * self.height
        player = self.players[pid] = Player(pid, session, x, y)
        return player

    def leave(self, player: Player) -> None:
        self.players.pop(player.id, None)

    def apply_input(self, player: Player, data: bytes) -> None:
        """Take one input datagram; malformed ones are ignored (datagrams are not
        authenticated beyond the session, so never trust their content)."""
        if len(data) != INPUT.size:
            return
        dx, dy = INPUT.unpack(data)
        player.dx, player.dy = _clamp(dx), _clamp(dy)
        player.inputs += 1

    # --- the tick --------------------------------------------------------------
    def step(self) -> None:
        """Advance the world by one tick."""
        self.tick = (self.tick + 1) & 0xFFFFFFFF
        distance = self.speed / self.tick_rate
        for p in self.players.values():
            if p.dx or p.dy:
                p.x = min(max(p.x + p.dx * distance, 0.0), float(self.width))
                p.y = min(max(p.y + p.dy * distance, 0.0), float(self.height))

    def packets(self) -> list[bytes]:
        """The current state as datagrams (several when the players do not fit in
        one; at least one, so clients see the tick even in an empty world)."""
        entries = [PLAYER.pack(p.id, round(p.x), round(p.y)) for p in self.players.values()]
        if not entries:
            return [STATE_HEADER.pack(self.tick, 0)]
        n = PLAYERS_PER_DATAGRAM
        return [
            STATE_HEADER.pack(self.tick, len(entries[i : i + n])) + b"".join(entries[i : i + n])
            for i in range(0, len(entries), n)
        ]

    async def broadcast(self) -> None:
        """Send the current state to every player: one call into Rust per session."""
        packets = self.packets()
        for player in list(self.players.values()):
            try:
                # wait=False: a player whose connection is backed up must not hold up
                # the tick for everyone (its oldest queued state is dropped instead;
                # the next tick carries the newer state anyway).
                self.datagrams_sent += await player.session.send_datagrams(data=packets, wait=False)
            except WebTransportError as exc:  # the session is closing: its handler cleans up
                logger.debug("player %d: state not sent: %r", player.id, exc)

    async def _run_ticks(self) -> None:
        """Tick at ``tick_rate`` until nobody plays. Deadlines are absolute, so the
        rate does not drift; after a stall longer than one tick, missed ticks are
        skipped rather than sent in a burst."""
        period = 1.0 / self.tick_rate
        deadline = anyio.current_time()
        try:
            while True:
                deadline += period
                now = anyio.current_time()
                if deadline < now - period:
                    deadline = now
                await anyio.sleep_until(deadline)
                if not self.players:
                    return  # no await between this check and the flag reset below
                self.step()
                await self.broadcast()
        finally:
            self._ticking = False

    # --- one session -----------------------------------------------------------
    async def play(self, session: WebTransportSession) -> None:
        """Everything for one player, from the welcome to leaving. The first player to
        find the game idle runs the tick loop in this task until the game is empty."""
        player = self.join(session)
        logger.info("player %d joined from %s", player.id, session.remote_address)
        async with anyio.create_task_group() as tg:
            if not self._ticking:
                self._ticking = True
                tg.start_soon(self._run_ticks)
            try:
                welcome = await session.create_unidirectional_stream()
                await welcome.write(
                    data=WELCOME.pack(player.id, round(self.tick_rate), self.width, self.height),
                    end_stream=True,
                )
                async for data in session.datagrams():
                    self.apply_input(player, data)
            except WebTransportError as exc:
                logger.debug("player %d: session ended: %r", player.id, exc)
            finally:
                self.leave(player)
                logger.info("player %d left", player.id)


def create_app(*, config: ServerConfig | None = None, game: Game | None = None) -> ServerApp:
    """The game app on ``/game``. Pass your own ``game`` to choose the tick rate and to
    look at the players."""
    app = ServerApp(config=config)
    game = game if game is not None else Game()
    app.add_middleware(middleware=game)

    @app.route(path="/game")
    async def play(session: WebTransportSession) -> None:
        await game.play(session)

    return app


# --------------------------------------------------------------------------- the page

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fastwt game</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5rem; }
  canvas { border: 1px solid #999; background: #fafafa; }
</style>
</head>
<body>
<h1>fastwt game broadcast</h1>
<p>Arrow keys or WASD move your (red) dot. <span id="status">connecting&hellip;</span></p>
<canvas id="world" width="500" height="500"></canvas>
<script>
const CONFIG = __CONFIG__;
const game = { id: 0, tickRate: 0, width: 1, height: 1, tick: -1, players: new Map(),
               states: 0, error: null };
window.game = game;

async function readAll(readable) {
  const reader = readable.getReader();
  const chunks = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) { out.set(c, offset); offset += c.length; }
  return out;
}

function onState(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tick = view.getUint32(0, true);
  const count = view.getUint16(4, true);
  if (tick !== game.tick) {  // a new tick: its first datagram replaces the old state
    game.tick = tick;
    game.players = new Map();
  }
  for (let i = 0; i < count; i++) {
    const at = 6 + i * 6;
    game.players.set(view.getUint16(at, true),
                     [view.getUint16(at + 2, true), view.getUint16(at + 4, true)]);
  }
  game.states++;
}

function draw() {
  const canvas = document.getElementById("world");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (const [id, [x, y]] of game.players) {
    ctx.fillStyle = id === game.id ? "crimson" : "steelblue";
    ctx.beginPath();
    ctx.arc(x * canvas.width / game.width, y * canvas.height / game.height, 6, 0, 2 * Math.PI);
    ctx.fill();
  }
  document.getElementById("status").textContent =
    `player ${game.id}, tick ${game.tick}, ${game.players.size} players`;
  requestAnimationFrame(draw);
}

async function main() {
  const hash = Uint8Array.from(CONFIG.hash.match(/../g), (b) => parseInt(b, 16));
  const wt = new WebTransport(CONFIG.url, {
    serverCertificateHashes: [{ algorithm: "sha-256", value: hash }],
  });
  await wt.ready;
  const incoming = wt.incomingUnidirectionalStreams.getReader();
  const { value: welcomeStream } = await incoming.read();
  const welcome = new DataView((await readAll(welcomeStream)).buffer);
  game.id = welcome.getUint16(0, true);
  game.tickRate = welcome.getUint16(2, true);
  game.width = welcome.getUint16(4, true);
  game.height = welcome.getUint16(6, true);

  const writer = wt.datagrams.writable.getWriter();
  const keys = new Set();
  const sendInput = () => {
    const dx = (keys.has("ArrowRight") || keys.has("d")) - (keys.has("ArrowLeft") || keys.has("a"));
    const dy = (keys.has("ArrowDown") || keys.has("s")) - (keys.has("ArrowUp") || keys.has("w"));
    writer.write(new Int8Array([dx, dy]));
  };
  // For tests and scripts: move without a keyboard.
  window.move = (dx, dy) => { keys.clear();
    if (dx > 0) keys.add("d"); if (dx < 0) keys.add("a");
    if (dy > 0) keys.add("s"); if (dy < 0) keys.add("w"); sendInput(); };
  addEventListener("keydown", (e) => { keys.add(e.key); sendInput(); });
  addEventListener("keyup", (e) => { keys.delete(e.key); sendInput(); });
  setInterval(sendInput, 100);  // datagrams may be lost: repeat the input

  requestAnimationFrame(draw);
  const reader = wt.datagrams.readable.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    onState(value);
  }
}
main().catch((e) => {
  game.error = String(e);
  document.getElementById("status").textContent = "error: " + e;
});
</script>
</body>
</html>
"""


def game_page(url: str, certificate_hash: str) -> str:
    """The browser client, set up for the game server at ``url`` (``.../game``)."""
    return _PAGE.replace("__CONFIG__", json.dumps({"url": url, "hash": certificate_hash}))


async def serve_until_signal(app: ServerApp, host: str, port: int, http_port: int | None) -> None:
    """Serve ``app`` (and the page), print where, stop cleanly on SIGINT/SIGTERM."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            addresses = await tg.start(functools.partial(app.serve, host=host, port=port))
            bound_host, bound_port = addresses[0]
            if bound_host in ("0.0.0.0", "::"):
                bound_host = "127.0.0.1"
            authority = f"[{bound_host}]" if ":" in bound_host else bound_host
            url = f"https://{authority}:{bound_port}/game"
            cert_hash = app.server.certificate_hash
            print(f"game server listening on {addresses}", flush=True)
            print(f"  URL:                 {url}", flush=True)
            print(f"  certificate SHA-256: {cert_hash}", flush=True)
            httpd = None
            if http_port is not None:
                httpd = start_page_server(game_page(url, cert_hash), port=http_port)
                page = f"http://127.0.0.1:{httpd.server_address[1]}/"
                print(f"  page:                {page}", flush=True)
            try:
                async for _ in signals:
                    break
            finally:
                if httpd is not None:
                    httpd.shutdown()
                    httpd.server_close()
                tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Game-state broadcast over datagrams")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    parser.add_argument("--http-port", type=int, help="also serve the browser page here")
    parser.add_argument("--tick-rate", type=float, default=20.0, help="Hz (default: 20)")
    parser.add_argument("--max-players", type=int, default=1000)
    parser.add_argument("--certfile", help="PEM certificate (default: a development one)")
    parser.add_argument("--keyfile", help="PEM private key")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = ServerConfig(
        bind_host=args.host, bind_port=args.port, certfile=args.certfile, keyfile=args.keyfile
    )
    game = Game(tick_rate=args.tick_rate, max_players=args.max_players)
    app = create_app(config=config, game=game)
    anyio.run(serve_until_signal, app, args.host, args.port, args.http_port)


if __name__ == "__main__":
    main()

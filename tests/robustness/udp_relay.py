"""A user-space UDP relay between one client and a server on loopback that makes the path
between them bad: a one-way delay with jitter (which reorders packets), and, with a
:class:`NftWire`, random loss and blackouts made by nft inside a network namespace.

    client ──► front (127.0.0.1) ─ delay ± jitter ─► wire ─► back ──► server
    client ◄── front ◄─ wire ◄─ delay ± jitter ─ back ◄── server

Each packet is held for ``delay`` ± ``jitter`` seconds (uniform), so packets sent less
than the jitter apart may overtake each other, then sent through the wire: two sockets
inside a private network namespace (tests/robustness/netns.py) that talk over its
loopback, where an nft rule drops a fraction of the packets (``numgen random``) or all
of them (a blackout). The wire drops at the input hook, so senders see no error, as on
a real path. Without a wire the relay only delays.

One client at a time: the server's packets go to the address the last client packet came
from. The relay runs in a thread; counters (packets in, out, reordered) are per direction.
"""

from __future__ import annotations

import heapq
import random
import select
import socket
import threading
import time
from dataclasses import dataclass, field

from netns import Netns

__all__ = ["Direction", "NftWire", "UdpRelay"]

TABLE = "fastwt_faults"
BUFFER = 8 * 1024 * 1024  # socket buffers: bursts must not be dropped by the kernel


@dataclass
class Direction:
    """Counters of one direction: packets into the relay, into the wire, out of it."""

    received: int = 0
    into_wire: int = 0
    delivered: int = 0
    reordered: int = 0  # delivered after a packet that arrived later
    _next_seq: int = 0
    _top_seq: int = -1

    @property
    def lost(self) -> int:
        """Packets the wire dropped (in flight ones aside)."""
        return self.into_wire - self.delivered


def _udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for option, forced in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):
        try:  # SO_RCVBUFFORCE / SO_SNDBUFFORCE go past rmem_max as root
            s.setsockopt(socket.SOL_SOCKET, forced, BUFFER)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, option, BUFFER)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


class NftWire:
    """The lossy part of the path: per direction a sender and a receiver socket inside
    a network namespace of its own; nft in that namespace drops ``loss`` of the packets
    (both directions, each packet independently) or, during a blackout, all of them."""

    def __init__(self, loss: float = 0.0) -> None:
        self.ns = Netns()
        try:
            self.tx, self.rx_c2s, self.rx_s2c = self.ns.run(
                lambda: (_udp_socket(), _udp_socket(), _udp_socket())
            )
            self.c2s_addr = self.rx_c2s.getsockname()
            self.s2c_addr = self.rx_s2c.getsockname()
            self._loss = loss
            self._blackout = False
            self._lock = threading.Lock()
            self._timers: list[threading.Timer] = []
            self._apply()
        except BaseException:
            self.ns.close()
            raise

    def _apply(self) -> None:
        ports = f"{{ {self.c2s_addr[1]}, {self.s2c_addr[1]} }}"
        rules = [f"udp dport {ports} counter"]  # what arrived at the wire's far end
        if self._blackout:
            rules.append(f"udp dport {ports} counter drop")
        elif self._loss > 0:
            per_mille = round(self._loss * 1000)
            rules.append(f"udp dport {ports} numgen random mod 1000 < {per_mille} counter drop")
        body = "\n".join(f"        {rule}" for rule in rules)
        # One transaction: the old table goes and the new one comes at once.
        self.ns.nft(
            f"add table inet {TABLE}\ndelete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n    chain wire {{\n"
            f"        type filter hook input priority 0; policy accept;\n{body}\n    }}\n}}\n"
        )

    def set(self, *, loss: float | None = None, blackout: bool | None = None) -> None:
        """Changes the random loss (0..1, steps of 0.001) and/or the blackout."""
        with self._lock:
            if loss is not None:
                self._loss = loss
            if blackout is not None:
                self._blackout = blackout
            self._apply()

    def blackout(self, seconds: float) -> threading.Timer:
        """Drops everything from now for ``seconds`` (then the loss applies again)."""
        self.set(blackout=True)
        timer = threading.Timer(seconds, self.set, kwargs={"blackout": False})
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        return timer

    def ruleset(self) -> str:
        """The namespace's nft table, with its counters."""
        return self.ns.nft(f"list table inet {TABLE}\n")

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
            if timer.is_alive():
                timer.join()
        for s in (self.tx, self.rx_c2s, self.rx_s2c):
            s.close()
        self.ns.close()  # the namespace, and its nft table, end here


@dataclass
class UdpRelay:
    """Relays UDP between a client and ``server`` (host, port) with ``delay`` ±
    ``jitter`` seconds each way, through ``wire`` if given. Use as a context manager;
    :attr:`address` is what the client connects to."""

    server: tuple[str, int]
    delay: float = 0.05
    jitter: float = 0.005
    wire: NftWire | None = None
    seed: int | None = None
    c2s: Direction = field(default_factory=Direction)
    s2c: Direction = field(default_factory=Direction)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self.front = _udp_socket()  # the client's side
        self.back = _udp_socket()  # the server's side
        self.back.connect(self.server)
        self.address: tuple[str, int] = self.front.getsockname()
        self._client: tuple[str, int] | None = None
        self._queue: list[tuple[float, int, bool, bytes]] = []  # (due, order, to_server, data)
        self._order = 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="udp-relay", daemon=True)

    def __enter__(self) -> UdpRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self._stop = True
            self._wake_w.send(b"x")
            self._thread.join(5)
        for s in (self.front, self.back, self._wake_r, self._wake_w):
            s.close()

    # --- the relay's thread --------------------------------------------------------
    def _hold(self, to_server: bool, data: bytes, now: float) -> None:
        counters = self.c2s if to_server else self.s2c
        counters.received += 1
        seq = counters._next_seq
        counters._next_seq += 1
        held = self._random.uniform(self.delay - self.jitter, self.delay + self.jitter)
        due = now + max(0.0, held)
        # The sequence number rides with the packet to tell reordering at delivery.
        heapq.heappush(self._queue, (due, self._order, to_server, seq.to_bytes(8, "big") + data))
        self._order += 1

    def _deliver(self, to_server: bool, tagged: bytes) -> None:
        counters = self.c2s if to_server else self.s2c
        seq = int.from_bytes(tagged[:8], "big")
        if seq < counters._top_seq:
            counters.reordered += 1
        counters._top_seq = max(counters._top_seq, seq)
        counters.delivered += 1
        try:
            if to_server:
                self.back.send(tagged[8:])
            elif self._client is not None:
                self.front.sendto(tagged[8:], self._client)
        except OSError:
            pass  # a full buffer or a gone server: the packet is lost

    def _release(self, to_server: bool, tagged: bytes) -> None:
        wire = self.wire
        counters = self.c2s if to_server else self.s2c
        counters.into_wire += 1
        if wire is None:
            self._deliver(to_server, tagged)
            return
        try:
            wire.tx.sendto(tagged, wire.c2s_addr if to_server else wire.s2c_addr)
        except OSError:
            pass

    def _run(self) -> None:
        readers: list[socket.socket] = [self.front, self.back, self._wake_r]
        wire = self.wire
        if wire is not None:
            readers += [wire.rx_c2s, wire.rx_s2c]
        while not self._stop:
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, to_server, tagged = heapq.heappop(self._queue)
                self._release(to_server, tagged)
            timeout = max(0.0, self._queue[0][0] - now) if self._queue else None
            ready, _, _ = select.select(readers, [], [], timeout)
            now = time.monotonic()
            for s in ready:
                for _ in range(256):
                    try:
                        data, addr = s.recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break  # e.g. ICMP port unreachable from a gone server
                    if s is self.front:
                        self._client = addr
                        self._hold(True, data, now)
                    elif s is self.back:
                        self._hold(False, data, now)
                    elif wire is not None and s is wire.rx_c2s:
                        self._deliver(True, data)
                    elif wire is not None and s is wire.rx_s2c:
                        self._deliver(False, data)
                    else:
                        break  # the wake-up

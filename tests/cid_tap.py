"""A UDP relay on 127.0.0.1 in front of a server that keeps the destination connection
ID of every short-header packet a client sends through it: the CIDs the server issued,
as a load balancer in front of it sees them.

One client at a time (the server's packets go back to the address the last client
packet came from). The relay runs in a thread until the ``with`` block ends.
"""

from __future__ import annotations

import select
import socket
import threading
from types import TracebackType

__all__ = ["CidTap"]


class CidTap:
    """``with CidTap(("127.0.0.1", port), cid_len) as tap``: clients connect to
    ``tap.port``; ``tap.dcids`` are the short-header DCIDs (``cid_len`` octets) seen."""

    def __init__(self, target: tuple[str, int], cid_len: int) -> None:
        self.target = target
        self.cid_len = cid_len
        self.dcids: set[bytes] = set()
        self.packets = 0
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._front.bind(("127.0.0.1", 0))
        self._back.bind(("127.0.0.1", 0))
        self.port: int = self._front.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client: tuple[str, int] | None = None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._front, self._back], [], [], 0.05)
            for sock in ready:
                data, sender = sock.recvfrom(65536)
                if sock is self._front:
                    client = sender
                    self.packets += 1
                    if data and data[0] & 0x80 == 0 and len(data) > self.cid_len:
                        self.dcids.add(data[1 : 1 + self.cid_len])
                    self._back.sendto(data, self.target)
                elif client is not None:
                    self._front.sendto(data, client)

    def __enter__(self) -> CidTap:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._front.close()
        self._back.close()

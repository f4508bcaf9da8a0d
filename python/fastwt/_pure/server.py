"""The pure-Python server handle: UDP sockets, the demultiplexing of packets to QUIC
connections by connection id (as aioquic's asyncio server does), and the queue of
session requests — the ``ServerHandle`` surface of ``fastwt/_core.pyi``."""

from __future__ import annotations

import copy
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING, Any

# aioquic's documented import path (a re-export mypy does not see as one).
from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionIdIssued, ConnectionIdRetired
from aioquic.quic.packet import (
    QuicPacketType,
    encode_quic_version_negotiation,
    pull_quic_header,
)

from ..config import check_cert_pair
from ..errors import ConnectionError
from . import wire
from .certs import certificate_hash, load_identity
from .engine import Connection, SessionState, Waiters
from .handles import PureOp, SessionHandle
from .hub import PureHub, get_pure_hub
from .options import limits_of, quic_configuration

if TYPE_CHECKING:
    from ..config import ServerConfig

__all__ = ["ServerHandle", "bind_udp"]

logger = logging.getLogger("fastwt.pure")

# Datagrams read per readiness callback before the loop's other work gets a turn.
_READ_BATCH = 256
# Kernel socket buffers asked for (a fan-out tick or a burst of datagrams arrives as
# one burst of packets; the default ~208 KiB drops the tail). The kernel caps them.
SOCKET_BUFFER = 4 * 1024 * 1024


def bind_udp(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``host``:``port`` with large buffers."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as e:
        raise ConnectionError(f"I/O error: cannot bind {host}:{port}: {e}") from None
    try:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            except OSError:
                pass
        sock.bind(addr)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise ConnectionError(f"I/O error: cannot bind {host}:{port}: {e}") from None
    return sock


class ServerHandle:
    """The server endpoint: sockets, connections, pending session requests."""

    def __init__(self, *, bind: list[tuple[str, int]], config: ServerConfig) -> None:
        # The server belongs to the event loop it was made on (as its sessions do).
        self._hub = hub = get_pure_hub()
        self._config = config
        cert, chain, key = load_identity(config.certfile, config.keyfile)
        qconf = quic_configuration(config, is_client=False)
        qconf.certificate = cert
        qconf.certificate_chain = chain
        qconf.private_key = key
        self._qconf = qconf
        self._hash = certificate_hash(cert)
        self._limits = limits_of(config)
        self._sockets: list[socket.socket] = []
        port = 0
        try:
            for host, p in bind:
                # With port 0, every address gets the port the OS picked for the first.
                sock = bind_udp(host, port if (p == 0 and port) else p)
                self._sockets.append(sock)
                if not port:
                    port = sock.getsockname()[1]
        except BaseException:
            for s in self._sockets:
                s.close()
            raise
        self._cids: dict[bytes, Connection] = {}
        self._connections: set[Connection] = set()
        # Admission, as the Rust core's admission.rs: connections between their first
        # packet and their CONNECT request, and connections per client address.
        self._handshaking: set[Connection] = set()
        self._per_ip: dict[str, int] = {}
        self._pending: deque[SessionState] = deque()
        self._waiters = Waiters()
        self._closing = False
        self._closed = False
        for sock in self._sockets:
            hub.add_reader(sock, lambda sock=sock: self._readable(sock))  # type: ignore[misc]

    # --- the ServerHandle surface -------------------------------------------------------
    def local_addresses(self) -> list[tuple[str, int]]:
        out = []
        for sock in self._sockets:
            try:
                name = sock.getsockname()
            except OSError:
                continue
            out.append((str(name[0]), int(name[1])))
        return out

    def certificate_hash(self) -> str:
        return self._hash

    def session_count(self) -> int:
        return sum(
            1
            for c in self._connections
            if c.session is not None and c.session.phase in ("requested", "accepted")
        )

    def handshake_count(self) -> int:
        return len(self._handshaking)

    def goaway(self) -> None:
        """Asks every client to wind its session down. aioquic's HTTP/3 layer cannot send
        GOAWAY, so each live session gets DRAIN_WEBTRANSPORT_SESSION instead: a fastwt
        client's ``session.draining`` turns true either way."""
        for conn in list(self._connections):
            session = conn.session
            if session is not None and session.phase == "accepted" and session.close is None:
                conn.send_capsule(session, wire.encode_drain_capsule())

    def set_identity(self, certfile: str | None = None, keyfile: str | None = None) -> None:
        """New connections get this certificate (a development one without files); open
        ones keep theirs."""
        check_cert_pair(certfile, keyfile)
        cert, chain, key = load_identity(certfile, keyfile)
        qconf = copy.copy(self._qconf)
        qconf.certificate = cert
        qconf.certificate_chain = chain
        qconf.private_key = key
        self._qconf = qconf
        self._hash = certificate_hash(cert)

    def poll_request(self, notifier: PureHub, token: int) -> SessionHandle | None:
        if self._pending:
            return SessionHandle(self._pending.popleft())
        if self._closing:
            raise ConnectionError("endpoint closed")
        self._waiters.add(notifier, token)
        return None

    def close(self, code: int, reason: str, grace: float) -> PureOp:
        """Stops accepting, closes every live session with ``code`` and ``reason``, waits
        up to ``grace`` for the peers to go, then closes the sockets."""
        self._closing = True
        self._waiters.wake()
        return PureOp(self._hub, lambda: self._close(code, reason, grace), "fastwt-server-close")

    async def _close(self, code: int, reason: str, grace: float) -> None:
        hub = self._hub
        pending, self._pending = self._pending, deque()
        for request in pending:
            SessionHandle(request).reject(503)
        self.goaway()  # as the Rust core: clients learn the server is going before the close
        for conn in list(self._connections):
            session = conn.session
            if session is None:
                conn.close_now(wire.H3_NO_ERROR, reason)
            elif session.close is None:
                SessionHandle(session).close(code, reason)
        deadline = hub.time() + grace
        while self._connections and hub.time() < deadline:
            await hub.sleep(0.01)
        for conn in list(self._connections):
            conn.abort(wire.CloseInfo(0, "", True))
        self._close_sockets()

    def _close_sockets(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sock in self._sockets:
            self._hub.remove_reader(sock)
            sock.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self._closing = True
                self._close_sockets()
            except Exception:
                pass

    # --- packets --------------------------------------------------------------------------
    def _readable(self, sock: socket.socket) -> None:
        touched: dict[int, Connection] = {}
        for _ in range(_READ_BATCH):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                logger.debug("recvfrom failed: %s", e)
                break
            conn = self._dispatch(sock, data, addr)
            if conn is not None:
                touched[id(conn)] = conn
        for conn in touched.values():
            conn.process()
            conn.transmit()

    def _dispatch(self, sock: socket.socket, data: bytes, addr: Any) -> Connection | None:
        try:
            header = pull_quic_header(
                Buffer(data=data), host_cid_length=self._qconf.connection_id_length
            )
        except ValueError:
            return None
        versions = self._qconf.supported_versions
        if (
            header.packet_type != QuicPacketType.VERSION_NEGOTIATION
            and header.version is not None
            and header.version not in versions
        ):
            # Never in answer to a version negotiation packet (no reflection loops).
            try:
                sock.sendto(
                    encode_quic_version_negotiation(
                        source_cid=header.destination_cid,
                        destination_cid=header.source_cid,
                        supported_versions=versions,
                    ),
                    addr,
                )
            except OSError:
                pass
            return None
        conn = self._cids.get(header.destination_cid)
        if conn is None:
            if (
                len(data) < SMALLEST_MAX_DATAGRAM_SIZE
                or header.packet_type != QuicPacketType.INITIAL
            ):
                return None
            conn = self._new_connection(sock, addr, header.destination_cid)
            conn.receive(data, addr)
            refusal = self._refusal(conn)
            if refusal is not None:
                logger.debug("connection refused: %s (%s)", refusal, addr)
                conn.close_now(wire.CONNECTION_REFUSED, "", transport=True)
            return conn
        conn.receive(data, addr)
        return conn

    def _refusal(self, conn: Connection) -> str | None:
        """Why a new connection (already counted) is refused, or None."""
        cfg = self._config
        per_ip = cfg.max_sessions_per_ip
        if self._closing:
            return "closing"
        if len(self._connections) > cfg.max_sessions:
            return "max_sessions reached"
        if len(self._handshaking) > cfg.max_handshakes:
            return "max_handshakes reached"
        if per_ip is not None and self._per_ip.get(_ip_of(conn.addr), 0) > per_ip:
            return "max_sessions_per_ip reached"
        return None

    def _new_connection(self, sock: socket.socket, addr: Any, odcid: bytes) -> Connection:
        quic = QuicConnection(configuration=self._qconf, original_destination_connection_id=odcid)
        conn = Connection(
            self._hub,
            quic,
            sock=sock,
            addr=addr,
            is_server=True,
            limits=self._limits,
            on_terminated=self._terminated,
        )
        conn.on_cid = self._cid_event
        conn.on_request = self._on_request
        self._cids[odcid] = conn
        self._cids[quic.host_cid] = conn
        self._connections.add(conn)
        self._handshaking.add(conn)
        ip = _ip_of(addr)
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        timeout = self._config.request_timeout
        conn.close_after_unless_requested(timeout)
        return conn

    def _cid_event(self, conn: Connection, event: ConnectionIdIssued | ConnectionIdRetired) -> None:
        if isinstance(event, ConnectionIdIssued):
            self._cids[event.connection_id] = conn
        elif self._cids.get(event.connection_id) is conn:
            del self._cids[event.connection_id]

    def _terminated(self, conn: Connection) -> None:
        if conn in self._connections:
            self._connections.discard(conn)
            self._handshaking.discard(conn)
            ip = _ip_of(conn.addr)
            left = self._per_ip.get(ip, 1) - 1
            if left > 0:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)
        for cid in [c for c, v in self._cids.items() if v is conn]:
            del self._cids[cid]

    def _on_request(self, session: SessionState) -> None:
        self._handshaking.discard(session.conn)
        if self._closing:
            SessionHandle(session).reject(503)
            return
        if len(self._pending) >= self._config.pending_request_capacity:
            logger.warning(
                "refused with 503: too many pending session requests (%s)", session.conn.addr
            )
            SessionHandle(session).reject(503, [("retry-after", "1")])
            return
        self._pending.append(session)
        self._waiters.wake()


def _ip_of(addr: Any) -> str:
    """The client's IP address (an IPv4 client on a dual-stack socket counts as IPv4)."""
    host = str(addr[0])
    return host[7:] if host.startswith("::ffff:") and "." in host else host

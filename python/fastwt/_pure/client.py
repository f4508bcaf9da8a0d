"""The pure-Python client handle (the ``ClientHandle`` surface of ``fastwt/_core.pyi``):
one UDP socket and one QUIC connection per session, trust by CA file, system roots,
certificate hash (``pinning.py``) or none."""

from __future__ import annotations

import builtins
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from aioquic.h3.events import HeadersReceived
from aioquic.quic.connection import QuicConnection

from ..errors import (
    ClientError,
    ConfigurationError,
    ConnectionError,
    ProtocolError,
    SessionRejectedError,
    TimeoutError,
)
from . import wire
from .engine import Connection, SessionState
from .handles import PureOp, SessionHandle
from .hub import PureHub, get_pure_hub, private_token
from .options import limits_of, quic_configuration
from .pinning import CertificateCatcher
from .server import SOCKET_BUFFER

if TYPE_CHECKING:
    from ..config import ClientConfig

__all__ = ["ClientHandle", "parse_url"]

_READ_BATCH = 256


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    authority: str
    path: str


def parse_url(url: str) -> Target:
    """``https://host[:port][/path][?query]``, by the Rust client's rules."""
    rest = url.removeprefix("https://")
    if rest == url:
        raise ConfigurationError(f"configuration error: URL must start with https://: {url!r}")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if not path:
        path = "/"
    elif path.startswith("?"):
        path = "/" + path
    if not authority or "@" in authority:
        raise ConfigurationError(f"configuration error: bad authority in URL {url!r}")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ConfigurationError(f"configuration error: bad IPv6 literal in {url!r}")
        host, tail = authority[1:end], authority[end + 1 :]
        if tail and not tail.startswith(":"):
            raise ConfigurationError(f"configuration error: bad authority in {url!r}")
        port_text = tail[1:] if tail else "443"
    elif ":" in authority:
        host, port_text = authority.rsplit(":", 1)
    else:
        host, port_text = authority, "443"
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ConfigurationError(f"configuration error: bad port in {url!r}") from None
    return Target(host, port, authority, path)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ClientHandle:
    """Opens sessions; each has its own socket and connection."""

    def __init__(self, *, config: ClientConfig) -> None:
        self._config = config
        self._limits = limits_of(config)
        self._hashes = {
            h.replace(":", "").replace(" ", "").lower() for h in config.server_certificate_hashes
        }
        self._connections: set[Connection] = set()
        self._closed = False

    def connect(
        self,
        url: str,
        headers: list[tuple[str, str]] = [],  # noqa: B006 (as _core's, never mutated)
        timeout: float | None = None,
    ) -> PureOp:
        limit = timeout if timeout is not None else self._config.connect_timeout
        # The connection belongs to the event loop of the call (as the session does).
        hub = get_pure_hub()
        return PureOp(hub, lambda: self._connect(hub, url, list(headers), limit), "fastwt-connect")

    def close(self) -> None:
        """Closes every connection at once; open sessions end (code 0, locally)."""
        self._closed = True
        for conn in list(self._connections):
            conn.abort(wire.CloseInfo(0, "", True))

    # --- connecting -------------------------------------------------------------------
    def _fields(self, target: Target, extra: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
        fields = [
            (":method", "CONNECT"),
            (":protocol", "webtransport"),
            (":scheme", "https"),
            (":authority", target.authority),
            (":path", target.path),
            ("sec-webtransport-http3-draft02", "1"),
        ]
        if self._config.user_agent is not None:
            fields.append(("user-agent", self._config.user_agent))
        for k, v in [*self._config.headers.items(), *extra]:
            k = k.lower()
            if k.startswith(":"):
                raise ConfigurationError(f"configuration error: header {k!r} is reserved")
            fields = [f for f in fields if f[0] != k]
            fields.append((k, v))
        return [(k.encode(), v.encode()) for k, v in fields]

    async def _connect(
        self, hub: PureHub, url: str, headers: list[tuple[str, str]], limit: float
    ) -> SessionHandle:
        if self._closed:
            raise ClientError("client is closed")
        target = parse_url(url)
        fields = self._fields(target, headers)
        conn: Connection | None = None
        try:
            with anyio.fail_after(limit):
                addr = await self._resolve(target)
                conn = self._open_connection(hub, target, addr)
                return await self._establish(conn, fields, target)
        except builtins.TimeoutError:
            if conn is not None:
                conn.abort(wire.CloseInfo(0, "connect timed out", True))
            raise TimeoutError(f"timed out: connecting to {url} took over {limit}s") from None
        except BaseException:
            if conn is not None and (conn.session is None or conn.session.close is not None):
                conn.abort(wire.CloseInfo(0, "", True))
            raise

    async def _resolve(self, target: Target) -> Any:
        host = target.host
        if _is_ip(host):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            return family, (host, target.port)
        try:
            infos = await anyio.getaddrinfo(host, target.port, type=socket.SOCK_DGRAM)
        except OSError as e:
            raise ConnectionError(f"connection error: cannot resolve {host}: {e}") from None
        if not infos:
            raise ConnectionError(f"connection error: no address for {host}")
        family, _, _, _, sockaddr = infos[0]
        return family, sockaddr[:2]

    def _open_connection(self, hub: PureHub, target: Target, resolved: Any) -> Connection:
        family, addr = resolved
        cfg = self._config
        qconf = quic_configuration(cfg, is_client=True)
        qconf.server_name = target.host
        # The server's certificate is read from the handshake in every trust mode: hash
        # trust checks it, and a refusal names its SHA-256.
        catcher = CertificateCatcher(qconf.connection_id_length)
        qconf.secrets_log_file = catcher.key_log  # type: ignore[assignment]
        if self._hashes:
            qconf.verify_mode = ssl.CERT_NONE
        elif cfg.ca_certs is not None:
            try:
                qconf.load_verify_locations(cafile=str(cfg.ca_certs))
            except (OSError, ValueError) as e:
                raise ConfigurationError(
                    f"configuration error: cannot read {cfg.ca_certs}: {e}"
                ) from None
        elif cfg.verify_mode == ssl.CERT_NONE:
            qconf.verify_mode = ssl.CERT_NONE
        if cfg.certfile is not None:
            try:
                qconf.load_cert_chain(str(cfg.certfile), str(cfg.keyfile))
            except (OSError, ValueError) as e:
                raise ConfigurationError(f"configuration error: {e}") from None
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
                except OSError:
                    pass
            sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise ConnectionError(f"I/O error: cannot bind a client socket: {e}") from None
        if family == socket.AF_INET6:
            addr = (addr[0], addr[1], 0, 0)
        quic = QuicConnection(configuration=qconf)
        conn = Connection(
            hub,
            quic,
            sock=sock,
            addr=addr,
            is_server=False,
            limits=self._limits,
            on_terminated=self._terminated,
        )
        conn.on_datagram_in = catcher.feed
        conn.catcher = catcher
        self._connections.add(conn)
        hub.add_reader(sock, lambda: self._readable(conn))
        quic.connect(addr, hub.time())
        conn.transmit()
        return conn

    def _readable(self, conn: Connection) -> None:
        sock = conn.sock
        got = False
        for _ in range(_READ_BATCH):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            got = True
            if len(addr) == 4:
                addr = (addr[0], addr[1], 0, 0)
            conn.receive(data, addr)
        if got:
            conn.process()
            conn.transmit()

    def _terminated(self, conn: Connection) -> None:
        self._connections.discard(conn)
        conn.hub.remove_reader(conn.sock)
        conn.sock.close()

    async def _establish(
        self, conn: Connection, fields: list[tuple[bytes, bytes]], target: Target
    ) -> SessionHandle:
        hub = conn.hub
        token = private_token()
        outcome: list[SessionHandle | Exception] = []

        def on_handshake() -> None:
            catcher = conn.catcher
            if self._hashes:
                digest = catcher.sha256() if catcher is not None else None
                if digest not in self._hashes:
                    conn.refusal = _refusal(
                        "its SHA-256 is not in server_certificate_hashes", digest
                    )
                    conn.close_now(0x100 + 42, "bad certificate")  # TLS alert 42, as QUIC does
                    return
            h3 = conn.h3
            assert h3 is not None
            stream_id = conn.quic.get_next_available_stream_id()
            conn.connect_stream_id = stream_id
            conn.h3_streams.add(stream_id)
            h3.send_headers(stream_id, fields)
            conn.schedule_transmit()

        def on_response(event: HeadersReceived) -> None:
            # At once, not when the connecting task resumes: what the server sends right
            # after its 200 (a close capsule, streams, datagrams) must find the session.
            conn.on_response = None
            try:
                outcome.append(self._answer(conn, event, target))
            except Exception as e:
                outcome.append(e)

        conn.on_handshake = on_handshake
        conn.on_response = on_response
        while True:
            if outcome:
                result = outcome[0]
                if isinstance(result, Exception):
                    raise result
                return result
            if conn.refusal is not None:
                raise ConnectionError(
                    f"connection error: handshake with {target.host}:{target.port} failed: "
                    f"{conn.refusal}"
                )
            if conn.terminated is not None or conn.closed_locally:
                raise ConnectionError(self._failure(conn, target))
            conn.state_waiters.add(hub, token)
            await hub.park(token)

    def _failure(self, conn: Connection, target: Target) -> str:
        """Why a connection ended before its session was established, with the server
        certificate's SHA-256 and what to do when it was the certificate."""
        event = conn.terminated
        where = f"connection error: handshake with {target.host}:{target.port} failed"
        if event is None:
            return where
        why = event.reason_phrase
        if 0x100 <= event.error_code <= 0x1FF and not conn.handshake_done:
            # A TLS alert: aioquic refused the server's certificate.
            catcher = conn.catcher
            digest = catcher.sha256() if catcher is not None else None
            lower = why.lower()
            if "doesn't match" in lower or "not valid for" in lower:
                what = f"the certificate is not valid for {target.host} ({why})"
            elif "no longer valid" in lower:
                what = f"the certificate has expired ({why})"
            elif "self-signed" in lower or "issuer" in lower:
                ca = self._config.ca_certs
                source = f"the certificates in {ca}" if ca else "the system's root certificates"
                what = f"it is neither one of nor signed by {source} ({why})"
            else:
                what = why or f"TLS alert {event.error_code - 0x100}"
            return f"{where}: {_refusal(what, digest)}"
        if event.frame_type is not None and event.error_code == wire.CONNECTION_REFUSED:
            # The server's admission limits (max_sessions, max_handshakes, per IP): as
            # quinn words it for the Rust client.
            return f"{where}: the server refused to accept a new connection (CONNECTION_REFUSED)"
        code = f" (code {event.error_code:#x})"
        return f"{where}{code}{': ' + why if why else ''}"

    def _answer(self, conn: Connection, event: HeadersReceived, target: Target) -> SessionHandle:
        pseudo: dict[str, str] = {}
        headers: list[tuple[str, str]] = []
        for k, v in event.headers:
            name, value = k.decode("latin-1").lower(), v.decode("latin-1")
            if name.startswith(":"):
                pseudo.setdefault(name, value)
            else:
                headers.append((name, value))
        try:
            status = int(pseudo.get(":status", ""))
        except ValueError:
            conn.close_now(wire.H3_MESSAGE_ERROR, "no :status")
            raise ProtocolError("protocol error: response without a valid :status") from None
        if not 200 <= status < 300:
            conn.close_now(wire.H3_NO_ERROR, "")
            raise SessionRejectedError(
                f"session rejected by server with HTTP status {status}",
                status_code=status,
                headers=dict(headers),
            )
        assert conn.connect_stream_id is not None
        session = SessionState(
            conn,
            conn.connect_stream_id,
            is_server=False,
            path=target.path,
            authority=target.authority,
            headers=headers,
        )
        answered = dict(headers).get("wt-protocol")
        if answered is not None:
            session.protocol = wire.parse_sf_string_item(answered)
        conn.session = session
        conn.adopt_early_streams()
        if event.stream_ended:
            conn.peer_closed(0, "")
        return SessionHandle(session)


def _refusal(what: str, digest: str | None) -> str:
    """The Rust client's wording of a refused server certificate."""
    its = f"its SHA-256 is {digest}" if digest else "its SHA-256 is unknown"
    return (
        f"the server's certificate was refused: {what}; {its}: pass the certificate (or "
        "its CA) as ca_certs, or the SHA-256 in server_certificate_hashes"
    )

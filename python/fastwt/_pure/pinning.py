"""Trust by certificate hash (``server_certificate_hashes``, as browsers'
``serverCertificateHashes``) for the pure-Python client.

aioquic verifies a server either against CA certificates or not at all, and its public
API does not hand out the server's certificate. It does check the server's
CertificateVerify signature with the certificate's key in every mode, so what is left
is to learn *which* certificate it was: this module reads the server's TLS Certificate
message from the Handshake packets the client receives, decrypting them with the
handshake secret that aioquic writes to its ``secrets_log_file`` (the NSS key log
format), with aioquic's own packet and crypto primitives. The connection runs with
``verify_mode=CERT_NONE``; the client refuses it, before it sends any request, unless
the certificate's SHA-256 is one of the configured hashes.
"""

from __future__ import annotations

import hashlib

# aioquic's documented import path (a re-export mypy does not see as one).
from aioquic.buffer import Buffer, BufferReadError  # type: ignore[attr-defined]
from aioquic.quic.crypto import CryptoContext
from aioquic.quic.packet import QuicPacketType, pull_quic_header
from aioquic.tls import CipherSuite

__all__ = ["CertificateCatcher"]

_TLS_CERTIFICATE = 11
_SECRET_LABEL = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
_SUITES_BY_LENGTH = {
    32: (CipherSuite.AES_128_GCM_SHA256, CipherSuite.CHACHA20_POLY1305_SHA256),
    48: (CipherSuite.AES_256_GCM_SHA384,),
}


class _KeyLog:
    """The file-like object aioquic writes its secrets to (one line per secret)."""

    def __init__(self) -> None:
        self.secrets: dict[str, bytes] = {}

    def write(self, text: str) -> int:
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3:
                self.secrets[parts[0]] = bytes.fromhex(parts[2])
        return len(text)

    def flush(self) -> None:
        pass


class CertificateCatcher:
    """Feed it every datagram the client receives, after aioquic has: it ends up with the
    server's leaf certificate (DER) in ``certificate``."""

    def __init__(self, host_cid_length: int) -> None:
        self.key_log = _KeyLog()
        self.certificate: bytes | None = None
        self._cid_length = host_cid_length
        self._contexts: list[CryptoContext] | None = None
        self._next_pn = 0
        self._crypto: dict[int, bytes] = {}
        self._contiguous = bytearray()

    def sha256(self) -> str | None:
        return None if self.certificate is None else hashlib.sha256(self.certificate).hexdigest()

    def feed(self, datagram: bytes) -> None:
        if self.certificate is not None:
            return
        buf = Buffer(data=datagram)
        while not buf.eof():
            start = buf.tell()
            try:
                header = pull_quic_header(buf, host_cid_length=self._cid_length)
            except (ValueError, BufferReadError):
                return
            end = start + header.packet_length
            if header.packet_type == QuicPacketType.HANDSHAKE and header.version is not None:
                self._handshake_packet(datagram[start:end], buf.tell() - start, header.version)
            if header.packet_type == QuicPacketType.ONE_RTT:
                return  # a short header packet runs to the end of the datagram
            buf.seek(end)

    def _handshake_packet(self, packet: bytes, encrypted_offset: int, version: int) -> None:
        contexts = self._setup(version)
        for ctx in contexts or ():
            try:
                _, payload, pn, _ = ctx.decrypt_packet(packet, encrypted_offset, self._next_pn)
            except ValueError:  # aioquic's CryptoError is a ValueError
                continue
            self._contexts = [ctx]  # the suite is known from now on
            self._next_pn = max(self._next_pn, pn + 1)
            self._frames(payload)
            return

    def _setup(self, version: int) -> list[CryptoContext] | None:
        if self._contexts is not None:
            return self._contexts
        secret = self.key_log.secrets.get(_SECRET_LABEL)
        if secret is None:
            return None
        contexts = []
        for suite in _SUITES_BY_LENGTH.get(len(secret), ()):
            ctx = CryptoContext()
            ctx.setup(cipher_suite=suite, secret=secret, version=version)
            contexts.append(ctx)
        return contexts

    def _frames(self, payload: bytes) -> None:
        buf = Buffer(data=payload)
        try:
            while not buf.eof():
                kind = buf.pull_uint_var()
                if kind in (0x00, 0x01):  # PADDING, PING
                    continue
                if kind in (0x02, 0x03):  # ACK
                    buf.pull_uint_var()
                    buf.pull_uint_var()
                    ranges = buf.pull_uint_var()
                    buf.pull_uint_var()
                    for _ in range(ranges):
                        buf.pull_uint_var()
                        buf.pull_uint_var()
                    if kind == 0x03:
                        for _ in range(3):
                            buf.pull_uint_var()
                    continue
                if kind == 0x06:  # CRYPTO
                    offset = buf.pull_uint_var()
                    length = buf.pull_uint_var()
                    self._crypto_data(offset, buf.pull_bytes(length))
                    continue
                return  # CONNECTION_CLOSE or a frame the Handshake space does not carry
        except BufferReadError:
            return

    def _crypto_data(self, offset: int, data: bytes) -> None:
        have = len(self._contiguous)
        if offset + len(data) <= have:
            return
        self._crypto[offset] = data
        # Join every chunk that now continues the contiguous prefix.
        progressed = True
        while progressed:
            progressed = False
            for off in sorted(self._crypto):
                chunk = self._crypto[off]
                have = len(self._contiguous)
                if off <= have:
                    del self._crypto[off]
                    if off + len(chunk) > have:
                        self._contiguous += chunk[have - off :]
                    progressed = True
                    break
        self._parse_messages()

    def _parse_messages(self) -> None:
        data = self._contiguous
        pos = 0
        while pos + 4 <= len(data):
            kind = data[pos]
            length = int.from_bytes(data[pos + 1 : pos + 4], "big")
            if pos + 4 + length > len(data):
                return
            if kind == _TLS_CERTIFICATE:
                self.certificate = _first_certificate(bytes(data[pos + 4 : pos + 4 + length]))
                return
            pos += 4 + length


def _first_certificate(body: bytes) -> bytes | None:
    """The leaf of a TLS 1.3 Certificate message: request context, then a list of
    (certificate, extensions) entries."""
    context_length = body[0] if body else 0
    pos = 1 + context_length
    if pos + 3 > len(body):
        return None
    pos += 3  # the list's length
    if pos + 3 > len(body):
        return None
    cert_length = int.from_bytes(body[pos : pos + 3], "big")
    pos += 3
    if pos + cert_length > len(body):
        return None
    return body[pos : pos + cert_length]

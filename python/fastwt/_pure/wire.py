"""Protocol constants and small codecs of WebTransport over HTTP/3 (draft-02), the same
values and rules as the Rust core's ``h3.rs`` and ``error.rs``: the backends must agree
on the wire and report closes the same way, or code written against one breaks on the
other."""

from __future__ import annotations

from dataclasses import dataclass

from .._core import ERROR_CODES

# Stream types and frame types that start WebTransport streams.
STREAM_WT_UNI = 0x54
FRAME_WT_BIDI = 0x41
FRAME_HEADERS = 0x01

# CLOSE_WEBTRANSPORT_SESSION and DRAIN_WEBTRANSPORT_SESSION capsules.
CAPSULE_CLOSE_SESSION = 0x2843
CAPSULE_DRAIN_SESSION = 0x78AE
MAX_CLOSE_REASON = 1024

# HTTP/3 codes used here (those the core exports are read from it).
H3_NO_ERROR = ERROR_CODES["H3_NO_ERROR"]
H3_GENERAL_PROTOCOL_ERROR = 0x101
H3_STREAM_CREATION_ERROR = 0x103
H3_REQUEST_REJECTED = ERROR_CODES["H3_REQUEST_REJECTED"]
H3_MESSAGE_ERROR = 0x10E
WT_SESSION_GONE = ERROR_CODES["WEBTRANSPORT_SESSION_GONE"]
# QUIC transport code for a refused connection (max_sessions reached).
CONNECTION_REFUSED = 0x2

_WT_CODE_FIRST = 0x52E4A40FA8DB
_WT_CODE_LAST = 0x52E5AC983162

_H3_CODE_NAMES = {
    0x100: "H3_NO_ERROR",
    0x101: "H3_GENERAL_PROTOCOL_ERROR",
    0x102: "H3_INTERNAL_ERROR",
    0x103: "H3_STREAM_CREATION_ERROR",
    0x104: "H3_CLOSED_CRITICAL_STREAM",
    0x105: "H3_FRAME_UNEXPECTED",
    0x106: "H3_FRAME_ERROR",
    0x107: "H3_EXCESSIVE_LOAD",
    0x108: "H3_ID_ERROR",
    0x109: "H3_SETTINGS_ERROR",
    0x10A: "H3_MISSING_SETTINGS",
    0x10B: "H3_REQUEST_REJECTED",
    0x10C: "H3_REQUEST_CANCELLED",
    0x10D: "H3_REQUEST_INCOMPLETE",
    0x10E: "H3_MESSAGE_ERROR",
    0x10F: "H3_CONNECT_ERROR",
    0x110: "H3_VERSION_FALLBACK",
    0x200: "QPACK_DECOMPRESSION_FAILED",
    0x201: "QPACK_ENCODER_STREAM_ERROR",
    0x202: "QPACK_DECODER_STREAM_ERROR",
    0x33: "H3_DATAGRAM_ERROR",
}


def wt_code_to_h3(code: int) -> int:
    """A WebTransport application code as the HTTP/3 code that goes on the wire for
    stream resets and STOP_SENDING (skipping the reserved GREASE points)."""
    return _WT_CODE_FIRST + code + code // 0x1E


def h3_code_to_wt(h3: int) -> int:
    """The inverse of :func:`wt_code_to_h3`; codes outside the range (or GREASE points
    inside it) map to 0, as the Rust core maps them."""
    if not _WT_CODE_FIRST <= h3 <= _WT_CODE_LAST or (h3 >= 0x21 and (h3 - 0x21) % 0x1F == 0):
        return 0
    shifted = h3 - _WT_CODE_FIRST
    value = shifted - shifted // 0x1F
    return value if value <= 0xFFFFFFFF else 0


def encode_varint(value: int) -> bytes:
    """A QUIC variable-length integer."""
    if value < 1 << 6:
        return value.to_bytes(1, "big")
    if value < 1 << 14:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 1 << 30:
        return (value | 0x80000000).to_bytes(4, "big")
    return (value | 0xC000000000000000).to_bytes(8, "big")


def decode_varint(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int] | None:
    """(value, bytes used) of the varint at ``pos``, or ``None`` when incomplete."""
    if pos >= len(data):
        return None
    first = data[pos]
    length = 1 << (first >> 6)
    if pos + length > len(data):
        return None
    value = first & 0x3F
    for i in range(1, length):
        value = (value << 8) | data[pos + i]
    return value, length


def encode_close_capsule(code: int, reason: str) -> bytes:
    """CLOSE_WEBTRANSPORT_SESSION: a 32-bit code and the UTF-8 reason."""
    payload = code.to_bytes(4, "big") + reason.encode()
    return encode_varint(CAPSULE_CLOSE_SESSION) + encode_varint(len(payload)) + payload


def encode_drain_capsule() -> bytes:
    """DRAIN_WEBTRANSPORT_SESSION (no payload): the peer should wind the session down."""
    return encode_varint(CAPSULE_DRAIN_SESSION) + encode_varint(0)


# RFC 8941 strings, the only structured-field type WebTransport's protocol negotiation
# (``wt-available-protocols``, ``wt-protocol``) uses; the Rust core's draft.rs has the
# same rules. A parser this small is not worth a dependency of the fallback backend.
def _sf_string(field: str, pos: int) -> tuple[str, int] | None:
    if pos >= len(field) or field[pos] != '"':
        return None
    out: list[str] = []
    pos += 1
    while pos < len(field):
        c = field[pos]
        if c == "\\":
            if pos + 1 >= len(field) or field[pos + 1] not in '"\\':
                return None
            out.append(field[pos + 1])
            pos += 2
        elif c == '"':
            return "".join(out), pos + 1
        elif " " <= c <= "~":
            out.append(c)
            pos += 1
        else:
            return None
    return None


def _skip_params(field: str, pos: int) -> int:
    """Past the ``;key=value`` parameters of a list member (their values unused)."""
    while pos < len(field) and field[pos] == ";":
        pos += 1
        while pos < len(field) and field[pos] not in ",;":
            if field[pos] == '"':
                parsed = _sf_string(field, pos)
                if parsed is None:
                    return len(field) + 1
                pos = parsed[1]
            else:
                pos += 1
    return pos


def parse_sf_string_list(field: str) -> list[str] | None:
    """An RFC 8941 List of Strings (``wt-available-protocols``), or None if it is not
    one."""
    out: list[str] = []
    pos = 0
    field = field.strip(" \t")
    while field:
        parsed = _sf_string(field, pos)
        if parsed is None:
            return None
        out.append(parsed[0])
        pos = _skip_params(field, parsed[1])
        if pos > len(field):
            return None
        while pos < len(field) and field[pos] in " \t":
            pos += 1
        if pos == len(field):
            return out
        if field[pos] != ",":
            return None
        pos += 1
        while pos < len(field) and field[pos] in " \t":
            pos += 1
        if pos == len(field):
            return None  # a trailing comma
    return out


def parse_sf_string_item(field: str) -> str | None:
    """An RFC 8941 Item that is a String (``wt-protocol``), parameters ignored."""
    field = field.strip(" ")
    parsed = _sf_string(field, 0)
    if parsed is None:
        return None
    return parsed[0] if _skip_params(field, parsed[1]) == len(field) else None


def sf_string(value: str) -> str:
    """``value`` as an RFC 8941 String; ValueError if it is not printable ASCII."""
    if not all(" " <= c <= "~" for c in value):
        raise ValueError(f"protocol {value!r} is not printable ASCII (RFC 8941 sf-string)")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CapsuleError(ValueError):
    """A capsule the protocol does not allow (the session ends as a protocol error)."""


def parse_capsules(data: bytearray) -> list[tuple[int, bytes]]:
    """Removes the complete capsules at the start of ``data`` and returns them as
    (type, payload); an incomplete one stays in ``data`` for more bytes."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while True:
        kind = decode_varint(data, pos)
        if kind is None:
            break
        length = decode_varint(data, pos + kind[1])
        if length is None:
            break
        start = pos + kind[1] + length[1]
        if kind[0] == CAPSULE_CLOSE_SESSION and length[0] > 4 + MAX_CLOSE_REASON:
            raise CapsuleError(
                f"CLOSE_WEBTRANSPORT_SESSION of {length[0]} bytes (the reason may have "
                f"{MAX_CLOSE_REASON})"
            )
        if length[0] > 64 * 1024:
            raise CapsuleError(f"capsule of {length[0]} bytes")
        if start + length[0] > len(data):
            break
        out.append((kind[0], bytes(data[start : start + length[0]])))
        pos = start + length[0]
    del data[:pos]
    return out


def parse_close_capsule(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a CLOSE_WEBTRANSPORT_SESSION payload."""
    if len(payload) < 4:
        raise CapsuleError("CLOSE_WEBTRANSPORT_SESSION shorter than its 4-byte code")
    try:
        reason = payload[4:].decode()
    except UnicodeDecodeError:
        raise CapsuleError("CLOSE_WEBTRANSPORT_SESSION reason is not UTF-8") from None
    return int.from_bytes(payload[:4], "big"), reason


@dataclass(frozen=True)
class CloseInfo:
    """How a session ended: code, reason, and whether this side ended it (the Rust
    core's ``CloseInfo``; ``SessionHandle.close_info`` is its tuple)."""

    code: int
    reason: str
    local: bool

    def as_tuple(self) -> tuple[int, str, bool]:
        return (self.code, self.reason, self.local)

    def __str__(self) -> str:
        who = "locally" if self.local else "by peer"
        text = f"session closed {who} (code {self.code}"
        if self.reason:
            text += f", reason {self.reason!r}"
        return text + ")"


def close_info_of_connection(
    error_code: int, reason: str, *, transport: bool, idle: bool
) -> CloseInfo:
    """How a session ends when its QUIC connection does, as ``error::close_info_of`` in
    the Rust core: HTTP/3 and QPACK codes are not WebTransport codes (code 0, the name in
    the reason; H3_NO_ERROR keeps the peer's reason alone), other application codes that
    fit in 32 bits pass through, anything else is "connection lost"."""
    if idle:
        return CloseInfo(0, "connection lost: timed out", False)
    if transport:
        detail = reason or f"transport error {error_code:#x}"
        return CloseInfo(0, f"connection lost: {detail}", False)
    name = _H3_CODE_NAMES.get(error_code)
    reserved = error_code >= 0x21 and (error_code - 0x21) % 0x1F == 0
    if name is not None:
        if error_code == H3_NO_ERROR:
            return CloseInfo(0, reason, False)
        return CloseInfo(0, f"{name}: {reason}" if reason else name, False)
    if error_code <= 0xFFFFFFFF and not reserved:
        return CloseInfo(error_code, reason, False)
    return CloseInfo(0, f"connection closed with code {error_code:#x}: {reason}", False)

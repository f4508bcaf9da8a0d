"""The classic BPF program that steers QUIC packets to worker sockets of one
``SO_REUSEPORT`` group, by the worker octet of the server's connection IDs.

Attached with ``SO_ATTACH_REUSEPORT_CBPF`` (Linux 4.5+, no privileges, no BPF
toolchain): the kernel runs it on each datagram's UDP payload and delivers the datagram
to the group's socket at the index it returns (sockets are numbered in the order they
joined the group); an index beyond the group falls back to the kernel's 4-tuple hash.

What it returns (``L`` = the CIDs' length, ``W`` the worker octet's offset in a CID:
``1 + len(server_id)``, see ``fastwt_core::cid``):

- short header (first bit 0): the octet at ``1 + W``, the worker octet of the
  destination CID, whatever the client's address is now (NAT rebinding, migration);
- long header whose destination CID looks like ours (length ``L``, our first octet,
  a worker octet naming a socket of the group): that socket (Handshake packets and
  Initials after the server's first reply carry the server's CID), even a draining
  one;
- any other long header (a client's first flight, whose DCID the client chose at
  random): ``active[word mod N]`` with ``word`` four octets of that DCID, so every
  packet of one first flight reaches one worker, spread evenly, and never a socket no
  worker reads (the kernel's hash would pick among every socket of the group).

The program is built here as bytes and attached from Python with ``setsockopt``
(``ctypes`` only to hand the kernel a pointer to them): the supervisor is pure Python,
makes the sockets itself, and never loads the Rust runtime; one place to test.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Sequence

__all__ = ["SO_ATTACH_REUSEPORT_CBPF", "attach", "program", "run"]

SO_ATTACH_REUSEPORT_CBPF = 51
"""``<asm-generic/socket.h>``; not in Python's ``socket`` module."""

# Opcodes from <linux/filter.h> (classic BPF).
_LD_B_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS: A = packet[k]
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = packet[k..k+4], big-endian
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K: if A & k
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K: if A == k
_MOD_K = 0x94  # BPF_ALU | BPF_MOD | BPF_K: A %= k
_RET_A = 0x16  # BPF_RET | BPF_A
_RET_K = 0x06  # BPF_RET | BPF_K
_JA = 0x05  # BPF_JMP | BPF_JA: pc += k
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K: if A >= k

Insn = tuple[int, int, int, int]

MAX_WORKERS = 64
"""The program holds a few instructions per worker; jumps span at most 255 of them."""


def program(
    *, cid_len: int, worker_at: int, first_octet: int, active: Sequence[int], slots: int
) -> list[Insn]:
    """The filter for CIDs of ``cid_len`` octets starting with ``first_octet`` with the
    worker octet at ``worker_at``, a group of ``slots`` sockets, and the sockets
    ``active[i]`` of workers ``i`` (socket indices in the group, which are the CIDs'
    worker octets). Returns ``(code, jt, jf, k)`` instructions."""
    n = len(active)
    if not 1 <= n <= MAX_WORKERS:
        raise ValueError(f"1..{MAX_WORKERS} workers, got {n}")
    if not 8 <= cid_len <= 20:
        raise ValueError(f"cid_len must be 8..20, got {cid_len}")
    if not n <= slots <= 255 or any(not 0 <= s < slots for s in active):
        raise ValueError("active sockets must be indices of the group's slots (< 256)")
    if not 1 <= worker_at < cid_len:
        raise ValueError(f"worker_at must be 1..{cid_len - 1}, got {worker_at}")
    w = worker_at
    # First flight: A = 4 octets of the client's DCID mod n, then active[A].
    table: list[Insn] = [(_LD_W_ABS, 0, 0, 7), (_MOD_K, 0, 0, n)]
    for i, slot in enumerate(active):
        table += [(_JEQ_K, 0, 1, i), (_RET_K, 0, 0, slot)]
    table.append((_RET_K, 0, 0, active[0]))
    # Long header to one of our CIDs (its length, its first octet, a worker octet
    # naming a socket of the group): that socket, active or draining. Each failed
    # check jumps to the table (the jf counts the instructions left before it).
    ours: list[Insn] = [
        (_LD_B_ABS, 0, 0, 5),
        (_JEQ_K, 0, 5, cid_len),
        (_LD_B_ABS, 0, 0, 6),
        (_JEQ_K, 0, 3, first_octet),
        (_LD_B_ABS, 0, 0, 6 + w),
        (_JGE_K, 1, 0, slots),
        (_RET_A, 0, 0, 0),
    ]
    short: list[Insn] = [(_LD_B_ABS, 0, 0, 1 + w), (_RET_A, 0, 0, 0)]
    head: list[Insn] = [(_LD_B_ABS, 0, 0, 0), (_JSET_K, len(short), 0, 0x80)]
    return head + short + ours + table


def encode(prog: Sequence[Insn]) -> bytes:
    """``struct sock_filter[]`` in the machine's byte order."""
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)


def attach(sock: socket.socket, prog: Sequence[Insn]) -> None:
    """Attaches ``prog`` to the ``SO_REUSEPORT`` group of ``sock`` (replacing the
    group's program, if any). Raises ``OSError`` where the kernel has no
    ``SO_ATTACH_REUSEPORT_CBPF``."""
    code = encode(prog)
    buf = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def run(prog: Sequence[Insn], payload: bytes) -> int | None:
    """What the kernel would return for a UDP ``payload``: a socket index, or ``None``
    when the program reads past the end (the kernel then returns 0). For tests and
    for reading the program; the kernel's interpreter is the one that counts."""
    a = 0
    pc = 0
    while pc < len(prog):
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == _LD_B_ABS:
            if k >= len(payload):
                return None
            a = payload[k]
        elif code == _LD_W_ABS:
            if k + 4 > len(payload):
                return None
            a = int.from_bytes(payload[k : k + 4], "big")
        elif code == _MOD_K:
            a %= k
        elif code == _JA:
            pc += k
        elif code == _JSET_K:
            pc += jt if a & k else jf
        elif code == _JEQ_K:
            pc += jt if a == k else jf
        elif code == _JGE_K:
            pc += jt if a >= k else jf
        elif code == _RET_A:
            return a
        elif code == _RET_K:
            return k
        else:  # pragma: no cover - program() emits only the codes above
            raise ValueError(f"unknown opcode {code:#x}")
    raise ValueError("program fell off its end")  # pragma: no cover

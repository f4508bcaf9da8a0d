"""The steering BPF program, read by its Python model (``bpf.run``); the kernel runs
it in tests/integration/test_workers.py."""

from __future__ import annotations

import os
import sys

import pytest

from fastwt.workers import bpf

L = 13  # server id 0a0b: first octet, server id, worker octet, 9-octet nonce
W = 3
FIRST = (0 << 5) | (L - 1)


def prog(active: list[int], slots: int) -> list[bpf.Insn]:
    return bpf.program(cid_len=L, worker_at=W, first_octet=FIRST, active=active, slots=slots)


def our_cid(worker: int) -> bytes:
    return bytes([FIRST, 0x0A, 0x0B, worker]) + os.urandom(L - 4)


def short_packet(dcid: bytes) -> bytes:
    return bytes([0x40]) + dcid + os.urandom(30)


def long_packet(dcid: bytes) -> bytes:
    return bytes([0xC0]) + b"\x00\x00\x00\x01" + bytes([len(dcid)]) + dcid + os.urandom(1200)


def test_short_headers_go_to_the_socket_their_cid_names() -> None:
    p = prog([0, 1, 2], 6)
    for worker in range(6):
        assert bpf.run(p, short_packet(our_cid(worker))) == worker


def test_long_headers_to_our_cids_follow_the_worker_octet_even_to_a_draining_socket() -> None:
    p = prog([3, 1], 4)  # worker 0 replaced (slot 0 drains), worker 1 not yet
    assert bpf.run(p, long_packet(our_cid(0))) == 0
    assert bpf.run(p, long_packet(our_cid(3))) == 3
    # A worker octet beyond the group: spread over the active sockets instead.
    assert bpf.run(p, long_packet(our_cid(9))) in (3, 1)


def test_first_flights_are_spread_over_active_sockets_only_and_stick() -> None:
    p = prog([4, 1, 5], 6)
    seen: dict[int, int] = {}
    for _ in range(600):
        dcid = os.urandom(8)
        first = bpf.run(p, long_packet(dcid))
        assert first in (4, 1, 5)
        assert bpf.run(p, long_packet(dcid)) == first, "every packet of one first flight"
        seen[first] = seen.get(first, 0) + 1
    assert min(seen.values()) > 120, seen  # about 200 each


def test_a_random_dcid_of_our_length_is_not_taken_for_ours() -> None:
    p = prog([0, 1], 4)
    dcid = bytes([FIRST ^ 0xFF, 0x0A, 0x0B, 3]) + os.urandom(L - 4)
    assert bpf.run(p, long_packet(dcid)) in (0, 1)


def test_encoding_is_struct_sock_filter() -> None:
    p = prog([0], 2)
    code = bpf.encode(p)
    assert len(code) == 8 * len(p)
    assert int.from_bytes(code[:2], "little" if sys.byteorder == "little" else "big") == p[0][0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"active": [], "slots": 2},
        {"active": list(range(65)), "slots": 130},
        {"active": [2], "slots": 2},
        {"active": [0], "slots": 2, "worker_at": 0},
    ],
)
def test_bad_programs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        bpf.program(**{"cid_len": L, "worker_at": W, "first_octet": FIRST, **kwargs})  # type: ignore[arg-type]

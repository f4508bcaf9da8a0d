"""A private network namespace for fault injection with nft, made and owned by one test.

The namespace is made with ``unshare(CLONE_NEWNET)`` in a short-lived thread (network
namespaces are per thread, so the rest of the process stays in the host's), and lives
as long as this object holds its file descriptor or any socket made inside it: it goes
away with the test process even if that is killed, so no namespace, interface or nft
table is ever left behind, and the host's network configuration is never touched.

    with Netns() as ns:
        rx = ns.run(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        ns.nft("table inet t { chain c { type filter hook input priority 0; drop; } }")

Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), ``nsenter`` (util-linux), ``ip``
(iproute2) and ``nft`` (nftables); :func:`unusable_reason` says what is missing.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Netns", "NetnsError", "unusable_reason"]

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    pass


def unusable_reason() -> str | None:
    """Why a namespace with nft cannot be made here, or None when it can."""
    for tool, package in (("nsenter", "util-linux"), ("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install {package})"
    try:
        with Netns() as ns:
            ns.nft("table inet fastwt_probe { }")
    except (NetnsError, OSError) as e:
        return f"cannot make a network namespace with nft here: {e}"
    return None


def _in_thread(fn: Callable[[], T]) -> T:
    """Runs ``fn`` in a new thread (whose namespaces it may change) and returns its result."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append((True, fn()))
        except BaseException as e:
            result.append((False, e))

    thread = threading.Thread(target=run, name="netns")
    thread.start()
    thread.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


class Netns:
    """A new network namespace with its loopback up (see the module's docstring)."""

    def __init__(self) -> None:
        def make() -> int:
            if _libc.unshare(CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise NetnsError(f"unshare(CLONE_NEWNET): {os.strerror(errno)}")
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            # A child forked from this thread starts in the new namespace.
            up = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True)
            if up.returncode != 0:
                os.close(fd)
                raise NetnsError(f"ip link set lo up: {up.stderr.strip()}")
            return fd

        self._fd: int | None = _in_thread(make)

    @property
    def path(self) -> str:
        """A path that names the namespace (for ``nsenter --net=PATH``)."""
        if self._fd is None:
            raise NetnsError("the namespace is closed")
        return f"/proc/{os.getpid()}/fd/{self._fd}"

    def run(self, fn: Callable[[], T]) -> T:
        """Runs ``fn`` in a thread inside the namespace: sockets it makes belong to it."""
        fd = self._fd
        if fd is None:
            raise NetnsError("the namespace is closed")

        def inside() -> T:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise NetnsError(f"setns: {os.strerror(ctypes.get_errno())}")
            return fn()

        return _in_thread(inside)

    def nft(self, script: str) -> str:
        """Runs an nft script (``nft -f -``) inside the namespace; returns its output."""
        done = subprocess.run(
            ["nsenter", f"--net={self.path}", "nft", "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if done.returncode != 0:
            raise NetnsError(f"nft failed: {done.stderr.strip()}\n{script}")
        return done.stdout

    def close(self) -> None:
        """Drops this handle; the namespace ends once no socket made in it is open."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Netns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

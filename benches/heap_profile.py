#!/usr/bin/env python3
"""Where the memory of an idle session goes: the evidence behind the RSS goal.

    python3 benches/heap_profile.py [--sessions 1000]

Runs the fastwt bench server under heaptrack (Debian package ``heaptrack``), opens
``--sessions`` idle sessions with the suite's fastwt client (the ``memory`` workload),
and attributes the server's heap at its peak to the code that allocated it: bytes per
session for each site (the first three frames of fastwt, quinn, rustls or tokio code
under the allocator). Writes ``benches/results/profiles/memory-fastwt-heap.txt``.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = HERE / "targets"
OUT = HERE / "results" / "profiles" / "memory-fastwt-heap.txt"

# Frames that only say "memory was allocated" (allocator, collections, runtime plumbing).
PLUMBING = (
    "alloc.rs",
    "raw_vec",
    "mod.rs",
    "map.rs",
    "boxed.rs",
    "vec",
    "unix.rs",
    "sync.rs",
    "hashbrown",
    "core.rs",
    "raw.rs",
    "harness.rs",
    "unsafe_cell",
    "panicking",
    "panic.rs",
    "spawn.rs",
    "context",
    "function.rs",
    "future.rs",
    "instrument.rs",
    "list.rs",
    "string.rs",
    "slice.rs",
    "bytes_mut.rs",
    "clone.rs",
    "iter",
    "block.rs",
    "chan.rs",
    "maybe_uninit",
    "ptr",
)


def site(frames: list[str]) -> str:
    """The first three meaningful Rust frames (leaf first), or the Python interpreter."""
    picked: list[str] = []
    for frame in reversed(frames):
        m = re.search(r"\((\S+\.rs)\)", frame)
        if m and not any(p in m.group(1) for p in PLUMBING):
            picked.append(frame[:70])
            if len(picked) == 3:
                break
    if picked:
        return " <- ".join(picked)
    return "Python objects" if any(".c)" in f for f in frames) else "other"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    if not (shutil.which("heaptrack") and shutil.which("heaptrack_print")):
        print("heaptrack not found: apt-get install heaptrack", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="fastwt-heap-"))
    data = work / "server"
    server = subprocess.Popen(
        ["heaptrack", "-o", str(data), sys.executable, "fastwt_server.py", "--seconds", "120"],
        cwd=TARGETS,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    port = cert_hash = ""
    for line in server.stdout:
        if line.startswith("PORT "):
            port = line.split()[1]
        elif line.startswith("HASH "):
            cert_hash = line.split()[1]
        if port and cert_hash:
            break
    pid = subprocess.run(
        ["pgrep", "-n", "-f", "fastwt_server.py --seconds 120"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    client = subprocess.run(
        [
            sys.executable,
            "fastwt_client.py",
            "memory",
            "--url",
            f"https://127.0.0.1:{port}/",
            "--cert-hash",
            cert_hash,
            "--server-pid",
            pid or "0",
            "--sessions",
            str(args.sessions),
        ],
        cwd=TARGETS,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if pid:
        subprocess.run(["kill", "-TERM", pid], check=False)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.send_signal(signal.SIGKILL)
    time.sleep(1)
    files = sorted(work.glob("server*"))
    if not files:
        print("heaptrack wrote nothing", file=sys.stderr)
        return 1
    flame = work / "peak.txt"
    subprocess.run(
        [
            "heaptrack_print",
            "-f",
            str(files[-1]),
            "--print-flamegraph",
            str(flame),
            "--flamegraph-cost-type",
            "peak",
        ],
        capture_output=True,
        check=False,
    )
    per_site: collections.Counter[str] = collections.Counter()
    for line in flame.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        per_site[site(stack.split(";"))] += int(count)
    total = sum(per_site.values())
    lines = [
        "# fastwt server heap at its peak, per idle session (heaptrack, peak cost)",
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.sessions} sessions; "
        "the one-off endpoint buffers (~3 MB) are spread over the sessions here",
        f"client result: {client.stdout.strip().splitlines()[-1] if client.stdout else '-'}",
        f"heap at peak: {total / args.sessions:,.0f} B per session",
        "",
        "bytes/session  allocation site (leaf first)",
    ]
    for name, count in per_site.most_common(args.top):
        lines.append(f"{count / args.sessions:13,.0f}  {name}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

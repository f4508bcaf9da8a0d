#!/usr/bin/env python3
"""The asyncio steps of one stream request with a task per stream, in a tight loop and
nothing else: a future resolved by a callback wakes the accepting task, which starts a
handler task whose done callback drops it. Prints the CPU per request (6-8 µs on the
benchmarks' machine, CPython 3.11): the floor of that request shape on warm caches, to
compare with what a paced request costs the server after a sleep (benches/README.md).

    python benches/asyncio_floor.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import time


async def handler() -> None:
    return None


async def main(requests: int) -> float:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    start = time.process_time()
    for _ in range(requests):
        woken = loop.create_future()
        loop.call_soon(woken.set_result, None)
        await woken
        task = asyncio.create_task(handler())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(list(tasks))
    return (time.process_time() - start) / requests


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200_000)
    args = ap.parse_args()
    per_request = asyncio.run(main(args.requests))
    print(f"asyncio steps of a task-per-stream request: {per_request * 1e6:.2f} us CPU")

"""A pywebtransport 0.21.x client that pools: several sessions on one connection of a
WebTransport server (run with that version's venv). Prints one JSON object.

    python pwt_pool.py --url https://127.0.0.1:PORT

Opens a session on ``/echo``, a second on the same connection, echoes on each
(bidirectional stream and datagram), asks for a third (the test's server allows two),
closes the first, echoes on the second again, and notes whether the connection is still
the same one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import traceback
from typing import Any
from urllib.parse import urlsplit

import pywebtransport
from pywebtransport import ClientConfig, WebTransportClient


async def bidi_echo(session: Any, payload: bytes) -> str:
    stream = await session.create_bidirectional_stream()
    await stream.write(data=payload, end_stream=True)
    return bytes(await stream.read_all()).decode()


async def datagram_echo(session: Any, payload: bytes) -> str:
    for _ in range(10):
        await session.send_datagram(data=payload)
        with contextlib.suppress(TimeoutError):
            return bytes(await asyncio.wait_for(session.read_datagram(), 0.5)).decode()
    raise TimeoutError("no datagram came back")


async def run(url: str, out: dict[str, Any]) -> None:
    authority = urlsplit(url).netloc
    async with WebTransportClient(config=ClientConfig(verify_mode=ssl.CERT_NONE)) as client:
        first = await client.connect(url=f"{url}/echo")
        connection = first.connection
        second = await connection.create_session(authority=authority, path="/echo")
        out["same_connection"] = second.connection is connection
        out["ids"] = [first.session_id, second.session_id]
        out["first_bidi"] = await bidi_echo(first, b"to the first")
        out["second_bidi"] = await bidi_echo(second, b"to the second")
        out["first_datagram"] = await datagram_echo(first, b"dgram one")
        out["second_datagram"] = await datagram_echo(second, b"dgram two")
        try:
            third = await asyncio.wait_for(
                connection.create_session(authority=authority, path="/echo"), 5
            )
            await asyncio.wait_for(third.ensure_ready(), 5)
            out["third"] = "accepted"
        except Exception as e:
            out["third"] = f"{type(e).__name__}: {e}"
        await first.close()
        await asyncio.sleep(0.8)  # past the server's close grace period
        out["first_closed"] = first.is_closed
        out["second_after"] = await bidi_echo(second, b"still here")
        out["second_datagram_after"] = await datagram_echo(second, b"dgram again")
        out["connection_closed"] = bool(getattr(connection, "is_closed", False))
        await second.close()


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    args = ap.parse_args()
    out: dict[str, Any] = {"version": pywebtransport.__version__}
    try:
        await asyncio.wait_for(run(args.url, out), 30)
    except BaseException as e:  # report, never hang: the test reads the JSON
        out["error"] = f"{type(e).__name__}: {e}"
        out["traceback"] = traceback.format_exc()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

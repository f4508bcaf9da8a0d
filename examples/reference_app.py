"""A WebTransport app written for pywebtransport 0.20.x's ServerApp, running on fastwt.

Only the imports differ from the pywebtransport version (``pywebtransport`` →
``fastwt``); the handlers, decorators and keyword arguments are unchanged, asyncio
included. ``tests/integration/test_framework_example.py`` runs it.

    python examples/reference_app.py --cert cert.pem --key key.pem --port 4433

Without ``--cert``/``--key`` a development certificate is generated (its SHA-256, for
``serverCertificateHashes`` in a browser, is printed).

Routes:
  /echo                 echoes each client stream (``ECHO: `` prefix) and each datagram
  /greet                the server opens a stream, sends a greeting, reads the answer
  /chat/<room>          replies on each client stream with the room name
All sessions need ``authorization: Bearer demo-token``; at most 20 sessions per
client IP per minute.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

from fastwt import ConnectionError, ServerConfig, SessionError, WebTransportSession
from fastwt.framework import (
    ServerApp,
    create_auth_middleware,
    create_rate_limit_middleware,
)

logger = logging.getLogger("reference_app")

DEMO_TOKEN = "Bearer demo-token"


def create_app(*, certfile: str, keyfile: str) -> ServerApp:
    app = ServerApp(config=ServerConfig(certfile=certfile, keyfile=keyfile))

    async def check_token(*, headers: Any) -> bool:
        return bool(headers.get("authorization") == DEMO_TOKEN)

    app.add_middleware(middleware=create_auth_middleware(auth_handler=check_token))
    app.add_middleware(middleware=create_rate_limit_middleware(max_requests=20, window_seconds=60))

    @app.middleware
    async def log_requests(*, session: Any) -> None:
        logger.info("session request %s from %s", session.path, session.remote_address)

    @app.on_startup
    async def on_startup() -> None:
        logger.info("reference app starting")

    @app.on_shutdown
    def on_shutdown() -> None:
        logger.info("reference app stopped")

    async def echo_datagrams(session: WebTransportSession) -> None:
        try:
            while True:
                data = await session.read_datagram()
                await session.send_datagram(data=b"ECHO: " + data)
        except (ConnectionError, SessionError):
            pass

    async def echo_streams(session: WebTransportSession) -> None:
        try:
            async for stream in session.incoming_bidirectional_streams():
                data = await stream.read_all()
                await stream.write(data=b"ECHO: " + data, end_stream=True)
        except (ConnectionError, SessionError):
            pass

    @app.route(path="/echo")
    async def echo_handler(session: WebTransportSession) -> None:
        datagram_task = asyncio.create_task(echo_datagrams(session))
        stream_task = asyncio.create_task(echo_streams(session))
        try:
            await asyncio.gather(datagram_task, stream_task)
        finally:
            datagram_task.cancel()
            stream_task.cancel()

    @app.route(path="/greet")
    async def greet_handler(session: WebTransportSession) -> None:
        stream = await session.create_bidirectional_stream()
        await stream.write(data=b"hello, who are you?", end_stream=True)
        name = await stream.read(max_size=1024)
        await session.send_datagram(data=b"welcome " + name)
        await asyncio.sleep(0.2)  # let the datagram leave before the session closes

    @app.pattern_route(pattern=r"/chat/(?P<room>\w+)")
    async def chat_handler(session: WebTransportSession, room: str) -> None:
        async for stream in session.incoming_bidirectional_streams():
            message = await stream.read(max_size=65536)
            await stream.write(data=f"[{room}] ".encode() + message, end_stream=True)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", help="certificate PEM file")
    parser.add_argument("--key", help="private key PEM file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    certfile, keyfile = args.cert, args.key
    if certfile is None or keyfile is None:
        from fastwt import generate_dev_certificate

        cert_pem, key_pem, cert_hash = generate_dev_certificate()
        directory = Path(tempfile.mkdtemp(prefix="fastwt-reference-app-"))
        (directory / "cert.pem").write_text(cert_pem)
        (directory / "key.pem").write_text(key_pem)
        certfile, keyfile = str(directory / "cert.pem"), str(directory / "key.pem")
        print(f"development certificate sha-256: {cert_hash}", flush=True)

    app = create_app(certfile=certfile, keyfile=keyfile)
    app.run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()

"""A telemetry ingest server: devices push records, the server keeps totals per device.

A device connects to ``/ingest/<device>`` or to ``/ingest`` with an ``x-device-id``
header (without either the request is refused with 400, before it is accepted). It then
pushes records in any mix of:

- **unidirectional streams** (reliable: every record is counted exactly once), either
  JSON messages — ``{"metric": "temp", "value": 21.5}``, each framed by
  :class:`fastwt.messages.MessageStream` (a 4-byte big-endian length, then the UTF-8
  JSON; at most :data:`MAX_MESSAGE` bytes) — or, when the stream starts with
  :data:`STREAM_MAGIC`, packed :data:`RECORD` structs (``<HQd``: metric id, timestamp
  in microseconds, value);
- **datagrams** (unreliable, for high-rate samples that may be lost): a ``<H`` record
  count followed by that many :data:`RECORD` structs.

Malformed records are counted as ``rejected`` and skipped; a malformed stream does not
end the session. Anyone may read the totals on ``/totals``: open a bidirectional stream
and send JSON messages (framed as above) ``{"device": "<id>"}`` or ``{}`` for every
device; each is answered by a message
``{device: {"stream_records", "datagram_records", "rejected", "value_sum", "metrics"}}``,
on the same stream, which stays open for more questions.

Run it (a development certificate is generated; its SHA-256 is printed)::

    python examples/telemetry_ingest.py --port 4433 [--metrics-port 9100]

``--metrics-port`` serves the server's Prometheus metrics (``fastwt.metrics``; needs
``prometheus_client``). Log lines about a device carry its session's id, path and peer
(``fastwt.metrics.session_logger``).

The client side is here too (:func:`push_json_records`, :func:`push_records`,
:func:`push_datagrams`, :func:`fetch_totals`) for devices written with fastwt.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import re
import signal
import struct
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from fastwt import ServerConfig, WebTransportError, WebTransportSession
from fastwt.framework import MiddlewareRejected, ServerApp
from fastwt.framework.headers import header_map
from fastwt.framework.types import SessionProtocol
from fastwt.messages import (
    MessageDecodeError,
    MessageStream,
    MessageTooLargeError,
    TruncatedMessageError,
)
from fastwt.metrics import enable_prometheus, session_logger
from fastwt.stream import WebTransportReceiveStream

__all__ = [
    "RECORD",
    "STREAM_MAGIC",
    "DeviceTotals",
    "TelemetryStore",
    "create_app",
    "fetch_totals",
    "main",
    "pack_datagrams",
    "push_datagrams",
    "push_json_records",
    "push_records",
]

logger = logging.getLogger("telemetry_ingest")

RECORD = struct.Struct("<HQd")
"""Metric id, timestamp (microseconds since the epoch), value."""
COUNT = struct.Struct("<H")
STREAM_MAGIC = b"TLM1"
"""First bytes of a unidirectional stream of packed records (else: JSON messages; as a
message length, these bytes would be over 1 GB, so the two cannot be confused)."""
MAX_MESSAGE = 64 * 1024
DATAGRAM_BUDGET = 1100
RECORDS_PER_DATAGRAM = (DATAGRAM_BUDGET - COUNT.size) // RECORD.size
DEVICE_HEADER = "x-device-id"

_DEVICE = re.compile(r"[\w.-]{1,64}")
_INGEST = re.compile(r"/ingest(?:/(?P<device>[^/]*))?")


@dataclass
class DeviceTotals:
    """What one device sent. ``value_sum`` is the sum of accepted values."""

    stream_records: int = 0
    datagram_records: int = 0
    rejected: int = 0
    value_sum: float = 0.0
    metrics: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "stream_records": self.stream_records,
            "datagram_records": self.datagram_records,
            "rejected": self.rejected,
            "value_sum": self.value_sum,
            "metrics": dict(self.metrics),
        }


class TelemetryStore:
    """Totals per device, kept in memory. Updated only from the event loop (no lock);
    a real server would flush them to a time-series database periodically."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceTotals] = {}

    def device(self, name: str) -> DeviceTotals:
        return self.devices.setdefault(name, DeviceTotals())

    def add(self, device: DeviceTotals, metric: str, value: float, *, reliable: bool) -> None:
        if reliable:
            device.stream_records += 1
        else:
            device.datagram_records += 1
        device.value_sum += value
        device.metrics[metric] += 1

    def totals(self, device: str | None = None) -> dict[str, dict[str, Any]]:
        """JSON-ready totals, for every device or just one."""
        names = [device] if device is not None else sorted(self.devices)
        return {n: self.devices[n].as_json() for n in names if n in self.devices}

    # --- decoding ----------------------------------------------------------------
    def add_json_record(self, device: DeviceTotals, record: Any) -> None:
        try:
            metric, value = str(record["metric"]), float(record["value"])
            if not math.isfinite(value):
                raise ValueError("value must be finite")
        except (ValueError, TypeError, KeyError):
            device.rejected += 1
            return
        self.add(device, metric, value, reliable=True)

    def add_packed(self, device: DeviceTotals, data: bytes, *, reliable: bool) -> None:
        """Whole :data:`RECORD` structs (``len(data)`` a multiple of its size)."""
        for metric, _timestamp, value in RECORD.iter_unpack(data):
            if math.isfinite(value):
                self.add(device, str(metric), value, reliable=reliable)
            else:
                device.rejected += 1

    def add_datagram(self, device: DeviceTotals, data: bytes) -> None:
        if len(data) < COUNT.size:
            device.rejected += 1
            return
        (count,) = COUNT.unpack_from(data)
        body = data[COUNT.size :]
        if len(body) != count * RECORD.size:
            device.rejected += 1
            return
        self.add_packed(device, body, reliable=False)

    # --- sessions ------------------------------------------------------------------
    async def ingest(self, session: WebTransportSession, device_name: str) -> None:
        """Read the device's streams and datagrams until its session ends."""
        device = self.device(device_name)
        log = session_logger(session, logger)  # records carry session id, path, peer
        log.info("device %s connected", device_name)

        async def streams() -> None:
            async with anyio.create_task_group() as readers:
                async for stream in session.incoming_unidirectional_streams():
                    readers.start_soon(self.read_stream, device, stream)

        async def datagrams() -> None:
            async for data in session.datagrams():
                self.add_datagram(device, data)

        # Each loop ends by itself when the session closes; errors are the session's
        # end too, so they are logged, never raised (a task group would wrap them).
        async with anyio.create_task_group() as tg:
            tg.start_soon(_quietly, streams, device_name)
            tg.start_soon(_quietly, datagrams, device_name)
        log.info("device %s disconnected", device_name)

    async def read_stream(self, device: DeviceTotals, stream: WebTransportReceiveStream) -> None:
        """One unidirectional stream: packed records if it starts with
        :data:`STREAM_MAGIC`, else JSON messages. Records are counted as they arrive; a
        bad message is counted as rejected and skipped; a partial record or message at
        the end, or a message over :data:`MAX_MESSAGE`, is counted as rejected and ends
        the stream."""
        head = b""
        try:
            while len(head) < len(STREAM_MAGIC) and (chunk := await stream.read(max_size=4)):
                head += chunk
            if head == STREAM_MAGIC:
                await self._read_packed(device, stream)
            elif head:
                messages = MessageStream(stream, max_message_size=MAX_MESSAGE, initial=head)
                while True:
                    try:
                        record = await messages.recv()
                    except EOFError:
                        return
                    except MessageDecodeError:
                        device.rejected += 1  # not JSON: skipped, the next one is framed
                        continue
                    except (TruncatedMessageError, MessageTooLargeError):
                        device.rejected += 1  # the rest cannot be framed
                        return
                    self.add_json_record(device, record)
        except WebTransportError as exc:  # reset by the device, or its session ended
            logger.debug("stream ended early: %r", exc)
            device.rejected += 1

    async def _read_packed(self, device: DeviceTotals, stream: WebTransportReceiveStream) -> None:
        pending = b""
        async for chunk in stream:
            pending += chunk
            whole = len(pending) - len(pending) % RECORD.size
            self.add_packed(device, pending[:whole], reliable=True)
            pending = pending[whole:]
        if pending:  # a torn last record
            device.rejected += 1

    async def answer_totals(self, session: WebTransportSession) -> None:
        """``/totals``: each JSON message on a bidirectional stream is answered there."""
        async with anyio.create_task_group() as tg:
            async for stream in session.incoming_bidirectional_streams():
                tg.start_soon(self._answer_questions, MessageStream(stream))

    async def _answer_questions(self, messages: MessageStream[Any]) -> None:
        try:
            async for question in messages:
                name = question.get("device") if isinstance(question, dict) else None
                await messages.send(self.totals(str(name) if name is not None else None))
            await messages.close()
        except WebTransportError as exc:
            logger.debug("totals request failed: %r", exc)


async def _quietly(loop: Callable[[], Awaitable[None]], device: str) -> None:
    try:
        await loop()
    except WebTransportError as exc:
        logger.debug("device %s: %r", device, exc)


def device_of(session: SessionProtocol) -> str | None:
    """The device id of an ``/ingest`` request (path first, then header), if valid."""
    path = session.path.split("?", 1)[0]
    match = _INGEST.fullmatch(path)
    if match is None:
        return None
    name = match["device"] or header_map(session.headers).get(DEVICE_HEADER, "")
    return name if _DEVICE.fullmatch(name) else None


def create_app(
    *, config: ServerConfig | None = None, store: TelemetryStore | None = None
) -> ServerApp:
    """The ingest app. Pass your own ``store`` to read the totals in process."""
    app = ServerApp(config=config)
    store = store if store is not None else TelemetryStore()

    @app.middleware
    async def require_device(*, session: SessionProtocol) -> None:
        if session.path.startswith("/ingest") and device_of(session) is None:
            raise MiddlewareRejected(
                status_code=400,
                headers={"x-error": f"use /ingest/<device> or an {DEVICE_HEADER} header"},
            )

    async def ingest(session: WebTransportSession, **_: str) -> None:
        device = device_of(session)
        assert device is not None  # checked by require_device
        await store.ingest(session, device)

    app.route(path="/ingest")(ingest)
    app.pattern_route(pattern=r"/ingest/(?P<device>[^/]+)")(ingest)

    @app.route(path="/totals")
    async def totals(session: WebTransportSession) -> None:
        await store.answer_totals(session)

    return app


# --------------------------------------------------------------------------- client side


async def push_json_records(
    session: WebTransportSession, records: Iterable[dict[str, Any]]
) -> None:
    """Send ``records`` as JSON messages on one new unidirectional stream, then end it."""
    messages: MessageStream[Any] = MessageStream(
        await session.create_unidirectional_stream(), max_message_size=MAX_MESSAGE
    )
    for record in records:
        await messages.send(record)
    await messages.close()


async def push_records(
    session: WebTransportSession, records: Iterable[tuple[int, int, float]]
) -> None:
    """Send ``(metric id, timestamp us, value)`` records packed, on one new
    unidirectional stream, then end it."""
    stream = await session.create_unidirectional_stream()
    body = STREAM_MAGIC + b"".join(RECORD.pack(*r) for r in records)
    await stream.write_all(data=body)


def pack_datagrams(records: Sequence[tuple[int, int, float]]) -> list[bytes]:
    """``records`` as datagrams of at most :data:`RECORDS_PER_DATAGRAM` records."""
    n = RECORDS_PER_DATAGRAM
    return [
        COUNT.pack(len(records[i : i + n])) + b"".join(RECORD.pack(*r) for r in records[i : i + n])
        for i in range(0, len(records), n)
    ]


async def push_datagrams(
    session: WebTransportSession, records: Sequence[tuple[int, int, float]]
) -> int:
    """Send ``records`` as datagrams (may be lost); returns how many datagrams."""
    packets = pack_datagrams(records)
    return await session.send_datagrams(data=packets)


async def fetch_totals(
    session: WebTransportSession, device: str | None = None
) -> dict[str, dict[str, Any]]:
    """Ask a ``/totals`` session for the totals (of every device, or one)."""
    messages: MessageStream[Any] = MessageStream(await session.create_bidirectional_stream())
    await messages.send({} if device is None else {"device": device}, end_stream=True)
    result: dict[str, dict[str, Any]] = await messages.recv()
    return result


# --------------------------------------------------------------------------- script


async def serve_until_signal(
    app: ServerApp, host: str, port: int, metrics_port: int | None = None
) -> None:
    """Serve ``app``, print where and how to trust it, stop cleanly on SIGINT/SIGTERM.
    With ``metrics_port``, also serve Prometheus metrics (sessions, bytes, datagrams,
    RTT: see :mod:`fastwt.metrics`) on ``http://127.0.0.1:METRICS_PORT/metrics``."""
    httpd = None
    if metrics_port is not None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        enable_prometheus(app, registry)
        httpd, _ = start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            addresses = await tg.start(functools.partial(app.serve, host=host, port=port))
            bound_host, bound_port = addresses[0]
            if bound_host in ("0.0.0.0", "::"):
                bound_host = "127.0.0.1"
            authority = f"[{bound_host}]" if ":" in bound_host else bound_host
            print(f"telemetry ingest listening on {addresses}", flush=True)
            print(f"  URL:                 https://{authority}:{bound_port}/ingest/DEVICE")
            print(f"  totals:              https://{authority}:{bound_port}/totals")
            if httpd is not None:
                metrics_url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
                print(f"  metrics:             {metrics_url}")
            print(f"  certificate SHA-256: {app.server.certificate_hash}", flush=True)
            async for _ in signals:
                break
            tg.cancel_scope.cancel()
    if httpd is not None:
        httpd.shutdown()
        httpd.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="WebTransport telemetry ingest")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4433)
    parser.add_argument("--certfile", help="PEM certificate (default: a development one)")
    parser.add_argument("--keyfile", help="PEM private key")
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (needs prometheus_client)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = ServerConfig(
        bind_host=args.host, bind_port=args.port, certfile=args.certfile, keyfile=args.keyfile
    )
    app = create_app(config=config)
    anyio.run(serve_until_signal, app, args.host, args.port, args.metrics_port)


if __name__ == "__main__":
    main()

"""A telemetry ingest server: devices push records, the server keeps totals per device.

A device connects to ``/ingest/<device>`` or to ``/ingest`` with an ``x-device-id``
header (without either the request is refused with 400, before it is accepted). It then
pushes records in any mix of:

- **unidirectional streams** (reliable: every record is counted exactly once), either
  JSON lines — ``{"metric": "temp", "value": 21.5}`` per line, UTF-8, ``\\n``-ended — or,
  when the stream starts with :data:`STREAM_MAGIC`, packed :data:`RECORD` structs
  (``<HQd``: metric id, timestamp in microseconds, value);
- **datagrams** (unreliable, for high-rate samples that may be lost): a ``<H`` record
  count followed by that many :data:`RECORD` structs.

Malformed records are counted as ``rejected`` and skipped; a malformed stream does not
end the session. Anyone may read the totals on ``/totals``: open a bidirectional stream,
write an optional device id (or nothing) and end it; the answer is JSON,
``{device: {"stream_records", "datagram_records", "rejected", "value_sum", "metrics"}}``,
and the session stays open for more questions.

Run it (a development certificate is generated; its SHA-256 is printed)::

    python examples/telemetry_ingest.py --port 4433 [--metrics-port 9100]

``--metrics-port`` serves the server's Prometheus metrics (``fastwt.metrics``; needs
``prometheus_client``). Log lines about a device carry its session's id, path and peer
(``fastwt.metrics.session_logger``).

The client side is here too (:func:`push_json_lines`, :func:`push_records`,
:func:`push_datagrams`, :func:`fetch_totals`) for devices written with fastwt.
"""

from __future__ import annotations

import argparse
import functools
import json
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
    "push_json_lines",
    "push_records",
]

logger = logging.getLogger("telemetry_ingest")

RECORD = struct.Struct("<HQd")
"""Metric id, timestamp (microseconds since the epoch), value."""
COUNT = struct.Struct("<H")
STREAM_MAGIC = b"TLM1"
"""First bytes of a unidirectional stream of packed records (else: JSON lines)."""
MAX_LINE = 64 * 1024
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
    def add_json_line(self, device: DeviceTotals, line: bytes) -> None:
        try:
            record = json.loads(line)
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
        :data:`STREAM_MAGIC`, else JSON lines. Records are counted as they arrive; a
        partial record or line at a reset is counted as rejected."""
        pending = b""
        packed: bool | None = None  # undecided until the first bytes are in
        try:
            async for chunk in stream:
                pending += chunk
                if packed is None:
                    if len(pending) < len(STREAM_MAGIC) and STREAM_MAGIC.startswith(pending):
                        continue
                    packed = pending.startswith(STREAM_MAGIC)
                    if packed:
                        pending = pending[len(STREAM_MAGIC) :]
                if packed:
                    whole = len(pending) - len(pending) % RECORD.size
                    self.add_packed(device, pending[:whole], reliable=True)
                    pending = pending[whole:]
                else:
                    lines, newline, pending = pending.rpartition(b"\n")
                    for line in lines.split(b"\n") if newline else ():
                        if line.strip():
                            self.add_json_line(device, line)
                    if len(pending) > MAX_LINE:
                        await stream.stop_receiving(error_code=1)
                        device.rejected += 1
                        return
        except WebTransportError as exc:  # reset by the device, or its session ended
            logger.debug("stream ended early: %r", exc)
            if pending:
                device.rejected += 1
            return
        if pending.strip():  # the last JSON line may lack its newline; a packed tail is bad
            if packed:
                device.rejected += 1
            else:
                self.add_json_line(device, pending)

    async def answer_totals(self, session: WebTransportSession) -> None:
        """``/totals``: one JSON answer per bidirectional stream."""
        async for stream in session.incoming_bidirectional_streams():
            try:
                name = (await stream.read_all(max_size=64)).decode().strip() or None
                body = json.dumps(self.totals(name)).encode()
                await stream.write_all(data=body)
            except (WebTransportError, UnicodeDecodeError) as exc:
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


async def push_json_lines(session: WebTransportSession, records: Iterable[dict[str, Any]]) -> None:
    """Send ``records`` as JSON lines on one new unidirectional stream, then end it."""
    stream = await session.create_unidirectional_stream()
    body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
    await stream.write_all(data=body.encode())


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
    stream = await session.create_bidirectional_stream()
    await stream.write(data=(device or "").encode(), end_stream=True)
    result: dict[str, dict[str, Any]] = json.loads(await stream.read_all())
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

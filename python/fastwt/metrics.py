"""Observability from Python: server and session statistics, Prometheus metrics, and
log lines that say which session they are about.

- :class:`SessionStats` — one session's counters (``session.stats()``, typed).
- :class:`ServerStats` — totals over a server's sessions, plus sessions open, accepted
  and refused (by HTTP status). ``ServerStats.attach(app_or_server)`` hooks into the
  server so that every session request is seen, whoever answers it (the app's
  middleware, its router's 404, or your own code).
- :func:`enable_prometheus` — the same numbers as Prometheus metrics through
  ``prometheus_client`` (an optional dependency: ``pip install 'fastwt[prometheus]'``).
  Values are read when the registry is scraped; nothing runs in the background.
- :func:`enable_opentelemetry` — the same numbers as OpenTelemetry metrics (observable
  instruments read at each collection; ``pip install 'fastwt[otel]'``).
- :func:`session_logger` — a ``logging.LoggerAdapter`` whose records carry the session's
  id, path and peer, as extra fields and as a message prefix.

How the hook works: ``attach`` replaces, on that one server object, its ``accept``
method (every session request, including those ``incoming_sessions()`` and
``ServerApp`` read, comes from it) with a wrapper that wraps the request's own
``accept``, ``reject`` and ``close``. No class is patched and no middleware is involved,
so it sees refusals made before, by or after any middleware, and attaching twice
returns the same :class:`ServerStats`. Attach before clients connect: requests already
handed out are not seen.

Byte and packet counts are those of the session's QUIC connection (one connection per
session), so they include QUIC and HTTP/3 overhead.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector, CollectorRegistry

    from .framework.app import ServerApp
    from .server import WebTransportServer
    from .session import WebTransportSession

__all__ = [
    "COUNTER_KEYS",
    "OpenTelemetryMetrics",
    "PrometheusCollector",
    "ServerStats",
    "ServerStatsSnapshot",
    "SessionLoggerAdapter",
    "SessionStats",
    "enable_opentelemetry",
    "enable_prometheus",
    "session_logger",
]

COUNTER_KEYS = (
    "datagrams_sent",
    "datagrams_received",
    "datagrams_dropped",
    "bytes_sent",
    "bytes_received",
    "lost_packets",
)
"""The keys of ``session.stats()`` that only grow (``rtt`` is the other key)."""


class _StatsSource(Protocol):
    def stats(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class SessionStats:
    """One session's counters, or a sum of several sessions' (then ``rtt`` is None).

    ``datagrams_dropped`` counts received datagrams discarded because the application
    did not read them fast enough (the queue held ``datagram_queue_bytes``). Awaited
    sends wait for room rather than drop; ``wait=False`` sends that quinn dropped are
    ``datagrams_sent`` minus ``session.stats()["datagram_frames_sent"]``.
    """

    datagrams_sent: int = 0
    datagrams_received: int = 0
    datagrams_dropped: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    lost_packets: int = 0
    rtt: float | None = None
    """Smoothed round-trip time in seconds; None when not known."""

    @classmethod
    def of(cls, session: _StatsSource) -> SessionStats:
        """Read ``session.stats()`` now (works on a closed session too: final values)."""
        return cls.from_mapping(session.stats())

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SessionStats:
        """From a ``session.stats()`` dict; missing keys count as 0, unknown ones are
        ignored (so a newer core with more keys still works)."""
        rtt = values.get("rtt")
        return cls(
            **{key: int(values.get(key, 0) or 0) for key in COUNTER_KEYS},
            rtt=float(rtt) if rtt else None,
        )

    def __add__(self, other: SessionStats) -> SessionStats:
        """Counter-wise sum; the sum has no ``rtt``."""
        if not isinstance(other, SessionStats):
            return NotImplemented
        return SessionStats(
            **{key: getattr(self, key) + getattr(other, key) for key in COUNTER_KEYS}
        )

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class ServerStatsSnapshot:
    """A :class:`ServerStats` reading. Counters cover every session seen since
    ``attach`` (open and closed); ``rtt_*`` cover the sessions open now."""

    sessions_open: int
    """Sessions the server holds now (``server.session_count`` when a server is known;
    else the tracked sessions not closed yet)."""
    sessions_accepted: int
    sessions_refused: Mapping[int, int]
    """HTTP status -> how many requests were refused with it."""
    totals: SessionStats
    rtt_mean: float | None
    rtt_max: float | None

    @property
    def sessions_refused_total(self) -> int:
        return sum(self.sessions_refused.values())

    def as_dict(self) -> dict[str, Any]:
        """Flat and JSON-ready, e.g. for a status endpoint."""
        return {
            "sessions_open": self.sessions_open,
            "sessions_accepted": self.sessions_accepted,
            "sessions_refused": {str(k): v for k, v in sorted(self.sessions_refused.items())},
            **{key: getattr(self.totals, key) for key in COUNTER_KEYS},
            "rtt_mean": self.rtt_mean,
            "rtt_max": self.rtt_max,
        }


@dataclass(eq=False)
class _Tracked:
    session: _StatsSource
    last: SessionStats = field(default_factory=SessionStats)


_attached: weakref.WeakKeyDictionary[Any, ServerStats] = weakref.WeakKeyDictionary()


class ServerStats:
    """Totals over a server's sessions, kept monotonic for counters.

    Usually made with :meth:`attach`. Without it, call :meth:`track` for each accepted
    session and :meth:`record_refused` for refusals yourself (e.g. for client sessions).
    :meth:`snapshot` may run in any thread (``prometheus_client.start_http_server``
    scrapes from its own): a lock keeps each closed session counted exactly once.
    """

    def __init__(self, server: WebTransportServer | None = None) -> None:
        self._server = server
        self._tracked: dict[int, _Tracked] = {}
        self._closed_totals = SessionStats()
        self._accepted = 0
        self._refused: Counter[int] = Counter()
        self._sweep_at = 64
        self._lock = threading.Lock()

    @classmethod
    def attach(cls, target: ServerApp | WebTransportServer) -> ServerStats:
        """Statistics for every session request of ``target`` (a ``ServerApp`` or a
        ``WebTransportServer``) from now on. Idempotent: the same object each time."""
        server = _server_of(target)
        existing = _attached.get(server)
        if existing is not None:
            return existing
        stats = cls(server)
        server.add_observer(stats)
        _attached[server] = stats
        return stats

    # --- recording ---------------------------------------------------------------
    def track(self, session: _StatsSource) -> None:
        """Count ``session`` as accepted and include its counters from now on (its
        final values are kept after it closes)."""
        with self._lock:
            self._accepted += 1
            self._tracked[id(session)] = _Tracked(session)
            if len(self._tracked) >= self._sweep_at:
                self._sweep()
                self._sweep_at = max(64, 2 * len(self._tracked))

    def record_refused(self, status_code: int) -> None:
        """Count one request refused with ``status_code``."""
        with self._lock:
            self._refused[int(status_code)] += 1

    # --- the server's observer hooks (fastwt.SessionObserver) ----------------------
    def session_requested(self, session: WebTransportSession) -> None:
        """Requests are counted when answered (see :meth:`session_answered`)."""

    def session_answered(self, session: WebTransportSession, status: int) -> None:
        """An accepted session is tracked; any other answer counts as a refusal."""
        if status == 200:
            self.track(session)
        else:
            self.record_refused(status)

    # --- reading -----------------------------------------------------------------
    def _read(self, tracked: _Tracked) -> tuple[SessionStats, bool]:
        """Current stats (the last good reading if the core cannot give them) and
        whether the session is closed."""
        session = tracked.session
        try:
            tracked.last = SessionStats.of(session)
        except Exception:  # a vanished handle must not break monitoring
            return tracked.last, True
        return tracked.last, bool(getattr(session, "is_closed", False))

    def _sweep(self) -> None:
        """Fold closed sessions' final counters into the totals and forget them (with
        the lock held)."""
        for key, tracked in list(self._tracked.items()):
            stats, closed = self._read(tracked)
            if closed:
                self._closed_totals += stats
                del self._tracked[key]

    def snapshot(self) -> ServerStatsSnapshot:
        """Read every tracked session now (cost: one call into Rust per open session)."""
        rtts: list[float] = []
        open_count = 0
        with self._lock:
            totals = self._closed_totals
            for key, tracked in list(self._tracked.items()):
                stats, closed = self._read(tracked)
                if closed:
                    self._closed_totals += stats
                    del self._tracked[key]
                else:
                    open_count += 1
                    if stats.rtt is not None:
                        rtts.append(stats.rtt)
                totals += stats
            accepted, refused = self._accepted, dict(self._refused)
        if self._server is not None:
            open_count = self._server.session_count
        return ServerStatsSnapshot(
            sessions_open=open_count,
            sessions_accepted=accepted,
            sessions_refused=refused,
            totals=totals,
            rtt_mean=sum(rtts) / len(rtts) if rtts else None,
            rtt_max=max(rtts) if rtts else None,
        )


def _server_of(target: ServerApp | WebTransportServer) -> WebTransportServer:
    from .framework.app import ServerApp

    if isinstance(target, ServerApp):
        from .framework.app import webtransport_server_of

        return webtransport_server_of(target, needs="fastwt.metrics")
    return target


# --------------------------------------------------------------------------- Prometheus

_COUNTER_HELP = {
    "datagrams_sent": "Datagrams sent on WebTransport sessions.",
    "datagrams_received": "Datagrams received on WebTransport sessions.",
    "datagrams_dropped": "Datagrams dropped (receive queue full).",
    "bytes_sent": "Bytes sent on the sessions' QUIC connections.",
    "bytes_received": "Bytes received on the sessions' QUIC connections.",
    "lost_packets": "QUIC packets declared lost.",
}


class PrometheusCollector:
    """A ``prometheus_client`` collector over a :class:`ServerStats`; made by
    :func:`enable_prometheus`. Metric names start with ``namespace`` (``fastwt``):

    - ``fastwt_sessions_open`` (gauge), ``fastwt_sessions_accepted_total``,
      ``fastwt_sessions_refused_total{status="404"}``;
    - ``fastwt_datagrams_{sent,received,dropped}_total``,
      ``fastwt_bytes_{sent,received}_total``, ``fastwt_lost_packets_total``;
    - ``fastwt_rtt_mean_seconds`` and ``fastwt_rtt_max_seconds`` (gauges over the open
      sessions; absent while none has an RTT).
    """

    def __init__(
        self, stats: ServerStats, *, namespace: str = "fastwt", registry: CollectorRegistry
    ) -> None:
        self.stats = stats
        self.namespace = namespace
        self.registry = registry

    def describe(self) -> list[Metric]:
        """The metric families without samples (lets the registry refuse duplicates)."""
        return list(self._families(None))

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.stats.snapshot())

    def unregister(self) -> None:
        """Remove these metrics from the registry (the statistics keep counting)."""
        self.registry.unregister(cast("Collector", self))

    def _families(self, snap: ServerStatsSnapshot | None) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ns = self.namespace
        is_open = GaugeMetricFamily(f"{ns}_sessions_open", "WebTransport sessions open now.")
        accepted = CounterMetricFamily(
            f"{ns}_sessions_accepted", "WebTransport session requests accepted."
        )
        refused = CounterMetricFamily(
            f"{ns}_sessions_refused",
            "WebTransport session requests refused, by HTTP status.",
            labels=["status"],
        )
        counters = {
            key: CounterMetricFamily(f"{ns}_{key}", text) for key, text in _COUNTER_HELP.items()
        }
        rtt_mean = GaugeMetricFamily(
            f"{ns}_rtt_mean_seconds", "Mean smoothed RTT over the open sessions."
        )
        rtt_max = GaugeMetricFamily(
            f"{ns}_rtt_max_seconds", "Largest smoothed RTT among the open sessions."
        )
        if snap is not None:
            is_open.add_metric([], snap.sessions_open)
            accepted.add_metric([], snap.sessions_accepted)
            for status, count in sorted(snap.sessions_refused.items()):
                refused.add_metric([str(status)], count)
            for key, family in counters.items():
                family.add_metric([], getattr(snap.totals, key))
            if snap.rtt_mean is not None:
                rtt_mean.add_metric([], snap.rtt_mean)
            if snap.rtt_max is not None:
                rtt_max.add_metric([], snap.rtt_max)
        yield from (is_open, accepted, refused, *counters.values(), rtt_mean, rtt_max)


def enable_prometheus(
    target: ServerApp | WebTransportServer,
    registry: CollectorRegistry | None = None,
    *,
    namespace: str = "fastwt",
) -> PrometheusCollector:
    """Export ``target``'s statistics (see :class:`PrometheusCollector` for the names)
    in ``registry`` (default: ``prometheus_client.REGISTRY``, what
    ``prometheus_client.start_http_server`` serves).

    Call it before serving, so every session request is counted. Two servers in one
    registry need different ``namespace`` values (the registry refuses duplicate
    names with ``ValueError``). Raises ``ImportError`` with the install command when
    ``prometheus_client`` is missing.
    """
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(
            "fastwt.metrics.enable_prometheus needs prometheus_client: "
            "pip install 'fastwt[prometheus]' (or: pip install prometheus_client)"
        ) from exc
    registry = registry if registry is not None else prometheus_client.REGISTRY
    collector = PrometheusCollector(
        ServerStats.attach(target), namespace=namespace, registry=registry
    )
    registry.register(cast("Collector", collector))
    return collector


# --------------------------------------------------------------------------- OpenTelemetry

# (instrument name suffix, ServerStats counter, unit, description)
_OTEL_COUNTERS = (
    ("datagrams.sent", "datagrams_sent", "{datagram}", _COUNTER_HELP["datagrams_sent"]),
    ("datagrams.received", "datagrams_received", "{datagram}", _COUNTER_HELP["datagrams_received"]),
    ("datagrams.dropped", "datagrams_dropped", "{datagram}", _COUNTER_HELP["datagrams_dropped"]),
    ("bytes.sent", "bytes_sent", "By", _COUNTER_HELP["bytes_sent"]),
    ("bytes.received", "bytes_received", "By", _COUNTER_HELP["bytes_received"]),
    ("packets.lost", "lost_packets", "{packet}", _COUNTER_HELP["lost_packets"]),
)


class OpenTelemetryMetrics:
    """The observable instruments :func:`enable_opentelemetry` registered, over one
    :class:`ServerStats`. Instrument names (with the default ``namespace``):

    - ``fastwt.sessions.open`` (gauge), ``fastwt.sessions.accepted`` (counter),
      ``fastwt.sessions.refused`` (counter, attribute ``http.response.status_code``);
    - ``fastwt.datagrams.{sent,received,dropped}``, ``fastwt.bytes.{sent,received}``
      (unit ``By``), ``fastwt.packets.lost`` (counters);
    - ``fastwt.rtt.mean`` and ``fastwt.rtt.max`` (gauges in seconds over the open
      sessions; no point while none has an RTT).
    """

    def __init__(self, stats: ServerStats, meter_provider: MeterProvider, namespace: str) -> None:
        self.stats = stats
        self._cached: ServerStatsSnapshot | None = None
        self._served: set[str] = set()
        self._lock = threading.Lock()
        meter = meter_provider.get_meter("fastwt.metrics")
        ns = namespace
        self.instruments: list[Any] = [
            meter.create_observable_gauge(
                f"{ns}.sessions.open",
                [self._sessions_open],
                unit="{session}",
                description="WebTransport sessions open now.",
            ),
            meter.create_observable_counter(
                f"{ns}.sessions.accepted",
                [self._sessions_accepted],
                unit="{session}",
                description="WebTransport session requests accepted.",
            ),
            meter.create_observable_counter(
                f"{ns}.sessions.refused",
                [self._sessions_refused],
                unit="{session}",
                description="WebTransport session requests refused, by HTTP status.",
            ),
        ]
        for suffix, key, unit, text in _OTEL_COUNTERS:
            self.instruments.append(
                meter.create_observable_counter(
                    f"{ns}.{suffix}", [self._counter(key)], unit=unit, description=text
                )
            )
        for suffix, text in (
            ("rtt.mean", "Mean smoothed RTT over the open sessions."),
            ("rtt.max", "Largest smoothed RTT among the open sessions."),
        ):
            attribute = "rtt_" + suffix.rsplit(".", 1)[1]
            self.instruments.append(
                meter.create_observable_gauge(
                    f"{ns}.{suffix}", [self._rtt(attribute)], unit="s", description=text
                )
            )

    def snapshot(self, instrument: str) -> ServerStatsSnapshot:
        """The statistics for ``instrument``'s callback. A collection calls each
        callback once, so one reading serves every instrument until one of them asks
        again (the next collection): the instruments of a collection agree with each
        other, at the cost of one reading instead of one per instrument."""
        with self._lock:
            if self._cached is None or instrument in self._served:
                self._cached = self.stats.snapshot()
                self._served.clear()
            self._served.add(instrument)
            return self._cached

    def _sessions_open(self, options: CallbackOptions) -> list[Observation]:
        from opentelemetry.metrics import Observation

        return [Observation(self.snapshot("sessions.open").sessions_open)]

    def _sessions_accepted(self, options: CallbackOptions) -> list[Observation]:
        from opentelemetry.metrics import Observation

        return [Observation(self.snapshot("sessions.accepted").sessions_accepted)]

    def _sessions_refused(self, options: CallbackOptions) -> list[Observation]:
        from opentelemetry.metrics import Observation

        refused = self.snapshot("sessions.refused").sessions_refused
        return [
            Observation(count, {"http.response.status_code": status})
            for status, count in sorted(refused.items())
        ]

    def _counter(self, key: str) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(options: CallbackOptions) -> list[Observation]:
            from opentelemetry.metrics import Observation

            return [Observation(getattr(self.snapshot(key).totals, key))]

        return observe

    def _rtt(self, attribute: str) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(options: CallbackOptions) -> list[Observation]:
            from opentelemetry.metrics import Observation

            value = getattr(self.snapshot(attribute), attribute)
            return [] if value is None else [Observation(value)]

        return observe


def enable_opentelemetry(
    target: ServerApp | WebTransportServer,
    meter_provider: MeterProvider | None = None,
    *,
    namespace: str = "fastwt",
) -> OpenTelemetryMetrics:
    """Export ``target``'s statistics as OpenTelemetry metrics (the same
    :class:`ServerStats` the Prometheus collector reads; see
    :class:`OpenTelemetryMetrics` for the instruments) through ``meter_provider``
    (default: the global one, ``opentelemetry.metrics.get_meter_provider()``).

    The instruments are observable: values are read when the SDK's reader collects
    (e.g. a ``PeriodicExportingMetricReader`` every minute), nothing runs otherwise.
    Call it before serving, so every session request is counted. Raises
    ``ImportError`` with the install command when ``opentelemetry-api`` is missing.
    """
    try:
        from opentelemetry import metrics as otel_metrics
    except ImportError as exc:
        raise ImportError(
            "fastwt.metrics.enable_opentelemetry needs OpenTelemetry: "
            "pip install 'fastwt[otel]' (or: pip install opentelemetry-api opentelemetry-sdk)"
        ) from exc
    provider = meter_provider if meter_provider is not None else otel_metrics.get_meter_provider()
    return OpenTelemetryMetrics(ServerStats.attach(target), provider, namespace)


# --------------------------------------------------------------------------- logging


class _SessionLike(Protocol):
    @property
    def session_id(self) -> int: ...

    @property
    def path(self) -> str: ...

    @property
    def remote_address(self) -> tuple[str, int] | None: ...


class SessionLoggerAdapter(logging.LoggerAdapter[logging.Logger]):
    """Prefixes messages with ``[session ID PATH from PEER]`` and adds the extra record
    fields ``session_id``, ``path`` and ``peer`` (a formatter can use
    ``%(session_id)s``; a JSON formatter gets them as keys). A call's own ``extra``
    is kept too (the session fields win on a clash)."""

    prefix: str

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**kwargs.get("extra", {}), **(self.extra or {})}
        return f"[{self.prefix}] {msg}", kwargs


def session_logger(
    session: _SessionLike, logger: logging.Logger | str | None = None
) -> SessionLoggerAdapter:
    """A logger for one session: records go to ``logger`` (default: the ``fastwt``
    logger, where fastwt's own records go; a name or a Logger picks another) and carry
    the session's id, path (with its query) and peer address."""
    if logger is None or isinstance(logger, str):
        logger = logging.getLogger(logger or "fastwt")
    address = session.remote_address
    if address is None:
        peer = "?"
    else:
        host, port = address
        peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    adapter = SessionLoggerAdapter(
        logger, {"session_id": session.session_id, "path": session.path, "peer": peer}
    )
    adapter.prefix = f"session {session.session_id} {session.path} from {peer}"
    return adapter

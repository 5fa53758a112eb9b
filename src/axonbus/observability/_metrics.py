"""Prometheus metrics of a bus: one collector shared by the gateway's ``/metrics`` and a
standalone exporter for processes without the gateway.

>>> metrics = MetricsMiddleware()                  # optional: publish counts, handler latency
>>> async with Bus(url, middleware=[metrics]) as bus:
...     exporter = start_exporter(bus, port=9464)  # GET http://127.0.0.1:9464/metrics

What is exported (labels are bounded: subscription names and patterns, never raw topics):

- from ``bus.stats()``, read at scrape time, per ``{subscription, pattern}``:
  ``axonbus_subscription_{delivered,failed,dropped,retried,timed_out,dead_lettered,filtered}_total``
  counters and ``axonbus_subscription_{queued,in_flight,maxsize}`` gauges (``queued`` is the
  mailbox depth). Subscriptions sharing a name and pattern (members of one group) are summed
  into one series, their shared mailbox counted once.
- ``axonbus_bus_started``, ``axonbus_subscriptions``; on a broker transport
  ``axonbus_transport_connected`` and ``axonbus_transport_lost_publishes_total``.
- with a :class:`MetricsMiddleware` on the bus: ``axonbus_published_total{pattern}``, the
  events this process published (``publish``, ``publish_nowait``, ``request``) counted once for
  each distinct pattern of this bus's subscriptions that the topic matches, or under
  ``pattern="(none)"`` when it matches none; and the histogram
  ``axonbus_handler_duration_seconds{subscription, pattern}`` of every handler call (each
  attempt, failed ones included).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .._engine.context import Context
from .._engine.middleware import HandleNext, Middleware
from .._events import Envelope
from .._topics import match
from ..transports.base import BrokerTransport

if TYPE_CHECKING:
    import threading
    from wsgiref.simple_server import WSGIServer

    from .._engine.bus import Bus

__all__ = ["BusCollector", "MetricsExporter", "MetricsMiddleware", "start_exporter"]

#: label of publishes whose topic matches no subscription of the bus
UNMATCHED = "(none)"
#: handler latency buckets, in seconds: 50 us to 60 s
DEFAULT_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
_CACHE_LIMIT = 4096

# (metric suffix, SubscriptionStats field, help, per mailbox: counted once for shared mailboxes)
_COUNTERS = (
    ("delivered", "delivered", "Events handled successfully", False),
    ("failed", "failed", "Deliveries whose handler raised or timed out", False),
    ("dropped", "dropped", "Events dropped by the overflow policy of a full mailbox", True),
    ("retried", "retried", "Deliveries retried", False),
    ("timed_out", "timed_out", "Deliveries over the subscription's timeout", False),
    ("dead_lettered", "dead_lettered", "Events sent to $bus.dead_letter", False),
    ("filtered", "filtered", "Events skipped by the subscription's filter or type", False),
)
_GAUGES = (
    ("queued", "queued", "Events waiting in the mailbox (queue depth)", True),
    ("in_flight", "in_flight", "Events being handled now", False),
    ("maxsize", "maxsize", "Mailbox capacity", True),
)


class _Histogram:
    """Bucket counts and a sum: observing is a bisect and two additions (no lock: the bus's
    handlers all run on its loop)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        counts = list(self.counts)  # a copy: a scrape may run on another thread
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class MetricsMiddleware(Middleware):
    """Counts publishes per subscription pattern and times every handler call.

    Install it on one bus (``Bus(middleware=[MetricsMiddleware()])``); :class:`BusCollector`
    finds it there and exports what it counted. ``buckets``: the latency histogram's upper
    bounds in seconds.
    """

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        bounds = tuple(sorted(float(b) for b in buckets))
        if not bounds or bounds[0] <= 0:
            raise ValueError("buckets must be positive upper bounds in seconds")
        self.buckets = bounds
        self.bus: Bus | None = None
        self.published: dict[str, int] = {}
        self.latency: dict[tuple[str, str], _Histogram] = {}
        self._version = -1
        self._patterns: tuple[str, ...] = ()
        self._by_name: dict[str, tuple[str, ...]] = {}
        self._labels: dict[str, tuple[str, ...]] = {}  # topic -> the patterns it counts under

    def __repr__(self) -> str:
        return f"<MetricsMiddleware {getattr(self.bus, 'name', None)!r}>"

    def attach(self, bus: Bus) -> None:
        if self.bus is not None and self.bus is not bus:
            raise ValueError("a MetricsMiddleware counts for one bus; create one per bus")
        self.bus = bus

    def _refresh(self) -> None:
        """Follow the bus's subscriptions (checked by version: one int compare per call)."""
        assert self.bus is not None
        bus = self.bus
        version = bus.subscriptions_version
        if version == self._version:
            return
        self._version = version
        by_name: dict[str, list[str]] = {}
        for sub in bus.subscriptions():
            names = by_name.setdefault(sub.name, [])
            if sub.pattern not in names:
                names.append(sub.pattern)
        self._by_name = {k: tuple(v) for k, v in by_name.items()}
        self._patterns = tuple(dict.fromkeys(p for v in by_name.values() for p in v))
        self._labels = {}

    def on_publish(self, envelope: Envelope) -> Envelope | None:
        if self.bus is None:
            return envelope
        self._refresh()
        topic = envelope.topic
        labels = self._labels.get(topic)
        if labels is None:
            if len(self._labels) >= _CACHE_LIMIT:
                self._labels = {}
            matched = tuple(p for p in self._patterns if match(p, topic))
            labels = self._labels[topic] = matched or (UNMATCHED,)
        published = self.published
        for label in labels:
            published[label] = published.get(label, 0) + 1
        return envelope

    async def on_handle(self, event: Any, ctx: Context, call_next: HandleNext) -> Any:
        started = time.perf_counter()
        try:
            return await call_next(event, ctx)
        finally:
            elapsed = time.perf_counter() - started
            key = (ctx.subscription, self._pattern_of(ctx.subscription, ctx.topic))
            hist = self.latency.get(key)
            if hist is None:
                hist = self.latency[key] = _Histogram(self.buckets)
            hist.observe(elapsed)

    def _pattern_of(self, name: str, topic: str) -> str:
        if self.bus is None:
            return UNMATCHED
        self._refresh()
        patterns = self._by_name.get(name, ())
        if len(patterns) == 1:
            return patterns[0]
        # several subscriptions share the name: the one whose pattern matches the topic
        return next(
            (p for p in patterns if match(p, topic)), patterns[0] if patterns else UNMATCHED
        )


class BusCollector(Collector):
    """A Prometheus collector reading ``bus.stats()`` (and the bus's :class:`MetricsMiddleware`,
    if it has one) at scrape time; see the module docstring for the metrics.

    ``const_labels`` are added to every sample, e.g. ``{"bus": bus.name}`` when several buses
    share one registry.

    >>> registry = CollectorRegistry()
    >>> registry.register(BusCollector(bus))
    """

    def __init__(self, bus: Bus, *, const_labels: Mapping[str, str] | None = None) -> None:
        self.bus = bus
        self.const_labels = dict(const_labels or {})
        self.metrics = next(
            (mw for mw in bus.middleware if isinstance(mw, MetricsMiddleware)), None
        )

    def __repr__(self) -> str:
        return f"<BusCollector {self.bus.name!r}>"

    def collect(self) -> Iterator[Metric]:
        const_keys = list(self.const_labels)
        const_values = list(self.const_labels.values())
        labels = [*const_keys, "subscription", "pattern"]
        rows = _subscription_rows(self.bus)
        for suffix, attr, doc, _ in _COUNTERS:
            family = CounterMetricFamily(f"axonbus_subscription_{suffix}", doc, labels=labels)
            for (name, pattern), values in rows.items():
                family.add_metric([*const_values, name, pattern], float(values[attr]))
            yield family
        for suffix, attr, doc, _ in _GAUGES:
            gauge = GaugeMetricFamily(f"axonbus_subscription_{suffix}", doc, labels=labels)
            for (name, pattern), values in rows.items():
                gauge.add_metric([*const_values, name, pattern], float(values[attr]))
            yield gauge
        started = GaugeMetricFamily(
            "axonbus_bus_started", "1 while the bus is started", labels=const_keys
        )
        started.add_metric(const_values, float(self.bus.state == "started"))
        yield started
        count = GaugeMetricFamily(
            "axonbus_subscriptions", "Subscriptions on the bus", labels=const_keys
        )
        count.add_metric(const_values, float(len(self.bus.subscriptions())))
        yield count
        remote = self.bus.transport
        if isinstance(remote, BrokerTransport):
            connected = GaugeMetricFamily(
                "axonbus_transport_connected", "1 while the broker is reachable", labels=const_keys
            )
            connected.add_metric(const_values, float(remote.connected))
            yield connected
            lost = CounterMetricFamily(
                "axonbus_transport_lost_publishes",
                "Publishes given up on while the broker was unreachable (on_unavailable='log')",
                labels=const_keys,
            )
            lost.add_metric(const_values, float(remote.lost_publishes))
            yield lost
        if self.metrics is not None:
            yield from self._middleware_metrics(self.metrics, const_keys, const_values)

    @staticmethod
    def _middleware_metrics(
        metrics: MetricsMiddleware, const_keys: list[str], const_values: list[str]
    ) -> Iterator[Metric]:
        published = CounterMetricFamily(
            "axonbus_published",
            "Events published by this process, per matching subscription pattern",
            labels=[*const_keys, "pattern"],
        )
        for pattern, n in sorted(metrics.published.copy().items()):
            published.add_metric([*const_values, pattern], float(n))
        yield published
        latency = HistogramMetricFamily(
            "axonbus_handler_duration_seconds",
            "Handler call duration, per subscription",
            labels=[*const_keys, "subscription", "pattern"],
        )
        for (name, pattern), hist in sorted(metrics.latency.copy().items()):
            buckets = hist.buckets()
            latency.add_metric([*const_values, name, pattern], buckets, hist.total)
        yield latency


def _subscription_rows(bus: Bus) -> dict[tuple[str, str], dict[str, int]]:
    """Per (name, pattern): each stats field summed over the subscriptions, a mailbox-level
    field (queue depth, capacity, drops) once per distinct mailbox."""
    rows: dict[tuple[str, str], dict[str, int]] = {}
    seen: dict[tuple[str, str], set[int]] = {}
    per_mailbox = {attr for _, attr, _, once in (*_COUNTERS, *_GAUGES) if once}
    for sub in bus.subscriptions():
        stats = sub.stats()
        key = (stats.name, stats.pattern)
        row = rows.get(key)
        if row is None:
            row = rows[key] = dict.fromkeys((a for _, a, _, _ in (*_COUNTERS, *_GAUGES)), 0)
            seen[key] = set()
        first_of_mailbox = id(sub.mailbox) not in seen[key]
        seen[key].add(id(sub.mailbox))
        for attr in row:
            if attr in per_mailbox and not first_of_mailbox:
                continue
            row[attr] += getattr(stats, attr)
    return rows


@dataclass
class MetricsExporter:
    """A running standalone exporter (:func:`start_exporter`); ``close()`` stops it."""

    registry: CollectorRegistry
    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_exporter(
    bus: Bus,
    port: int = 9464,
    addr: str = "127.0.0.1",
    *,
    registry: CollectorRegistry | None = None,
    const_labels: Mapping[str, str] | None = None,
) -> MetricsExporter:
    """Serve the bus's metrics on ``http://{addr}:{port}/metrics`` from a daemon thread
    (prometheus-client's server), for a process without the gateway.

    ``port=0`` picks a free port (see ``.port``). ``addr`` is loopback by default: pass
    ``"0.0.0.0"`` for a Prometheus on another host. ``registry``: register on an existing
    registry instead (e.g. ``prometheus_client.REGISTRY``, with the process metrics) and serve
    that.

    >>> exporter = start_exporter(bus, port=9464)
    >>> exporter.close()
    """
    if registry is None:
        registry = CollectorRegistry(auto_describe=True)
    registry.register(BusCollector(bus, const_labels=const_labels))
    server, thread = start_http_server(port, addr, registry)
    host, bound = server.server_address[:2]
    return MetricsExporter(registry, str(host), int(bound), server, thread)

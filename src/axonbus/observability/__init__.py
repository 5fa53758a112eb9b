"""Observability: OpenTelemetry tracing, Prometheus metrics and structured logging.

Tracing needs the ``otel`` extra (opentelemetry-api and -sdk), metrics the ``gateway`` extra
(prometheus-client); logging needs nothing. Each name is imported on first use, so
``from axonbus.observability import JsonFormatter`` works without either extra.

>>> bus = Bus(url, middleware=[OpenTelemetryMiddleware(), MetricsMiddleware()])
>>> exporter = start_exporter(bus, port=9464)        # without the gateway
>>> handler.setFormatter(JsonFormatter())            # event_id, topic, subscription, ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._logging import (
        BUS_FIELDS,
        BusLogFilter,
        JsonFormatter,
        add_bus_fields,
        handler_fields,
        redact,
    )
    from ._metrics import BusCollector, MetricsExporter, MetricsMiddleware, start_exporter
    from ._tracing import OpenTelemetryMiddleware, tracing

__all__ = [
    "BUS_FIELDS",
    "BusCollector",
    "BusLogFilter",
    "JsonFormatter",
    "MetricsExporter",
    "MetricsMiddleware",
    "OpenTelemetryMiddleware",
    "add_bus_fields",
    "handler_fields",
    "redact",
    "start_exporter",
    "tracing",
]

_WHERE = {
    "BUS_FIELDS": "_logging",
    "BusLogFilter": "_logging",
    "JsonFormatter": "_logging",
    "add_bus_fields": "_logging",
    "handler_fields": "_logging",
    "redact": "_logging",
    "BusCollector": "_metrics",
    "MetricsExporter": "_metrics",
    "MetricsMiddleware": "_metrics",
    "start_exporter": "_metrics",
    "OpenTelemetryMiddleware": "_tracing",
    "tracing": "_tracing",
}
_EXTRA = {"_metrics": "gateway", "_tracing": "otel"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    except ImportError as exc:
        if module not in _EXTRA:
            raise
        raise ImportError(
            f"axonbus.observability.{name} needs the {_EXTRA[module]!r} extra: "
            f"pip install 'axonbus[{_EXTRA[module]}]' ({exc})"
        ) from exc
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

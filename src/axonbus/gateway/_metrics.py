"""Prometheus metrics of one gateway app: the bus's subscriptions and the gateway's own traffic.

The bus's metrics come from :class:`axonbus.observability.BusCollector`, the collector the
standalone exporter uses too. Each app has its own :class:`~prometheus_client.CollectorRegistry`,
so several apps (tests, or two gateways in one process) never share or clash over metric names.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..observability._metrics import BusCollector
from ._logs import redact_query

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from .._engine.bus import Bus

__all__ = ["AccessLog", "GatewayMetrics"]

access_logger = logging.getLogger("axonbus.gateway.access")


class GatewayMetrics:
    """The registry and the gateway's own instruments."""

    def __init__(self, bus: Bus) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(BusCollector(bus))
        r = self.registry
        self.http_requests = Counter(
            "axonbus_gateway_http_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "axonbus_gateway_http_request_duration_seconds",
            "Time to the response's first byte, by route template",
            ["route"],
            registry=r,
        )
        self.published = Counter(
            "axonbus_gateway_published", "Events published through the gateway", registry=r
        )
        self.requests = Counter(
            "axonbus_gateway_requests",
            "bus.request calls through the gateway, by outcome",
            ["outcome"],
            registry=r,
        )
        self.streamed = Counter(
            "axonbus_gateway_streamed", "Events sent to SSE and WebSocket clients", registry=r
        )
        self.stream_dropped = Counter(
            "axonbus_gateway_stream_dropped",
            "Events dropped for slow SSE / WebSocket clients (drop_oldest)",
            registry=r,
        )
        self.stream_skipped = Counter(
            "axonbus_gateway_stream_skipped",
            "Events skipped for a client because they cannot be encoded as JSON",
            registry=r,
        )
        self.shed = Counter(
            "axonbus_gateway_shed",
            "Publishes and requests refused with 503 while the gateway was overloaded",
            registry=r,
        )
        self.sse_clients = Gauge("axonbus_gateway_sse_clients", "Open SSE streams", registry=r)
        self.ws_clients = Gauge(
            "axonbus_gateway_websocket_clients", "Open WebSocket connections", registry=r
        )
        self.rejected = Counter(
            "axonbus_gateway_rejected",
            "Requests refused, by reason (unauthorized, forbidden, rate_limited, too_large, "
            "auth_throttled, too_many_feeds, bad_origin, bad_host)",
            ["reason"],
            registry=r,
        )


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _redacted_query(query: bytes) -> str:
    if not query:
        return ""
    return redact_query("?" + query.decode("latin-1"))


class AccessLog:
    """ASGI middleware: counts each HTTP request by route template and status, and logs one line
    per request on ``axonbus.gateway.access`` with any ``token=`` query value redacted (uvicorn's
    own access log is turned off by :func:`serve` because it would print it)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                self.metrics.http_duration.labels(_route_of(scope)).observe(
                    time.perf_counter() - began
                )
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_of(scope)
            self.metrics.http_requests.labels(scope["method"], route, str(status)).inc()
            if access_logger.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_logger.info(
                    '%s - "%s %s%s" %d',
                    f"{client[0]}:{client[1]}" if client else "-",
                    scope["method"],
                    scope.get("path", ""),
                    _redacted_query(scope.get("query_string", b"")),
                    status,
                )

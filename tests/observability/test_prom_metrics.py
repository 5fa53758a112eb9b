"""Prometheus: BusCollector over bus.stats(), MetricsMiddleware (published per pattern, handler
latency), the standalone exporter, and the gateway's /metrics using the same collector."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from axonbus import Bus
from axonbus.gateway import create_app
from axonbus.observability import BusCollector, MetricsMiddleware, start_exporter
from tests.gateway.helpers import asgi_client


def scrape(*collectors: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a fresh registry holding ``collectors``, by (name, sorted labels)."""
    registry = CollectorRegistry()
    for c in collectors:
        registry.register(c)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


async def test_subscription_counters_and_gauges() -> None:
    async def boom(event: Any) -> None:
        raise RuntimeError("boom")

    stalled = asyncio.Event()

    async def stuck(event: Any) -> None:
        await stalled.wait()

    async with Bus() as bus:
        bus.subscribe("orders.>", boom, name="billing")
        bus.subscribe("orders.>", stuck, name="audit", maxsize=2, overflow="drop_oldest")
        for i in range(5):
            await bus.publish("orders.new", i)
        await asyncio.sleep(0.01)
        samples = scrape(BusCollector(bus))
        stalled.set()
        await bus.drain()
    billing = labels(subscription="billing", pattern="orders.>")
    audit = labels(subscription="audit", pattern="orders.>")
    assert samples["axonbus_subscription_failed_total", billing] == 5
    assert samples["axonbus_subscription_delivered_total", billing] == 0
    assert samples["axonbus_subscription_in_flight", audit] == 1
    # five publishes without a pause: two fit, three were dropped, then the worker took one
    assert samples["axonbus_subscription_queued", audit] == 1  # the mailbox depth
    assert samples["axonbus_subscription_maxsize", audit] == 2
    assert samples["axonbus_subscription_dropped_total", audit] == 3
    assert samples["axonbus_bus_started", ()] == 1
    assert samples["axonbus_subscriptions", ()] == 2
    assert not any(name.startswith("axonbus_published") for name, _ in samples)


async def test_group_members_are_one_series_with_their_mailbox_once() -> None:
    release = asyncio.Event()

    async def slow(event: Any) -> None:
        await release.wait()

    async with Bus() as bus:
        bus.subscribe("jobs.>", slow, group="workers", maxsize=100)
        bus.subscribe("jobs.>", slow, group="workers", maxsize=100)
        for i in range(10):
            await bus.publish("jobs.run", i)
        await asyncio.sleep(0.01)
        samples = scrape(BusCollector(bus, const_labels={"bus": "main"}))
        release.set()
        await bus.drain()
    workers = labels(bus="main", subscription="workers", pattern="jobs.>")
    assert samples["axonbus_subscription_in_flight", workers] == 2  # summed over members
    assert samples["axonbus_subscription_queued", workers] == 8  # one shared mailbox
    assert samples["axonbus_subscription_maxsize", workers] == 100
    assert samples["axonbus_subscriptions", labels(bus="main")] == 2


async def test_published_per_pattern_and_handler_latency() -> None:
    metrics = MetricsMiddleware(buckets=[0.001, 0.1, 10])

    async def slowish(event: Any) -> None:
        await asyncio.sleep(0.01)

    async with Bus(middleware=[metrics]) as bus:
        bus.subscribe("agent.*.token", slowish, name="ui")
        bus.subscribe("agent.>", lambda e: None, name="audit")
        bus.respond("math.add", lambda r: r["a"] + r["b"], name="adder")
        for session in ("s1", "s2", "s3"):  # raw topics never become labels
            await bus.publish(f"agent.{session}.token", "t")
        await bus.publish("agent.s1.done", None)
        await bus.publish("nobody.listens", None)
        assert await bus.request("math.add", {"a": 1, "b": 1}, timeout=2) == 2
        await bus.drain()
        samples = scrape(BusCollector(bus))
    assert samples["axonbus_published_total", labels(pattern="agent.*.token")] == 3
    assert samples["axonbus_published_total", labels(pattern="agent.>")] == 4
    assert samples["axonbus_published_total", labels(pattern="math.add")] == 1
    assert samples["axonbus_published_total", labels(pattern="(none)")] == 1
    ui = {"subscription": "ui", "pattern": "agent.*.token"}
    assert samples["axonbus_handler_duration_seconds_count", labels(**ui)] == 3
    assert samples["axonbus_handler_duration_seconds_sum", labels(**ui)] >= 0.03
    assert samples["axonbus_handler_duration_seconds_bucket", labels(**ui, le="0.001")] == 0
    assert samples["axonbus_handler_duration_seconds_bucket", labels(**ui, le="0.1")] == 3
    assert samples["axonbus_handler_duration_seconds_bucket", labels(**ui, le="+Inf")] == 3
    audit = labels(subscription="audit", pattern="agent.>")
    assert samples["axonbus_handler_duration_seconds_count", audit] == 4
    adder = labels(subscription="adder", pattern="math.add")
    assert samples["axonbus_handler_duration_seconds_count", adder] == 1
    series = {lab for name, lab in samples if name == "axonbus_handler_duration_seconds_count"}
    assert len(series) == 3


async def test_published_follows_subscriptions_as_they_change() -> None:
    metrics = MetricsMiddleware()
    async with Bus(middleware=[metrics]) as bus:
        await bus.publish("a.b", 1)
        sub = bus.subscribe("a.*", lambda e: None)
        await bus.publish("a.b", 2)
        bus.unsubscribe(sub)
        await bus.publish("a.b", 3)
        await bus.drain()
    assert metrics.published == {"(none)": 2, "a.*": 1}


def test_a_metrics_middleware_belongs_to_one_bus() -> None:
    metrics = MetricsMiddleware()
    Bus(middleware=[metrics])
    with pytest.raises(ValueError, match="one bus"):
        Bus(middleware=[metrics])
    with pytest.raises(ValueError, match="buckets"):
        MetricsMiddleware(buckets=[])


async def test_broker_transport_gauges(redis_service: str, redis_bus_name: str) -> None:
    async with Bus(redis_service, name=redis_bus_name) as bus:
        samples = scrape(BusCollector(bus))
    assert samples["axonbus_transport_connected", ()] == 1
    assert samples["axonbus_transport_lost_publishes_total", ()] == 0


async def test_the_standalone_exporter_serves_metrics() -> None:
    async with Bus(middleware=[MetricsMiddleware()]) as bus:
        bus.subscribe("a.>", lambda e: None, name="sink")
        await bus.publish("a.b", 1)
        await bus.drain()
        exporter = start_exporter(bus, port=0)
        try:
            assert exporter.port > 0
            assert exporter.url == f"http://127.0.0.1:{exporter.port}/metrics"
            text = await asyncio.to_thread(_get, exporter.url)
        finally:
            exporter.close()
    assert 'axonbus_subscription_delivered_total{pattern="a.>",subscription="sink"} 1.0' in text
    assert 'axonbus_published_total{pattern="a.>"} 1.0' in text
    assert "axonbus_handler_duration_seconds_bucket" in text


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


async def test_the_gateway_exports_the_same_collector() -> None:
    async with Bus(middleware=[MetricsMiddleware()]) as bus:
        bus.subscribe("orders.>", lambda e: None, name="audit")
        async with asgi_client(create_app(bus)) as client:
            await client.post("/v1/publish/orders.new", json=1)
            await bus.drain()
            text = (await client.get("/metrics")).text
    assert 'axonbus_subscription_delivered_total{pattern="orders.>",subscription="audit"} 1.0' in (
        text
    )
    assert 'axonbus_published_total{pattern="orders.>"} 1.0' in text
    assert 'axonbus_handler_duration_seconds_count{pattern="orders.>",subscription="audit"}' in (
        text
    )
    assert "axonbus_gateway_published_total 1.0" in text

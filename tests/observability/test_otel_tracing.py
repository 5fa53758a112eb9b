"""OpenTelemetryMiddleware on the in-process bus: spans, parents, attributes, errors, and the
"off" case (no SDK provider: no headers, no spans, handlers on the fast path)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode, format_span_id

from axonbus import Bus, Context
from axonbus.observability import OpenTelemetryMiddleware, tracing
from tests.observability.conftest import Spans


async def test_publish_and_handle_share_one_trace(spans: Spans) -> None:
    seen: list[dict[str, str]] = []

    async def on_order(event: Any, ctx: Context) -> None:
        seen.append(dict(ctx.headers))

    async with Bus(middleware=[OpenTelemetryMiddleware(spans.provider)]) as bus:
        bus.subscribe("orders.*", on_order, name="billing")
        env = await bus.publish("orders.new", {"n": 1}, correlation_id="conv-1")
        await bus.drain()

    producer = spans.one("publish orders.new")
    consumer = spans.one("process orders.new")
    assert producer.kind is SpanKind.PRODUCER
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
    assert producer.parent is None  # nothing was current: a new trace
    assert producer.attributes == {
        "messaging.system": "axonbus",
        "messaging.destination.name": "orders.new",
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
        "messaging.message.id": env.id,
        "messaging.message.conversation_id": "conv-1",
    }
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.destination.subscription.name"] == "billing"
    assert consumer.attributes["messaging.message.id"] == env.id
    assert consumer.attributes["messaging.axonbus.attempt"] == 1
    # the W3C header the handler saw names the producer span
    assert seen[0]["traceparent"].split("-")[2] == format_span_id(producer.context.span_id)


async def test_one_consumer_span_per_handler(spans: Spans) -> None:
    async with Bus(middleware=[tracing(spans.provider)]) as bus:
        bus.subscribe("a.b", lambda e: None, name="one")
        bus.subscribe("a.*", lambda e: None, name="two")
        await bus.publish("a.b", 1)
        await bus.drain()
    producer = spans.one("publish a.b")
    consumers = spans.named("process a.b")
    assert len(consumers) == 2
    assert {c.attributes["messaging.destination.subscription.name"] for c in consumers} == {  # type: ignore[index]
        "one",
        "two",
    }
    assert all(c.parent and c.parent.span_id == producer.context.span_id for c in consumers)


async def test_the_current_span_is_the_producer_parent(spans: Spans) -> None:
    tracer = spans.provider.get_tracer("app")
    async with Bus(middleware=[OpenTelemetryMiddleware(spans.provider)]) as bus:
        bus.subscribe("x.y", lambda e: None)
        with tracer.start_as_current_span("checkout") as app:
            await bus.publish("x.y", 1)
        await bus.drain()
    producer = spans.one("publish x.y")
    consumer = spans.one("process x.y")
    assert producer.parent is not None
    assert producer.parent.span_id == app.get_span_context().span_id
    assert consumer.context.trace_id == app.get_span_context().trace_id


async def test_a_publish_inside_a_handler_continues_the_trace(spans: Spans) -> None:
    async with Bus(middleware=[OpenTelemetryMiddleware(spans.provider)]) as bus:

        async def first(event: Any, ctx: Context) -> None:
            await ctx.publish("step.two", event)

        bus.subscribe("step.one", first)
        bus.subscribe("step.two", lambda e: None)
        await bus.publish("step.one", 1)
        await bus.drain()
    one = spans.one("process step.one")
    second_publish = spans.one("publish step.two")
    two = spans.one("process step.two")
    assert second_publish.parent is not None
    assert second_publish.parent.span_id == one.context.span_id
    assert {s.context.trace_id for s in spans.finished()} == {one.context.trace_id}
    assert two.parent is not None
    assert two.parent.span_id == second_publish.context.span_id


async def test_a_relayed_traceparent_is_the_parent(spans: Spans) -> None:
    # e.g. the gateway passes an HTTP request's traceparent through as an event header
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    parent_id = "b7ad6b7169203331"
    header = f"00-{trace_id}-{parent_id}-01"
    async with Bus(middleware=[OpenTelemetryMiddleware(spans.provider)]) as bus:
        bus.subscribe("in.http", lambda e: None)
        await bus.publish("in.http", 1, headers={"traceparent": header})
        await bus.drain()
    producer = spans.one("publish in.http")
    assert format(producer.context.trace_id, "032x") == trace_id
    assert producer.parent is not None
    assert format_span_id(producer.parent.span_id) == parent_id


async def test_handler_errors_are_recorded(spans: Spans) -> None:
    async def boom(event: Any) -> None:
        raise ValueError("no stock")

    async with Bus(middleware=[OpenTelemetryMiddleware(spans.provider)]) as bus:
        bus.subscribe("orders.new", boom)
        await bus.publish("orders.new", 1)
        await bus.drain()
    consumer = spans.one("process orders.new")
    assert consumer.status.status_code is StatusCode.ERROR
    assert consumer.status.description == "ValueError: no stock"
    assert [e.name for e in consumer.events] == ["exception"]
    # the bus's own $bus.handler_failed report is not traced (it bypasses the publish hook)
    assert not spans.named("publish $bus.handler_failed")


async def test_a_timeout_ends_the_span_with_an_error(spans: Spans) -> None:
    async def slow(event: Any) -> None:
        await asyncio.sleep(5)

    async with Bus(middleware=[OpenTelemetryMiddleware(spans.provider)]) as bus:
        bus.subscribe("slow.op", slow, timeout=0.05)
        await bus.publish("slow.op", 1)
        await bus.drain()
    consumer = spans.one("process slow.op")
    assert consumer.status.status_code is StatusCode.ERROR
    assert consumer.end_time is not None


async def test_requests_are_traced(spans: Spans) -> None:
    async with Bus(middleware=[OpenTelemetryMiddleware(spans.provider)]) as bus:
        bus.respond("math.add", lambda req: req["a"] + req["b"])
        assert await bus.request("math.add", {"a": 1, "b": 2}, timeout=2) == 3
    producer = spans.one("publish math.add")
    consumer = spans.one("process math.add")
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id


async def test_excluded_topics_are_not_traced(spans: Spans) -> None:
    mw = OpenTelemetryMiddleware(spans.provider, exclude=["noise.>"])
    async with Bus(middleware=[mw]) as bus:
        headers: list[dict[str, str]] = []

        async def h(event: Any, ctx: Context) -> None:
            headers.append(dict(ctx.headers))

        bus.subscribe(">", h)
        await bus.publish("noise.tick", 1)
        await bus.publish("real.work", 2)
        await bus.drain()
    assert sorted(s.name for s in spans.finished()) == ["process real.work", "publish real.work"]
    assert headers[0] == {}
    assert "traceparent" in headers[1]


def test_the_runtime_heartbeats_are_excluded_by_default() -> None:
    mw = OpenTelemetryMiddleware(NoOpTracerProvider())
    assert not mw._traced("$rt.orders.members")
    assert mw._traced("$rt.orders.w.abc123")


# -- off ------------------------------------------------------------------------------------------


async def test_without_an_sdk_nothing_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", None)
    mw = OpenTelemetryMiddleware()  # the global provider: the API's proxy to a no-op tracer
    assert not mw.active()
    calls = 0
    original = mw.on_handle

    async def counting(event: Any, ctx: Context, call_next: Any) -> Any:
        nonlocal calls
        calls += 1
        return await original(event, ctx, call_next)

    monkeypatch.setattr(mw, "on_handle", counting)
    headers: list[dict[str, str]] = []
    async with Bus(middleware=[mw]) as bus:

        async def h(event: Any, ctx: Context) -> None:
            headers.append(dict(ctx.headers))

        bus.subscribe("a.b", h)
        await bus.publish("a.b", 1)
        bus.respond("r.q", lambda x: x)
        assert await bus.request("r.q", 5, timeout=2) == 5
        await bus.drain()
    assert headers == [{}]
    assert calls == 1  # the responder (a sync handler) goes through the chain; "a.b" did not


async def test_an_explicit_noop_provider_is_off() -> None:
    mw = OpenTelemetryMiddleware(NoOpTracerProvider())
    assert not mw.active()
    async with Bus(middleware=[mw]) as bus:
        env = await bus.publish("a.b", 1)
    assert env._headers is None


async def test_a_global_provider_set_later_is_picked_up(
    spans: Spans, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", None)
    mw = OpenTelemetryMiddleware()
    async with Bus(middleware=[mw]) as bus:
        bus.subscribe("a.b", lambda e: None)
        await bus.publish("a.b", 1)
        await bus.drain()
        assert spans.finished() == []
        # what trace.set_tracer_provider(...) does (it can only run once per process)
        monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", spans.provider)
        await bus.publish("a.b", 2)
        await bus.drain()
    assert mw.active()
    assert len(spans.named("publish a.b")) == 1
    assert len(spans.named("process a.b")) == 1


async def test_a_global_noop_provider_stays_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", NoOpTracerProvider())
    mw = OpenTelemetryMiddleware()
    assert not mw.active()
    assert not mw.active()  # remembered: no second lookup
    assert "idle" in repr(mw)

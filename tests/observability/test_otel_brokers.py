"""One trace across processes: two Bus objects on the shared Redis or NATS (everything between
them crosses the broker, encoded), a publish on one handled on the other, a request, and the
actor runtime's send_message between two runtimes."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from axonbus import Bus, Context
from axonbus.observability import OpenTelemetryMiddleware
from axonbus.runtime import AgentId, AgentRuntime
from tests.faults.runtime_agents import Count, Counter, Inc
from tests.observability.conftest import Spans


def traced_bus(broker: tuple[str, str], spans: Spans) -> Bus:
    url, name = broker
    return Bus(url, name=name, middleware=[OpenTelemetryMiddleware(spans.provider)])


def assert_child(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert child.context.trace_id == parent.context.trace_id
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert child.parent.is_remote  # extracted from the envelope's headers


async def test_a_publish_handled_in_another_process(broker: tuple[str, str], spans: Spans) -> None:
    got: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def on_order(event: Any, ctx: Context) -> None:
        got.set_result(dict(ctx.headers))

    tracer = spans.provider.get_tracer("app")
    async with traced_bus(broker, spans) as sender, traced_bus(broker, spans) as receiver:
        receiver.subscribe("orders.*", on_order, name="billing")
        await receiver.flush()
        with tracer.start_as_current_span("checkout") as app:
            await sender.publish("orders.new", {"id": 7})
        async with asyncio.timeout(5):
            headers = await got
    assert "traceparent" in headers
    producer = spans.one("publish orders.new")
    consumer = spans.one("process orders.new")
    assert producer.kind is SpanKind.PRODUCER
    assert consumer.kind is SpanKind.CONSUMER
    assert producer.parent is not None
    assert producer.parent.span_id == app.get_span_context().span_id
    assert_child(consumer, producer)


async def test_a_request_answered_in_another_process(broker: tuple[str, str], spans: Spans) -> None:
    async with traced_bus(broker, spans) as client, traced_bus(broker, spans) as server:
        server.respond("math.add", lambda req: req["a"] + req["b"])
        await server.flush()
        assert await client.request("math.add", {"a": 2, "b": 3}, timeout=5) == 5
    assert_child(spans.one("process math.add"), spans.one("publish math.add"))


async def test_send_message_between_two_runtimes_is_one_trace(
    broker: tuple[str, str], spans: Spans
) -> None:
    caller = AgentRuntime(traced_bus(broker, spans), heartbeat=0.2)
    worker = AgentRuntime(traced_bus(broker, spans), heartbeat=0.2)
    await Counter.register(worker, "counter", Counter)  # only the worker can host counters
    caller.message_types.register(Count)
    worker.message_types.register(Count)
    try:
        await worker.start()
        await caller.start()
        tracer = spans.provider.get_tracer("app")
        with tracer.start_as_current_span("order flow") as app:
            count = await caller.send_message(Inc(), AgentId("counter", "k1"), timeout=5)
        assert isinstance(count, Count)
        assert count.value == 1
    finally:
        for rt in (caller, worker):
            await rt.close(timeout=2.0)
            await rt.bus.close()
    trace_id = app.get_span_context().trace_id
    in_trace = [s for s in spans.finished() if s.context.trace_id == trace_id]
    producer = next(s for s in in_trace if s.kind is SpanKind.PRODUCER)
    consumer = next(s for s in in_trace if s.kind is SpanKind.CONSUMER)
    assert producer.name.startswith("publish $rt.")
    assert ".w." in producer.name
    assert consumer.name == producer.name.replace("publish", "process", 1)
    assert producer.parent is not None
    assert producer.parent.span_id == app.get_span_context().span_id
    assert_child(consumer, producer)
    # the membership heartbeats are not traced
    assert not [s for s in spans.finished() if s.name.endswith(".members")]

"""Lines a user's own code logs inside a handler carry the event's fields (event_id, topic,
subscription, correlation_id): JsonFormatter, BusLogFilter and the structlog processor."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from axonbus import Bus, Context
from axonbus.observability import BusLogFilter, JsonFormatter, add_bus_fields, handler_fields

log = logging.getLogger("myapp.orders")


@pytest.fixture
def app_log() -> Iterator[io.StringIO]:
    """What ``myapp`` logs, one JSON object per line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("myapp")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(x) for x in stream.getvalue().splitlines()]


async def test_json_lines_inside_handlers_carry_the_event(app_log: io.StringIO) -> None:
    async def charge(order: Any) -> None:
        log.info("charging %s", order["id"])

        async def later() -> None:  # a task the handler starts inherits the fields
            log.info("receipt sent")

        await asyncio.create_task(later())

    def audit(order: Any, ctx: Context) -> None:
        log.warning("audited")

    def slow(order: Any) -> None:  # runs in a worker thread
        log.info("archived")

    async with Bus() as bus:
        bus.subscribe("orders.*", charge, name="billing")
        bus.subscribe("orders.*", audit, name="audit")
        bus.subscribe("orders.*", slow, name="archive", offload=True)
        log.info("before")
        env = await bus.publish("orders.new", {"id": 7}, correlation_id="conv-1")
        await bus.drain()
        log.info("after")
    got = {line["message"]: line for line in lines(app_log)}
    assert set(got) == {"before", "charging 7", "receipt sent", "audited", "archived", "after"}
    for message, subscription in [
        ("charging 7", "billing"),
        ("receipt sent", "billing"),
        ("audited", "audit"),
        ("archived", "archive"),
    ]:
        line = got[message]
        assert line["event_id"] == env.id, message
        assert line["topic"] == "orders.new"
        assert line["subscription"] == subscription
        assert line["correlation_id"] == "conv-1"
    for outside in ("before", "after"):
        assert "event_id" not in got[outside]
        assert "subscription" not in got[outside]


async def test_each_worker_names_its_own_event(app_log: io.StringIO) -> None:
    """With concurrency, each line names the event its own worker handles."""
    gate = asyncio.Event()

    async def work(n: int) -> None:
        await gate.wait()
        log.info("done %d", n)

    async with Bus() as bus:
        bus.subscribe("jobs.run", work, name="workers", concurrency=3)
        envs = [await bus.publish("jobs.run", n) for n in range(3)]
        gate.set()
        await bus.drain()
    ids = {line["message"]: line["event_id"] for line in lines(app_log)}
    assert ids == {f"done {n}": envs[n].id for n in range(3)}


async def test_a_records_own_fields_win(app_log: io.StringIO) -> None:
    async def relay(event: Any) -> None:
        log.info("about another event", extra={"event_id": "other", "topic": "x.y"})

    async with Bus() as bus:
        bus.subscribe("a.b", relay, name="relay")
        await bus.publish("a.b", 1)
        await bus.drain()
    (line,) = lines(app_log)
    assert (line["event_id"], line["topic"]) == ("other", "x.y")
    assert "subscription" not in line


async def test_text_formats_through_the_filter() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(BusLogFilter())
    handler.setFormatter(logging.Formatter("%(subscription)s %(topic)s %(message)s"))
    logger = logging.getLogger("myapp")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:

        async def h(event: Any) -> None:
            log.info("inside")

        async with Bus() as bus:
            bus.subscribe("t.x", h, name="text")
            await bus.publish("t.x", 1)
            await bus.drain()
            log.info("outside")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    assert stream.getvalue().splitlines() == ["text t.x inside", "- - outside"]


async def test_structlog_loggers_inside_handlers() -> None:
    structlog = pytest.importorskip("structlog")
    out = io.StringIO()
    slog = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[add_bus_fields, structlog.processors.JSONRenderer(sort_keys=True)],
    )

    async def h(event: Any) -> None:
        slog.info("inside", step=1)

    async with Bus() as bus:
        bus.subscribe("s.x", h, name="structured")
        env = await bus.publish("s.x", 1)
        await bus.drain()
        slog.info("outside")
    inside, outside = (json.loads(x) for x in out.getvalue().splitlines())
    assert inside == {
        "event": "inside",
        "step": 1,
        "event_id": env.id,
        "topic": "s.x",
        "subscription": "structured",
        "correlation_id": env.id,
    }
    assert outside == {"event": "outside"}


def test_no_fields_outside_handlers() -> None:
    assert handler_fields() is None

"""Structured logging: the bus's log lines carry event_id, topic, subscription and correlation
id; JsonFormatter / BusLogFilter / the structlog processor render them; secrets never show."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from axonbus import Bus, ConnectionLost, Retry
from axonbus.gateway import TokenSet, create_app
from axonbus.observability import BusLogFilter, JsonFormatter, add_bus_fields, redact
from tests.gateway.helpers import asgi_client

SECRET = "hunter2-s3cret-7Hq2Lp9Zx4Wm"


class Captured:
    """Everything the bus's loggers write while the test runs, through one formatter."""

    def __init__(self, formatter: logging.Formatter) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(formatter)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[Captured]:
    cap = Captured(JsonFormatter())
    caplog.set_level(logging.DEBUG, logger="axonbus")  # restored afterwards
    caplog.set_level(logging.DEBUG, logger="axonbus.gateway.access")  # `axonbus serve` sets it
    root = logging.getLogger("axonbus")  # its children (runtime, gateway.access) propagate
    root.addHandler(cap.handler)
    try:
        yield cap
    finally:
        root.removeHandler(cap.handler)


async def test_handler_failures_carry_the_event_fields(captured: Captured) -> None:
    async def charge(event: Any) -> None:
        raise ValueError("card declined")

    async with Bus() as bus:
        bus.subscribe("orders.*", charge, name="billing", retry=Retry(attempts=2, backoff=0.001))
        env = await bus.publish("orders.new", {"id": 1}, correlation_id="conv-9")
        await bus.drain()
    lines = captured.records()
    retry, final = (r for r in lines if r["logger"] == "axonbus" and "charge" in r["message"])
    for line in (retry, final):
        assert line["event_id"] == env.id
        assert line["topic"] == "orders.new"
        assert line["subscription"] == "billing"
        assert line["correlation_id"] == "conv-9"
    assert (retry["level"], retry["attempt"]) == ("WARNING", 1)
    assert (final["level"], final["attempt"]) == ("ERROR", 2)
    assert "ValueError: card declined" in final["exception"]
    assert final["time"].endswith("Z")


async def test_mailbox_drops_carry_the_event_fields(captured: Captured) -> None:
    release = asyncio.Event()

    async def stuck(event: Any) -> None:
        await release.wait()

    async with Bus() as bus:
        bus.subscribe("ticks", stuck, name="slow", maxsize=1, overflow="drop_newest")
        await bus.publish("ticks", 1)
        dropped = await bus.publish("ticks", 2)  # the mailbox is full: the first drop of a burst
        await bus.publish("ticks", 3)
        release.set()
        await bus.drain()
    (line,) = (r for r in captured.records() if "dropping events" in r["message"])
    assert line["subscription"] == "slow"
    assert line["topic"] == "ticks"
    assert line["event_id"] == dropped.id
    assert line["correlation_id"] == dropped.id


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize("scheme", ["redis", "nats"])
async def test_broker_passwords_never_reach_the_logs(captured: Captured, scheme: str) -> None:
    url = f"{scheme}://user:{SECRET}@127.0.0.1:{_closed_port()}/?unavailable_timeout=0.3"
    bus = Bus(url)
    with pytest.raises(ConnectionLost) as caught:
        await bus.start()
    logging.getLogger("axonbus").warning("bus %r, transport %r", bus, bus.transport)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(bus) + repr(bus.transport)
    assert SECRET not in captured.text
    assert "user:***@" in captured.text


async def test_gateway_tokens_never_reach_the_logs(captured: Captured) -> None:
    tokens = TokenSet.from_config({"tokens": [{"name": "ui", "token": SECRET}]})
    async with Bus() as bus, asgi_client(create_app(bus, tokens=tokens)) as client:
        r = await client.get(f"/v1/stats?token={SECRET}")
        assert r.status_code == 200
        r = await client.get("/v1/stats", headers={"Authorization": f"Bearer {SECRET}"})
        assert r.status_code == 200
        r = await client.get("/v1/stats?token=wrong-one")
        assert r.status_code == 401
    access = [r for r in captured.records() if r["logger"] == "axonbus.gateway.access"]
    assert len(access) == 3
    assert "token=***" in access[0]["message"]
    assert SECRET not in captured.text
    assert "wrong-one" not in captured.text


def test_the_formatter_masks_what_slips_through() -> None:
    record = logging.LogRecord(
        "app", logging.INFO, __file__, 1,
        "connecting to %s with %s", (f"postgresql://svc:{SECRET}@db/x", f"Bearer {SECRET}"), None,
    )  # fmt: skip
    record.password = SECRET
    record.dsn = f"redis://:{SECRET}@cache:6379/0?token={SECRET}"
    record.topic = "orders.new"
    record.tenant = "acme"
    out = json.loads(JsonFormatter(static={"service": "shop"}).format(record))
    assert SECRET not in json.dumps(out)
    assert out["message"] == "connecting to postgresql://svc:***@db/x with Bearer ***"
    assert out["password"] == "***"
    assert out["dsn"] == "redis://:***@cache:6379/0?token=***"
    assert (out["topic"], out["tenant"], out["service"]) == ("orders.new", "acme", "shop")
    assert list(out)[:4] == ["time", "level", "logger", "message"]


def test_redact() -> None:
    assert redact("nats://tok@host:4222") == "nats://***@host:4222"
    assert redact("rediss://u:p@h/0") == "rediss://u:***@h/0"
    assert redact("GET /v1/events?pattern=a.>&access_token=xyz") == (
        "GET /v1/events?pattern=a.>&access_token=***"
    )
    assert redact("nothing to hide: a@b.c, x=1") == "nothing to hide: a@b.c, x=1"


async def test_the_filter_gives_text_formats_the_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(BusLogFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(topic)s %(subscription)s %(message)s"))
    logger = logging.getLogger("test.observability.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("plain line")
        logger.error("bad %s", f"redis://:{SECRET}@h", extra={"topic": "a.b", "subscription": "s"})
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "WARNING - - plain line",
        "ERROR a.b s bad redis://:***@h",
    ]


async def test_structlog_processor_keeps_the_bus_fields(captured: Captured) -> None:
    structlog = pytest.importorskip("structlog")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.processors.format_exc_info,
                add_bus_fields,  # last: it also masks secrets in the rendered traceback
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
        )
    )
    logging.getLogger("axonbus").addHandler(handler)
    try:

        async def fail(event: Any) -> None:
            raise RuntimeError(f"cannot reach redis://:{SECRET}@cache")

        async with Bus() as bus:
            bus.subscribe("jobs.run", fail, name="worker")
            env = await bus.publish("jobs.run", 1)
            await bus.drain()
    finally:
        logging.getLogger("axonbus").removeHandler(handler)
    line = next(json.loads(x) for x in stream.getvalue().splitlines() if "fail" in x)
    assert line["event_id"] == env.id
    assert line["topic"] == "jobs.run"
    assert line["subscription"] == "worker"
    assert line["correlation_id"] == env.id
    assert line["level"] == "error"
    assert "redis://:***@cache" in line["event"]
    assert "RuntimeError: cannot reach redis://:***@cache" in line["exception"]
    assert SECRET not in stream.getvalue()


def test_structlog_processor_without_a_record() -> None:
    event = {"event": f"token=abc {SECRET}", "api_key": SECRET, "topic": "a.b"}
    out = add_bus_fields(None, "info", event)
    assert out == {"event": f"token=*** {SECRET}", "api_key": "***", "topic": "a.b"}


def test_the_package_imports_its_names_lazily() -> None:
    import axonbus.observability as obs

    assert "JsonFormatter" in dir(obs)
    assert obs.JsonFormatter is JsonFormatter
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = obs.nope

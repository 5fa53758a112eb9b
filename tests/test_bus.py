"""Publish / subscribe basics, context, causation, lifecycle and bad input."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest

from axonbus import (
    Bus,
    BusClosed,
    BusNotStarted,
    Context,
    Event,
    HandlerFailed,
    InvalidHandler,
    InvalidTopic,
    MessageTooLarge,
    QueueFull,
)


class ToolCall(Event, topic="agent.{session_id}.tool_call"):
    session_id: str
    tool: str


class ToolResult(Event, topic="agent.{session_id}.tool_result"):
    session_id: str
    value: int


async def test_pattern_type_and_global_subscriptions(bus: Bus) -> None:
    seen: list[tuple[str, str]] = []
    bus.subscribe("agent.*.tool_call", lambda e: seen.append(("pattern", e.tool)))
    bus.subscribe(ToolCall, lambda e: seen.append(("type", e.tool)))
    bus.subscribe_all(lambda e: seen.append(("all", type(e).__name__)))
    await bus.publish(ToolCall(session_id="s1", tool="search"))
    await bus.publish("other.topic", {"x": 1})
    await bus.drain()
    assert sorted(seen) == [
        ("all", "ToolCall"),
        ("all", "dict"),
        ("pattern", "search"),
        ("type", "search"),
    ]


async def test_subscribe_by_type_skips_other_payloads_on_matching_topics(bus: Bus) -> None:
    seen: list[Any] = []
    bus.subscribe(ToolCall, seen.append)
    await bus.publish("agent.s1.tool_call", {"not": "a ToolCall"})
    await bus.publish(ToolCall(session_id="s1", tool="t"))
    await bus.drain()
    assert [type(e) for e in seen] == [ToolCall]
    assert bus.stats()[0].filtered == 1


@pytest.mark.parametrize(
    "payload",
    [{"a": 1}, "text", b"bytes", 42, None, ["list"]],
)
async def test_any_payload_with_explicit_topic(bus: Bus, payload: Any) -> None:
    got: list[Any] = []
    bus.subscribe("x.y", got.append)
    await bus.publish("x.y", payload)
    await bus.drain()
    assert got == [payload]


async def test_dataclass_and_model_payloads(bus: Bus) -> None:
    @dataclasses.dataclass
    class DC:
        n: int

    got: list[Any] = []
    bus.subscribe("p.>", got.append)
    await bus.publish("p.dc", DC(1))
    await bus.publish("p.model", ToolCall(session_id="s", tool="t"))
    await bus.drain()
    assert got == [DC(1), ToolCall(session_id="s", tool="t")]


async def test_decorator_form(bus: Bus) -> None:
    got: list[str] = []

    @bus.on("channel.>")
    async def inbound(event: Any, ctx: Context) -> None:
        got.append(ctx.topic)

    await bus.publish("channel.telegram.in", {"text": "hi"})
    await bus.drain()
    assert got == ["channel.telegram.in"]


async def test_context_fields(bus: Bus) -> None:
    ctxs: list[Context] = []

    async def h(event: Any, ctx: Context) -> None:
        ctxs.append(ctx)

    bus.subscribe("ctx.test", h)
    event_id = (await bus.publish("ctx.test", 1, headers={"k": "v"}, correlation_id="corr-1")).id
    await bus.drain()
    (ctx,) = ctxs
    assert ctx.event_id == event_id
    assert ctx.topic == "ctx.test"
    assert ctx.headers == {"k": "v"}
    assert ctx.correlation_id == "corr-1"
    assert ctx.causation_id is None
    assert ctx.attempt == 1
    assert ctx.bus is bus
    assert ctx.timestamp > 0
    assert "ctx.test" in repr(ctx)


async def test_causation_and_correlation_follow_handler_publishes(bus: Bus) -> None:
    chain: list[tuple[str, str | None, str]] = []

    async def first(event: Any, ctx: Context) -> None:
        await bus.publish("step.two", None)  # plain bus.publish inside a handler
        await ctx.publish("step.three", None)

    async def record(event: Any, ctx: Context) -> None:
        chain.append((ctx.topic, ctx.causation_id, ctx.correlation_id))

    bus.subscribe("step.one", first)
    bus.subscribe("step.two", record)
    bus.subscribe("step.three", record)
    root = (await bus.publish("step.one", None)).id
    await bus.drain()
    assert sorted(chain) == [("step.three", root, root), ("step.two", root, root)]


async def test_ctx_publish_accepts_events_and_topic_payload_pairs(bus: Bus) -> None:
    got: list[tuple[Any, str | None]] = []

    async def on_call(event: ToolCall, ctx: Context) -> None:
        await ctx.publish(ToolResult(session_id=event.session_id, value=1))
        await ctx.publish("agent.audit", {"tool": event.tool})

    bus.subscribe(ToolCall, on_call)
    bus.subscribe("agent.s9.tool_result", lambda e, c: got.append((e, c.causation_id)))
    bus.subscribe("agent.audit", lambda e, c: got.append((e, c.causation_id)))
    root = (await bus.publish(ToolCall(session_id="s9", tool="calc"))).id
    await bus.drain()
    assert sorted(got, key=repr) == sorted(
        [(ToolResult(session_id="s9", value=1), root), ({"tool": "calc"}, root)], key=repr
    )


async def test_sync_handlers_run_on_loop_and_offloaded(bus: Bus) -> None:
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}

    def on_loop(event: Any) -> None:
        threads["loop"] = threading.get_ident()

    def offloaded(event: Any, ctx: Context) -> None:
        threads["offload"] = threading.get_ident()

    bus.subscribe("s.x", on_loop)
    bus.subscribe("s.x", offloaded, offload=True)
    await bus.publish("s.x", 1)
    await bus.drain()
    assert threads["loop"] == loop_thread
    assert threads["offload"] != loop_thread


async def test_callable_objects_and_methods(bus: Bus) -> None:
    got: list[str] = []

    class Handler:
        async def __call__(self, event: Any) -> None:
            got.append("callable")

        async def method(self, event: Any, ctx: Context) -> None:
            got.append("method")

    h = Handler()
    bus.subscribe("o.x", h)
    bus.subscribe("o.x", h.method)
    await bus.publish("o.x", 1)
    await bus.drain()
    assert sorted(got) == ["callable", "method"]


@pytest.mark.parametrize(
    ("handler", "needle"),
    [
        (lambda: None, "takes no arguments"),
        (lambda a, b, c: None, "needs 3 arguments"),
        ("not callable", "must be callable"),
    ],
)
def test_bad_handler_signatures_fail_at_subscribe(handler: Any, needle: str) -> None:
    b = Bus()
    with pytest.raises(InvalidHandler, match=needle):
        b.subscribe("a.b", handler)
    with pytest.raises(TypeError):  # InvalidHandler is a TypeError
        b.subscribe("a.b", handler)


def test_keyword_only_required_parameter_is_rejected() -> None:
    def h(event: Any, *, must: int) -> None: ...

    with pytest.raises(InvalidHandler, match="must"):
        Bus().subscribe("a.b", h)


def test_offload_requires_sync_handler() -> None:
    async def h(event: Any) -> None: ...

    with pytest.raises(InvalidHandler, match="offload"):
        Bus().subscribe("a.b", h, offload=True)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"overflow": "explode"}, ValueError),
        ({"maxsize": 0}, ValueError),
        ({"concurrency": 0}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"retry": 3}, TypeError),
    ],
)
def test_bad_subscription_options(kwargs: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        Bus().subscribe("a.b", lambda e: None, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"overflow": "explode"}, {"concurrency": 0}, {"timeout": -1}, {"retry": 3}],
)
def test_rejected_subscription_leaves_nothing_behind(kwargs: dict[str, Any]) -> None:
    b = Bus()
    with pytest.raises((ValueError, TypeError)):
        b.subscribe("a.b", lambda e: None, **kwargs)

    async def h(event: Any) -> None: ...

    with pytest.raises(InvalidHandler):
        b.subscribe("a.b", h, offload=True)
    assert len(b._index) == 0
    assert b.handler_count() == 0


def test_unknown_overflow_message_lists_policies() -> None:
    with pytest.raises(ValueError, match="drop_oldest"):
        Bus().subscribe("a.b", lambda e: None, overflow="explode")  # type: ignore[arg-type]


async def test_invalid_topics_raise_invalid_topic(bus: Bus) -> None:
    with pytest.raises(InvalidTopic, match="'b c'"):
        await bus.publish("a.b c", 1)
    with pytest.raises(InvalidTopic, match="wildcards"):
        await bus.publish("a.*", 1)
    with pytest.raises(InvalidTopic):
        bus.subscribe("a.>.b", lambda e: None)
    with pytest.raises(InvalidTopic, match="needs a topic"):
        await bus.publish({"no": "topic"})
    with pytest.raises(InvalidTopic):
        bus.subscribe(42, lambda e: None)  # type: ignore[arg-type]


async def test_publish_event_with_payload_is_a_type_error(bus: Bus) -> None:
    with pytest.raises(TypeError, match="no payload"):
        await bus.publish(ToolCall(session_id="s", tool="t"), {"extra": 1})


async def test_publish_before_start_and_after_close() -> None:
    b = Bus()
    with pytest.raises(BusNotStarted, match="async with Bus"):
        await b.publish("a.b", 1)
    with pytest.raises(BusNotStarted):
        b.publish_nowait("a.b", 1)
    await b.start()
    await b.close()
    with pytest.raises(BusClosed):
        await b.publish("a.b", 1)
    with pytest.raises(BusClosed):
        await b.request("a.b", 1)
    with pytest.raises(BusClosed):
        await b.start()
    assert b.state == "closed"


async def test_message_size_limit_for_bytes_and_str() -> None:
    async with Bus(max_message_bytes=10) as b:
        got: list[Any] = []
        b.subscribe("big.x", got.append)
        with pytest.raises(MessageTooLarge) as info:
            await b.publish("big.x", b"x" * 11)
        assert info.value.size == 11
        assert info.value.limit == 10
        await b.publish("big.x", b"x" * 10)
        await b.drain()
        assert got == [b"x" * 10]  # the refused one was never delivered


def test_bad_bus_arguments() -> None:
    with pytest.raises(ValueError, match="codec"):
        Bus(codec="pickle")
    with pytest.raises(ValueError, match="no transport for kafka"):
        Bus("kafka://localhost")
    with pytest.raises(ValueError, match="scheme"):
        Bus("localhost:6379")
    with pytest.raises(ValueError, match="history"):
        Bus(history=-1)
    with pytest.raises(ValueError, match="max_message_bytes"):
        Bus(max_message_bytes=0)


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AXONBUS_URL", "memory://")
    assert Bus.from_env().url == "memory://"
    monkeypatch.delenv("AXONBUS_URL")
    assert Bus.from_env(name="x").name == "x"


async def test_subscribe_before_start_gets_workers_on_start() -> None:
    b = Bus()
    got: list[int] = []
    b.subscribe("a.b", got.append)
    async with b:
        await b.publish("a.b", 1)
        await b.drain()
    assert got == [1]


async def test_publish_nowait_all_or_nothing(bus: Bus) -> None:
    gate = asyncio.Event()
    roomy: list[int] = []

    async def stuck(event: int) -> None:
        await gate.wait()

    bus.subscribe("n.x", roomy.append)
    bus.subscribe("n.x", stuck, maxsize=1)
    bus.publish_nowait("n.x", 1)
    await asyncio.sleep(0.01)  # the stuck worker takes event 1, mailbox empty again
    bus.publish_nowait("n.x", 2)  # fills the stuck mailbox
    with pytest.raises(QueueFull):
        bus.publish_nowait("n.x", 3)
    gate.set()
    await bus.drain()
    assert roomy == [1, 2]  # 3 went nowhere, not even to the roomy subscription


async def test_publish_threadsafe(bus: Bus) -> None:
    got: list[int] = []
    bus.subscribe("t.x", got.append)

    def worker() -> None:
        for i in range(5):
            bus.publish_threadsafe("t.x", i).result(timeout=5)

    await asyncio.to_thread(worker)
    await bus.drain()
    assert got == [0, 1, 2, 3, 4]


async def test_unsubscribe_both_forms(bus: Bus) -> None:
    got: list[str] = []

    def tg(event: Any) -> None:
        got.append("tg")

    sub = bus.subscribe("telegram", tg)
    bus.subscribe("discord", tg)
    assert bus.handler_count() == 2
    assert bus.unsubscribe(sub)
    assert not bus.unsubscribe(sub)
    assert bus.unsubscribe("discord", tg)
    assert not bus.unsubscribe("discord", tg)
    assert bus.handler_count() == 0
    await bus.publish("telegram", 1)
    await bus.publish("discord", 1)
    await bus.drain()
    assert got == []


async def test_handler_count_by_exact_pattern(bus: Bus) -> None:
    async def h(event: Any) -> None: ...

    bus.subscribe("telegram", h)
    bus.subscribe("telegram", h)
    bus.subscribe("discord", h)
    bus.subscribe_all(h)
    assert bus.handler_count("telegram") == 2
    assert bus.handler_count("missing") == 0
    assert bus.handler_count(">") == 1
    assert bus.handler_count() == 4


async def test_history(bus: Bus) -> None:
    for i in range(3):
        await bus.publish(f"h.{i}", i)
    await bus.publish("other.x", 9)
    envs = bus.history("h.>", limit=2)
    assert [e.event for e in envs] == [1, 2]
    assert [e.topic for e in bus.history()] == ["h.0", "h.1", "h.2", "other.x"]


async def test_history_disabled_by_default() -> None:
    async with Bus() as b:
        await b.publish("a.b", 1)
        assert b.history() == []


async def test_system_topics_not_matched_by_leading_wildcards(bus: Bus) -> None:
    everything: list[str] = []
    system: list[HandlerFailed] = []

    async def broken(event: Any) -> None:
        raise RuntimeError("nope")

    bus.subscribe_all(lambda e, ctx: everything.append(ctx.topic))
    bus.subscribe("$bus.handler_failed", system.append)
    bus.subscribe("app.x", broken)
    await bus.publish("app.x", 1)
    await bus.drain()
    assert everything == ["app.x"]
    assert len(system) == 1

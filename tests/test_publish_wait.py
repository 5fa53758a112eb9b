"""publish(wait=True), drain and close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from axonbus import Bus, BusClosed, Context, Envelope, Middleware


async def test_wait_returns_outcomes_per_subscription(bus: Bus) -> None:
    async def ok(event: int) -> int:
        return event * 2

    async def bad(event: int) -> None:
        raise ValueError("bad")

    async def slow(event: int) -> None:
        await asyncio.sleep(5)

    bus.subscribe("w.x", ok, name="ok")
    bus.subscribe("w.x", bad, name="bad")
    bus.subscribe("w.x", slow, name="slow", timeout=0.02)
    bus.subscribe("w.x", lambda e: None, name="skipped", filter=lambda e: False)
    result = await bus.publish("w.x", 21, wait=True)
    by_name = {o.subscription: o for o in result}
    assert by_name["ok"].status == "ok"
    assert by_name["ok"].value == 42
    assert by_name["bad"].status == "error"
    assert isinstance(by_name["bad"].error, ValueError)
    assert by_name["slow"].status == "timeout"
    assert by_name["skipped"].status == "filtered"
    assert not result.ok
    assert {o.subscription for o in result.errors} == {"bad", "slow"}
    assert len(result) == 4
    assert result.event_id


async def test_wait_with_no_subscribers(bus: Bus) -> None:
    result = await bus.publish("nobody.home", 1, wait=True)
    assert list(result) == []
    assert result.ok


async def test_wait_reports_dropped(bus: Bus) -> None:
    gate = asyncio.Event()

    async def stuck(event: int) -> None:
        await gate.wait()

    bus.subscribe("w.d", stuck, maxsize=1, overflow="drop_newest", name="stuck")
    await bus.publish("w.d", 0)
    await asyncio.sleep(0.01)
    await bus.publish("w.d", 1)  # fills the mailbox
    result = await bus.publish("w.d", 2, wait=True)
    assert [o.status for o in result] == ["dropped"]
    gate.set()


async def test_drain_waits_for_chains(bus: Bus) -> None:
    done: list[str] = []

    async def one(event: Any, ctx: Context) -> None:
        await asyncio.sleep(0.01)
        await ctx.publish("chain.two", None)

    async def two(event: Any) -> None:
        await asyncio.sleep(0.01)
        done.append("two")

    bus.subscribe("chain.one", one)
    bus.subscribe("chain.two", two)
    await bus.publish("chain.one", None)
    await bus.drain()
    assert done == ["two"]


async def test_drain_timeout() -> None:
    async with Bus() as b:
        gate = asyncio.Event()

        async def stuck(event: Any) -> None:
            await gate.wait()

        b.subscribe("x.y", stuck)
        await b.publish("x.y", 1)
        with pytest.raises(TimeoutError):
            await b.drain(timeout=0.05)
        gate.set()


async def test_close_drains_accepted_events_and_allows_handler_publishes() -> None:
    got: list[int] = []
    followups: list[int] = []
    b = Bus()

    async def slow(event: int, ctx: Context) -> None:
        await asyncio.sleep(0.001)
        got.append(event)
        await ctx.publish("follow.up", event)  # allowed while the bus is closing

    b.subscribe("c.x", slow)
    b.subscribe("follow.up", followups.append)
    await b.start()
    for i in range(20):
        await b.publish("c.x", i)
    await b.close()
    assert got == list(range(20))
    assert followups == list(range(20))
    with pytest.raises(BusClosed):
        await b.publish("c.x", 99)


async def test_close_timeout_cancels_stuck_handlers() -> None:
    cancelled = asyncio.Event()
    b = Bus()

    async def stuck(event: Any) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    b.subscribe("s.x", stuck)
    await b.start()
    await b.publish("s.x", 1)
    await asyncio.sleep(0)
    await b.close(timeout=0.05)
    assert cancelled.is_set()
    assert b.state == "closed"


async def test_close_is_idempotent_and_concurrent() -> None:
    b = Bus()
    await b.start()
    await asyncio.gather(b.close(), b.close())
    await b.close()
    assert b.state == "closed"


async def test_close_wakes_blocked_publishers() -> None:
    b = Bus()
    gate = asyncio.Event()

    async def stuck(event: Any) -> None:
        await gate.wait()

    b.subscribe("s.y", stuck, maxsize=1)
    await b.start()
    await b.publish("s.y", 1)
    await asyncio.sleep(0.01)
    await b.publish("s.y", 2)
    blocked = asyncio.create_task(b.publish("s.y", 3))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    await b.close(timeout=0.05)
    await asyncio.wait_for(blocked, 1)


class Stamp(Middleware):
    def __init__(self) -> None:
        self.handled: list[tuple[str, Any]] = []

    def on_publish(self, envelope: Envelope) -> Envelope | None:
        if envelope.topic == "mw.drop":
            return None
        envelope.headers["stamped"] = "yes"
        return envelope

    async def on_handle(self, event: Any, ctx: Context, call_next: Any) -> Any:
        self.handled.append(("before", event))
        result = await call_next(event, ctx)
        self.handled.append(("after", result))
        return result


async def test_middleware_around_publish_and_handle() -> None:
    mw = Stamp()
    async with Bus(middleware=[mw]) as b:
        headers: list[dict[str, str]] = []

        async def h(event: int, ctx: Context) -> int:
            headers.append(dict(ctx.headers))
            return event + 1

        b.subscribe("mw.x", h)
        b.subscribe("mw.drop", h)
        await b.publish("mw.x", 1)
        await b.publish("mw.drop", 1)
        b.publish_nowait("mw.x", 2)
        await b.drain()
    assert headers == [{"stamped": "yes"}, {"stamped": "yes"}]
    assert mw.handled == [("before", 1), ("after", 2), ("before", 2), ("after", 3)]


async def test_middleware_sees_one_arg_handlers_too() -> None:
    mw = Stamp()
    async with Bus(middleware=[mw]) as b:
        b.subscribe("mw.y", lambda e: e * 10)
        await b.publish("mw.y", 2)
        await b.drain()
    assert mw.handled == [("before", 2), ("after", 20)]

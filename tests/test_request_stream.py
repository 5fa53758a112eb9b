"""request / respond, stream and wait_for."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from axonbus import (
    Bus,
    BusClosed,
    Event,
    NoResponders,
    RemoteError,
    RequestTimeout,
)


class Ping(Event, topic="pp.{room}.ping"):
    room: str
    n: int


async def test_request_reply(bus: Bus) -> None:
    bus.respond("math.add", lambda req: req["a"] + req["b"])
    assert await bus.request("math.add", {"a": 1, "b": 2}, timeout=2.0) == 3


async def test_async_responder_with_context(bus: Bus) -> None:
    async def echo(req: Any, ctx: Any) -> tuple[Any, str]:
        return req, ctx.topic

    bus.respond("svc.*", echo)
    assert await bus.request("svc.echo", "hi") == ("hi", "svc.echo")


async def test_no_responders(bus: Bus) -> None:
    bus.subscribe("math.sub", lambda e: None)  # plain subscribers are not responders
    with pytest.raises(NoResponders, match=r"math\.sub"):
        await bus.request("math.sub", {})


async def test_request_timeout(bus: Bus) -> None:
    async def slow(req: Any) -> None:
        await asyncio.sleep(5)

    bus.respond("slow.op", slow)
    with pytest.raises(RequestTimeout) as info:
        await bus.request("slow.op", None, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert info.value.timeout == 0.05


async def test_timeouts_fire_at_their_own_deadlines(bus: Bus) -> None:
    """One timer serves every request: a later short timeout must still fire first."""

    async def never(req: Any) -> None:
        await asyncio.sleep(60)

    bus.respond("slow.y", never, concurrency=10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    long = asyncio.create_task(bus.request("slow.y", 1, timeout=5))
    await asyncio.sleep(0)
    with pytest.raises(RequestTimeout):
        await bus.request("slow.y", 2, timeout=0.05)
    assert loop.time() - started < 2  # not held back to the 5 s deadline armed first
    assert not long.done()
    long.cancel()
    fast = [bus.request("slow.y", i, timeout=0.05 + i / 100) for i in range(5)]
    results = await asyncio.gather(*fast, return_exceptions=True)
    assert all(isinstance(r, RequestTimeout) for r in results)
    assert not bus._deadlines._waiting  # nothing left behind


async def test_completed_requests_leave_no_deadline_behind(bus: Bus) -> None:
    bus.respond("fast.y", lambda r: r)
    for i in range(100):
        assert await bus.request("fast.y", i, timeout=10) == i
    assert not bus._deadlines._waiting


async def test_request_timeout_must_be_positive(bus: Bus) -> None:
    bus.respond("t.z", lambda r: r)
    with pytest.raises(ValueError, match="timeout"):
        await bus.request("t.z", 1, timeout=0)
    assert await bus.request("t.z", 1, timeout=None) == 1


async def test_remote_error_carries_type_and_message(bus: Bus) -> None:
    def divide(req: dict[str, int]) -> float:
        return req["a"] / req["b"]

    bus.respond("math.div", divide)
    with pytest.raises(RemoteError) as info:
        await bus.request("math.div", {"a": 1, "b": 0})
    assert info.value.remote_type == "ZeroDivisionError"
    assert "division by zero" in info.value.remote_message
    # the responder keeps working after an error
    assert await bus.request("math.div", {"a": 4, "b": 2}) == 2.0


async def test_responders_load_balance(bus: Bus) -> None:
    served: dict[str, int] = {"a": 0, "b": 0}

    def make(label: str) -> Any:
        async def serve(req: Any) -> str:
            served[label] += 1
            await asyncio.sleep(0.005)
            return label

        return serve

    bus.respond("lb.x", make("a"))
    bus.respond("lb.x", make("b"))
    replies = await asyncio.gather(*(bus.request("lb.x", i) for i in range(20)))
    assert sorted(set(replies)) == ["a", "b"]
    assert served["a"] + served["b"] == 20


async def test_requests_are_not_seen_by_plain_subscribers(bus: Bus) -> None:
    seen: list[Any] = []
    bus.subscribe_all(seen.append)
    bus.respond("q.x", lambda r: r)
    await bus.request("q.x", 1)
    await bus.drain()
    assert seen == []


async def test_close_fails_pending_requests() -> None:
    b = Bus()
    await b.start()
    gate = asyncio.Event()

    async def stuck(req: Any) -> None:
        await gate.wait()

    b.respond("st.x", stuck)
    first = asyncio.create_task(b.request("st.x", 1, timeout=None))
    second = asyncio.create_task(b.request("st.x", 2, timeout=None))
    await asyncio.sleep(0.01)
    await b.close(timeout=0.05)
    for task in (first, second):
        with pytest.raises(BusClosed):
            await task


async def test_stream_yields_in_order_and_ends_on_close() -> None:
    b = Bus()
    await b.start()
    received: list[Any] = []

    async def consume() -> None:
        async with b.stream("st.>") as events:
            async for ev in events:
                received.append(ev)

    stream_task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    for i in range(5):
        await b.publish(f"st.{i}", i)
    await b.publish("other", "x")
    await asyncio.sleep(0.01)
    await b.close()
    await asyncio.wait_for(stream_task, 1)
    assert received == [0, 1, 2, 3, 4]


async def test_stream_registered_at_call_time_and_typed(bus: Bus) -> None:
    stream = bus.stream(Ping, where=lambda p: p.n > 1, envelopes=True)
    await bus.publish(Ping(room="r", n=1))
    await bus.publish(Ping(room="r", n=2))
    await bus.publish("pp.r.ping", {"not": "a ping"})
    env = await stream.next_envelope()
    assert env is not None
    assert env.topic == "pp.r.ping"
    assert env.event == Ping(room="r", n=2)
    assert stream.pending == 1
    stream.close()
    assert await stream.next_envelope() is None


async def test_stream_drop_oldest_counts(bus: Bus) -> None:
    async with bus.stream("sd.x", maxsize=2, overflow="drop_oldest") as stream:
        for i in range(5):
            await bus.publish("sd.x", i)
        assert stream.dropped == 3
        assert [await anext(stream), await anext(stream)] == [3, 4]


async def test_wait_for_is_race_free(bus: Bus) -> None:
    waiter = bus.wait_for(Ping, where=lambda p: p.n == 3, timeout=1)
    for n in range(5):
        await bus.publish(Ping(room="a", n=n))
    result = await waiter
    assert result == Ping(room="a", n=3)


async def test_wait_for_awaited_directly(bus: Bus) -> None:
    async def later() -> None:
        await asyncio.sleep(0.01)
        await bus.publish("later.x", "done")

    task = asyncio.create_task(later())
    assert await bus.wait_for("later.x", timeout=1) == "done"
    await task


async def test_wait_for_timeout_and_cleanup(bus: Bus) -> None:
    with pytest.raises(TimeoutError):
        await bus.wait_for("never.x", timeout=0.02)
    assert len(bus._index) == 0  # the waiter unregistered itself


async def test_wait_for_cancel_and_single_use(bus: Bus) -> None:
    w = bus.wait_for("c.x")
    w.cancel()
    assert len(bus._index) == 0
    w2 = bus.wait_for("c.y", timeout=1)
    await bus.publish("c.y", 1)
    assert await w2 == 1
    with pytest.raises(RuntimeError, match="once"):
        await w2

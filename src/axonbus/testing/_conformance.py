"""The behavioural checks every transport must pass.

Each check takes ``make_bus`` (a zero-argument callable returning a new, unstarted Bus on the
transport under test) and raises ``AssertionError`` with a message naming what went wrong.
Checks that need two buses sharing one broker are skipped for in-process transports.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .._engine.bus import Bus
from .._engine.context import Context
from .._engine.dead_letters import DeadLetters, StoredDeadLetter
from .._engine.settle import settle
from .._engine.stream import Waiter
from .._events import Event
from .._exceptions import AxonbusError, BusClosed, MessageTooLarge, NoResponders, RemoteError
from .._retry import Retry
from .._system_events import DeadLetter

__all__ = ["CHECKS", "CheckSkipped", "check_transport"]

MakeBus = Callable[[], Bus]
Check = Callable[[MakeBus], Awaitable[None]]

CHECKS: dict[str, Check] = {}


class CheckSkipped(AxonbusError):
    """A check does not apply to this transport (the reason is the message)."""


def _check(fn: Check) -> Check:
    CHECKS[fn.__name__.removeprefix("check_")] = fn
    return fn


def _topic(prefix: str) -> str:
    # unique per run, so checks against a shared broker never see each other's events
    return f"conf{uuid.uuid4().hex[:10]}.{prefix}"


class ConformanceEvent(Event, topic="conformance.{run}.event", name="axonbus.ConformanceEvent"):
    run: str
    n: int
    text: str = ""


@_check
async def check_publish_subscribe(make_bus: MakeBus) -> None:
    async with make_bus() as bus:
        got: list[Any] = []
        base = _topic("ps")
        bus.subscribe(f"{base}.x", got.append)
        await bus.publish(f"{base}.x", {"k": "v"})
        await bus.publish(f"{base}.other", {"k": "no"})
        await settle(bus, lambda: len(got) >= 1)
        assert got == [{"k": "v"}], f"expected one dict payload, got {got!r}"


@_check
async def check_typed_events_roundtrip(make_bus: MakeBus) -> None:
    async with make_bus() as bus:
        run = uuid.uuid4().hex[:10]
        got: list[Any] = []
        bus.subscribe(ConformanceEvent, got.append)
        await bus.publish(ConformanceEvent(run=run, n=1, text="héllo"))
        await settle(bus, lambda: len(got) >= 1)
        assert got == [ConformanceEvent(run=run, n=1, text="héllo")], got


@_check
async def check_per_publisher_order(make_bus: MakeBus) -> None:
    async with make_bus() as bus:
        got: list[int] = []
        topic = _topic("order")
        bus.subscribe(topic, got.append)
        for i in range(500):
            await bus.publish(topic, i)
        await settle(bus, lambda: len(got) >= 500)
        assert got == list(range(500)), "events arrived out of publish order"


@_check
async def check_patterns(make_bus: MakeBus) -> None:
    async with make_bus() as bus:
        base = _topic("pat")
        seen: dict[str, list[str]] = {"star": [], "tail": [], "system": []}
        bus.subscribe(f"{base}.*.x", lambda e, ctx: seen["star"].append(ctx.topic))
        bus.subscribe(f"{base}.>", lambda e, ctx: seen["tail"].append(ctx.topic))
        bus.subscribe(">", lambda e, ctx: seen["system"].append(ctx.topic), filter=None)
        for t in (f"{base}.a.x", f"{base}.a.b.x", f"{base}.a"):
            await bus.publish(t, None)
        await bus.publish("$conformance.sys", None)
        await settle(bus, lambda: len(seen["tail"]) >= 3)
        assert seen["star"] == [f"{base}.a.x"], seen["star"]
        assert seen["tail"] == [f"{base}.a.x", f"{base}.a.b.x", f"{base}.a"], seen["tail"]
        assert "$conformance.sys" not in seen["system"], "'>' matched a system topic"


@_check
async def check_bulkhead(make_bus: MakeBus) -> None:
    async with make_bus() as bus:
        topic = _topic("bulkhead")
        ok: list[int] = []
        failures: list[Any] = []

        async def broken(event: int) -> None:
            raise RuntimeError("broken on purpose")

        bus.subscribe(topic, broken)
        bus.subscribe(topic, ok.append)
        bus.subscribe("$bus.handler_failed", failures.append)
        for i in range(3):
            await bus.publish(topic, i)
        await settle(bus, lambda: len(ok) >= 3 and len(failures) >= 3)
        assert ok == [0, 1, 2], ok
        assert len(failures) == 3, failures


@_check
async def check_group_one_member_each(make_bus: MakeBus) -> None:
    async with make_bus() as bus:
        topic = _topic("group")
        a: list[int] = []
        b: list[int] = []

        async def slow_a(event: int) -> None:
            await asyncio.sleep(0.001)
            a.append(event)

        async def slow_b(event: int) -> None:
            await asyncio.sleep(0.001)
            b.append(event)

        bus.subscribe(topic, slow_a, group="g")
        bus.subscribe(topic, slow_b, group="g")
        for i in range(30):
            await bus.publish(topic, i)
        await settle(bus, lambda: len(a) + len(b) >= 30)
        assert sorted(a + b) == list(range(30)), "group lost or duplicated events"
        assert not set(a) & set(b), "an event reached two members of one group"


@_check
async def check_request_reply(make_bus: MakeBus) -> None:
    async with make_bus() as bus:
        base = _topic("rpc")

        def add(req: dict[str, int]) -> int:
            return req["a"] + req["b"]

        def fail(req: Any) -> None:
            raise ValueError("bad request")

        bus.respond(f"{base}.add", add)
        bus.respond(f"{base}.fail", fail)
        assert await bus.request(f"{base}.add", {"a": 2, "b": 3}, timeout=5) == 5
        try:
            await bus.request(f"{base}.fail", {}, timeout=5)
        except RemoteError as exc:
            assert exc.remote_type == "ValueError", exc.remote_type
            assert "bad request" in exc.remote_message
        else:
            raise AssertionError("a raising responder did not produce RemoteError")
        try:
            await bus.request(f"{base}.nobody", {}, timeout=5)
        except NoResponders:
            pass
        else:
            raise AssertionError("request without responders did not raise NoResponders")


@_check
async def check_durable_redelivery(make_bus: MakeBus) -> None:
    async with make_bus() as bus:
        topic = _topic("durable")
        attempts: list[int] = []
        letters: list[DeadLetter] = []

        async def flaky(event: Any, ctx: Context) -> None:
            attempts.append(ctx.attempt)
            if event == "poison" or ctx.attempt < 2:
                raise RuntimeError("not yet")

        retry = Retry(attempts=3, backoff=0.001, max_backoff=0.01)
        bus.subscribe(topic, flaky, durable=f"d{uuid.uuid4().hex[:8]}", retry=retry)
        bus.subscribe(DeadLetter, letters.append)
        await bus.publish(topic, "ok")
        await settle(bus, lambda: len(attempts) >= 2)
        assert attempts == [1, 2], f"expected a redelivery then success, got attempts {attempts}"
        await bus.publish(topic, "poison")
        await settle(bus, lambda: len(letters) >= 1)
        assert letters[0].event == "poison", letters
        assert letters[0].attempts == 3, letters[0].attempts


@_check
async def check_wait_for_and_stream(make_bus: MakeBus) -> None:
    async with make_bus() as bus:
        base = _topic("wait")
        waiter: Waiter[Any] = bus.wait_for(f"{base}.done", where=lambda e: e == 2, timeout=5)
        async with bus.stream(f"{base}.>") as stream:
            for i in range(3):
                await bus.publish(f"{base}.done", i)
            assert await waiter == 2
            got = [await asyncio.wait_for(anext(stream), 5) for _ in range(3)]
        assert got == [0, 1, 2], got


@_check
async def check_message_size_limit(make_bus: MakeBus) -> None:
    bus = make_bus()
    limit = bus.max_message_bytes
    async with bus:
        topic = _topic("size")
        got: list[Any] = []
        bus.subscribe(topic, got.append)
        try:
            await bus.publish(topic, b"x" * (limit + 1))
        except MessageTooLarge:
            pass
        else:
            raise AssertionError("an oversized payload was accepted")
        await bus.publish(topic, b"small")
        await settle(bus, lambda: len(got) >= 1)
        assert got == [b"small"], "the refused message was delivered"


@_check
async def check_close(make_bus: MakeBus) -> None:
    bus = make_bus()
    got: list[int] = []
    topic = _topic("close")

    async def slow(event: int) -> None:
        await asyncio.sleep(0.001)
        got.append(event)

    bus.subscribe(topic, slow)
    await bus.start()
    for i in range(20):
        await bus.publish(topic, i)
    await bus.close()
    assert got == list(range(20)), "close() did not finish the accepted events"
    try:
        await bus.publish(topic, 99)
    except BusClosed:
        pass
    else:
        raise AssertionError("publish after close did not raise BusClosed")


@_check
async def check_close_hands_own_events_to_durable(make_bus: MakeBus) -> None:
    # an event this bus published before close() to a durable it holds was accepted: close()
    # hands it to the local handler (no wait before closing, as in a short script)
    bus = make_bus()
    got: list[int] = []
    topic = _topic("closedurable")
    bus.subscribe(topic, got.append, durable=f"closing{uuid.uuid4().hex[:8]}")
    async with bus:
        for i in range(3):
            await bus.publish(topic, i)
    assert sorted(got) == [0, 1, 2], f"close() left the durable's events for later: got {got}"


@_check
async def check_dead_letters_are_kept_and_replayed(make_bus: MakeBus) -> None:
    bus = make_bus()
    if bus.transport.local_only:
        raise CheckSkipped(f"{bus.url} keeps no dead letters (subscribe to DeadLetter)")
    topic = _topic("kept")
    calls: list[Any] = []

    async def fails_once(event: Any) -> None:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("not yet")

    async with bus:
        bus.subscribe(topic, fails_once, durable=f"kept{uuid.uuid4().hex[:8]}", retry=Retry(1))
        await bus.flush()
        await bus.publish(topic, {"n": 1}, headers={"k": "v"})
        await settle(bus, lambda: len(calls) >= 1)
        letters = DeadLetters(bus)
        mine: list[StoredDeadLetter] = []
        for _ in range(100):  # the dead letter reaches the store after the failure
            mine = [s for s in await letters.list(1000) if s.letter.original_topic == topic]
            if mine:
                break
            await asyncio.sleep(0.05)
        assert len(mine) == 1, f"the dead letter was not kept: {mine}"
        assert mine[0].letter.event == {"n": 1}, mine[0].letter
        replayed = await letters.replay(limit=1000, where=lambda d: d.original_topic == topic)
        assert replayed == 1, f"replayed {replayed} dead letters, expected 1"
        await settle(bus, lambda: len(calls) >= 2)
        assert calls == [{"n": 1}, {"n": 1}], f"the replayed event was not handled: {calls}"
        left = [s for s in await letters.list(1000) if s.letter.original_topic == topic]
        assert not left, f"a replayed dead letter is still kept: {left}"


@_check
async def check_cross_process_delivery(make_bus: MakeBus) -> None:
    first, second = make_bus(), make_bus()
    if first.transport.local_only:
        raise CheckSkipped(f"{first.url} does not connect processes")
    async with first, second:
        topic = _topic("cross")
        here: list[int] = []
        there: list[int] = []
        first.subscribe(topic, here.append)
        second.subscribe(topic, there.append)
        await second.flush()  # the broker knows of the subscription
        for i in range(10):
            await first.publish(topic, i)
        await settle(first, lambda: len(here) >= 10)
        await settle(second, lambda: len(there) >= 10)
        assert here == list(range(10)), f"local subscriber got {here} (each event once)"
        assert there == list(range(10)), f"remote subscriber got {there}"


def _connected_pair(make_bus: MakeBus) -> tuple[Bus, Bus]:
    first, second = make_bus(), make_bus()
    if first.transport.local_only:
        raise CheckSkipped(f"{first.url} does not connect processes")
    return first, second


@_check
async def check_cross_process_group(make_bus: MakeBus) -> None:
    first, second = _connected_pair(make_bus)
    async with first, second:
        topic = _topic("xgroup")
        seen: list[tuple[str, int]] = []
        first.subscribe(topic, lambda e: seen.append(("first", e)), group="g")
        second.subscribe(topic, lambda e: seen.append(("second", e)), group="g")
        await first.flush()
        await second.flush()
        for i in range(40):
            await first.publish(topic, i)
        await first.flush()
        await settle(first, lambda: len(seen) >= 40)
        await asyncio.sleep(0.2)  # a duplicate would arrive now
        await second.drain()
        values = sorted(v for _, v in seen)
        assert values == list(range(40)), f"each event must reach one member once: {values}"


@_check
async def check_cross_process_request(make_bus: MakeBus) -> None:
    first, second = _connected_pair(make_bus)
    async with first:
        topic = _topic("xrpc")
        async with second:
            second.respond(topic, lambda req: {"echo": req, "by": "second"})
            await second.flush()
            reply = await first.request(topic, 7, timeout=5)
            assert reply == {"echo": 7, "by": "second"}, reply
        try:
            await first.request(topic, 8, timeout=5)
        except NoResponders:
            pass
        else:
            raise AssertionError("the responder's bus closed, yet a request found a responder")


@_check
async def check_durable_resumes(make_bus: MakeBus) -> None:
    first, publisher = _connected_pair(make_bus)
    topic = _topic("resume")
    durable = f"resume{uuid.uuid4().hex[:8]}"
    got: list[int] = []
    async with first:
        first.subscribe(topic, got.append, durable=durable)
        await first.flush()
    async with publisher:  # nobody consumes the durable while these are published
        for i in range(5):
            await publisher.publish(topic, i)
        await publisher.flush()
        async with make_bus() as again:
            again.subscribe(topic, got.append, durable=durable)
            await settle(again, lambda: len(got) >= 5)
        assert got == list(range(5)), f"events published while the durable was away: {got}"


async def check_transport(make_bus: MakeBus, *, only: list[str] | None = None) -> dict[str, str]:
    """Run every conformance check (or ``only`` those named) against ``make_bus``.

    Returns ``{check: "passed" | "skipped: why"}``; raises ``AssertionError`` naming the first
    check that fails.

    >>> report = await check_transport(lambda: Bus("redis://127.0.0.1:6379/0"))
    """
    report: dict[str, str] = {}
    for name, check in CHECKS.items():
        if only is not None and name not in only:
            continue
        try:
            await check(make_bus)
        except CheckSkipped as skip:
            report[name] = f"skipped: {skip}"
        except AssertionError as exc:
            raise AssertionError(f"conformance check {name!r} failed: {exc}") from exc
        else:
            report[name] = "passed"
    return report

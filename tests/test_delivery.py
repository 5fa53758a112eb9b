"""Mailboxes, overflow, concurrency, bulkhead, timeout, retry, dead letters, groups, durable."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from axonbus import Bus, Context, DeadLetter, HandlerFailed, QueueFull, Retry

FAST = Retry(attempts=3, backoff=0.001, max_backoff=0.01)


async def test_bulkhead_failing_handler_does_not_stop_others(bus: Bus) -> None:
    ok: list[int] = []
    failures: list[HandlerFailed] = []

    async def buggy(event: int) -> None:
        raise RuntimeError(f"analytics down {event}")

    bus.subscribe("m.x", ok.append)
    bus.subscribe("m.x", buggy, name="analytics")
    bus.subscribe(HandlerFailed, failures.append)
    for i in range(3):
        await bus.publish("m.x", i)  # never raises
    await bus.drain()
    assert ok == [0, 1, 2]
    assert [f.error_message for f in failures] == [f"analytics down {i}" for i in range(3)]
    f = failures[0]
    assert (f.subscription, f.error_type, f.kind, f.attempts) == (
        "analytics",
        "RuntimeError",
        "error",
        1,
    )
    assert f.original_topic == "m.x"
    stats = {s.name: s for s in bus.stats()}
    assert stats["analytics"].failed == 3
    assert stats["analytics"].delivered == 0


async def test_failure_is_logged_with_handler_event_and_traceback(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("ERROR", logger="axonbus")

    async def explode(event: Any) -> None:
        raise ValueError("kaboom")

    bus.subscribe("l.x", explode)
    event_id = (await bus.publish("l.x", 1)).id
    await bus.drain()
    (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "explode" in record.getMessage()
    assert event_id in record.getMessage()
    assert record.exc_info is not None
    assert record.event_id == event_id  # type: ignore[attr-defined]
    assert record.subscription == "explode"  # type: ignore[attr-defined]


async def test_handler_cancelling_itself_is_contained(bus: Bus) -> None:
    after: list[int] = []
    kinds: list[str] = []

    async def cancels(event: int) -> None:
        if event == 0:
            raise asyncio.CancelledError
        after.append(event)

    bus.subscribe("c.x", cancels)
    bus.subscribe(HandlerFailed, lambda f: kinds.append(f.kind))
    await bus.publish("c.x", 0)
    await bus.publish("c.x", 1)
    await bus.drain()
    assert after == [1]
    assert kinds == ["cancelled"]


async def test_timeout(bus: Bus) -> None:
    failures: list[HandlerFailed] = []
    done: list[int] = []

    async def slow(event: int) -> None:
        if event == 0:
            await asyncio.sleep(10)
        done.append(event)

    bus.subscribe("t.x", slow, timeout=0.05)
    bus.subscribe(HandlerFailed, failures.append)
    await bus.publish("t.x", 0)
    await bus.publish("t.x", 1)
    await bus.drain()
    assert done == [1]
    assert [f.kind for f in failures] == ["timeout"]
    assert bus.stats()[0].timed_out == 1


async def test_handler_raising_timeout_error_itself_is_an_error(bus: Bus) -> None:
    kinds: list[str] = []

    async def raises(event: int) -> None:
        raise TimeoutError("upstream")

    bus.subscribe("t.y", raises, timeout=5)
    bus.subscribe(HandlerFailed, lambda f: kinds.append(f.kind))
    await bus.publish("t.y", 0)
    await bus.drain()
    assert kinds == ["error"]


async def test_retry_then_success(bus: Bus) -> None:
    attempts: list[int] = []

    async def flaky(event: Any, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError("transient")

    bus.subscribe("r.x", flaky, retry=FAST)
    await bus.publish("r.x", 1)
    await bus.drain()
    assert attempts == [1, 2, 3]
    s = bus.stats()[0]
    assert (s.delivered, s.failed, s.retried, s.dead_lettered) == (1, 2, 2, 0)


async def test_retry_exhausted_goes_to_dead_letter(bus: Bus) -> None:
    letters: list[DeadLetter] = []
    failed: list[HandlerFailed] = []

    async def always(event: Any) -> None:
        raise KeyError("missing")

    bus.subscribe("r.y", always, retry=FAST, name="always")
    bus.subscribe("$bus.dead_letter", letters.append)
    bus.subscribe("$bus.handler_failed", failed.append)
    await bus.publish("r.y", {"order": 7}, headers={"h": "1"})
    await bus.drain()
    (letter,) = letters
    assert letter.event == {"order": 7}
    assert letter.attempts == 3
    assert letter.subscription == "always"
    assert letter.headers == {"h": "1"}
    assert len(failed) == 1  # one HandlerFailed per failed delivery, not per attempt
    assert bus.stats()[0].dead_lettered == 1


def test_retry_delays() -> None:
    r = Retry(attempts=5, backoff=0.1, max_backoff=0.3, jitter=False)
    assert [r.delay(n) for n in (2, 3, 4, 5)] == [0.1, 0.2, 0.3, 0.3]
    jittered = Retry(backoff=1.0, jitter=True)
    assert all(0.5 <= jittered.delay(2) <= 1.0 for _ in range(50))
    with pytest.raises(ValueError, match="attempts"):
        Retry(attempts=0)


async def test_failure_in_system_handler_is_not_republished(bus: Bus) -> None:
    seen: list[HandlerFailed] = []

    async def bad_audit(event: Any) -> None:
        raise RuntimeError("audit broken")

    async def bad_app(event: Any) -> None:
        raise RuntimeError("app broken")

    bus.subscribe("$bus.handler_failed", bad_audit)
    bus.subscribe("$bus.handler_failed", seen.append)
    bus.subscribe("a.x", bad_app)
    await bus.publish("a.x", 1)
    await bus.drain()
    assert len(seen) == 1  # only the app failure; bad_audit's failure was logged, not published
    assert {s.name: s.failed for s in bus.stats()}["bad_audit"] == 1


async def test_fifo_with_concurrency_one(bus: Bus) -> None:
    got: list[int] = []

    async def h(event: int) -> None:
        if event % 7 == 0:
            await asyncio.sleep(0)
        got.append(event)

    bus.subscribe("f.x", h, maxsize=10)
    for i in range(200):
        await bus.publish("f.x", i)
    await bus.drain()
    assert got == list(range(200))


async def test_concurrency_runs_handlers_in_parallel(bus: Bus) -> None:
    running = 0
    peak = 0

    async def h(event: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    bus.subscribe("p.x", h, concurrency=4)
    for i in range(8):
        await bus.publish("p.x", i)
    await bus.drain()
    assert peak == 4


async def test_slow_handler_slows_only_its_own_mailbox(bus: Bus) -> None:
    gate = asyncio.Event()
    fast: list[int] = []

    async def slow(event: int) -> None:
        await gate.wait()

    bus.subscribe("s.x", slow, maxsize=100)
    bus.subscribe("s.x", fast.append)
    for i in range(50):
        await bus.publish("s.x", i)
    await asyncio.sleep(0.01)
    assert fast == list(range(50))
    assert {s.name: s.queued for s in bus.stats()}["slow"] == 49
    gate.set()
    await bus.drain()


async def test_block_policy_applies_backpressure_without_loss(bus: Bus) -> None:
    got: list[int] = []
    gate = asyncio.Event()

    async def h(event: int) -> None:
        await gate.wait()
        got.append(event)

    bus.subscribe("b.x", h, maxsize=2)
    publisher = asyncio.create_task(_publish_range(bus, "b.x", 10))
    await asyncio.sleep(0.05)
    assert not publisher.done()  # blocked: mailbox full and the handler is stuck
    gate.set()
    await publisher
    await bus.drain()
    assert got == list(range(10))


async def _publish_range(bus: Bus, topic: str, n: int) -> None:
    for i in range(n):
        await bus.publish(topic, i)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("drop_oldest", [0, 7, 8, 9]), ("drop_newest", [0, 1, 2, 3])],
)
async def test_drop_policies(bus: Bus, policy: str, expected: list[int]) -> None:
    got: list[int] = []
    gate = asyncio.Event()

    async def h(event: int) -> None:
        await gate.wait()
        got.append(event)

    bus.subscribe("d.x", h, maxsize=3, overflow=policy)  # type: ignore[arg-type]
    await bus.publish("d.x", 0)
    await asyncio.sleep(0.01)  # 0 is in the handler, mailbox empty
    for i in range(1, 10):
        await bus.publish("d.x", i)  # never blocks
    gate.set()
    await bus.drain()
    assert got == expected
    assert bus.stats()[0].dropped == 6


async def test_error_policy_raises_queue_full_and_delivers_nowhere(bus: Bus) -> None:
    gate = asyncio.Event()
    other: list[int] = []

    async def h(event: int) -> None:
        await gate.wait()

    bus.subscribe("e.x", other.append)
    bus.subscribe("e.x", h, maxsize=1, overflow="error", name="strict")
    await bus.publish("e.x", 0)
    await asyncio.sleep(0.01)
    await bus.publish("e.x", 1)
    with pytest.raises(QueueFull, match="strict"):
        await bus.publish("e.x", 2)
    gate.set()
    await bus.drain()
    assert other == [0, 1]


async def test_filter(bus: Bus) -> None:
    got: list[int] = []
    bus.subscribe("fl.x", got.append, filter=lambda e: e % 2 == 0)
    for i in range(6):
        await bus.publish("fl.x", i)
    await bus.drain()
    assert got == [0, 2, 4]
    assert bus.stats()[0].filtered == 3


async def test_filter_that_raises_is_a_contained_failure(bus: Bus) -> None:
    got: list[int] = []
    bus.subscribe("fl.y", got.append, filter=lambda e: 1 / e > 0)
    await bus.publish("fl.y", 0)
    await bus.publish("fl.y", 1)
    await bus.drain()
    assert got == [1]
    assert bus.stats()[0].failed == 1


async def test_group_delivers_each_event_to_one_member(bus: Bus) -> None:
    a: list[int] = []
    b: list[int] = []

    async def slow_a(event: int) -> None:
        await asyncio.sleep(0.001)
        a.append(event)

    async def slow_b(event: int) -> None:
        await asyncio.sleep(0.001)
        b.append(event)

    bus.subscribe("g.x", slow_a, group="workers")
    bus.subscribe("g.x", slow_b, group="workers")
    for i in range(40):
        await bus.publish("g.x", i)
    await bus.drain()
    assert sorted(a + b) == list(range(40))
    assert a, "member a never got an event"
    assert b, "member b never got an event"
    assert not set(a) & set(b)


async def test_group_member_leaving_does_not_lose_queued_events(bus: Bus) -> None:
    a: list[int] = []
    b: list[int] = []
    gate = asyncio.Event()

    async def ha(event: int) -> None:
        await gate.wait()
        a.append(event)

    sub_a = bus.subscribe("g.y", ha, group="g")
    sub_b = bus.subscribe("g.y", b.append, group="g")
    bus.unsubscribe(sub_b)
    for i in range(5):
        await bus.publish("g.y", i)
    gate.set()
    await bus.drain()
    assert a == list(range(5))
    bus.unsubscribe(sub_a)
    assert bus.handler_count() == 0


async def test_durable_name_bound_to_another_pattern_is_rejected(bus: Bus) -> None:
    bus.subscribe("d.a", lambda e: None, durable="d")
    with pytest.raises(ValueError, match="bound to"):
        bus.subscribe("d.b", lambda e: None, durable="d")


async def test_durable_redelivers_until_success_then_dead_letters(bus: Bus) -> None:
    attempts: list[int] = []
    letters: list[DeadLetter] = []

    async def h(event: Any, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        raise RuntimeError("not yet")

    sub = bus.subscribe("du.x", h, durable="orders")
    assert sub.retry is not None  # durable implies a retry policy
    bus.subscribe(DeadLetter, letters.append)
    # a fast retry keeps the test quick
    sub.retry = FAST
    await bus.publish("du.x", 1)
    await bus.drain()
    assert attempts == [1, 2, 3]
    assert len(letters) == 1


async def test_durable_queue_survives_unsubscribe_and_resubscribe(bus: Bus) -> None:
    first: list[int] = []
    second: list[int] = []
    sub = bus.subscribe("du.y", first.append, durable="audit")
    await bus.publish("du.y", 1)
    await bus.drain()
    bus.unsubscribe(sub)
    assert bus.handler_count() == 0
    for i in range(2, 5):
        await bus.publish("du.y", i)  # parked: kept for the durable name
    await bus.drain()  # does not wait for a parked durable
    bus.subscribe("du.y", second.append, durable="audit")
    await bus.drain()
    assert first == [1]
    assert second == [2, 3, 4]


async def test_durable_unacknowledged_event_is_redelivered_after_worker_cancel(bus: Bus) -> None:
    started = asyncio.Event()
    got: list[int] = []

    async def slow(event: int) -> None:
        started.set()
        await asyncio.sleep(10)

    sub = bus.subscribe("du.z", slow, durable="jobs")
    await bus.publish("du.z", 1)
    await started.wait()
    sub.cancel()  # the worker dies mid-handler, like a crashed consumer
    await sub.join()
    bus.unsubscribe(sub)
    bus.subscribe("du.z", got.append, durable="jobs")
    await bus.drain()
    assert got == [1]

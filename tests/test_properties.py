"""Property-based invariants of the in-process bus (hypothesis)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axonbus import Bus

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# per event: how the handler behaves (0 = returns at once, 1 = yields once, 2 = sleeps briefly)
behaviours = st.lists(st.integers(min_value=0, max_value=2), min_size=1, max_size=60)


async def _behave(kind: int) -> None:
    if kind == 1:
        await asyncio.sleep(0)
    elif kind == 2:
        await asyncio.sleep(0.0005)


def _recorder(kinds: list[int], offset: int, into: list[int]) -> Any:
    # a factory, not a default argument: a second positional parameter receives the Context
    async def handler(event: int) -> None:
        await _behave(kinds[(event + offset) % len(kinds)])
        into.append(event)

    return handler


@SETTINGS
@given(behaviours, st.integers(min_value=1, max_value=8), st.integers(min_value=1, max_value=4))
def test_fifo_and_no_loss_under_block(kinds: list[int], maxsize: int, n_subs: int) -> None:
    """concurrency=1 keeps per-subscription order; "block" loses nothing, whatever the speed."""

    async def run() -> list[list[int]]:
        received: list[list[int]] = [[] for _ in range(n_subs)]
        async with Bus() as bus:
            for s in range(n_subs):
                bus.subscribe("p.x", _recorder(kinds, s, received[s]), maxsize=maxsize)
            for i in range(len(kinds)):
                await bus.publish("p.x", i)
            await bus.drain()
        return received

    for got in asyncio.run(run()):
        assert got == list(range(len(kinds)))


@SETTINGS
@given(
    st.integers(min_value=0, max_value=80),
    st.integers(min_value=1, max_value=20),
    st.sampled_from(["drop_oldest", "drop_newest"]),
)
def test_exact_drop_counts(n: int, maxsize: int, policy: str) -> None:
    """With the handler stalled, exactly n - maxsize events are dropped; the policy says which."""

    async def run() -> tuple[list[int], int]:
        got: list[int] = []
        async with Bus() as bus:
            gate = asyncio.Event()

            async def stalled(event: int) -> None:
                await gate.wait()
                got.append(event)

            sub = bus.subscribe("d.x", stalled, maxsize=maxsize, overflow=policy)  # type: ignore[arg-type]
            await bus.publish("d.x", -1)  # taken by the worker, which then stalls
            while sub.in_flight == 0:
                await asyncio.sleep(0)
            for i in range(n):
                await bus.publish("d.x", i)
            dropped = bus.stats()[0].dropped
            gate.set()
            await bus.drain()
        return got, dropped

    got, dropped = asyncio.run(run())
    kept = min(n, maxsize)
    assert dropped == n - kept
    expected = list(range(n - kept, n)) if policy == "drop_oldest" else list(range(kept))
    assert got == [-1, *expected]


@SETTINGS
@given(st.integers(min_value=1, max_value=30), st.data())
def test_snapshot_semantics_on_subscribe_and_unsubscribe(n: int, data: st.DataObject) -> None:
    """A subscriber added mid-stream sees exactly the events published after it subscribed; one
    removed mid-stream sees exactly those published before it was removed."""
    add_at = data.draw(st.integers(min_value=0, max_value=n - 1), label="add_at")
    remove_at = data.draw(st.integers(min_value=0, max_value=n - 1), label="remove_at")

    async def run() -> tuple[list[int], list[int], int, int]:
        late: list[int] = []
        victim: list[int] = []
        published = 0
        marks = {"added": -1, "removed": -1}
        async with Bus() as bus:
            victim_sub = bus.subscribe("s.x", victim.append)

            async def controller(event: int) -> None:
                if event == add_at:
                    bus.subscribe("s.x", late.append)
                    marks["added"] = published
                if event == remove_at:
                    bus.unsubscribe(victim_sub)
                    marks["removed"] = published
                await asyncio.sleep(0)

            bus.subscribe("s.x", controller, maxsize=1)
            for i in range(n):
                await bus.publish("s.x", i)
                published += 1
                await asyncio.sleep(0)
            await bus.drain()
        return late, victim, marks["added"], marks["removed"]

    late, victim, added, removed = asyncio.run(run())
    assert late == list(range(added, n))
    assert victim == list(range(removed))


@SETTINGS
@given(behaviours, st.integers(min_value=1, max_value=4), st.integers(min_value=1, max_value=10))
def test_close_drains_everything_accepted(kinds: list[int], concurrency: int, maxsize: int) -> None:
    async def run() -> list[int]:
        got: list[int] = []
        bus = Bus()

        async def h(event: int) -> None:
            await _behave(kinds[event])
            got.append(event)

        bus.subscribe("c.x", h, concurrency=concurrency, maxsize=maxsize)
        await bus.start()
        for i in range(len(kinds)):
            await bus.publish("c.x", i)
        await bus.close(timeout=30)
        return got

    assert sorted(asyncio.run(run())) == list(range(len(kinds)))


@SETTINGS
@given(st.lists(st.sampled_from(["a.b", "a.c", "x.b", "$s.b", "a.b.c"]), max_size=30))
def test_every_subscription_sees_exactly_its_matching_topics(topics: list[str]) -> None:
    patterns = ["a.*", "*.b", ">", "a.>", "$s.>", "a.b"]

    async def run() -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {p: [] for p in patterns}
        async with Bus() as bus:
            for p in patterns:
                bus.subscribe(p, lambda event, ctx, into=seen[p]: into.append(ctx.topic))
            for t in topics:
                await bus.publish(t, None)
            await bus.drain()
        return seen

    from axonbus import match

    seen = asyncio.run(run())
    for p in patterns:
        assert seen[p] == [t for t in topics if match(p, t)], p

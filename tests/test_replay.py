"""Reading the event log back: ``Bus.replay``, ``Bus.events`` and ``fold``, on every log
transport (``sqlite://`` always, ``postgresql://`` when the shared Postgres is up)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from axonbus import (
    Bus,
    BusClosed,
    BusNotStarted,
    DeadLetter,
    Envelope,
    Event,
    NoEventLog,
    Retry,
    fold,
)

MakeBus = Callable[[], Bus]


class Placed(Event, topic="order.{order_id}.placed", name="tests.replay.Placed"):
    order_id: str
    qty: int


class Cancelled(Event, topic="order.{order_id}.cancelled", name="tests.replay.Cancelled"):
    order_id: str


@pytest.fixture(params=["sqlite", "postgres"])
def make_bus(request: pytest.FixtureRequest, tmp_path: Path) -> MakeBus:
    """A factory of buses sharing one log (a file, or a bus name of its own on Postgres)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'log.db'}"
        return lambda: Bus(url, name="replay")
    service = request.getfixturevalue("postgres_service")
    name = request.getfixturevalue("postgres_bus_name")
    return lambda: Bus(service, name=name)


@pytest.fixture
async def bus(make_bus: MakeBus) -> AsyncIterator[Bus]:
    async with make_bus() as b:
        yield b


async def publish_all(bus: Bus, items: list[tuple[str, Any]]) -> list[Envelope]:
    sent = [await bus.publish(topic, payload) for topic, payload in items]
    await bus.flush()
    return sent


async def replayed(bus: Bus, target: Any = ">", **kwargs: Any) -> list[Envelope]:
    return [env async for env in bus.replay(target, **kwargs)]


def payloads(envs: list[Envelope]) -> list[Any]:
    return [env.event for env in envs]


@pytest.fixture
async def ten(bus: Bus) -> list[Envelope]:
    """Ten events: ``a.<i>`` for even i, ``b.<i>`` for odd i, payload i."""
    return await publish_all(bus, [(f"{'ab'[i % 2]}.{i}", i) for i in range(10)])


# -- since / until / limit -----------------------------------------------------------------------


async def test_everything_in_order_with_offsets(bus: Bus, ten: list[Envelope]) -> None:
    got = await replayed(bus)
    assert payloads(got) == list(range(10))
    assert [e.id for e in got] == [e.id for e in ten]
    assert [e.topic for e in got] == [e.topic for e in ten]
    offsets = [e.offset for e in got]
    assert all(isinstance(o, int) for o in offsets)
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == 10


async def test_since_an_offset_includes_it(bus: Bus, ten: list[Envelope]) -> None:
    offsets = [e.offset for e in await replayed(bus)]
    assert payloads(await replayed(bus, since=offsets[3])) == list(range(3, 10))
    assert payloads(await replayed(bus, since=offsets[9])) == [9]
    assert payloads(await replayed(bus, since=0)) == list(range(10))
    assert await replayed(bus, since=offsets[9] + 1) == []


async def test_resume_from_the_last_offset_plus_one(bus: Bus, ten: list[Envelope]) -> None:
    first = await replayed(bus, limit=4)
    last = first[-1].offset
    assert last is not None
    rest = await replayed(bus, since=last + 1)
    assert payloads(first + rest) == list(range(10))


async def test_since_an_event_id_starts_after_it(bus: Bus, ten: list[Envelope]) -> None:
    assert payloads(await replayed(bus, since=ten[3].id)) == list(range(4, 10))
    assert await replayed(bus, since=ten[9].id) == []


async def test_since_an_unknown_event_id_is_a_lookup_error(bus: Bus, ten: list[Envelope]) -> None:
    with pytest.raises(LookupError, match="no-such-id"):
        await replayed(bus, since="no-such-id")


@pytest.mark.parametrize("since", [b"3", [3], 3j, True])
async def test_since_of_another_type_is_a_type_error(
    bus: Bus, ten: list[Envelope], since: Any
) -> None:
    with pytest.raises(TypeError, match="since="):
        await replayed(bus, since=since)


async def _two_batches(bus: Bus) -> float:
    """Events 0-2, a pause, then 3-5; returns a time in the middle of the pause."""
    await publish_all(bus, [("t.x", i) for i in range(3)])
    await asyncio.sleep(0.05)
    middle = time.time()
    await asyncio.sleep(0.05)
    await publish_all(bus, [("t.x", i) for i in range(3, 6)])
    return middle


async def test_since_a_time(bus: Bus) -> None:
    middle = await _two_batches(bus)
    assert payloads(await replayed(bus, since=datetime.fromtimestamp(middle))) == [3, 4, 5]
    assert payloads(await replayed(bus, since=middle)) == [3, 4, 5]  # epoch seconds
    assert payloads(await replayed(bus, since=timedelta(seconds=time.time() - middle))) == [3, 4, 5]
    assert payloads(await replayed(bus, since=timedelta(hours=1))) == list(range(6))
    assert await replayed(bus, since=time.time() + 60) == []


async def test_since_an_aware_datetime(bus: Bus) -> None:
    middle = await _two_batches(bus)
    aware = datetime.fromtimestamp(middle).astimezone()
    assert payloads(await replayed(bus, since=aware)) == [3, 4, 5]


async def test_until_an_offset_or_id_includes_it(bus: Bus, ten: list[Envelope]) -> None:
    offsets = [e.offset for e in await replayed(bus)]
    assert payloads(await replayed(bus, until=offsets[4])) == list(range(5))
    assert payloads(await replayed(bus, until=ten[4].id)) == list(range(5))
    assert payloads(await replayed(bus, since=offsets[2], until=offsets[4])) == [2, 3, 4]
    assert payloads(await replayed(bus, since=ten[2].id, until=ten[4].id)) == [3, 4]


async def test_until_a_time_excludes_it(bus: Bus) -> None:
    middle = await _two_batches(bus)
    assert payloads(await replayed(bus, until=middle)) == [0, 1, 2]
    assert payloads(await replayed(bus, until=datetime.fromtimestamp(middle))) == [0, 1, 2]
    assert payloads(await replayed(bus, until=timedelta(seconds=time.time() - middle))) == [0, 1, 2]
    stored = await replayed(bus)
    # a time equal to an event's timestamp leaves that event out
    at = stored[3].timestamp
    assert payloads(await replayed(bus, until=at)) == [0, 1, 2]
    assert payloads(await replayed(bus, since=at)) == [3, 4, 5]  # and since includes it


async def test_limit(bus: Bus, ten: list[Envelope]) -> None:
    assert payloads(await replayed(bus, limit=3)) == [0, 1, 2]
    assert payloads(await replayed(bus, "b.*", limit=2)) == [1, 3]  # counts matches only
    assert payloads(await replayed(bus, limit=100)) == list(range(10))
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="limit"):
            bus.replay(">", limit=bad)  # type: ignore[arg-type]


async def test_more_events_than_one_read(bus: Bus) -> None:
    await publish_all(bus, [("many.x", i) for i in range(700)])  # several pages of 256
    assert payloads(await replayed(bus)) == list(range(700))
    assert payloads(await replayed(bus, limit=300)) == list(range(300))
    assert payloads(await replayed(bus, "many.*", since=500)) == list(range(499, 700))


async def test_pattern_filters(bus: Bus, ten: list[Envelope]) -> None:
    await publish_all(bus, [("a.deep.er", "deep")])
    assert payloads(await replayed(bus, "a.*")) == [0, 2, 4, 6, 8]
    assert payloads(await replayed(bus, "b.>")) == [1, 3, 5, 7, 9]
    assert payloads(await replayed(bus, "a.>")) == [0, 2, 4, 6, 8, "deep"]
    assert payloads(await replayed(bus, "a.4")) == [4]
    assert await replayed(bus, "c.>") == []
    # system topics are not in ">"
    assert all(not e.topic.startswith("$") for e in await replayed(bus))


async def test_event_classes_decode_to_their_class(bus: Bus) -> None:
    await bus.publish(Placed(order_id="o1", qty=2))
    await bus.publish(Cancelled(order_id="o1"))
    await bus.publish(Placed(order_id="o2", qty=5))
    await bus.publish("order.o3.note", {"text": "plain"})
    await bus.flush()
    placed = await replayed(bus, Placed)  # by type: its topic template
    assert [type(e.event) for e in placed] == [Placed, Placed]
    assert [e.event.qty for e in placed] == [2, 5]
    everything = await replayed(bus, "order.>")
    assert [type(e.event).__name__ for e in everything] == [
        "Placed",
        "Cancelled",
        "Placed",
        "dict",
    ]
    assert everything[1].event == Cancelled(order_id="o1")


async def test_events_from_another_bus_on_the_same_log(make_bus: MakeBus) -> None:
    async with make_bus() as writer:
        sent = await publish_all(writer, [("x.y", i) for i in range(3)])
    async with make_bus() as reader:
        got = await reader.events("x.>")
        assert [e.id for e in got] == [e.id for e in sent]
        assert payloads(got) == [0, 1, 2]


async def test_events_is_a_list_query(bus: Bus, ten: list[Envelope]) -> None:
    got = await bus.events()
    assert isinstance(got, list)
    assert payloads(got) == list(range(10))
    assert payloads(await bus.events("a.*", limit=2)) == [0, 2]
    assert payloads(await bus.events(since=ten[7].id)) == [8, 9]
    assert payloads(await bus.events(until=ten[1].id)) == [0, 1]


async def test_dead_letters_are_queryable(bus: Bus) -> None:
    async def fails(event: Any) -> None:
        raise RuntimeError("no")

    bus.subscribe("job.x", fails, durable="d", retry=Retry(attempts=1))
    await bus.flush()
    sent = await bus.publish("job.x", "bad")
    async with asyncio.timeout(5):
        while not await bus.events("$bus.dead_letter"):
            await asyncio.sleep(0.01)
    (letter,) = await bus.events(DeadLetter)
    assert isinstance(letter.event, DeadLetter)
    assert letter.event.event_id == sent.id


# -- follow --------------------------------------------------------------------------------------


async def test_follow_has_no_gap_and_no_duplicate(make_bus: MakeBus) -> None:
    total = 500
    before = 50
    async with make_bus() as reader, make_bus() as writer:
        await publish_all(writer, [("f.x", i) for i in range(before)])
        got: list[Envelope] = []
        started = asyncio.Event()

        async def follow() -> None:
            async for env in reader.replay("f.>", since=1, follow=True):
                got.append(env)
                started.set()
                if len(got) == total:
                    return

        async def publish() -> None:
            await started.wait()  # the follower is in its stored part
            for i in range(before, total):
                await writer.publish("f.x", i)
                if i % 50 == 0:
                    await asyncio.sleep(0)  # let the follower catch up now and then
            await writer.flush()

        async with asyncio.timeout(15):
            await asyncio.gather(follow(), publish())
        await writer.publish("f.x", "after")  # nothing beyond what we stopped at was taken
        stored = await reader.events("f.>", limit=total + 10)
    assert payloads(got) == list(range(total))
    offsets = [e.offset for e in got]
    assert offsets == [e.offset for e in stored[:total]]
    assert offsets == sorted(set(offsets))  # increasing: no duplicate
    if reader.url.startswith("sqlite"):
        assert offsets == list(range(1, total + 1))  # sqlite offsets have no gaps


async def test_follow_includes_events_of_this_bus_and_interleaves_topics(
    make_bus: MakeBus,
) -> None:
    async with make_bus() as bus:
        await publish_all(bus, [("g.a", 0), ("h.b", "skip"), ("g.b", 1)])
        got: list[Any] = []

        async def follow() -> None:
            async for env in bus.replay("g.>", follow=True):
                got.append(env.event)
                if len(got) == 4:
                    return

        task = asyncio.create_task(follow())
        async with asyncio.timeout(5):
            while len(got) < 2:
                await asyncio.sleep(0.005)
        await bus.publish("h.c", "skip")
        await bus.publish("g.c", 2)
        await bus.publish("g.d", 3)
        async with asyncio.timeout(5):
            await task
        assert got == [0, 1, 2, 3]


async def test_follow_and_until_do_not_mix(bus: Bus) -> None:
    with pytest.raises(ValueError, match="until"):
        bus.replay(">", follow=True, until=10)


async def test_follow_stops_when_the_consumer_breaks(bus: Bus) -> None:
    await publish_all(bus, [("s.x", i) for i in range(3)])
    replay = bus.replay("s.>", follow=True)
    got = []
    async for env in replay:
        got.append(env.event)
        if len(got) == 2:
            break
    await replay.aclose()  # type: ignore[attr-defined]
    assert got == [0, 1]


# -- what replay refuses -------------------------------------------------------------------------


async def test_memory_keeps_no_log() -> None:
    async with Bus() as bus:
        with pytest.raises(NoEventLog, match="sqlite"):
            bus.replay(">")
        with pytest.raises(NoEventLog):
            await bus.events()


def test_replay_before_start(tmp_path: Path) -> None:
    bus = Bus(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(BusNotStarted):
        bus.replay(">")


async def test_replay_after_close(tmp_path: Path) -> None:
    async with Bus(f"sqlite:///{tmp_path / 'x.db'}") as bus:
        pass
    with pytest.raises(BusClosed):
        bus.replay(">")


# -- fold ----------------------------------------------------------------------------------------


def _apply(cart: dict[str, int], event: Any) -> dict[str, int]:
    if isinstance(event, Placed):
        return {**cart, event.order_id: cart.get(event.order_id, 0) + event.qty}
    if isinstance(event, Cancelled):
        return {k: v for k, v in cart.items() if k != event.order_id}
    return cart


async def test_fold_over_a_replay(bus: Bus) -> None:
    for event in (
        Placed(order_id="o1", qty=2),
        Placed(order_id="o2", qty=1),
        Placed(order_id="o1", qty=3),
        Cancelled(order_id="o2"),
        Placed(order_id="o3", qty=7),
    ):
        await bus.publish(event)
    await bus.flush()
    assert await fold(bus.replay("order.>"), _apply, {}) == {"o1": 5, "o3": 7}
    # up to a point in the log: the state as it was then
    stored = await bus.events("order.>")
    assert await fold(bus.replay("order.>", until=stored[2].id), _apply, {}) == {"o1": 5, "o2": 1}


async def test_fold_over_a_list() -> None:
    envs = [Envelope("n.x", n) for n in (1, 2, 3, 4)]
    assert await fold(envs, lambda total, n: total + n, 0) == 10
    assert await fold([], lambda total, n: total + n, 42) == 42
    assert await fold(iter(envs), lambda seen, n: [*seen, n], []) == [1, 2, 3, 4]

"""The PostgreSQL log store against the shared Postgres (see tests/support/services.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from axonbus.transports.log._store import Claimed, table_prefix
from axonbus.transports.postgres import CONNECTION_ERRORS, PostgresStore

Factory = Callable[..., Awaitable[PostgresStore]]
WINDOW = 60.0


def pub(
    topic: str, n: int | str = 0, *, key: str | None = None, ts: float | None = None
) -> tuple[Any, ...]:
    return ("pub", topic, f"data-{n}".encode(), f"id-{n}", time.time() if ts is None else ts, key)


def anything(topic: str) -> bool:
    return True


@pytest.fixture
async def stores(
    postgres_service: str,
    postgres_bus_name: str,
) -> AsyncIterator[Factory]:
    """Open stores of one private bus (each with its own pool), closed after the test."""
    opened: list[PostgresStore] = []

    async def make(origin: str = "me", **options: Any) -> PostgresStore:
        store = PostgresStore(postgres_service, table_prefix(postgres_bus_name), **options)
        store.origin = origin
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(stores: Factory) -> PostgresStore:
    return await stores()


async def test_append_then_read_in_order(store: PostgresStore) -> None:
    assert await store.head() == 0
    assert await store.read(0, 10) == []
    offsets = await store.write([pub("a.b", i) for i in range(5)], WINDOW)
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == 5
    rows = await store.read(0, 100)
    assert [r.offset for r in rows] == offsets
    assert [r.data for r in rows] == [f"data-{i}".encode() for i in range(5)]
    assert {r.origin for r in rows} == {"me"}
    assert await store.head() == offsets[-1]
    assert await store.offset_of("id-3") == offsets[3]
    assert await store.offset_of("nope") is None
    assert [r.offset for r in await store.read(offsets[1], 2)] == offsets[2:4]
    assert [r.offset for r in await store.read(0, 10, until=offsets[2])] == offsets[:3]


async def test_read_filters_by_time_and_origin(stores: Factory) -> None:
    mine, theirs = await stores("mine"), await stores("theirs")
    await mine.write([pub("t", 1, ts=100.0), pub("t", 2, ts=200.0)], WINDOW)
    await theirs.write([pub("t", 3, ts=300.0)], WINDOW)
    ids = [r.event_id for r in await mine.read(0, 10, since_time=200.0)]
    assert ids == ["id-2", "id-3"]
    ids = [r.event_id for r in await mine.read(0, 10, since_time=150.0, until_time=300.0)]
    assert ids == ["id-2"]
    ids = [r.event_id for r in await mine.read(0, 10, exclude_origin="mine")]
    assert ids == ["id-3"]


async def test_a_batch_mixes_operations_in_order(store: PostgresStore) -> None:
    results = await store.write(
        [pub("x", 1), ("register", "durable:d", "durable", "x"), pub("x", 2)], WINDOW
    )
    assert isinstance(results[0], int)
    assert results[1] is None
    # registered between the two publishes: it starts after the first
    claimed = await store.claim("durable:d", anything, "me", 10, durable=True)
    assert [c.offset for c in claimed] == [results[2]]


async def test_offsets_follow_commit_order_under_concurrent_writers(stores: Factory) -> None:
    one, two, reader = await stores("one"), await stores("two"), await stores("reader")
    batches, size = 40, 25
    seen: list[int] = []
    ids: list[str] = []
    done = asyncio.Event()

    async def tail() -> None:
        last = 0
        while True:
            finished = done.is_set()
            rows = await reader.read(last, 1000)
            for row in rows:
                assert row.offset > last
                seen.append(row.offset)
                ids.append(row.event_id)
                last = row.offset
            if finished and not rows:
                return

    async def writer(store: PostgresStore, name: str) -> None:
        for b in range(batches):
            await store.write([pub("t", f"{name}-{b}-{i}") for i in range(size)], WINDOW)

    tailer = asyncio.create_task(tail())
    # several writers per store: their transactions overlap in each pool
    await asyncio.gather(*(writer(s, f"{s.origin}{k}") for s in (one, two) for k in range(3)))
    done.set()
    await tailer
    total = 2 * 3 * batches * size
    assert len(ids) == total  # the tailer skipped nothing ...
    assert len(set(ids)) == total  # ... and saw nothing twice
    assert seen == sorted(seen)
    assert [r.offset for r in await reader.read(0, total + 1)] == seen


async def test_idempotency_key_within_a_batch_and_the_window(store: PostgresStore) -> None:
    first, dup, other = await store.write(
        [pub("t", 1, key="k"), pub("t", 2, key="k"), pub("t", 3, key="j")], WINDOW
    )
    assert isinstance(first, int)
    assert dup == "id-1"
    assert isinstance(other, int)
    assert await store.write([pub("t", 4, key="k")], WINDOW) == ["id-1"]
    assert [r.event_id for r in await store.read(0, 10)] == ["id-1", "id-3"]
    await asyncio.sleep(0.06)
    # past a short window the key is free again: a new event, remembered under the key
    (again,) = await store.write([pub("t", 5, key="k")], 0.05)
    assert isinstance(again, int)
    assert await store.write([pub("t", 6, key="k")], 0.05) == ["id-5"]


async def test_durable_claim_ack_and_position(store: PostgresStore) -> None:
    assert await store.claim("durable:d", anything, "me", 10, durable=True) == []  # unknown
    await store.write([pub("x.a", 0)], WINDOW)  # before the consumer: not for it
    await store.write([("register", "durable:d", "durable", "x.>")], WINDOW)
    offsets = await store.write([pub("x.a", 1), pub("y.a", 2), pub("x.b", 3)], WINDOW)
    claimed = await store.claim("durable:d", lambda t: t.startswith("x."), "me", 10, durable=True)
    assert claimed == [Claimed(offsets[0], 1, b"data-1"), Claimed(offsets[2], 1, b"data-3")]
    # held by a live owner: nothing more to hand out
    await store.heartbeat("me", 30)
    assert await store.claim("durable:d", anything, "other", 10, durable=True) == []
    await store.write([("ack", "durable:d", offsets[0]), ("ack", "durable:d", offsets[2])], WINDOW)
    await store.heartbeat("me", 0)  # expired now; but nothing is pending anymore
    assert await store.claim("durable:d", anything, "other", 10, durable=True) == []


async def test_claim_limit_moves_the_position_only_past_what_it_read(store: PostgresStore) -> None:
    await store.write([("register", "group:g", "group", ">")], WINDOW)
    offsets = await store.write([pub("t", i) for i in range(5)], WINDOW)
    first = await store.claim("group:g", anything, "me", 2, durable=False)
    rest = await store.claim("group:g", anything, "me", 10, durable=False)
    assert [c.offset for c in first + rest] == offsets
    assert await store.claim("group:g", anything, "me", 10, durable=False) == []


async def test_group_members_share_without_pending(stores: Factory) -> None:
    a, b = await stores("a"), await stores("b")
    await a.write([("register", "group:g", "group", ">")], WINDOW)
    offsets: list[int] = []
    got: list[int] = []

    async def member(store: PostgresStore, name: str) -> None:
        for _ in range(40):
            claimed = await store.claim("group:g", anything, name, 7, durable=False)
            got.extend(c.offset for c in claimed)
            await asyncio.sleep(0)

    async def publish() -> None:
        for i in range(10):
            offsets.extend(await a.write([pub("t", f"{i}-{j}") for j in range(10)], WINDOW))

    await asyncio.gather(publish(), member(a, "a"), member(b, "b"))
    got.extend(c.offset for c in await a.claim("group:g", anything, "a", 1000, durable=False))
    assert sorted(got) == offsets  # each event to exactly one member
    await a.heartbeat("a", 0)
    await b.heartbeat("b", 0)
    # at most once: nothing pending, nothing handed out again
    assert await b.claim("group:g", anything, "b", 1000, durable=False) == []


async def test_reclaim_after_the_owner_stops_beating(store: PostgresStore) -> None:
    await store.write([("register", "durable:d", "durable", ">")], WINDOW)
    (offset,) = await store.write([pub("t", 1)], WINDOW)
    await store.heartbeat("a", 0.3)
    claimed = await store.claim("durable:d", anything, "a", 10, durable=True)
    assert [c.attempt for c in claimed] == [1]
    await store.heartbeat("b", 30)
    assert await store.claim("durable:d", anything, "b", 10, durable=True) == []
    await asyncio.sleep(0.35)
    # handed out again, not charged: no handler call was recorded
    assert await store.claim("durable:d", anything, "b", 10, durable=True) == [
        Claimed(offset, 1, b"data-1", True)
    ]
    # b is alive: a does not take it back
    await store.heartbeat("a", 30)
    assert await store.claim("durable:d", anything, "a", 10, durable=True) == []


async def test_release_makes_pending_visible_at_once(store: PostgresStore) -> None:
    await store.write(
        [("register", "durable:d", "durable", ">"), ("respond", "a", "math.*", time.time() + 30)],
        WINDOW,
    )
    await store.write([pub("t", 1)], WINDOW)
    await store.heartbeat("a", 30)
    await store.heartbeat("b", 30)
    assert len(await store.claim("durable:d", anything, "a", 10, durable=True)) == 1
    assert await store.responders() == ["math.*"]
    await store.release("a")
    assert await store.responders() == []
    claimed = await store.claim("durable:d", anything, "b", 10, durable=True)
    assert [(c.attempt, c.redelivered) for c in claimed] == [(1, True)]


async def test_defer_hides_until_the_delay_passed(store: PostgresStore) -> None:
    await store.write([("register", "durable:d", "durable", ">")], WINDOW)
    (offset,) = await store.write([pub("t", 1)], WINDOW)
    await store.heartbeat("me", 30)
    await store.claim("durable:d", anything, "me", 10, durable=True)
    await store.write([("defer", "durable:d", offset, 0.2, 2)], WINDOW)  # call 1 failed
    assert await store.claim("durable:d", anything, "me", 10, durable=True) == []
    await asyncio.sleep(0.25)
    assert await store.claim("durable:d", anything, "me", 10, durable=True) == [
        Claimed(offset, 2, b"data-1", True)
    ]


async def test_a_recorded_handler_call_is_charged_to_the_next_claim(
    store: PostgresStore,
) -> None:
    await store.write([("register", "durable:d", "durable", ">")], WINDOW)
    (offset,) = await store.write([pub("t", 1)], WINDOW)
    await store.heartbeat("a", 30)
    await store.claim("durable:d", anything, "a", 10, durable=True)
    await store.write([("attempt", "durable:d", offset, 3)], WINDOW)  # call 2 began
    await store.release("a")
    assert await store.claim("durable:d", anything, "b", 10, durable=True) == [
        Claimed(offset, 3, b"data-1", True)
    ]


async def test_dead_letters(store: PostgresStore) -> None:
    await store.write(
        [("register", "durable:d", "durable", ">"), ("register", "durable:e", "durable", ">")],
        WINDOW,
    )
    offsets = await store.write([pub("t", 1), pub("t", 2)], WINDOW)
    await store.heartbeat("me", 0)
    await store.claim("durable:d", anything, "me", 10, durable=True)
    await store.claim("durable:e", anything, "me", 10, durable=True)
    await store.write(
        [
            ("dead", "durable:d", offsets[1], "ValueError: no"),
            ("dead", "durable:e", offsets[0], "x"),
        ],
        WINDOW,
    )
    letters = await store.dead_letters(None, 10)
    assert [(c, o, e, d) for c, o, _, e, d in letters] == [
        ("durable:d", offsets[1], "ValueError: no", b"data-2"),
        ("durable:e", offsets[0], "x", b"data-1"),
    ]
    assert [o for _, o, *_ in await store.dead_letters("durable:e", 10)] == [offsets[0]]
    # gone from pending: only the one not dead-lettered comes back
    assert [c.offset for c in await store.claim("durable:d", anything, "me", 10, durable=True)] == [
        offsets[0]
    ]


async def test_compaction_keeps_what_a_durable_has_not_acknowledged(store: PostgresStore) -> None:
    await store.write([("register", "durable:d", "durable", "keep.>")], WINDOW)
    offsets = await store.write([pub("keep.a", i) for i in range(6)], WINDOW)
    await store.heartbeat("me", 30)
    await store.claim("durable:d", anything, "me", 2, durable=True)  # pending: 0, 1
    await store.write([("ack", "durable:d", offsets[0])], WINDOW)
    done = await store.compact(0, 1, False)
    assert done.deleted == 1  # only offsets[0]: offsets[1] is still pending
    assert done.unacknowledged == 0
    assert [r.offset for r in await store.read(0, 10)] == offsets[1:]


async def test_compaction_drop_says_what_was_lost(store: PostgresStore) -> None:
    await store.write(
        [
            ("register", "durable:d", "durable", "keep.>"),
            ("register", "durable:other", "durable", "other.>"),
            ("register", "group:g", "group", ">"),  # groups hold nothing
        ],
        WINDOW,
    )
    offsets = await store.write([pub("keep.a", i) for i in range(4)], WINDOW)
    await store.heartbeat("me", 30)
    await store.claim("durable:d", anything, "me", 1, durable=True)  # pending: offsets[0]
    done = await store.compact(0, 1, True)
    assert done.deleted == 3
    # unread by durable:d (and pending): lost; durable:other would never have wanted them
    assert done.unacknowledged == 3
    assert done.consumers == ("durable:d",)
    assert [r.offset for r in await store.read(0, 10)] == offsets[3:]
    # the lost pending delivery is not handed out again
    await store.heartbeat("me", 0)
    claimed = await store.claim("durable:d", anything, "other", 10, durable=True)
    assert [c.offset for c in claimed] == offsets[3:]


async def test_compaction_skips_a_stopped_durable_past_what_it_never_wants(
    store: PostgresStore,
) -> None:
    await store.write([("register", "durable:d", "durable", "orders.>")], WINDOW)
    offsets = await store.write(
        [pub("other.a", 1), pub("other.b", 2), pub("orders.x", 3), pub("other.c", 4)], WINDOW
    )
    # nobody claims: only orders.x holds the log
    done = await store.compact(0, 1, False)
    assert done.deleted == 2
    assert [r.offset for r in await store.read(0, 10)] == offsets[2:]
    await store.heartbeat("me", 30)
    claimed = await store.claim(
        "durable:d", lambda t: t.startswith("orders."), "me", 10, durable=True
    )
    assert [c.offset for c in claimed] == [offsets[2]]


async def test_compaction_by_age_and_idempotency_keys(store: PostgresStore) -> None:
    old = time.time() - 100
    await store.write([pub("t", 1, ts=old), pub("t", 2, key="k")], WINDOW)
    store.idempotency_window = 0.01
    await asyncio.sleep(0.02)
    done = await store.compact(50, 0, False)
    assert done.deleted == 1
    assert [r.event_id for r in await store.read(0, 10)] == ["id-2"]
    # the key was forgotten: the same key stores a new event even with a long window
    assert isinstance((await store.write([pub("t", 3, key="k")], WINDOW))[0], int)


async def test_competing_take_requests(stores: Factory) -> None:
    a, b = await stores("a"), await stores("b")
    await a.write(
        [("request", "math.*", "req", f"r{i}", None, b"%d" % i) for i in range(100)]
        + [("request", "other", "req", "x", time.time() + 30, b"x")],
        WINDOW,
    )
    taken: list[str] = []

    async def take(store: PostgresStore) -> None:
        while batch := await store.take_requests(["math.*"], 7):
            taken.extend(r.request_id for r in batch)

    await asyncio.gather(take(a), take(b), take(a), take(b))
    assert sorted(taken) == sorted(f"r{i}" for i in range(100))  # each exactly once
    (left,) = await b.take_requests(["other", "nope"], 10)
    assert (left.pattern, left.requester, left.request_id, left.data) == ("other", "req", "x", b"x")


async def test_take_requests_oldest_first_and_replies(store: PostgresStore) -> None:
    await store.write([("request", "p", "me", f"r{i}", None, b"") for i in range(3)], WINDOW)
    assert [r.request_id for r in await store.take_requests(["p"], 2)] == ["r0", "r1"]
    await store.write([("reply", "me", "r0", b"ok\n0"), ("reply", "you", "r1", b"ok\n1")], WINDOW)
    assert await store.take_replies("me") == [("r0", b"ok\n0")]
    assert await store.take_replies("me") == []


async def test_responders_expire_and_go(store: PostgresStore) -> None:
    now = time.time()
    await store.write(
        [("respond", "a", "p.*", now + 30), ("respond", "b", "p.*", now + 30)], WINDOW
    )
    await store.write([("respond", "c", "q", now - 1)], WINDOW)  # expired
    assert await store.responders() == ["p.*"]
    await store.write([("unrespond", "a", "p.*"), ("unrespond", "b", "p.*")], WINDOW)
    assert await store.responders() == []


async def test_wait_changed_wakes_on_another_connection(stores: Factory) -> None:
    writer, waiter = await stores("w"), await stores("r")
    assert await waiter.wait_changed(0.05) is False
    wait = asyncio.create_task(waiter.wait_changed(5))
    await asyncio.sleep(0.05)
    await writer.write([pub("t", 1)], WINDOW)
    start = time.monotonic()
    assert await wait is True
    assert time.monotonic() - start < 1
    # a duplicate publish writes nothing and wakes nobody
    await writer.write([pub("t", 2, key="k")], WINDOW)
    assert await waiter.wait_changed(1) is True
    await writer.write([pub("t", 3, key="k")], WINDOW)
    assert await waiter.wait_changed(0.2) is False


async def test_connection_loss_is_a_connection_error(
    stores: Factory,
    postgres_service: str,
) -> None:
    store = await stores()
    listener_pid = store._listener.get_server_pid()
    conn = await asyncpg.connect(postgres_service)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", listener_pid)
    finally:
        await conn.close()

    async def wait_for_the_loss() -> None:
        for _ in range(100):
            await store.wait_changed(0.05)

    with pytest.raises(CONNECTION_ERRORS):
        await wait_for_the_loss()
    await store.close()
    with pytest.raises(CONNECTION_ERRORS):
        await store.head()
    await store.close()  # twice: still no error


async def test_concurrent_opens_create_the_tables_once(stores: Factory) -> None:
    opened = await asyncio.gather(*(stores(f"s{i}") for i in range(4)))
    assert [await s.head() for s in opened] == [0, 0, 0, 0]


def test_long_bus_names_keep_distinct_table_names() -> None:
    store = PostgresStore("postgresql://x/y", table_prefix("n" * 80))
    assert len(store.channel) <= 63
    other = PostgresStore("postgresql://x/y", table_prefix("n" * 79 + "m"))
    assert store.channel != other.channel

"""What only ``sqlite://`` does: URLs, restarts, dead letters, groups across processes,
idempotency keys and retention (a fresh file per test)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import statistics
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from axonbus import Bus, ConnectionLost, Context, DeadLetter, Retry
from axonbus.testing import settle
from axonbus.transports.log._store import table_prefix
from axonbus.transports.sqlite import SqliteStore, SqliteTransport

NAME = "t"
PREFIX = table_prefix(NAME)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (settle() would wait for stuck handlers to finish)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


def url_of(db: Path, query: str = "") -> str:
    return f"sqlite:///{db}" + (f"?{query}" if query else "")  # db is absolute: four slashes


def sql(db: Path, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one statement on the file with a connection of its own."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(statement, args).fetchall()
    finally:
        conn.close()


def store_of(bus: Bus) -> SqliteStore:
    transport = bus.transport
    assert isinstance(transport, SqliteTransport)
    assert isinstance(transport.store, SqliteStore)
    return transport.store


def transport_of(bus: Bus) -> SqliteTransport:
    assert isinstance(bus.transport, SqliteTransport)
    return bus.transport


# -- URLs ----------------------------------------------------------------------------------------


async def test_three_slashes_is_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bus = Bus("sqlite:///rel.db", name=NAME)
    assert transport_of(bus).path == "rel.db"
    async with bus:
        await bus.publish("a.b", 1)
        await bus.flush()
    assert sql(tmp_path / "rel.db", f"SELECT topic FROM {PREFIX}events") == [("a.b",)]


async def test_four_slashes_is_an_absolute_path(db: Path) -> None:
    bus = Bus(f"sqlite:///{db}", name=NAME)
    assert str(db).startswith("/")
    assert transport_of(bus).path == str(db)
    async with bus:
        await bus.publish("a.b", 1)
        await bus.flush()
    assert sql(db, f"SELECT topic FROM {PREFIX}events") == [("a.b",)]


def test_options_are_parsed(db: Path) -> None:
    t = transport_of(Bus(url_of(db, "synchronous=FULL&busy_timeout=2&poll=0.005")))
    assert (t.synchronous, t.busy_timeout, t.poll) == ("full", 2.0, 0.005)
    t = transport_of(Bus(url_of(db)))
    assert (t.synchronous, t.busy_timeout, t.poll) == ("normal", 5.0, 0.02)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://", "needs a file"),
        ("sqlite:///", "needs a file"),
        ("sqlite:///:memory:", "needs a file"),
        ("sqlite:///x.db?colour=blue", "colour"),
        ("sqlite:///x.db?synchronous=fast", "synchronous"),
        ("sqlite:///x.db?retention=sometimes", "retention"),
        ("sqlite:///x.db?claim_idle=0", "claim_idle"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Bus(url)


async def test_a_missing_directory_fails_at_start_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    bus = Bus(url_of(missing / "x.db"), name=NAME)
    began = time.monotonic()
    with pytest.raises(ConnectionLost, match=f"directory {missing} does not exist"):
        await bus.start()
    assert time.monotonic() - began < 2.0  # not retried until some timeout
    assert not missing.exists()


async def test_synchronous_full_opens_and_stores(db: Path) -> None:
    async with Bus(url_of(db, "synchronous=full"), name=NAME) as bus:
        await bus.publish("sync.full", {"n": 1})
        await bus.flush()
        store = store_of(bus)

        def level() -> int:
            assert store._w is not None
            return int(store._w.execute("PRAGMA synchronous").fetchone()[0])

        assert await store._in_writer(level) == 2  # FULL
        assert [e.event for e in await bus.events()] == [{"n": 1}]
    assert sql(db, "PRAGMA journal_mode") == [("wal",)]
    assert sql(db, f"SELECT COUNT(*) FROM {PREFIX}events") == [(1,)]


# -- durable subscriptions across restarts -------------------------------------------------------


async def test_durable_position_survives_a_restart(db: Path) -> None:
    url = url_of(db)
    got: list[tuple[int, int]] = []

    async def handle(event: int, ctx: Context) -> None:
        got.append((event, ctx.attempt))

    async with Bus(url, name=NAME) as first:
        first.subscribe("job.>", handle, durable="worker")
        await first.flush()
        await first.publish("job.a", 1)
        await settle(first, lambda: len(got) == 1)
    async with Bus(url, name=NAME) as publisher:  # nobody consumes while these go in
        for i in (2, 3, 4):
            await publisher.publish("job.a", i)
        await publisher.publish("other.a", 99)  # not the durable's pattern
        await publisher.flush()
    assert got == [(1, 1)]
    async with Bus(url, name=NAME) as again:
        again.subscribe("job.>", handle, durable="worker")
        await settle(again, lambda: len(got) >= 4)
        await asyncio.sleep(0.05)  # anything delivered twice would show up now
    assert got == [(1, 1), (2, 1), (3, 1), (4, 1)]  # resumed after 1, nothing twice
    assert sql(db, f"SELECT COUNT(*) FROM {PREFIX}pending") == [(0,)]


async def test_a_delivery_cancelled_at_close_goes_to_the_next_bus(db: Path) -> None:
    url = url_of(db)
    seen: list[tuple[str, int, int]] = []
    never = asyncio.Event()

    async def hangs(event: int, ctx: Context) -> None:
        seen.append(("first", event, ctx.attempt))
        await never.wait()

    async def works(event: int, ctx: Context) -> None:
        seen.append(("second", event, ctx.attempt))

    first = Bus(url, name=NAME)
    first.subscribe("job.x", hangs, durable="d")
    async with first:
        await first.flush()
        await first.publish("job.x", 1)
        await until(lambda: len(seen) == 1)
        await first.close(timeout=0.05)  # the handler is cancelled: never acknowledged
    # released, its next handler call numbered 2 (the cancelled one was charged)
    assert sql(db, f"SELECT seq, attempts, owner FROM {PREFIX}pending") == [(1, 2, None)]
    async with Bus(url, name=NAME) as publisher:
        await publisher.publish("job.x", 2)
    began = time.monotonic()
    async with Bus(url, name=NAME) as second:
        second.subscribe("job.x", works, durable="d")
        await settle(second, lambda: len(seen) >= 3)
    # released at close: no claim_idle (15 s) to wait for
    assert time.monotonic() - began < 2.0
    assert seen == [("first", 1, 1), ("second", 1, 2), ("second", 2, 1)]
    assert sql(db, f"SELECT COUNT(*) FROM {PREFIX}pending") == [(0,)]


async def test_retries_with_backoff_then_a_dead_letter(db: Path) -> None:
    attempts: list[tuple[int, float]] = []
    letters: list[DeadLetter] = []

    async def always_fails(event: Any, ctx: Context) -> None:
        attempts.append((ctx.attempt, time.monotonic()))
        raise RuntimeError(f"cannot handle {event}")

    async with Bus(url_of(db), name=NAME) as bus:
        bus.subscribe(
            "job.x", always_fails, durable="d", retry=Retry(attempts=2, backoff=0.01, jitter=False)
        )
        bus.subscribe(DeadLetter, letters.append)
        await bus.flush()
        sent = await bus.publish("job.x", "poison")
        await settle(bus, lambda: len(letters) == 1)
        await bus.flush()  # the dead-letter move is written
        await asyncio.sleep(0.05)  # a third attempt would show up now
        assert [a for a, _ in attempts] == [1, 2]
        gap = attempts[1][1] - attempts[0][1]
        assert gap >= 0.009  # the backoff...
        assert gap < 0.5  # ...and not the consumer's idle wait (1 s)
        (letter,) = letters
        assert letter.event == "poison"
        assert letter.event_id == sent.id
        assert letter.original_topic == "job.x"
        assert letter.attempts == 2
        assert letter.error_type == "RuntimeError"
        assert letter.error_message == "cannot handle poison"
        (row,) = await store_of(bus).dead_letters(None, 10)
        assert row[0] == "durable:d"
        assert row[1] == 1  # the offset of the event
        assert "RuntimeError: cannot handle poison" in row[3]
        assert bus._codec.decode(row[4]).id == sent.id
        assert await store_of(bus).dead_letters("durable:other", 10) == []
        # the dead letter is an event in the log as well
        assert [e.event.event_id for e in await bus.events(DeadLetter)] == [sent.id]
    assert sql(db, f"SELECT COUNT(*) FROM {PREFIX}pending") == [(0,)]


async def test_redelivered_past_the_budget_is_redelivery_exhausted(db: Path) -> None:
    url = url_of(db)
    retry = Retry(attempts=2, backoff=0.001)
    attempts: list[int] = []
    never = asyncio.Event()

    async def stuck(event: Any, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        await never.wait()  # never acknowledged: the bus closes under it

    async with Bus(url, name=NAME) as publisher:
        publisher.subscribe("job.x", stuck, durable="d", retry=retry)
        await publisher.flush()
        await publisher.publish("job.x", "crashy")
        await until(lambda: attempts == [1])
        await publisher.close(timeout=0.05)
    async with Bus(url, name=NAME) as second:
        second.subscribe("job.x", stuck, durable="d", retry=retry)
        await until(lambda: attempts == [1, 2])
        await second.close(timeout=0.05)
    letters: list[DeadLetter] = []
    async with Bus(url, name=NAME) as third:
        third.subscribe("job.x", stuck, durable="d", retry=retry)
        third.subscribe(DeadLetter, letters.append)
        await settle(third, lambda: len(letters) == 1)
        await third.flush()
        (row,) = await store_of(third).dead_letters("durable:d", 10)
    assert attempts == [1, 2]  # the third delivery never reached the handler
    assert letters[0].error_type == "RedeliveryExhausted"
    assert letters[0].attempts == 3
    assert row[3].startswith("RedeliveryExhausted")
    assert sql(db, f"SELECT COUNT(*) FROM {PREFIX}pending") == [(0,)]


# -- groups across buses and processes -----------------------------------------------------------


async def test_group_members_on_one_file_get_each_event_once(db: Path) -> None:
    url = url_of(db)
    seen: dict[str, list[int]] = {"a": [], "b": []}

    async def slow_a(event: int) -> None:
        seen["a"].append(event)
        await asyncio.sleep(0.001)

    async def slow_b(event: int) -> None:
        seen["b"].append(event)
        await asyncio.sleep(0.001)

    async with Bus(url, name=NAME) as a, Bus(url, name=NAME) as b:
        a.subscribe("work.*", slow_a, group="g", maxsize=4)
        b.subscribe("work.*", slow_b, group="g", maxsize=4)
        await a.flush()
        await b.flush()
        for i in range(200):
            await a.publish("work.x", i)
        await a.flush()
        await until(lambda: len(seen["a"]) + len(seen["b"]) >= 200)
        await asyncio.sleep(0.1)  # a duplicate would arrive now
        await a.drain()
        await b.drain()
    assert sorted(seen["a"] + seen["b"]) == list(range(200))
    assert seen["a"] == sorted(seen["a"])  # each member's share stays in order
    assert seen["b"] == sorted(seen["b"])


async def test_a_bus_on_the_same_file_sees_a_new_event_quickly(db: Path) -> None:
    url = url_of(db)
    latencies: list[float] = []
    sent: dict[int, float] = {}

    def receive(event: int) -> None:
        latencies.append(time.monotonic() - sent[event])

    async with Bus(url, name=NAME) as publisher, Bus(url, name=NAME) as consumer:
        consumer.subscribe("lat.x", receive, group="g")
        await consumer.flush()
        for i in range(20):
            await asyncio.sleep(0.01 + (i % 4) * 0.01)  # the poller backs off in between
            sent[i] = time.monotonic()
            await publisher.publish("lat.x", i)
            await until(lambda n=i: len(latencies) > n)
    assert statistics.median(latencies) < 0.05, latencies
    assert max(latencies) < 0.5, latencies


CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from axonbus import Bus

    async def main() -> None:
        async with Bus(sys.argv[1], name=sys.argv[2]) as bus:
            def receive(event):
                print(event, time.time(), flush=True)
            bus.subscribe("lat.>", receive, group="g")
            await bus.flush()
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
    """
)


async def test_another_process_sees_a_new_event_within_50_ms(db: Path) -> None:
    url = url_of(db)
    # the child's group is registered at the end of the log: create the file first
    async with Bus(url, name=NAME):
        pass
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        url,
        NAME,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 15)
        assert line == b"ready\n", line + await child.stderr.read()  # type: ignore[union-attr]
        sent: dict[int, float] = {}
        latencies: list[float] = []
        async with Bus(url, name=NAME) as bus:
            for i in range(20):
                await asyncio.sleep(0.01 + (i % 5) * 0.015)  # idle gaps: the poller backs off
                sent[i] = time.time()
                await bus.publish("lat.x", i)
                event, at = (await asyncio.wait_for(child.stdout.readline(), 5)).split()
                assert int(event) == i
                latencies.append(float(at) - sent[i])
    finally:
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
            await child.wait()
    median = statistics.median(latencies)
    print(f"cross-process latency: median {median * 1000:.1f} ms, max {max(latencies) * 1000:.1f}")
    assert median < 0.05, latencies
    assert max(latencies) < 0.5, latencies
    assert child.returncode == 0


# -- idempotency keys ----------------------------------------------------------------------------


async def test_an_idempotency_key_stores_the_event_once(db: Path) -> None:
    got: list[Any] = []
    async with Bus(url_of(db), name=NAME) as bus:
        bus.subscribe("pay.>", got.append)
        first = await bus.publish("pay.x", {"amount": 5}, headers={"idempotency_key": "k1"})
        again = await bus.publish("pay.x", {"amount": 5}, headers={"idempotency_key": "k1"})
        other = await bus.publish("pay.x", {"amount": 6}, headers={"idempotency_key": "k2"})
        await settle(bus, lambda: len(got) >= 2)
        await asyncio.sleep(0.02)
        assert "axonbus_duplicate" not in first.headers
        assert again.id == first.id
        assert again.headers["axonbus_duplicate"] == "true"
        assert other.id != first.id
        assert got == [{"amount": 5}, {"amount": 6}]
        stored = await bus.events()
        assert [e.id for e in stored] == [first.id, other.id]
        # the key travels with the stored event
        assert stored[0].headers["idempotency_key"] == "k1"
        # another bus on the file: the key is the file's, not the process's
        async with Bus(url_of(db), name=NAME) as other_bus:
            third = await other_bus.publish("pay.x", 1, headers={"idempotency_key": "k1"})
            assert third.id == first.id
            assert third.headers["axonbus_duplicate"] == "true"
        result = await bus.publish("pay.x", 1, headers={"idempotency_key": "k1"}, wait=True)
        assert result.event_id == first.id
        assert len(await bus.events()) == 2
    assert got == [{"amount": 5}, {"amount": 6}]


async def test_a_duplicate_reaches_no_other_process(db: Path) -> None:
    url = url_of(db)
    there: list[Any] = []
    async with Bus(url, name=NAME) as publisher, Bus(url, name=NAME) as consumer:
        consumer.subscribe("pay.>", there.append)
        consumer.subscribe("pay.>", there.append, group="g")
        await consumer.flush()
        for _ in range(3):
            await publisher.publish("pay.x", "once", headers={"idempotency_key": "k"})
        await publisher.publish("pay.x", "end")
        await settle(consumer, lambda: there.count("end") == 2)
    assert there.count("once") == 2  # the plain and the group subscription, once each


async def test_an_idempotency_key_is_accepted_again_after_the_window(db: Path) -> None:
    async with Bus(url_of(db, "idempotency_window=0.2"), name=NAME) as bus:
        first = await bus.publish("pay.x", 1, headers={"idempotency_key": "k"})
        within = await bus.publish("pay.x", 1, headers={"idempotency_key": "k"})
        assert within.id == first.id
        await asyncio.sleep(0.25)
        later = await bus.publish("pay.x", 1, headers={"idempotency_key": "k"})
        assert later.id != first.id
        assert "axonbus_duplicate" not in later.headers
        assert [e.id for e in await bus.events()] == [first.id, later.id]


async def test_one_key_twice_in_one_batch_is_stored_once(db: Path) -> None:
    got: list[Any] = []
    async with Bus(url_of(db), name=NAME) as bus:
        bus.subscribe("pay.>", got.append)
        a, b = await asyncio.gather(
            bus.publish("pay.x", "a", headers={"idempotency_key": "same"}),
            bus.publish("pay.x", "b", headers={"idempotency_key": "same"}),
        )
        await bus.drain()
        assert a.id == b.id
        duplicates = [e for e in (a, b) if e.headers.get("axonbus_duplicate") == "true"]
        assert len(duplicates) == 1
        stored = await bus.events()
        assert len(stored) == 1
        assert stored[0].id == a.id
        assert got == [stored[0].event]  # the one stored reached the subscriber, once


async def test_publish_nowait_refuses_an_idempotency_key(db: Path) -> None:
    got: list[Any] = []
    async with Bus(url_of(db), name=NAME) as bus:
        bus.subscribe("pay.>", got.append)
        with pytest.raises(ValueError, match="idempotency_key"):
            bus.publish_nowait("pay.x", 1, headers={"idempotency_key": "k"})
        bus.publish_nowait("pay.x", 2)
        await settle(bus, lambda: len(got) >= 1)
        assert got == [2]  # the refused one went nowhere
        await bus.flush()
        assert [e.event for e in await bus.events()] == [2]


# -- retention -----------------------------------------------------------------------------------


async def test_max_events_keeps_the_newest(db: Path) -> None:
    async with Bus(url_of(db, "max_events=10&compact_every=3600"), name=NAME) as bus:
        for i in range(25):
            await bus.publish("r.x", i)
        await bus.flush()
        done = await transport_of(bus).compact()
        assert (done.deleted, done.unacknowledged, done.consumers) == (15, 0, ())
        kept = await bus.events()
        assert [e.event for e in kept] == list(range(15, 25))
        assert [e.offset for e in kept] == list(range(16, 26))
        assert (await transport_of(bus).compact()).deleted == 0
        await bus.publish("r.x", 25)  # offsets go on after a compaction
        await bus.flush()
        assert [e.offset for e in await bus.events(since=26)] == [26]


async def test_retention_runs_by_itself_every_compact_every(db: Path) -> None:
    async with Bus(url_of(db, "max_events=3&compact_every=0.01&claim_idle=0.06"), name=NAME) as bus:
        for i in range(10):
            await bus.publish("r.x", i)
        await bus.flush()
        # the housekeeping loop wakes every claim_idle / 3 and compacts at most every 5 s
        async with asyncio.timeout(5):
            while len(await bus.events()) > 3:
                await asyncio.sleep(0.02)
        assert [e.event for e in await bus.events()] == [7, 8, 9]


async def test_max_age_deletes_old_events(db: Path) -> None:
    async with Bus(url_of(db, "max_age=0.2&compact_every=3600"), name=NAME) as bus:
        for i in range(5):
            await bus.publish("r.old", i)
        await bus.flush()
        await asyncio.sleep(0.3)
        for i in range(3):
            await bus.publish("r.new", i)
        await bus.flush()
        done = await transport_of(bus).compact()
        assert done.deleted == 5
        assert [e.topic for e in await bus.events()] == ["r.new"] * 3


async def _park_durable(url: str, pattern: str = "r.>") -> None:
    """A durable registered, then its bus gone: nothing acknowledges from now on."""
    async with Bus(url, name=NAME) as bus:
        bus.subscribe(pattern, lambda e: None, durable="parked")
        await bus.flush()


async def test_retention_keep_never_drops_what_a_durable_has_not_acknowledged(db: Path) -> None:
    url = url_of(db, "max_events=10&compact_every=3600")
    async with Bus(url, name=NAME) as bus:
        for i in range(5):
            await bus.publish("r.x", i)  # before the durable: nobody needs them
        await bus.flush()
    await _park_durable(url)
    async with Bus(url, name=NAME) as bus:
        for i in range(5, 35):
            await bus.publish("r.x", i)
        await bus.flush()
        done = await transport_of(bus).compact()
        assert (done.deleted, done.unacknowledged, done.consumers) == (5, 0, ())
        assert [e.event for e in await bus.events()] == list(range(5, 35))
    got: list[int] = []
    async with Bus(url, name=NAME) as bus:  # the durable comes back: it gets all 30
        bus.subscribe("r.>", got.append, durable="parked")
        await settle(bus, lambda: len(got) >= 30)
        await bus.flush()  # acknowledged
        assert got == list(range(5, 35))
        done = await transport_of(bus).compact()
        assert done.deleted == 20  # now only max_events bounds the log
        assert [e.event for e in await bus.events()] == list(range(25, 35))


async def test_retention_drop_deletes_and_reports_what_was_unacknowledged(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = url_of(db, "max_events=10&compact_every=3600&retention=drop")
    await _park_durable(url)
    caplog.set_level(logging.WARNING, logger="axonbus")
    async with Bus(url, name=NAME) as bus:
        for i in range(30):
            await bus.publish("r.x", i)
        await bus.flush()
        done = await transport_of(bus).compact()
        assert done.deleted == 20
        assert done.unacknowledged == 20
        assert done.consumers == ("durable:parked",)
        assert [e.event for e in await bus.events()] == list(range(20, 30))
    warnings = [r for r in caplog.records if "retention dropped" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "20 events" in warnings[0].getMessage()
    assert "durable:parked" in warnings[0].getMessage()
    got: list[int] = []
    async with Bus(url, name=NAME) as bus:  # it resumes with what is left
        bus.subscribe("r.>", got.append, durable="parked")
        await settle(bus, lambda: len(got) >= 10)
        await asyncio.sleep(0.05)
    assert got == list(range(20, 30))


async def test_retention_drop_cleans_pending_rows_of_dropped_events(db: Path) -> None:
    url = url_of(db, "max_events=2&compact_every=3600&retention=drop")
    never = asyncio.Event()
    seen: list[int] = []

    async def stuck(event: int) -> None:
        seen.append(event)
        await never.wait()

    bus = Bus(url, name=NAME)
    bus.subscribe("r.x", stuck, durable="d")
    async with bus:
        await bus.flush()
        await bus.publish("r.x", 0)
        await until(lambda: seen == [0])
        await bus.close(timeout=0.05)  # offset 1 stays pending
    async with Bus(url, name=NAME) as bus:
        for i in range(1, 6):
            await bus.publish("r.x", i)
        await bus.flush()
        done = await transport_of(bus).compact()
        assert done.consumers == ("durable:d",)
        assert done.deleted == 4
    got: list[int] = []
    async with Bus(url, name=NAME) as bus:
        bus.subscribe("r.x", got.append, durable="d")
        await settle(bus, lambda: len(got) >= 2)
        await bus.flush()
    assert got == [4, 5]  # the pending offset 1 is gone with its event, not redelivered
    assert sql(db, f"SELECT COUNT(*) FROM {PREFIX}pending") == [(0,)]


# -- several buses in one file -------------------------------------------------------------------


async def test_bus_names_keep_their_own_tables(db: Path) -> None:
    url = url_of(db)
    async with Bus(url, name="one") as one, Bus(url, name="two") as two:
        got: list[Any] = []
        two.subscribe(">", got.append)
        await two.flush()
        await one.publish("x.y", 1)
        await one.flush()
        await asyncio.sleep(0.1)
        assert got == []
        assert [e.event for e in await one.events()] == [1]
        assert await two.events() == []
    tables = {r[0] for r in sql(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"ab_one_events", "ab_two_events"} <= tables


def test_the_store_is_usable_from_os_paths_with_spaces(tmp_path: Path) -> None:
    folder = tmp_path / "with space"
    folder.mkdir()
    bus = Bus(f"sqlite:///{folder}/e%20v.db")
    assert transport_of(bus).path == os.path.join(str(folder), "e v.db")


async def test_a_subscribe_while_the_idle_tail_reads_the_head_misses_nothing(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle tail skips to the log's head; a plain subscription made while it asks for the
    head must still get an event another bus publishes after that subscribe."""
    url = url_of(db)
    seen: list[int] = []
    async with Bus(url, name=NAME) as consumer, Bus(url, name=NAME) as publisher:
        store = store_of(consumer)
        real_head = store.head
        asking, gate = asyncio.Event(), asyncio.Event()

        async def slow_head() -> int:
            asking.set()
            await gate.wait()  # the subscribe and the publish happen in here
            return await real_head()

        monkeypatch.setattr(store, "head", slow_head)
        await asyncio.wait_for(asking.wait(), 10)
        consumer.subscribe("race.x", seen.append)
        await publisher.publish("race.x", 1)
        await publisher.flush()
        monkeypatch.setattr(store, "head", real_head)
        gate.set()
        await until(lambda: seen == [1])

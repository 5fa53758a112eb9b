"""axonbus's durable log transports against the raw database drivers, in one process and one run.

    python -m benchmarks.storage            # full run, under a minute on 2 cores
    python -m benchmarks.storage --quick    # smoke run, a few seconds (the test suite runs it)
    python -m benchmarks.storage --only sqlite-publish --json artifacts/storage.json

Every published event is appended to the log table (``{prefix}events``: ``ts, topic, event_id,
origin, data``, the data being the encoded envelope). The raw anchors write the same rows into
a table with the same columns and indexes: per event they build the envelope axonbus stores
(``{"v", "id", "topic", "timestamp", "kind", "data": {"n": i}}``) with orjson, plus its
timestamp, topic, event id and origin, in the timed part, the way the broker anchors encode.

- ``sqlite-publish``: ``await bus.publish(TOPIC, {"n": i})`` N times on ``sqlite:///<tmp>``,
  then ``await bus.flush()`` (everything committed). Anchor: ``sqlite3`` ``executemany`` into
  the same table (DDL copied from ``axonbus.transports.sqlite._sql.SCHEMA``), WAL mode,
  ``synchronous=NORMAL``, one transaction per ``BATCH`` rows, on the event loop. ``BATCH`` is
  the most axonbus commits per transaction (its log writer's ``max_batch``, or the whole
  outbox, 10,000, when that is 0): a publisher that never yields keeps the outbox full, so
  every batch is that big; the axonbus row's note shows the mean batch it actually committed
  in this run. For context: the same ``executemany`` in a worker thread through
  ``run_in_executor`` (axonbus's design: encode on the loop, write in a thread), and on the
  loop with another batch size (``OTHER_BATCH``).
- ``sqlite-consume``: end to end through ``subscribe(durable=...)``: one bus publishes N events,
  a second bus on the same file (same process, same loop) handles them; the rate is N over
  the time from the first publish until the last event was handled and its acknowledgement
  committed (``await consumer.flush()``). Anchor, for context: raw ``sqlite3`` on two
  connections on the loop, a producer inserting ``BATCH`` rows per transaction and a consumer
  selecting 256 rows after its position, decoding them and deleting them (one transaction per
  256).
- ``postgres-publish``: the same publish loop on ``postgresql://`` against raw asyncpg writing
  the same rows into an equivalent table (same columns, primary key and indexes; ``seq`` an
  identity column) with ``copy_records_to_table`` and with ``executemany``, one transaction per
  ``PG_BATCH`` rows (the most the postgres transport commits at once, as ``BATCH`` for
  sqlite). The target is set on the faster of the two anchors; both ratios are shown.

Targets (``--strict`` exits 1 when one fails): sqlite publish >= 0.5x the raw ``executemany``
anchor and >= 50,000 events/s; sqlite durable consume >= 20,000 events/s; postgres publish
>= 0.5x the faster raw asyncpg anchor (``copy_records_to_table`` or ``executemany``).

Each workload runs every implementation once on a few events (warm-up: imports, connections,
page cache), then ``rounds`` interleaved rounds in alternating order (A B C, C B A, ...), each
trial in a fresh event loop. Reported: the median rate of each row and the ratio of medians to
the workload's anchor; the rate of every round is shown too. The machine is shared and noisy,
so only ratios from the same run mean anything.

Files and services: every SQLite file is in a fresh temporary directory, removed after its
trial. PostgreSQL at ``AXONBUS_BENCH_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``); every bus name and table is unique to the run
and dropped after each trial.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import itertools
import os
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from ._harness import (
    AXONBUS,
    RUN_PREFIX,
    Countdown,
    Entry,
    Lap,
    Medians,
    Printer,
    Row,
    Target,
    Workload,
    at_least,
    begin,
    conclude,
    environment,
    find,
    fmt_rate,
    fmt_ratio,
    measure_rounds,
    need,
    one_way,
    payloads,
    probe,
    ratio,
    report,
    require,
    rounds_cli,
    run_fresh,
    run_workloads,
    stopwatch,
    unique,
    workload_results,
)

TOPIC = "bench.t"
OUTBOX = 10_000  # axonbus's default outbox


def commit_batch(module: str, transport: str) -> int:
    """The most operations an axonbus log transport commits in one transaction: its
    ``max_batch`` (the whole outbox when that is 0)."""
    try:
        cls = getattr(importlib.import_module(f"axonbus.transports.{module}"), transport)
    except (ImportError, AttributeError):
        return OUTBOX
    return int(getattr(cls, "max_batch", 0)) or OUTBOX


# raw anchors: rows per transaction, as axonbus commits them
BATCH = commit_batch("sqlite", "SqliteTransport")
PG_BATCH = commit_batch("postgres", "PostgresTransport")
OTHER_BATCH = OUTBOX if BATCH != OUTBOX else 1_024  # context row: another transaction size
FETCH = 256  # raw consumer: rows per select (axonbus claims 256)
MAILBOX = 10_000  # axonbus's default maxsize
ORIGIN = "0123456789abcdef"  # raw anchors: the origin column (an instance id, 16 hex digits)

#: ops per write transaction that axonbus committed, per workload (from the timed trials)
COMMITS: dict[str, list[int]] = {}


def postgres_url() -> str:
    return os.environ.get("AXONBUS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# -- rows as axonbus stores them ------------------------------------------------------------------


def envelopes(n: int) -> Iterator[tuple[float, str, str, str, bytes]]:
    """``(ts, topic, event_id, origin, data)`` per event, encoded as it is produced: the data is
    the envelope axonbus stores for ``publish(TOPIC, {"n": i})``, built with orjson."""
    dumps = require("orjson").dumps
    prefix = secrets.token_hex(6)
    now = time.time
    for i in range(n):
        ts = now()
        event_id = f"{prefix}-{i:x}"  # axonbus's form: a process prefix and a hex counter
        data = dumps(
            {
                "v": 1,
                "id": event_id,
                "topic": TOPIC,
                "timestamp": ts,
                "kind": "value",
                "data": {"n": i},
            }
        )
        yield ts, TOPIC, event_id, ORIGIN, data


def batches(n: int, size: int) -> Iterator[list[tuple[float, str, str, str, bytes]]]:
    """The rows of :func:`envelopes` in lists of ``size`` (encoded when the list is taken)."""
    rows = envelopes(n)
    while chunk := list(itertools.islice(rows, size)):
        yield chunk


def record_commits(bus: Any, key: str) -> None:
    """Count the operations of every write transaction of ``bus``'s log store in ``COMMITS``
    (wraps this one store instance's ``write``: one extra call per batch)."""
    store = bus.transport.store
    write = store.write
    sizes = COMMITS.setdefault(key, [])

    async def counted(ops: list[Any], window: float) -> list[Any]:
        sizes.append(len(ops))
        return await write(ops, window)

    store.write = counted


async def publish_flush(url: str, name: str, key: str, n: int) -> Lap:
    """``await bus.publish(TOPIC, {"n": i})`` N times on the bus ``name`` at ``url``, then
    ``await bus.flush()`` (everything committed); its commits are counted under ``key``."""
    ax = require("axonbus")
    events = payloads(n)
    async with ax.Bus(url, name=name) as bus:
        await bus.flush()
        record_commits(bus, key)
        publish = bus.publish
        t0 = stopwatch()
        for ev in events:
            await publish(TOPIC, ev)
        await bus.flush()
        return t0.stop()


# -- sqlite ---------------------------------------------------------------------------------------


def sqlite_events_ddl(prefix: str) -> list[str]:
    """The CREATE statements of axonbus's events table and its indexes, from its own SCHEMA."""
    schema = require("axonbus.transports.sqlite._sql").SCHEMA.format(p=prefix)
    statements = [s.strip() for s in schema.split(";")]
    return [s for s in statements if s.split("(")[0].strip().endswith(f"{prefix}events")]


@contextlib.contextmanager
def sqlite_file() -> Iterator[str]:
    """A path in a fresh temporary directory, removed afterwards with the WAL files."""
    directory = tempfile.mkdtemp(prefix="axbench-")
    try:
        yield os.path.join(directory, "bench.db")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def sqlite_connect(path: str, *, thread: bool = False) -> sqlite3.Connection:
    """A connection as axonbus opens its writer: autocommit, WAL, synchronous=NORMAL."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=not thread)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def sqlite_table(conn: sqlite3.Connection, prefix: str = "raw_") -> str:
    for statement in sqlite_events_ddl(prefix):
        conn.execute(statement)
    return f"INSERT INTO {prefix}events (ts, topic, event_id, origin, data) VALUES (?, ?, ?, ?, ?)"


def sqlite_insert(conn: sqlite3.Connection, insert: str, rows: list[Any]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(insert, rows)
    conn.execute("COMMIT")


async def sqlite_publish_axonbus(n: int) -> Lap:
    """``await bus.publish(TOPIC, {"n": i})`` N times, then ``await bus.flush()``."""
    with sqlite_file() as path:
        return await publish_flush(f"sqlite:///{path}", "bench", "sqlite-publish", n)


async def sqlite_publish_raw(n: int, batch: int = BATCH) -> Lap:
    """``sqlite3``: ``executemany`` of ``batch`` encoded rows per transaction, on the loop."""
    with sqlite_file() as path:
        conn = sqlite_connect(path)
        try:
            insert = sqlite_table(conn)
            t0 = stopwatch()
            for rows in batches(n, batch):
                sqlite_insert(conn, insert, rows)
            return t0.stop()
        finally:
            conn.close()


async def sqlite_publish_raw_thread(n: int) -> Lap:
    """``sqlite3``: rows encoded on the loop, each batch's ``executemany`` transaction awaited
    through ``run_in_executor`` on a one-thread pool (axonbus's design)."""
    loop = asyncio.get_running_loop()
    with (
        sqlite_file() as path,
        concurrent.futures.ThreadPoolExecutor(1, "bench-sqlite-writer") as pool,
    ):
        conn = await loop.run_in_executor(pool, partial(sqlite_connect, path, thread=True))
        try:
            insert = await loop.run_in_executor(pool, sqlite_table, conn)
            t0 = stopwatch()
            for rows in batches(n, BATCH):
                await loop.run_in_executor(pool, sqlite_insert, conn, insert, rows)
            return t0.stop()
        finally:
            await loop.run_in_executor(pool, conn.close)


async def sqlite_consume_axonbus(n: int) -> Lap:
    """One bus publishes, another handles through ``subscribe(TOPIC, h, durable="bench")``;
    until every event was handled and its acknowledgement committed."""
    with sqlite_file() as path:
        return await one_way(
            f"sqlite:///{path}",
            "bench",
            TOPIC,
            n,
            durable="bench",
            maxsize=MAILBOX,
            watch=partial(record_commits, key="sqlite-consume"),
        )


async def sqlite_consume_raw(n: int) -> Lap:
    """``sqlite3`` on two connections on the loop: a producer inserting ``BATCH`` rows per
    transaction (yielding between them), a consumer selecting ``FETCH`` rows after its position,
    decoding and counting them, and deleting them in one transaction."""
    loads = require("orjson").loads
    cd = Countdown(n)
    hit = cd.hit
    with sqlite_file() as path:
        prod, cons = sqlite_connect(path), None
        try:
            insert = sqlite_table(prod)
            cons = sqlite_connect(path)
            select = "SELECT seq, data FROM raw_events WHERE seq > ? ORDER BY seq LIMIT ?"
            delete = "DELETE FROM raw_events WHERE seq = ?"
            produced = asyncio.Event()

            async def produce() -> None:
                for rows in batches(n, BATCH):
                    sqlite_insert(prod, insert, rows)
                    produced.set()
                    await asyncio.sleep(0)

            async def consume() -> None:
                position = 0
                while cd.left > 0:
                    rows = cons.execute(select, (position, FETCH)).fetchall()
                    if not rows:
                        produced.clear()
                        await produced.wait()
                        continue
                    for _, data in rows:
                        loads(data)
                        hit()
                    position = rows[-1][0]
                    sqlite_insert(cons, delete, [(seq,) for seq, _ in rows])
                    await asyncio.sleep(0)

            t0 = stopwatch()
            await asyncio.gather(produce(), consume())
            lap = t0.stop()
        finally:
            prod.close()
            if cons is not None:
                cons.close()
    cd.check()
    return lap


# -- postgres -------------------------------------------------------------------------------------


def need_postgres() -> Any:
    """asyncpg, if PostgreSQL answers at :func:`postgres_url` (else :class:`Skip`)."""
    need(postgres_url())
    return require("asyncpg")


@contextlib.asynccontextmanager
async def pg_connection() -> AsyncIterator[Any]:
    asyncpg = need_postgres()
    conn = await asyncpg.connect(postgres_url())
    try:
        yield conn
    finally:
        await conn.close()


async def pg_drop(prefix: str) -> None:
    """Drop every table and sequence whose name starts with ``prefix`` (this trial's)."""
    async with pg_connection() as conn:
        found = await conn.fetch(
            "SELECT c.relname, c.relkind FROM pg_class c "
            "JOIN pg_namespace s ON s.oid = c.relnamespace "
            "WHERE s.nspname = current_schema() AND c.relkind IN ('r', 'S') "
            "AND starts_with(c.relname, $1)",
            prefix,
        )
        # tables first: dropping one drops the sequences it owns (identity, serial)
        for name, kind in sorted(found, key=lambda r: r[1] != b"r"):
            what = "TABLE" if kind == b"r" else "SEQUENCE"
            await conn.execute(f'DROP {what} IF EXISTS "{name}" CASCADE')


PG_COLUMNS = ("ts", "topic", "event_id", "origin", "data")


async def pg_table(conn: Any, name: str) -> None:
    """The columns, primary key and indexes of axonbus's events table; ``seq`` an identity."""
    await conn.execute(
        f"CREATE TABLE {name} (seq bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        "ts double precision NOT NULL, topic text NOT NULL, event_id text NOT NULL, "
        "origin text NOT NULL, data bytea NOT NULL)"
    )
    await conn.execute(f"CREATE INDEX {name}_ts ON {name} (ts)")
    await conn.execute(f"CREATE INDEX {name}_id ON {name} (event_id)")


async def postgres_publish_axonbus(n: int) -> Lap:
    """``await bus.publish(TOPIC, {"n": i})`` N times on postgresql://, then ``flush()``."""
    need_postgres()
    name = unique("pp")
    try:
        return await publish_flush(postgres_url(), name, "postgres-publish", n)
    finally:
        await pg_drop(f"ab_{name}_")


async def _postgres_raw(n: int, kind: str, write: Callable[[Any, str, list[Any]], Any]) -> Lap:
    name = unique(kind)
    table = f"{name}_events"
    try:
        async with pg_connection() as conn:
            await pg_table(conn, table)
            t0 = stopwatch()
            for rows in batches(n, PG_BATCH):
                async with conn.transaction():
                    await write(conn, table, rows)
            return t0.stop()
    finally:
        await pg_drop(name)


async def postgres_publish_copy(n: int) -> Lap:
    """asyncpg: ``copy_records_to_table`` of ``PG_BATCH`` rows per transaction."""

    async def copy(conn: Any, table: str, rows: list[Any]) -> None:
        await conn.copy_records_to_table(table, records=rows, columns=PG_COLUMNS)

    return await _postgres_raw(n, "pc", copy)


async def postgres_publish_executemany(n: int) -> Lap:
    """asyncpg: ``executemany`` of an INSERT, ``PG_BATCH`` rows per transaction."""

    async def insert(conn: Any, table: str, rows: list[Any]) -> None:
        await conn.executemany(
            f"INSERT INTO {table} (ts, topic, event_id, origin, data) VALUES ($1, $2, $3, $4, $5)",
            rows,
        )

    return await _postgres_raw(n, "pe", insert)


def final_cleanup() -> None:
    """Whatever a failed trial left behind in PostgreSQL: every table named after this run."""
    if probe(postgres_url()) is None:
        with contextlib.suppress(Exception):
            run_fresh(partial(pg_drop, RUN_PREFIX), 30)
            run_fresh(partial(pg_drop, f"ab_{RUN_PREFIX}"), 30)


# -- workloads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Sizes of one run: each trial takes about 0.2-1 s at the rates seen on this machine."""

    sqlite_n: int = 50_000
    consume_n: int = 20_000
    postgres_n: int = 30_000
    rounds: int = 5
    warmup: float = 0.05  # the warm-up trial runs this fraction of each row's N
    timeout: float = 60.0


FULL = Config()
QUICK = Config(
    sqlite_n=5_000, consume_n=2_000, postgres_n=3_000, rounds=2, warmup=0.1, timeout=15.0
)

RAW_SQLITE = "sqlite3 executemany"
RAW_SQLITE_THREAD = "sqlite3 executemany in a thread"
RAW_SQLITE_OTHER = f"sqlite3 executemany {OTHER_BATCH:,}"
RAW_SQLITE_QUEUE = "sqlite3 insert+select+delete"
RAW_PG_COPY = "asyncpg copy_records_to_table"
RAW_PG_MANY = "asyncpg executemany"

WORKLOADS = [
    Workload(
        "sqlite-publish",
        "sqlite-publish: publish + flush to sqlite:/// (WAL, synchronous=NORMAL)",
        RAW_SQLITE,
        [
            Entry(AXONBUS, sqlite_publish_axonbus, note="publish(topic, dict); flush()"),
            Entry(RAW_SQLITE, sqlite_publish_raw, note=f"{BATCH:,} rows/transaction, on the loop"),
            Entry(RAW_SQLITE_THREAD, sqlite_publish_raw_thread, note="run_in_executor per batch"),
            Entry(
                RAW_SQLITE_OTHER,
                partial(sqlite_publish_raw, batch=OTHER_BATCH),
                note=f"{OTHER_BATCH:,} rows/transaction, on the loop",
            ),
        ],
        lambda c: c.sqlite_n,
    ),
    Workload(
        "sqlite-consume",
        "sqlite-consume: durable subscription on sqlite:///, handled and acknowledged",
        RAW_SQLITE_QUEUE,
        [
            Entry(AXONBUS, sqlite_consume_axonbus, note="subscribe(durable=...), 2 buses"),
            Entry(RAW_SQLITE_QUEUE, sqlite_consume_raw, note=f"select {FETCH} + delete"),
        ],
        lambda c: c.consume_n,
    ),
    Workload(
        "postgres-publish",
        "postgres-publish: publish + flush to postgresql://",
        RAW_PG_COPY,
        [
            Entry(AXONBUS, postgres_publish_axonbus, note="publish(topic, dict); flush()"),
            Entry(RAW_PG_COPY, postgres_publish_copy, note=f"{PG_BATCH:,} rows/transaction"),
            Entry(RAW_PG_MANY, postgres_publish_executemany, note=f"{PG_BATCH:,} rows/transaction"),
        ],
        lambda c: c.postgres_n,
    ),
]

WORKLOAD_KEYS = tuple(w.key for w in WORKLOADS)


# -- measuring -----------------------------------------------------------------------------------


def measure(
    workload: Workload, cfg: Config, progress: Callable[[str], None] | None = None
) -> list[Row]:
    """:func:`measure_rounds`; axonbus's row notes the mean and the largest batch it committed
    in the timed trials."""
    rows = measure_rounds(workload, cfg, progress, timed=partial(COMMITS.pop, workload.key, None))
    axonbus = find(rows, AXONBUS)
    sizes = COMMITS.get(workload.key)
    if axonbus is not None and not axonbus.failed and sizes:
        axonbus.note += f"; {statistics.mean(sizes):,.0f} ops/commit (max {max(sizes):,})"
    return rows


def targets(results: dict[str, list[Row]]) -> list[Target]:
    med = Medians(results)

    def absolute(label: str, key: str, floor: float) -> Target:
        rate = med(key, AXONBUS)
        passed = None if rate is None else rate >= floor
        return Target(label, f"{fmt_rate(rate)} events/s", f">= {fmt_rate(floor)} events/s", passed)

    def best_of(label: str, key: str, anchors: Sequence[str], floor: float) -> Target:
        ax = med(key, AXONBUS)
        found = {a: med(key, a) for a in anchors}
        rates = [r for r in found.values() if r is not None]
        x = ratio(ax, max(rates)) if rates else None
        each = ", ".join(f"{fmt_ratio(ratio(ax, r))} {a}" for a, r in found.items())
        target = at_least(label, x, floor)
        target.measured += f" ({each})"
        return target

    return [
        med.at_least("sqlite publish / raw sqlite3 executemany", "sqlite-publish", RAW_SQLITE, 0.5),
        absolute("sqlite publish, absolute", "sqlite-publish", 50_000),
        absolute("sqlite durable consume, absolute", "sqlite-consume", 20_000),
        best_of(
            "postgres publish / faster raw asyncpg",
            "postgres-publish",
            (RAW_PG_COPY, RAW_PG_MANY),
            0.5,
        ),
    ]


VERSIONS = ("axonbus", "orjson", "asyncpg")


def run(cfg: Config, printer: Printer, only: set[str] | None = None) -> dict[str, Any]:
    env = environment(VERSIONS)
    env["versions"]["sqlite"] = sqlite3.sqlite_version
    env["postgres_url"] = postgres_url()
    started = begin(
        printer,
        "axonbus storage benchmarks",
        env,
        services=f"{postgres_url()}; sqlite files in {tempfile.gettempdir()}",
        preload=("axonbus", "axonbus.transports.sqlite", "orjson", "asyncpg"),
    )
    results = run_workloads(WORKLOADS, cfg, printer, only, measure)
    final_cleanup()
    goals = targets(results)
    elapsed = conclude(printer, "targets (medians within this run)", goals, started)
    return report(
        env,
        cfg,
        elapsed,
        goals,
        commits={key: sizes for key, sizes in COMMITS.items() if key in results},
        workloads=workload_results(WORKLOADS, results),
    )


def main(argv: Sequence[str] | None = None) -> int:
    return rounds_cli(
        argv,
        prog="python -m benchmarks.storage",
        description=__doc__,
        workloads=WORKLOAD_KEYS,
        full=FULL,
        quick=QUICK,
        run=run,
    )


if __name__ == "__main__":
    sys.exit(main())

"""``postgresql://`` (and ``postgres://``): many processes on one PostgreSQL, through asyncpg.

>>> async with Bus("postgresql://user@db.internal/app", name="shop") as bus: ...

A log transport (see the ``log`` subpackage): every event is a row of one append-only table,
and every subscription reads that log. Tables are named ``ab_{bus}_…`` (:func:`table_prefix`),
so several buses share a database; they are created on first use (``CREATE TABLE IF NOT
EXISTS`` under an advisory lock, so processes starting together do not race).

How each kind of subscription travels:

- **Offsets** grow in commit order: a batch that publishes takes a transaction-level advisory
  lock before it numbers its events (from a sequence), and holds it until it commits, so a
  reader that has seen offset N never later finds a new event below N. Gaps are possible (a
  rolled-back batch used its numbers).
- **Plain subscriptions and streams**: every committed batch sends ``NOTIFY ab_{bus}_changed``;
  each process listens on a dedicated connection and, when woken (or after a poll interval),
  reads the tail of the log after the last offset it saw. At most once for the subscriber: it
  starts at the end of the log when it starts.
- **group=**: a row per group holds its position. A member claims a batch by locking that row
  (``FOR UPDATE SKIP LOCKED``: a member that finds it locked tries again later), reads the
  events after the position, keeps those matching the pattern and moves the position past
  everything it read. Nothing is pending afterwards: at most once, one member each.
- **durable=**: as a group, and every event handed out becomes a pending row (delivery count,
  owner, visible-at time) until it is acknowledged, deferred (visible again after a delay) or
  moved to the dead letters. Pending rows whose owner stopped heartbeating are reclaimed by a
  live member (``FOR UPDATE SKIP LOCKED``), with the delivery count going up.
- **request / respond**: responders are rows that expire unless refreshed; a request is a row
  addressed to a responder pattern, taken by one process with
  ``DELETE … FOR UPDATE SKIP LOCKED``; the reply is a row for the requester.

Every committed write that another process may be waiting for (events, deferred deliveries,
registrations, requests, replies, a release) sends one ``NOTIFY`` per transaction;
acknowledgements and responder refreshes do not, so they wake nobody.

URL options (query string): ``pool`` (connections besides the listener, default 4) and the
log transport's own (see the ``log`` subpackage); any other option goes to asyncpg with the
rest of the URL (``sslmode``, ...). Connections show as ``axonbus ab_{bus}_`` in
``pg_stat_activity``.

What it cannot promise:

- A notification sent while a process is disconnected is lost; the process catches up from its
  last offset when it reconnects (or at the next poll), so nothing is skipped, only late.
- Durability is PostgreSQL's: with ``synchronous_commit = off`` the last commits before a
  server crash are lost, and with asynchronous replication a failover loses what the replica
  had not received.
- Times (event timestamps, heartbeats, visible-at, deadlines, retention by age) are each
  process's own clock, ``time.time()``: clocks of the processes must agree (NTP). A process
  whose clock runs ahead sees another's heartbeat expire early and reclaims its pending events
  too soon (they are then delivered twice), one that runs behind reclaims them late.
- A connection pooler in transaction mode (PgBouncer ``pool_mode=transaction``) does not work:
  ``LISTEN`` and prepared statements need a session.
- Topics go to a ``text`` column, which cannot hold NUL: a publish on a topic with ``"\\x00"``
  raises :class:`EncodeError` (payloads and headers are bytes here and carry it).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

from ..._events import Envelope
from ..._exceptions import EncodeError
from ..base import int_option, redact_url, register_transport
from ..log._store import LogStore, Request, Row, read_filter
from ..log._transport import LogTransport
from ._consumers import PostgresConsumers
from ._sql import Statements, lock_key, schema, table_names

try:
    import asyncpg  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the postgresql:// transport needs asyncpg: pip install 'axonbus[postgres]'"
    ) from exc

__all__ = ["CONNECTION_ERRORS", "PostgresAliasTransport", "PostgresStore", "PostgresTransport"]

#: driver exceptions that mean "the connection is gone" (the transport reconnects on them)
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.InterfaceError,  # "connection is closed", "pool is closing"
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    # a pooled connection the server killed while idle: its protocol is stuck mid-error
    # ("cannot switch to state ...; another operation is in progress") until it is replaced
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
    OSError,
)

# a batch that lost a deadlock (two batches registering the same consumers in another order)
# is simply run again
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
_ATTEMPTS = 3

COPY_FROM = 2048  # events in one batch from which COPY beats one INSERT of arrays
# what other processes wait for (new events, deferred ones, requests, replies): only these
# send a notification; acknowledgements and heartbeat-like refreshes would wake everybody
_WAKE = frozenset({"defer", "register", "request", "reply"})

CLOSE_TIMEOUT = 2.0  # seconds a graceful close may take before connections are cut


async def _no_reset(conn: Any) -> None:
    # asyncpg's default reset costs a round trip per release (UNLISTEN *, RESET ALL, ...);
    # the pool's connections never change session state, only a broken transaction remains
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PostgresStore(PostgresConsumers, LogStore):
    """The tables of one bus in PostgreSQL, through an asyncpg pool and one listening connection.

    ``dsn`` is passed to asyncpg as is.
    """

    def __init__(self, dsn: str, prefix: str, *, pool_size: int = 4) -> None:
        super().__init__(prefix)
        self.dsn = dsn
        self.pool_size = max(1, pool_size)
        t = table_names(prefix)
        self.channel = t + "changed"
        self._sql = Statements(t)
        self._schema = schema(t)
        self._events = t + "events"
        self._schema_done = t + "replies_requester"
        self._schema_key = lock_key("axonbus.schema", t)
        self._write_key = lock_key("axonbus.write", t)
        self._compact_key = lock_key("axonbus.compact", t)
        self._pool: Any = None
        self._listener: Any = None
        self._changed = asyncio.Event()
        self._last_sweep = 0.0
        self._busy: set[str] = set()  # consumers whose last claim was full

    def __repr__(self) -> str:
        return f"<PostgresStore {redact_url(self.dsn)} {self.prefix}*>"

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        options: dict[str, Any] = {}
        if "reset" in inspect.signature(asyncpg.create_pool).parameters:  # asyncpg >= 0.30
            options["reset"] = _no_reset
        # which bus a connection serves, for pg_stat_activity
        settings = {"application_name": f"axonbus {self.prefix}"[:63]}
        self._pool = await asyncpg.create_pool(
            self.dsn,
            # no floor: asyncpg (0.32) refills it in the background, and a close during an
            # outage then leaves that connect's failure unretrieved (logged as an error)
            min_size=0,
            max_size=self.pool_size,
            server_settings=settings,
            **options,
        )
        async with self._pool.acquire() as conn:
            # CREATE INDEX IF NOT EXISTS locks the table against writes even when the index
            # exists, so a process that (re)connects to a complete schema leaves it alone;
            # the last object the schema creates tells
            if await conn.fetchval("SELECT to_regclass($1)", self._schema_done) is None:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", self._schema_key)
                    await conn.execute(self._schema)
        self._changed = asyncio.Event()
        listener = await asyncpg.connect(self.dsn, server_settings=settings)
        self._listener = listener
        await listener.add_listener(self.channel, self._notified)
        listener.add_termination_listener(self._listener_lost)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        pool, self._pool = self._pool, None
        if listener is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await listener.close()
            except Exception:  # a broken connection must not stop the close
                listener.terminate()
        if pool is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await pool.close()
            except Exception:
                pool.terminate()
        self._changed.set()  # a waiter returns (and finds the listener gone)

    def _notified(self, *_: Any) -> None:
        self._changed.set()

    def _listener_lost(self, *_: Any) -> None:
        self._changed.set()

    def _pool_or_raise(self) -> Any:
        if self._pool is None:
            raise ConnectionError(f"{self!r} is not open")
        return self._pool

    # -- writes --------------------------------------------------------------------------------

    async def write(self, ops: list[tuple[Any, ...]], idempotency_window: float) -> list[Any]:
        if not ops:
            return []
        pool = self._pool_or_raise()
        for attempt in range(_ATTEMPTS):
            try:
                async with pool.acquire() as conn:
                    return await self._write(conn, ops, idempotency_window)
            except _RETRYABLE:
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _write(self, conn: Any, ops: list[tuple[Any, ...]], window: float) -> list[Any]:
        now = time.time()
        results: list[Any] = []
        changed = False
        locked = False
        if len(ops) < COPY_FROM and all(
            op[0] == "pub" and (op[5] is None or window <= 0) for op in ops
        ):
            # the common batch: nothing but publishes without a key
            record = await conn.fetchrow(
                self._sql.publish,
                len(ops),
                self._write_key,
                [op[4] for op in ops],
                [op[1] for op in ops],
                [op[3] for op in ops],
                [op[2] for op in ops],
                self.origin,
                self.channel,
            )
            last = int(record[0])
            return list(range(last - len(ops) + 1, last + 1))
        if all(op[0] == "ack" for op in ops):
            # the other common batch: one statement, and nobody waits for acknowledgements
            await self._apply(conn, "ack", ops, now)
            return [None] * len(ops)
        async with conn.transaction():
            for kind, group in itertools.groupby(ops, key=lambda op: op[0]):
                run = list(group)
                if kind == "pub":
                    out = await self._publish(conn, run, window, now, locked)
                    locked = True
                    results.extend(out)
                    changed = changed or any(isinstance(r, int) for r in out)
                    continue
                await self._apply(conn, kind, run, now)
                results.extend([None] * len(run))
                changed = changed or kind in _WAKE
            if changed:
                await conn.execute(self._sql.notify, self.channel)
        return results

    async def _publish(
        self, conn: Any, run: list[tuple[Any, ...]], window: float, now: float, locked: bool
    ) -> list[Any]:
        """Store a run of consecutive "pub" ops: one statement for all their rows."""
        sql = self._sql
        results: list[Any] = [None] * len(run)
        fresh = list(range(len(run)))
        new_keys: dict[str, str] = {}
        if window > 0 and any(op[5] is not None for op in run):
            # under the lock: a concurrent batch with the same key waits for this one
            if not locked:
                await conn.execute(sql.lock, self._write_key)
                locked = True
            keys = list({op[5] for op in run if op[5] is not None})
            known = {r[0]: r[1] for r in await conn.fetch(sql.idem_find, keys, now - window)}
            fresh = []
            for i, op in enumerate(run):
                key = op[5]
                if key is not None:
                    if key in known:
                        results[i] = known[key]
                        continue
                    known[key] = new_keys[key] = op[3]
                fresh.append(i)
        if fresh:
            if not locked:
                await conn.execute(sql.lock, self._write_key)
            last = await conn.fetchval(sql.number, len(fresh))
            first = int(last) - len(fresh) + 1
            picked = [run[i] for i in fresh]
            if len(picked) >= COPY_FROM:
                origin = self.origin
                await conn.copy_records_to_table(
                    self._events,
                    records=[
                        (first + n, op[4], op[1], op[3], origin, op[2])
                        for n, op in enumerate(picked)
                    ],
                    columns=("seq", "ts", "topic", "event_id", "origin", "data"),
                )
            else:
                await conn.execute(
                    sql.insert_events,
                    first,
                    [op[4] for op in picked],
                    [op[1] for op in picked],
                    [op[3] for op in picked],
                    [op[2] for op in picked],
                    self.origin,
                )
            for n, i in enumerate(fresh):
                results[i] = first + n
        if new_keys:
            await conn.execute(sql.idem_put, list(new_keys), list(new_keys.values()), now)
        return results

    async def _apply(self, conn: Any, kind: str, run: list[tuple[Any, ...]], now: float) -> None:
        sql = self._sql
        if kind == "ack":
            by_consumer: dict[str, list[int]] = {}
            for op in run:
                by_consumer.setdefault(op[1], []).append(op[2])
            if len(by_consumer) == 1:
                await conn.execute(sql.ack, *next(iter(by_consumer.items())))
            else:
                await conn.executemany(sql.ack, list(by_consumer.items()))
        elif kind == "defer":
            await conn.executemany(sql.defer, [(op[1], op[2], now + op[3], op[4]) for op in run])
        elif kind == "attempt":
            await conn.executemany(sql.attempt, [op[1:4] for op in run])
        elif kind == "dead":
            await conn.executemany(sql.dead, [(op[1], op[2], now, str(op[3])) for op in run])
        elif kind == "register":
            for _, consumer, ckind, pattern in run:
                await conn.execute(sql.register, consumer, ckind, pattern, now)
                await conn.execute(sql.repattern, consumer, ckind, pattern, now)
        elif kind == "respond":
            await conn.executemany(sql.respond, [op[1:4] for op in run])
        elif kind == "unrespond":
            await conn.executemany(sql.unrespond, [op[1:3] for op in run])
        elif kind == "request":
            await conn.executemany(sql.request, [op[1:6] for op in run])
        elif kind == "reply":
            await conn.executemany(sql.reply, [(*op[1:4], now) for op in run])
        else:
            raise ValueError(f"unknown log operation {kind!r}")

    # -- reads ---------------------------------------------------------------------------------

    async def head(self) -> int:
        return int(await self._pool_or_raise().fetchval(self._sql.head))

    async def on_topic(self, topic: str, limit: int) -> list[tuple[int, bytes]]:
        rows = await self._pool_or_raise().fetch(self._sql.on_topic, topic, limit)
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def delete_event(self, offset: int) -> None:
        await self._pool_or_raise().execute(self._sql.delete_event, offset)

    async def position(self, consumer: str) -> int | None:
        found = await self._pool_or_raise().fetchval(self._sql.position, consumer)
        return None if found is None else int(found)

    async def read(
        self,
        after: int,
        limit: int,
        *,
        until: int | None = None,
        since_time: float | None = None,
        until_time: float | None = None,
        exclude_origin: str | None = None,
    ) -> list[Row]:
        tail, args = read_filter(
            after, until, since_time, until_time, exclude_origin, limit, lambda n: f"${n}"
        )
        query = f"{self._sql.read_columns} {tail}"
        rows = await self._pool_or_raise().fetch(query, *args)
        return [Row(*r) for r in rows]

    async def offset_of(self, event_id: str) -> int | None:
        found = await self._pool_or_raise().fetchval(self._sql.offset_of, event_id)
        return None if found is None else int(found)

    async def dead_letters(
        self, consumer: str | None, limit: int
    ) -> list[tuple[str, int, float, str, bytes]]:
        rows = await self._pool_or_raise().fetch(self._sql.dead_letters, consumer, limit)
        return [(r[0], int(r[1]), float(r[2]), r[3], bytes(r[4])) for r in rows]

    # -- request / reply -----------------------------------------------------------------------

    async def responders(self) -> list[str]:
        rows = await self._pool_or_raise().fetch(self._sql.responders, time.time())
        return [r[0] for r in rows]

    async def take_requests(self, patterns: list[str], limit: int) -> list[Request]:
        if not patterns or limit <= 0:
            return []
        rows = await self._pool_or_raise().fetch(self._sql.take_requests, patterns, limit)
        rows = sorted(rows, key=lambda r: r[0])  # RETURNING has no order
        return [Request(r[1], r[2], r[3], r[4], bytes(r[5])) for r in rows]

    async def take_replies(self, requester: str) -> list[tuple[str, bytes]]:
        rows = await self._pool_or_raise().fetch(self._sql.take_replies, requester)
        return [(r[1], bytes(r[2])) for r in sorted(rows, key=lambda r: r[0])]

    # -- wake-ups ------------------------------------------------------------------------------

    async def wait_changed(self, timeout: float) -> bool:
        """See :meth:`LogStore.wait_changed`: a notification from any connection, this store's
        own included, for commits someone may wait for (events, deferrals, registrations,
        requests, replies, a release); acknowledgements and responder refreshes send none.
        Raises :class:`ConnectionError` once the listening connection is gone."""
        self._check_listener()
        if not self._changed.is_set():
            # not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that arrives
            # as the event is set, and the caller's loop then never stops
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                return False
            self._check_listener()
        self._changed.clear()
        return True

    def _check_listener(self) -> None:
        listener = self._listener
        if listener is None or listener.is_closed():
            raise ConnectionError(f"{self!r}: the listening connection is closed")


@register_transport
class PostgresTransport(LogTransport):
    scheme = "postgresql"
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = CONNECTION_ERRORS

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.pool_size = int_option(self.options, "pool", 4)
        if self.pool_size < 1:
            raise ValueError("URL option pool must be >= 1")
        # the options axonbus does not know are asyncpg's (sslmode, target_session_attrs, ...;
        # asyncpg sends unknown ones to the server as settings)
        self.dsn = urlsplit(url)._replace(query=urlencode(self.options)).geturl()
        self.address = redact_url(self.address)  # what logs and reprs show

    def make_store(self, prefix: str) -> LogStore:
        return PostgresStore(self.dsn, prefix, pool_size=self.pool_size)

    def publish_op(self, env: Envelope, data: bytes) -> Any:
        op = super().publish_op(env, data)
        # the topic and the idempotency key go to text columns, which cannot hold NUL: refuse
        # at publish rather than leave a batch the server will never take in the outbox
        if "\x00" in env.topic or (op[5] is not None and "\x00" in op[5]):
            raise EncodeError(
                f"cannot publish on {env.topic!r}: PostgreSQL text cannot hold the NUL "
                "character (in the topic or the idempotency key)"
            )
        return op


@register_transport
class PostgresAliasTransport(PostgresTransport):
    """``postgres://``: the same transport (libpq accepts both schemes)."""

    scheme = "postgres"

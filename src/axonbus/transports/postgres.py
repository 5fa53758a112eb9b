"""``postgresql://`` (and ``postgres://``): many processes on one PostgreSQL, through asyncpg.

>>> async with Bus("postgresql://user@db.internal/app", name="shop") as bus: ...

A log transport (see :mod:`._log`): every event is a row of one append-only table, and every
subscription reads that log. Tables are named ``ab_{bus}_…`` (:func:`table_prefix`), so several
buses share a database; they are created on first use (``CREATE TABLE IF NOT EXISTS`` under an
advisory lock, so processes starting together do not race).

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
log transport's own (see :mod:`._log`); any other option goes to asyncpg with the rest of the
URL (``sslmode``, ...). Connections show as ``axonbus ab_{bus}_`` in ``pg_stat_activity``.

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
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import itertools
import time
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

from .._topics import match
from ._log import LogTransport
from ._log_store import Claimed, Compaction, LogStore, Request, Row, read_filter
from .base import int_option, redact_url, register_transport

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

CLAIM_PAGE = 256  # events read at a time while claiming (at least the room left)
CLAIM_BUDGET = 4096  # most events one claim looks at before it returns what it found
CLOSE_TIMEOUT = 2.0  # seconds a graceful close may take before connections are cut
SWEEP_EVERY = 30.0  # seconds between clean-ups of expired rows (done by heartbeats)
LONG_DEAD = 3600.0  # an instance row expired this long ago is forgotten
REPLY_TTL = 3600.0  # a reply nobody took for this long is deleted

_MAX_IDENT = 63  # PostgreSQL truncates longer identifiers
_LONGEST_SUFFIX = len("replies_requester")  # the longest table or index name suffix


def _key(*parts: str) -> int:
    """A stable signed 64-bit advisory lock key."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _names(prefix: str) -> str:
    """``prefix`` shortened (with a hash) if its table names would be truncated."""
    if len(prefix) + _LONGEST_SUFFIX <= _MAX_IDENT:
        return prefix
    keep = _MAX_IDENT - _LONGEST_SUFFIX - 10
    return prefix[:keep] + hashlib.blake2b(prefix.encode(), digest_size=4).hexdigest() + "_"


async def _no_reset(conn: Any) -> None:
    # asyncpg's default reset costs a round trip per release (UNLISTEN *, RESET ALL, ...);
    # the pool's connections never change session state, only a broken transaction remains
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _schema(t: str) -> str:
    return f"""
CREATE SEQUENCE IF NOT EXISTS {t}seq;
CREATE TABLE IF NOT EXISTS {t}events (
    seq bigint PRIMARY KEY,
    ts double precision NOT NULL,
    topic text NOT NULL,
    event_id text NOT NULL,
    origin text NOT NULL,
    data bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}events_ts ON {t}events (ts);
CREATE INDEX IF NOT EXISTS {t}events_id ON {t}events (event_id);
CREATE TABLE IF NOT EXISTS {t}consumers (
    name text PRIMARY KEY,
    kind text NOT NULL,
    pattern text NOT NULL,
    position bigint NOT NULL,
    updated double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS {t}pending (
    consumer text NOT NULL,
    seq bigint NOT NULL,
    attempts integer NOT NULL,
    owner text,
    visible_at double precision NOT NULL,
    PRIMARY KEY (consumer, seq)
);
CREATE INDEX IF NOT EXISTS {t}pending_owner ON {t}pending (owner, consumer);
CREATE INDEX IF NOT EXISTS {t}pending_free ON {t}pending (consumer, visible_at)
    WHERE owner IS NULL;
CREATE TABLE IF NOT EXISTS {t}dead (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    seq bigint NOT NULL,
    ts double precision NOT NULL,
    error text NOT NULL,
    data bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS {t}instances (
    instance text PRIMARY KEY,
    expires double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS {t}idem (
    key text PRIMARY KEY,
    event_id text NOT NULL,
    ts double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}idem_ts ON {t}idem (ts);
CREATE TABLE IF NOT EXISTS {t}responders (
    instance text NOT NULL,
    pattern text NOT NULL,
    expires double precision NOT NULL,
    PRIMARY KEY (instance, pattern)
);
CREATE TABLE IF NOT EXISTS {t}requests (
    id bigserial PRIMARY KEY,
    pattern text NOT NULL,
    requester text NOT NULL,
    request_id text NOT NULL,
    deadline double precision,
    data bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}requests_pattern ON {t}requests (pattern, id);
CREATE TABLE IF NOT EXISTS {t}replies (
    id bigserial PRIMARY KEY,
    requester text NOT NULL,
    request_id text NOT NULL,
    frame bytea NOT NULL,
    ts double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}replies_requester ON {t}replies (requester);
"""


class _Sql:
    """Every statement, with the table names filled in once."""

    def __init__(self, t: str) -> None:
        # the owners of pending rows that are not alive: a skip scan of the owner index, one
        # step per distinct owner, so that finding what to reclaim does not cost a look at
        # every event in flight (a durable may have thousands)
        dead = (
            f"RECURSIVE o(owner) AS ("
            f"(SELECT owner FROM {t}pending WHERE owner IS NOT NULL ORDER BY owner LIMIT 1) "
            f"UNION ALL SELECT (SELECT p.owner FROM {t}pending p WHERE p.owner > o.owner "
            f"ORDER BY p.owner LIMIT 1) FROM o WHERE o.owner IS NOT NULL), "
            f"dead AS (SELECT o.owner FROM o WHERE o.owner IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {t}instances i WHERE i.instance = o.owner AND i.expires > $3))"
        )
        # visible pending rows of consumer $1 held by nobody ...
        free = f"{t}pending f WHERE f.consumer = $1 AND f.owner IS NULL AND f.visible_at <= $3"
        # ... or by a dead owner
        held = (
            # EXISTS first: a constant for the planner, so without a dead owner (the usual
            # case) the consumer's pending rows are not even looked at
            f"{t}pending h WHERE EXISTS (SELECT 1 FROM dead) "
            f"AND h.owner = ANY(ARRAY(SELECT owner FROM dead)) "
            f"AND h.consumer = $1 AND h.visible_at <= $3"
        )
        # a whole batch of publishes in one statement, so one round trip: the lock subquery is
        # volatile, hence not flattened, so it runs (waiting for the lock) before nextval; the
        # statement is its own transaction and holds the lock until it commits
        self.publish = (
            f"WITH n AS (SELECT setval('{t}seq', nextval('{t}seq') + $1 - 1) AS last "
            f"FROM (SELECT pg_advisory_xact_lock($2)) AS l), "
            f"ins AS (INSERT INTO {t}events (seq, ts, topic, event_id, origin, data) "
            f"SELECT n.last - $1 + u.i, u.ts, u.topic, u.event_id, $7, u.data FROM n, "
            f"unnest($3::float8[], $4::text[], $5::text[], $6::bytea[]) "
            f"WITH ORDINALITY AS u(ts, topic, event_id, data, i)) "
            f"SELECT last, pg_notify($8, '') FROM n"
        )
        self.lock = "SELECT pg_advisory_xact_lock($1)"
        self.number = f"SELECT setval('{t}seq', nextval('{t}seq') + $1 - 1)"
        self.insert_events = (
            f"INSERT INTO {t}events (seq, ts, topic, event_id, origin, data) "
            f"SELECT $1::bigint + n - 1, ts, topic, event_id, $6, data "
            f"FROM unnest($2::float8[], $3::text[], $4::text[], $5::bytea[]) "
            f"WITH ORDINALITY AS u(ts, topic, event_id, data, n)"
        )
        self.idem_find = f"SELECT key, event_id FROM {t}idem WHERE key = ANY($1) AND ts >= $2"
        self.idem_put = (
            f"INSERT INTO {t}idem (key, event_id, ts) SELECT k, e, $3 "
            f"FROM unnest($1::text[], $2::text[]) AS u(k, e) "
            f"ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts"
        )
        # by primary key (= ANY): a join with the offsets may scan every pending row
        self.ack = f"DELETE FROM {t}pending WHERE consumer = $1 AND seq = ANY($2::bigint[])"
        self.defer = (
            f"UPDATE {t}pending SET owner = NULL, visible_at = $3 WHERE consumer = $1 AND seq = $2"
        )
        self.dead = (
            f"WITH d AS (DELETE FROM {t}pending WHERE consumer = $1 AND seq = $2 "
            f"RETURNING consumer, seq) "
            f"INSERT INTO {t}dead (consumer, seq, ts, error, data) "
            f"SELECT d.consumer, d.seq, $3, $4, coalesce(e.data, ''::bytea) "
            f"FROM d LEFT JOIN {t}events e ON e.seq = d.seq"
        )
        # a consumer starts after the newest committed event (an uncommitted batch with lower
        # numbers is not skipped: it commits above this position)
        self.register = (
            f"INSERT INTO {t}consumers (name, kind, pattern, position, updated) "
            f"SELECT $1, $2, $3, coalesce(max(seq), 0), $4 FROM {t}events "
            f"ON CONFLICT (name) DO NOTHING"
        )
        # only when it changed: an unconditional update would wait for a member's claim
        self.repattern = (
            f"UPDATE {t}consumers SET pattern = $3, kind = $2, updated = $4 "
            f"WHERE name = $1 AND (pattern <> $3 OR kind <> $2)"
        )
        self.respond = (
            f"INSERT INTO {t}responders (instance, pattern, expires) VALUES ($1, $2, $3) "
            f"ON CONFLICT (instance, pattern) DO UPDATE SET expires = excluded.expires"
        )
        self.unrespond = f"DELETE FROM {t}responders WHERE instance = $1 AND pattern = $2"
        self.request = (
            f"INSERT INTO {t}requests (pattern, requester, request_id, deadline, data) "
            f"VALUES ($1, $2, $3, $4, $5)"
        )
        self.reply = (
            f"INSERT INTO {t}replies (requester, request_id, frame, ts) VALUES ($1, $2, $3, $4)"
        )
        self.notify = "SELECT pg_notify($1, '')"
        self.head = f"SELECT coalesce(max(seq), 0) FROM {t}events"
        self.offset_of = f"SELECT seq FROM {t}events WHERE event_id = $1 ORDER BY seq LIMIT 1"
        # cheap and read-only: an idle consumer must not write (lock a row) on every poll
        self.claim_probe = (
            # max() reads one index entry; EXISTS (... seq > position) may scan the table
            f"WITH {dead} "
            f"SELECT coalesce((SELECT max(seq) FROM {t}events) > c.position, false) "
            f"OR ($2 AND (EXISTS (SELECT 1 FROM {free}) OR EXISTS (SELECT 1 FROM {held}))) "
            f"FROM {t}consumers c WHERE c.name = $1"
        )
        # the consumer row is locked first (another member claiming: no row at all), then the
        # pending events to hand out again are locked and taken; one round trip. The update
        # goes by primary key (= ANY): a join would let the planner scan every pending row.
        self.lock_and_reclaim = (
            f"WITH {dead}, "
            f"c AS (SELECT position FROM {t}consumers WHERE name = $1 FOR UPDATE SKIP LOCKED), "
            f"fd AS (SELECT f.seq FROM {free} AND EXISTS (SELECT 1 FROM c) "
            f"ORDER BY f.visible_at LIMIT $4 FOR UPDATE OF f SKIP LOCKED), "
            f"hd AS (SELECT h.seq FROM {held} AND EXISTS (SELECT 1 FROM c) "
            f"ORDER BY h.seq LIMIT $4 FOR UPDATE OF h SKIP LOCKED), "
            f"taken AS (UPDATE {t}pending p SET attempts = p.attempts + 1, owner = $2, "
            f"visible_at = $3 WHERE p.consumer = $1 AND p.seq = ANY(ARRAY("
            f"SELECT seq FROM fd UNION SELECT seq FROM hd ORDER BY 1 LIMIT $4)) "
            f"RETURNING p.seq, p.attempts) "
            f"SELECT c.position, t.seq, t.attempts, e.data FROM c "
            f"LEFT JOIN (taken t JOIN {t}events e ON e.seq = t.seq) ON true"
        )
        # a group: the row lock and the first page of events
        self.lock_and_read = (
            f"WITH c AS (SELECT position FROM {t}consumers WHERE name = $1 "
            f"FOR UPDATE SKIP LOCKED) "
            f"SELECT c.position, e.seq, e.topic, e.data FROM c LEFT JOIN LATERAL "
            f"(SELECT seq, topic, data FROM {t}events WHERE seq > c.position "
            f"ORDER BY seq LIMIT $2) AS e ON true ORDER BY e.seq"
        )
        self.claim_read = (
            f"SELECT seq, topic, data FROM {t}events WHERE seq > $1 ORDER BY seq LIMIT $2"
        )
        self.claim_save = (
            f"WITH ins AS (INSERT INTO {t}pending (consumer, seq, attempts, owner, visible_at) "
            f"SELECT $1, s, 1, $2, $3 FROM unnest($4::bigint[]) AS s) "
            f"UPDATE {t}consumers SET position = $5, updated = $3 WHERE name = $1"
        )
        self.claim_move = f"UPDATE {t}consumers SET position = $2, updated = $3 WHERE name = $1"
        self.heartbeat = (
            f"INSERT INTO {t}instances (instance, expires) VALUES ($1, $2) "
            f"ON CONFLICT (instance) DO UPDATE SET expires = excluded.expires"
        )
        self.sweep = [
            f"DELETE FROM {t}instances WHERE expires < $1 - {LONG_DEAD}",
            f"DELETE FROM {t}responders WHERE expires < $1",
            f"DELETE FROM {t}requests WHERE deadline < $1",
            f"DELETE FROM {t}replies WHERE ts < $1 - {REPLY_TTL}",
        ]
        self.release = [
            f"UPDATE {t}pending SET owner = NULL, visible_at = $2 WHERE owner = $1",
            f"DELETE FROM {t}responders WHERE instance = $1",
            f"DELETE FROM {t}instances WHERE instance = $1",
        ]
        self.responders = f"SELECT DISTINCT pattern FROM {t}responders WHERE expires > $1"
        self.take_requests = (
            f"DELETE FROM {t}requests WHERE id IN (SELECT id FROM {t}requests "
            f"WHERE pattern = ANY($1) ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) "
            f"RETURNING id, pattern, requester, request_id, deadline, data"
        )
        self.take_replies = (
            f"DELETE FROM {t}replies WHERE requester = $1 RETURNING id, request_id, frame"
        )
        self.compact_lock = "SELECT pg_try_advisory_xact_lock($1)"
        self.newest_kept = f"SELECT seq FROM {t}events ORDER BY seq DESC OFFSET $1 LIMIT 1"
        self.newest_old = f"SELECT max(seq) FROM {t}events WHERE ts < $1"
        self.topics_between = (
            f"SELECT seq, topic FROM {t}events WHERE seq > $1 AND seq < $2 ORDER BY seq LIMIT $3"
        )
        # only if no claim moved it meanwhile
        self.skip_to = f"UPDATE {t}consumers SET position = $3 WHERE name = $1 AND position = $2"
        self.durables = (
            f"SELECT c.name, c.pattern, c.position, "
            f"(SELECT min(p.seq) FROM {t}pending p WHERE p.consumer = c.name) "
            f"FROM {t}consumers c WHERE c.kind = 'durable'"
        )
        # events to delete: old enough ($1 timestamp) or beyond the count ($2 offset), below $3
        expired = "(ts < $1 OR seq <= $2) AND seq < $3"
        self.delete_events = f"DELETE FROM {t}events WHERE {expired}"
        self.delete_unacked = (
            f"DELETE FROM {t}events WHERE {expired} AND seq >= $4 RETURNING seq, topic"
        )
        self.delete_lost_pending = (
            f"DELETE FROM {t}pending WHERE seq = ANY($1::bigint[]) RETURNING consumer, seq"
        )
        self.delete_idem = f"DELETE FROM {t}idem WHERE ts < $1"
        self.dead_letters = (
            f"SELECT consumer, seq, ts, error, data FROM {t}dead "
            f"WHERE $1::text IS NULL OR consumer = $1 ORDER BY id LIMIT $2"
        )
        self.read_columns = f"SELECT seq, ts, topic, event_id, origin, data FROM {t}events"


class PostgresStore(LogStore):
    """The tables of one bus in PostgreSQL, through an asyncpg pool and one listening connection.

    ``dsn`` is passed to asyncpg as is.
    """

    def __init__(self, dsn: str, prefix: str, *, pool_size: int = 4) -> None:
        super().__init__(prefix)
        self.dsn = dsn
        self.pool_size = max(1, pool_size)
        t = _names(prefix)
        self.channel = t + "changed"
        self._sql = _Sql(t)
        self._schema = _schema(t)
        self._events = t + "events"
        self._schema_done = t + "replies_requester"
        self._schema_key = _key("axonbus.schema", t)
        self._write_key = _key("axonbus.write", t)
        self._compact_key = _key("axonbus.compact", t)
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
            await conn.executemany(sql.defer, [(op[1], op[2], now + op[3]) for op in run])
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

    # -- consumers -----------------------------------------------------------------------------

    async def claim(
        self,
        consumer: str,
        matches: Callable[[str], bool],
        owner: str,
        limit: int,
        *,
        durable: bool,
    ) -> list[Claimed]:
        if limit <= 0:
            return []
        sql = self._sql
        now = time.time()
        async with self._pool_or_raise().acquire() as conn:
            # after a full claim there is probably more: no need to look first
            if consumer not in self._busy and not await conn.fetchval(
                sql.claim_probe, consumer, durable, now
            ):
                return []  # not registered, or nothing new and nothing to reclaim
            async with conn.transaction():
                out: list[Claimed] = []
                first: list[Any] | None = None
                if durable:
                    rows = await conn.fetch(sql.lock_and_reclaim, consumer, owner, now, limit)
                    out = [Claimed(r[1], r[2], r[3]) for r in rows if r[1] is not None]
                else:
                    rows = await conn.fetch(sql.lock_and_read, consumer, limit)
                    first = [r[1:] for r in rows if r[1] is not None]
                if not rows:
                    self._busy.discard(consumer)
                    return []  # another member is claiming right now (or it went away)
                position = rows[0][0]
                moved = position
                fresh: list[Claimed] = []
                if len(out) < limit:
                    moved, fresh = await self._read_new(
                        conn, position, matches, limit - len(out), first
                    )
                if durable and (fresh or moved != position):
                    offsets = [c[0] for c in fresh]
                    await conn.execute(sql.claim_save, consumer, owner, now, offsets, moved)
                elif moved != position:
                    await conn.execute(sql.claim_move, consumer, moved, now)
        out.extend(fresh)
        out.sort()
        if len(out) >= limit:
            self._busy.add(consumer)
        else:
            self._busy.discard(consumer)
        return out

    async def _read_new(
        self,
        conn: Any,
        position: int,
        matches: Callable[[str], bool],
        room: int,
        rows: list[Any] | None,
    ) -> tuple[int, list[Claimed]]:
        """Up to ``room`` matching events after ``position`` (``rows``: the first page, if it
        was read already), and the position past the last one looked at."""
        fresh: list[Claimed] = []
        seen = 0
        page = room
        if rows is None:
            rows = await conn.fetch(self._sql.claim_read, position, page)
        while True:
            for seq, topic, data in rows:
                position = seq
                if matches(topic):
                    fresh.append(Claimed(seq, 1, data))
                    if len(fresh) == room:
                        return position, fresh
            seen += len(rows)
            if len(rows) < page or seen >= CLAIM_BUDGET:
                return position, fresh
            # a sparse pattern: look further, a larger page at a time
            page = max(room, CLAIM_PAGE)
            rows = await conn.fetch(self._sql.claim_read, position, page)

    async def heartbeat(self, instance: str, ttl: float) -> None:
        now = time.time()
        sql = self._sql
        async with self._pool_or_raise().acquire() as conn:
            await conn.execute(sql.heartbeat, instance, now + ttl)
            if now - self._last_sweep >= SWEEP_EVERY:
                self._last_sweep = now
                for statement in sql.sweep:
                    await conn.execute(statement, now)

    async def release(self, instance: str) -> None:
        sql = self._sql
        async with self._pool_or_raise().acquire() as conn, conn.transaction():
            await conn.execute(sql.release[0], instance, time.time())
            for statement in sql.release[1:]:
                await conn.execute(statement, instance)
            await conn.execute(sql.notify, self.channel)  # others reclaim what it held

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

    # -- retention -----------------------------------------------------------------------------

    async def compact(
        self, max_age: float, max_events: int, drop_unacknowledged: bool
    ) -> Compaction:
        """See :meth:`LogStore.compact`. With ``drop_unacknowledged``, an event counts as lost
        for a durable consumer if it was pending for it, or unread and matching its pattern.
        One process compacts at a time; the others return at once with nothing done."""
        sql = self._sql
        now = time.time()
        too_old = now - max_age if max_age > 0 else float("-inf")
        async with self._pool_or_raise().acquire() as conn, conn.transaction():
            if not await conn.fetchval(sql.compact_lock, self._compact_key):
                return Compaction(0, 0, ())  # another process is compacting right now
            beyond = 0
            if max_events > 0:
                beyond = await conn.fetchval(sql.newest_kept, max_events) or 0
            # every event to delete is below cut
            cut = max(beyond, await conn.fetchval(sql.newest_old, too_old) or 0) + 1
            durables = [list(r) for r in await conn.fetch(sql.durables)]
            for durable in durables:
                name, pattern, position, oldest = durable
                if oldest is None and position + 1 < cut:
                    durable[2] = await self._skip_unwanted(conn, name, pattern, position, cut)
            # the oldest event some durable consumer has not acknowledged
            keeps = [pos + 1 if old is None else min(pos + 1, old) for *_, pos, old in durables]
            keep = min(keeps) if keeps else None
            deleted = 0
            lost: dict[str, set[int]] = {}
            if keep is not None and drop_unacknowledged:
                gone = await conn.fetch(sql.delete_unacked, too_old, beyond, 2**62, keep)
                deleted += len(gone)
                if gone:
                    seqs = [r[0] for r in gone]
                    for name, seq in await conn.fetch(sql.delete_lost_pending, seqs):
                        lost.setdefault(name, set()).add(seq)
                    for name, pattern, pos, _ in durables:
                        for seq, topic in gone:
                            if seq > pos and match(pattern, topic):
                                lost.setdefault(name, set()).add(seq)
            bound = keep if keep is not None else 2**62
            status = await conn.execute(sql.delete_events, too_old, beyond, bound)
            deleted += int(status.split()[-1])
            await conn.execute(sql.delete_idem, now - self.idempotency_window)
        unacknowledged = len(set().union(*lost.values())) if lost else 0
        return Compaction(deleted, unacknowledged, tuple(sorted(lost)))

    async def _skip_unwanted(
        self, conn: Any, name: str, pattern: str, position: int, cut: int
    ) -> int:
        """Move a durable with nothing pending past the events below ``cut`` its pattern does
        not match, as its next claim would (a durable that is not reading must not hold the log
        with events it will never want); its position afterwards."""
        moved = position
        while True:
            rows = await conn.fetch(self._sql.topics_between, moved, cut, CLAIM_BUDGET)
            wanted = next((seq for seq, topic in rows if match(pattern, topic)), None)
            if wanted is not None:
                moved = wanted - 1
                break
            if len(rows) < CLAIM_BUDGET:
                moved = cut - 1  # nothing below cut is for it
                break
            moved = rows[-1][0]
        if moved <= position:
            return position
        status = await conn.execute(self._sql.skip_to, name, position, moved)
        return moved if status == "UPDATE 1" else position

    async def dead_letters(
        self, consumer: str | None, limit: int
    ) -> list[tuple[str, int, float, str, bytes]]:
        rows = await self._pool_or_raise().fetch(self._sql.dead_letters, consumer, limit)
        return [(r[0], int(r[1]), float(r[2]), r[3], bytes(r[4])) for r in rows]

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


@register_transport
class PostgresAliasTransport(PostgresTransport):
    """``postgres://``: the same transport (libpq accepts both schemes)."""

    scheme = "postgres"

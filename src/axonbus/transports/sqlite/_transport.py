"""``sqlite:///path.db``: a durable event log in one file, for the processes of one host.

>>> async with Bus("sqlite:///events.db") as bus: ...      # relative path
>>> async with Bus("sqlite:////var/lib/agent/events.db") as bus: ...   # absolute path

Every event is appended to the log (WAL mode). Publishes, acknowledgements and registrations
queued in one loop tick are written by a writer thread as one transaction (group commit), so
durability costs one commit per batch, not one per event. Reads (the tail, replay, queries) run
in a second thread and never wait for the writer. Processes on the same host share the file:
``group=`` and ``durable=`` subscriptions compete across them, and each process notices others'
commits by polling SQLite's ``data_version`` (a few microseconds; every 1 ms after a change,
backing off to ``poll``, 20 ms by default). See the ``log`` subpackage for how each
subscription kind travels.

URL options, besides those of the ``log`` subpackage: ``synchronous`` (``normal``, the
default, ``full``,
``extra`` or ``off``), ``busy_timeout`` (seconds a write waits for another process's
transaction, default 5) and ``poll`` (the longest pause between two looks for other processes'
commits, seconds, default 0.02).

What each ``synchronous`` setting survives, in WAL mode:

- ``normal``: an application crash (even ``kill -9``) loses nothing committed; a power loss or
  OS crash can lose the last transactions before a checkpoint (never corrupts the file).
- ``full`` / ``extra``: also a power loss: every commit is fsynced (slower: one fsync per batch).
- ``off``: SQLite hands data to the OS without syncing; an OS crash can corrupt the file.

What it cannot promise: the processes must share one host and a local file system (SQLite
locking over NFS is unreliable); plain and group subscriptions are at most once; a durable
subscription starts at its first registration (events before it are in the log: use
``bus.replay``); one writer at a time, so many processes publishing heavily queue behind each
other's transactions (``busy_timeout``); clocks matter for ``claim_idle`` and retention only on
one host, where they agree.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote

from ..base import float_option, register_transport
from ..log._store import LogStore, Request, Row, read_filter
from ..log._transport import LogTransport
from ._consumers import SqliteConsumers
from ._sql import (
    INSERT_CHUNK,
    SCHEMA,  # also read from here (benchmarks/storage.py)
    delete_pending,
    immediate,
    insert_chunk,
    pending_chunks,
)

__all__ = ["SqliteStore", "SqliteTransport"]

T = TypeVar("T")

logger = logging.getLogger("axonbus")

CHECKPOINT_EVERY = 2000  # operations written between two checkpoints from the reader thread
CHECKPOINT_BACKSTOP = 10_000  # WAL pages before the writer checkpoints by itself
SYNCHRONOUS = ("off", "normal", "full", "extra")


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite://`` URL: three slashes for a relative path, four for absolute."""
    rest = url.partition("://")[2]
    path = unquote(rest[1:] if rest.startswith("/") else rest)
    if not path or path == ":memory:":
        raise ValueError(
            "sqlite URL needs a file, like sqlite:///events.db (relative) or "
            f"sqlite:////abs/events.db: {url!r}"
        )
    return path


class SqliteStore(SqliteConsumers, LogStore):
    """The log in a SQLite file: a writer thread, a reader thread, a poller on the loop."""

    def __init__(
        self, path: str, prefix: str, *, synchronous: str, busy_timeout: float, poll: float
    ) -> None:
        super().__init__(prefix)
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.poll = poll
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._reader: concurrent.futures.ThreadPoolExecutor | None = None
        self._w: sqlite3.Connection | None = None  # used only in the writer thread
        self._r: sqlite3.Connection | None = None  # used only in the reader thread
        self._poller: sqlite3.Connection | None = None  # used only on the loop
        self._version = -1
        self._interval = 0.001
        self._written_since_checkpoint = 0
        self._checkpointing = False

    # -- threads -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        return conn

    async def _in_writer(self, fn: Callable[..., T], *args: Any) -> T:
        if self._writer is None:
            raise sqlite3.OperationalError("the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def _in_reader(self, fn: Callable[..., T], *args: Any) -> T:
        if self._reader is None:
            raise sqlite3.OperationalError("the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def open(self) -> None:
        if self._writer is not None:
            return
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "axonbus-sqlite-writer")
        self._reader = concurrent.futures.ThreadPoolExecutor(1, "axonbus-sqlite-reader")
        await self._in_writer(self._open_writer)
        self._r = await self._in_reader(self._connect)
        self._poller = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        self._version = self._poller.execute("PRAGMA data_version").fetchone()[0]

    def _open_writer(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise sqlite3.OperationalError(f"directory {directory} does not exist")
        conn = self._w = self._connect()
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.OperationalError(f"{self.path}: cannot switch to WAL mode")
        # checkpoints run in the reader thread (see write); this is only the backstop for a
        # WAL that grows while the reader is busy
        conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_BACKSTOP}")
        with immediate(conn):  # creating the tables: one process at a time
            for statement in SCHEMA.format(p=self.prefix).split(";"):
                if statement.strip():
                    conn.execute(statement)

    async def close(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.close()
        for executor, attr in ((self._writer, "_w"), (self._reader, "_r")):
            if executor is None:
                continue
            conn = getattr(self, attr)
            setattr(self, attr, None)
            if conn is not None:
                try:
                    await asyncio.get_running_loop().run_in_executor(executor, conn.close)
                except sqlite3.Error:
                    pass
            executor.shutdown(wait=False)
        self._writer = self._reader = None

    # -- writes --------------------------------------------------------------------------------

    @property
    def _insert_run(self) -> str:
        # parameters are a "pub" operation: ?1 "pub", ?2 topic, ?3 data, ?4 event id,
        # ?5 timestamp, ?6 idempotency key (NULL in a run; referenced so the count matches)
        return (
            f"INSERT INTO {self.prefix}events (topic, data, event_id, ts, origin) "
            f"VALUES (?2, ?3, ?4, ?5, ifnull(?6, '{self.origin}'))"
        )

    async def write(self, ops: list[tuple[Any, ...]], idempotency_window: float) -> list[Any]:
        results = await self._in_writer(self._write, ops, idempotency_window)
        self._written_since_checkpoint += len(ops)
        if self._written_since_checkpoint >= CHECKPOINT_EVERY and not self._checkpointing:
            # the reader thread copies the WAL back into the file while the writer goes on
            # (a PASSIVE checkpoint never blocks writers): the commit path stays short
            self._written_since_checkpoint = 0
            self._checkpointing = True
            assert self._reader is not None
            self._reader.submit(self._checkpoint)
        return results

    def _checkpoint(self) -> None:
        try:
            if self._r is not None:
                self._r.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            logger.debug("sqlite checkpoint failed: %r", exc)
        finally:
            self._checkpointing = False

    def _insert_pubs(self, conn: sqlite3.Connection, run: list[tuple[Any, ...]]) -> None:
        """Append a run of "pub" operations without idempotency key, in order: INSERT_CHUNK
        rows per statement (one step, so one release of the GIL, per chunk instead of per event:
        the loop goes on encoding meanwhile), the rest through executemany."""
        full = len(run) - len(run) % INSERT_CHUNK
        if full:
            sql = insert_chunk(self.prefix)
            for k in range(0, full, INSERT_CHUNK):
                params = list(itertools.chain.from_iterable(run[k : k + INSERT_CHUNK]))
                params.append(self.origin)
                conn.execute(sql, params)
        if full < len(run):
            conn.executemany(self._insert_run, run[full:])

    def _write(self, ops: list[tuple[Any, ...]], window: float) -> list[Any]:
        conn = self._w
        assert conn is not None
        p = self.prefix
        now = time.time()
        results: list[Any] = [None] * len(ops)
        with immediate(conn):
            (last,) = conn.execute(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = ?), 0)",
                (f"{p}events",),
            ).fetchone()
            i, n = 0, len(ops)
            while i < n:
                op = ops[i]
                kind = op[0]
                if kind == "pub" and op[5] is None:
                    j = i
                    while j < n and ops[j][0] == "pub" and ops[j][5] is None:
                        last += 1
                        results[j] = last
                        j += 1
                    # the operations themselves are the parameters: no row built per event
                    self._insert_pubs(conn, ops[i:j])
                    i = j
                    continue
                if kind == "ack":
                    acks: dict[str, list[int]] = {}
                    while i < n and ops[i][0] == "ack":
                        acks.setdefault(ops[i][1], []).append(ops[i][2])
                        i += 1
                    for consumer, offsets in acks.items():
                        for chunk in pending_chunks(offsets):
                            conn.execute(delete_pending(p), (consumer, *chunk))
                    continue
                i += 1
                if kind == "pub":
                    _, topic, data, event_id, ts, key = op
                    found = conn.execute(
                        f"SELECT event_id, ts FROM {p}idem WHERE key = ?", (key,)
                    ).fetchone()
                    if found is not None and found[1] >= now - window:
                        results[i - 1] = found[0]
                        continue
                    conn.execute(
                        f"INSERT OR REPLACE INTO {p}idem (key, event_id, ts) VALUES (?, ?, ?)",
                        (key, event_id, now),
                    )
                    conn.execute(
                        f"INSERT INTO {p}events (ts, topic, event_id, origin, data) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (ts, topic, event_id, self.origin, data),
                    )
                    last += 1
                    results[i - 1] = last
                elif kind == "defer":
                    _, consumer, seq, delay, next_attempt = op
                    conn.execute(
                        f"UPDATE {p}pending SET owner = NULL, visible_at = ?, "
                        "attempts = MAX(attempts, ?) WHERE consumer = ? AND seq = ?",
                        (now + delay, next_attempt, consumer, seq),
                    )
                elif kind == "attempt":
                    _, consumer, seq, next_attempt = op
                    conn.execute(
                        f"UPDATE {p}pending SET attempts = MAX(attempts, ?) "
                        "WHERE consumer = ? AND seq = ?",
                        (next_attempt, consumer, seq),
                    )
                elif kind == "dead":
                    _, consumer, seq, error = op
                    conn.execute(
                        f"INSERT INTO {p}dead (consumer, seq, ts, error, data) "
                        f"SELECT ?, ?, ?, ?, (SELECT data FROM {p}events WHERE seq = ?)",
                        (consumer, seq, now, error, seq),
                    )
                    conn.execute(
                        f"DELETE FROM {p}pending WHERE consumer = ? AND seq = ?", (consumer, seq)
                    )
                elif kind == "register":
                    _, name, consumer_kind, pattern = op
                    conn.execute(
                        f"INSERT INTO {p}consumers (name, kind, pattern, position, updated) "
                        f"VALUES (?, ?, ?, (SELECT COALESCE(MAX(seq), 0) FROM {p}events), ?) "
                        "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, "
                        "pattern = excluded.pattern, updated = excluded.updated",
                        (name, consumer_kind, pattern, now),
                    )
                elif kind == "respond":
                    conn.execute(
                        f"INSERT OR REPLACE INTO {p}responders (instance, pattern, expires) "
                        "VALUES (?, ?, ?)",
                        op[1:],
                    )
                elif kind == "unrespond":
                    conn.execute(
                        f"DELETE FROM {p}responders WHERE instance = ? AND pattern = ?", op[1:]
                    )
                elif kind == "request":
                    conn.execute(
                        f"INSERT INTO {p}requests (pattern, requester, request_id, deadline, data)"
                        " VALUES (?, ?, ?, ?, ?)",
                        op[1:],
                    )
                elif kind == "reply":
                    conn.execute(
                        f"INSERT INTO {p}replies (requester, request_id, frame) VALUES (?, ?, ?)",
                        op[1:],
                    )
                else:
                    raise ValueError(f"unknown log operation {kind!r}")
        return results

    # -- reads ---------------------------------------------------------------------------------

    async def head(self) -> int:
        return await self._in_reader(self._head)

    def _head(self) -> int:
        assert self._r is not None
        (seq,) = self._r.execute(
            f"SELECT COALESCE(MAX(seq), 0) FROM {self.prefix}events"
        ).fetchone()
        return int(seq)

    async def on_topic(self, topic: str, limit: int) -> list[tuple[int, bytes]]:
        return await self._in_reader(self._on_topic, topic, limit)

    def _on_topic(self, topic: str, limit: int) -> list[tuple[int, bytes]]:
        assert self._r is not None
        rows = self._r.execute(
            f"SELECT seq, data FROM {self.prefix}events WHERE topic = ? ORDER BY seq LIMIT ?",
            (topic, limit),
        )
        return [(int(seq), bytes(data)) for seq, data in rows]

    async def delete_event(self, offset: int) -> None:
        await self._in_writer(self._delete_event, offset)

    def _delete_event(self, offset: int) -> None:
        assert self._w is not None
        with immediate(self._w):
            self._w.execute(f"DELETE FROM {self.prefix}events WHERE seq = ?", (offset,))

    async def position(self, consumer: str) -> int | None:
        return await self._in_reader(self._position, consumer)

    def _position(self, consumer: str) -> int | None:
        assert self._r is not None
        row = self._r.execute(
            f"SELECT position FROM {self.prefix}consumers WHERE name = ?", (consumer,)
        ).fetchone()
        return None if row is None else int(row[0])

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
            after, until, since_time, until_time, exclude_origin, limit, lambda _: "?"
        )
        sql = f"SELECT seq, ts, topic, event_id, origin, data FROM {self.prefix}events {tail}"
        return await self._in_reader(self._select_rows, sql, args)

    def _select_rows(self, sql: str, args: list[Any]) -> list[Row]:
        assert self._r is not None
        return [Row(*r) for r in self._r.execute(sql, args)]

    async def offset_of(self, event_id: str) -> int | None:
        return await self._in_reader(self._offset_of, event_id)

    def _offset_of(self, event_id: str) -> int | None:
        assert self._r is not None
        found = self._r.execute(
            f"SELECT seq FROM {self.prefix}events WHERE event_id = ? ORDER BY seq LIMIT 1",
            (event_id,),
        ).fetchone()
        return None if found is None else int(found[0])

    async def responders(self) -> list[str]:
        return await self._in_reader(self._responders)

    def _responders(self) -> list[str]:
        assert self._r is not None
        rows = self._r.execute(
            f"SELECT DISTINCT pattern FROM {self.prefix}responders WHERE expires > ?",
            (time.time(),),
        )
        return [r[0] for r in rows]

    async def dead_letters(
        self, consumer: str | None, limit: int
    ) -> list[tuple[str, int, float, str, bytes]]:
        return await self._in_reader(self._dead_letters, consumer, limit)

    def _dead_letters(self, consumer: str | None, limit: int) -> list[Any]:
        assert self._r is not None
        where, args = ("WHERE consumer = ?", [consumer]) if consumer else ("", [])
        return list(
            self._r.execute(
                f"SELECT consumer, seq, ts, error, data FROM {self.prefix}dead {where} "
                "ORDER BY id LIMIT ?",
                [*args, limit],
            )
        )

    # -- request / reply (writer thread) -------------------------------------------------------

    async def take_requests(self, patterns: list[str], limit: int) -> list[Request]:
        return await self._in_writer(self._take_requests, patterns, limit)

    def _take_requests(self, patterns: list[str], limit: int) -> list[Request]:
        assert self._w is not None
        p = self.prefix
        marks = ", ".join("?" * len(patterns))
        rows = self._w.execute(
            f"DELETE FROM {p}requests WHERE id IN (SELECT id FROM {p}requests "
            f"WHERE pattern IN ({marks}) ORDER BY id LIMIT ?) "
            "RETURNING id, pattern, requester, request_id, deadline, data",
            [*patterns, limit],
        ).fetchall()
        return [Request(*r[1:]) for r in sorted(rows)]

    async def take_replies(self, requester: str) -> list[tuple[str, bytes]]:
        return await self._in_writer(self._take_replies, requester)

    def _take_replies(self, requester: str) -> list[tuple[str, bytes]]:
        assert self._w is not None
        rows = self._w.execute(
            f"DELETE FROM {self.prefix}replies WHERE requester = ? RETURNING request_id, frame",
            (requester,),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    # -- changes -------------------------------------------------------------------------------

    async def wait_changed(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            poller = self._poller
            if poller is None:
                raise sqlite3.OperationalError("the store is closed")
            (version,) = poller.execute("PRAGMA data_version").fetchone()
            if version != self._version:
                self._version = version
                self._interval = 0.001
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(self._interval, left))
            self._interval = min(self._interval * 2, self.poll)


@register_transport
class SqliteTransport(LogTransport):
    scheme = "sqlite"
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (sqlite3.OperationalError,)
    # a file that cannot be opened at start is a wrong path, not a server that comes back
    connects_in_background: ClassVar[bool] = False

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.address = url.partition("?")[0]  # (url_options' normal form drops a slash)
        self.path = sqlite_path(self.address)
        synchronous = self.options.pop("synchronous", "normal").lower()
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"URL option synchronous={synchronous!r}: one of {SYNCHRONOUS}")
        self.synchronous = synchronous
        self.busy_timeout = float_option(self.options, "busy_timeout", 5.0)
        self.poll = max(0.001, float_option(self.options, "poll", 0.02))
        if self.options:
            raise ValueError(f"unknown sqlite URL option(s): {', '.join(sorted(self.options))}")

    def make_store(self, prefix: str) -> LogStore:
        store = SqliteStore(
            self.path,
            prefix,
            synchronous=self.synchronous,
            busy_timeout=self.busy_timeout,
            poll=self.poll,
        )
        return store

"""The SQL of the ``sqlite://`` store: the schema (``SCHEMA``, its table names prefixed per
bus), the multi-row statements built once per prefix for a fixed number of rows (so one statement,
one step of SQLite and one release of the GIL, handles a chunk of events or offsets) and the
``BEGIN IMMEDIATE`` transaction every write runs in. Nothing here owns a connection (see
``_transport``).
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Iterator

__all__ = [
    "INSERT_CHUNK",
    "PENDING_CHUNK",
    "SCHEMA",
    "delete_pending",
    "immediate",
    "insert_chunk",
    "insert_pending",
    "pending_chunks",
]

# events per multi-row INSERT: 6 parameters each plus the origin, under 999 (the parameter limit
# of SQLite before 3.32)
INSERT_CHUNK = 128
# offsets per DELETE / INSERT OR IGNORE of pending rows (acknowledgements, claims)
PENDING_CHUNK = 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL, topic TEXT NOT NULL, event_id TEXT NOT NULL, origin TEXT NOT NULL,
    data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS {p}events_ts ON {p}events (ts);
CREATE INDEX IF NOT EXISTS {p}events_id ON {p}events (event_id);
CREATE TABLE IF NOT EXISTS {p}consumers (
    name TEXT PRIMARY KEY, kind TEXT NOT NULL, pattern TEXT NOT NULL,
    position INTEGER NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS {p}pending (
    consumer TEXT NOT NULL, seq INTEGER NOT NULL, attempts INTEGER NOT NULL, owner TEXT,
    visible_at REAL NOT NULL, PRIMARY KEY (consumer, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {p}pending_owner ON {p}pending (owner);
CREATE TABLE IF NOT EXISTS {p}dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT, consumer TEXT NOT NULL, seq INTEGER NOT NULL,
    ts REAL NOT NULL, error TEXT NOT NULL, data BLOB);
CREATE TABLE IF NOT EXISTS {p}instances (instance TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS {p}idem (key TEXT PRIMARY KEY, event_id TEXT NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS {p}responders (
    instance TEXT NOT NULL, pattern TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (instance, pattern));
CREATE TABLE IF NOT EXISTS {p}requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, pattern TEXT NOT NULL, requester TEXT NOT NULL,
    request_id TEXT NOT NULL, deadline REAL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS {p}requests_pattern ON {p}requests (pattern, id);
CREATE TABLE IF NOT EXISTS {p}replies (
    id INTEGER PRIMARY KEY AUTOINCREMENT, requester TEXT NOT NULL, request_id TEXT NOT NULL,
    frame BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS {p}replies_requester ON {p}replies (requester);
"""


@functools.cache
def insert_chunk(prefix: str) -> str:
    """INSERT of INSERT_CHUNK events whose parameters are their "pub" operations, one after the
    other (6 each: "pub", topic, data, event id, timestamp, key), then the origin."""
    origin = 6 * INSERT_CHUNK + 1
    rows = ", ".join(
        f"(?{6 * r + 2}, ?{6 * r + 3}, ?{6 * r + 4}, ?{6 * r + 5}, ?{origin})"
        for r in range(INSERT_CHUNK)
    )
    return f"INSERT INTO {prefix}events (topic, data, event_id, ts, origin) VALUES {rows}"


@functools.cache
def delete_pending(prefix: str) -> str:
    """DELETE of PENDING_CHUNK pending rows of one consumer: ?1 the consumer, then the offsets."""
    offsets = ", ".join(f"?{r + 2}" for r in range(PENDING_CHUNK))
    return f"DELETE FROM {prefix}pending WHERE consumer = ?1 AND seq IN ({offsets})"


@functools.cache
def insert_pending(prefix: str) -> str:
    """INSERT OR IGNORE of PENDING_CHUNK new pending rows: ?1 the consumer, ?2 the owner, ?3 the
    time, then the offsets."""
    rows = ", ".join(f"(?1, ?{r + 4}, 1, ?2, ?3)" for r in range(PENDING_CHUNK))
    return (
        f"INSERT OR IGNORE INTO {prefix}pending (consumer, seq, attempts, owner, visible_at) "
        f"VALUES {rows}"
    )


def pending_chunks(offsets: list[int]) -> Iterator[list[int]]:
    """``offsets`` in lists of exactly PENDING_CHUNK, the last one padded with its last offset:
    for the statements above a repeated offset changes nothing, and one statement (one step, so
    one release of the GIL) replaces up to PENDING_CHUNK."""
    for k in range(0, len(offsets), PENDING_CHUNK):
        chunk = offsets[k : k + PENDING_CHUNK]
        if len(chunk) < PENDING_CHUNK:
            chunk += [chunk[-1]] * (PENDING_CHUNK - len(chunk))
        yield chunk


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock at once: committed, or rolled back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")

"""Claims, ownership and retention for the ``sqlite://`` store: a member claiming a batch for
its group or durable consumer (reclaiming what dead owners held), the heartbeat and release that
say which process owns a pending event, and compaction, which must not drop what a durable
consumer still needs. Each is one short transaction in the writer thread. A mixin of
:class:`~axonbus.transports.sqlite.SqliteStore`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..._topics import match
from ..log._store import Claimed, Compaction
from ._sql import immediate, insert_pending, pending_chunks

__all__ = ["SqliteConsumers"]

T = TypeVar("T")

SCAN = 2048  # most log rows a claim looks at in one transaction


class SqliteConsumers:
    """Claims, ownership and retention of
    :class:`~axonbus.transports.sqlite.SqliteStore` (a mixin)."""

    if TYPE_CHECKING:  # provided by the store
        prefix: str
        idempotency_window: float
        _w: sqlite3.Connection | None

        async def _in_writer(self, fn: Callable[..., T], *args: Any) -> T: ...

    # -- claims, heartbeats, release (writer thread) -------------------------------------------

    async def claim(
        self,
        consumer: str,
        matches: Callable[[str], bool],
        owner: str,
        limit: int,
        *,
        durable: bool,
    ) -> list[Claimed]:
        return await self._in_writer(self._claim, consumer, matches, owner, limit, durable)

    def _reclaimable(self, consumer: str, now: float, limit: int) -> list[tuple[int, int]]:
        assert self._w is not None
        p = self.prefix
        return list(
            self._w.execute(
                f"SELECT seq, attempts FROM {p}pending WHERE consumer = ? AND visible_at <= ? "
                f"AND (owner IS NULL OR owner NOT IN "
                f"(SELECT instance FROM {p}instances WHERE expires > ?)) ORDER BY seq LIMIT ?",
                (consumer, now, now, limit),
            )
        )

    def _claim(
        self,
        consumer: str,
        matches: Callable[[str], bool],
        owner: str,
        limit: int,
        durable: bool,
    ) -> list[Claimed]:
        conn = self._w
        assert conn is not None
        p = self.prefix
        now = time.time()
        # look first without the write lock: most claims find nothing to do
        found = conn.execute(
            f"SELECT position FROM {p}consumers WHERE name = ?", (consumer,)
        ).fetchone()
        if found is None:
            return []
        (head,) = conn.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {p}events").fetchone()
        if head <= found[0] and not (durable and self._reclaimable(consumer, now, 1)):
            return []
        with immediate(conn):
            claimed = self._claim_locked(consumer, matches, owner, limit, durable, now)
        return claimed

    def _claim_locked(
        self,
        consumer: str,
        matches: Callable[[str], bool],
        owner: str,
        limit: int,
        durable: bool,
        now: float,
    ) -> list[Claimed]:
        conn = self._w
        assert conn is not None
        p = self.prefix
        claimed: list[Claimed] = []
        if durable:
            for seq, attempts in self._reclaimable(consumer, now, limit):
                data = conn.execute(f"SELECT data FROM {p}events WHERE seq = ?", (seq,)).fetchone()
                if data is None:  # removed by retention=drop: nothing left to deliver
                    conn.execute(
                        f"DELETE FROM {p}pending WHERE consumer = ? AND seq = ?", (consumer, seq)
                    )
                    continue
                # handed out again, not charged: the count moves only when a handler starts
                conn.execute(
                    f"UPDATE {p}pending SET owner = ?, visible_at = ? "
                    "WHERE consumer = ? AND seq = ?",
                    (owner, now, consumer, seq),
                )
                claimed.append(Claimed(seq, attempts, data[0], True))
        (position,) = conn.execute(
            f"SELECT position FROM {p}consumers WHERE name = ?", (consumer,)
        ).fetchone()
        fresh: list[Claimed] = []
        scanned = 0
        while len(claimed) + len(fresh) < limit and scanned < SCAN:
            rows = conn.execute(
                f"SELECT seq, topic, data FROM {p}events WHERE seq > ? ORDER BY seq LIMIT ?",
                (position, limit),
            ).fetchall()
            if not rows:
                break
            for seq, topic, data in rows:
                position = seq
                scanned += 1
                if matches(topic):
                    fresh.append(Claimed(seq, 1, data))
                    if len(claimed) + len(fresh) >= limit:
                        break
        if durable and fresh:
            for chunk in pending_chunks([c.offset for c in fresh]):
                conn.execute(insert_pending(p), (consumer, owner, now, *chunk))
        conn.execute(
            f"UPDATE {p}consumers SET position = ?, updated = ? WHERE name = ?",
            (position, now, consumer),
        )
        return sorted(claimed + fresh)

    async def heartbeat(self, instance: str, ttl: float) -> None:
        await self._in_writer(self._heartbeat, instance, ttl)

    def _heartbeat(self, instance: str, ttl: float) -> None:
        assert self._w is not None
        now = time.time()
        p = self.prefix
        with immediate(self._w):
            self._w.execute(
                f"INSERT OR REPLACE INTO {p}instances (instance, expires) VALUES (?, ?)",
                (instance, now + ttl),
            )
            # forget processes dead for an hour (their deliveries were reclaimable long ago)
            self._w.execute(f"DELETE FROM {p}instances WHERE expires < ?", (now - 3600,))
            self._w.execute(f"DELETE FROM {p}responders WHERE expires < ?", (now - 3600,))

    async def release(self, instance: str) -> None:
        await self._in_writer(self._release, instance)

    def _release(self, instance: str) -> None:
        assert self._w is not None
        p = self.prefix
        with immediate(self._w):
            self._w.execute(
                f"UPDATE {p}pending SET owner = NULL, visible_at = ? WHERE owner = ?",
                (time.time(), instance),
            )
            self._w.execute(f"DELETE FROM {p}responders WHERE instance = ?", (instance,))
            self._w.execute(f"DELETE FROM {p}instances WHERE instance = ?", (instance,))

    # -- retention (writer thread) -------------------------------------------------------------

    async def compact(
        self, max_age: float, max_events: int, drop_unacknowledged: bool
    ) -> Compaction:
        return await self._in_writer(self._compact, max_age, max_events, drop_unacknowledged)

    def _compact(self, max_age: float, max_events: int, drop: bool) -> Compaction:
        conn = self._w
        assert conn is not None
        p = self.prefix
        now = time.time()
        with immediate(conn):
            # the first event each durable consumer still needs: its oldest pending one, or
            # the one after its position
            needs = dict(
                conn.execute(
                    f"SELECT c.name, COALESCE((SELECT MIN(seq) FROM {p}pending "
                    f"WHERE consumer = c.name), c.position + 1) "
                    f"FROM {p}consumers c WHERE c.kind = 'durable'"
                ).fetchall()
            )
            cut = 0  # delete events with seq < cut (and, by age, older than max_age)
            if max_events:
                row = conn.execute(
                    f"SELECT seq FROM {p}events ORDER BY seq DESC LIMIT 1 OFFSET ?",
                    (max_events,),
                ).fetchone()
                if row is not None:
                    cut = row[0] + 1
            if max_age:
                row = conn.execute(
                    f"SELECT MAX(seq) FROM {p}events WHERE ts < ?", (now - max_age,)
                ).fetchone()
                if row[0] is not None:
                    cut = max(cut, row[0] + 1)
            if any(need < cut for need in needs.values()):
                needs = self._skip_unwanted(conn, needs, cut)
            unacknowledged = 0
            lost: tuple[str, ...] = ()
            if needs:
                keep_from = min(needs.values())
                if cut > keep_from:
                    if drop:
                        (unacknowledged,) = conn.execute(
                            f"SELECT COUNT(*) FROM {p}events WHERE seq >= ? AND seq < ?",
                            (keep_from, cut),
                        ).fetchone()
                        lost = tuple(sorted(n for n, s in needs.items() if s < cut))
                    else:
                        cut = keep_from
            deleted = conn.execute(f"DELETE FROM {p}events WHERE seq < ?", (cut,)).rowcount
            conn.execute(f"DELETE FROM {p}idem WHERE ts < ?", (now - self.idempotency_window,))
        return Compaction(deleted, unacknowledged, lost)

    def _skip_unwanted(
        self, conn: sqlite3.Connection, needs: dict[str, int], cut: int
    ) -> dict[str, int]:
        """Move durables that are not reading (stopped, or behind) past the events below ``cut``
        that their pattern does not match, as their next claim would: such events must not hold
        the log. Returns the updated first-needed offsets."""
        p = self.prefix
        patterns = dict(
            conn.execute(f"SELECT name, pattern FROM {p}consumers WHERE kind = 'durable'")
        )
        updated = dict(needs)
        for name, need in needs.items():
            (pending,) = conn.execute(
                f"SELECT MIN(seq) FROM {p}pending WHERE consumer = ?", (name,)
            ).fetchone()
            if need >= cut or pending is not None or name not in patterns:
                continue
            position = need - 1
            for seq, topic in conn.execute(
                f"SELECT seq, topic FROM {p}events WHERE seq > ? AND seq < ? ORDER BY seq",
                (position, cut),
            ):
                if match(patterns[name], topic):
                    break
                position = seq
            else:
                position = max(position, cut - 1)
            conn.execute(f"UPDATE {p}consumers SET position = ? WHERE name = ?", (position, name))
            updated[name] = position + 1
        return updated

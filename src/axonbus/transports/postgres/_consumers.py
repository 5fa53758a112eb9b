"""Claims, ownership and retention for the ``postgresql://`` store: a member claiming a batch
for its group or durable consumer (reclaiming what dead owners held), the heartbeat and release
that say which process owns a pending event, and compaction, which must not drop what a durable
consumer still needs. A mixin of :class:`~axonbus.transports.postgres.PostgresStore`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..._topics import match
from ..log._store import Claimed, Compaction

if TYPE_CHECKING:
    from ._sql import Statements

__all__ = ["PostgresConsumers"]

CLAIM_PAGE = 256  # events read at a time while claiming (at least the room left)
CLAIM_BUDGET = 4096  # most events one claim looks at before it returns what it found
SWEEP_EVERY = 30.0  # seconds between clean-ups of expired rows (done by heartbeats)


class PostgresConsumers:
    """Claims, ownership and retention of
    :class:`~axonbus.transports.postgres.PostgresStore` (a mixin)."""

    if TYPE_CHECKING:  # provided by the store
        channel: str
        idempotency_window: float
        _sql: Statements
        _compact_key: int
        _last_sweep: float
        _busy: set[str]

        def _pool_or_raise(self) -> Any: ...

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
                    out = [Claimed(r[1], r[2], r[3], True) for r in rows if r[1] is not None]
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

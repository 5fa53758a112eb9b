"""Reading a log back: ``since``/``until`` forms, replay, and following live commits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..._events import Envelope
from ..._exceptions import DecodeError
from ..._topics import match
from ._store import Row

if TYPE_CHECKING:
    from ..sink import Sink
    from ._store import LogStore

__all__ = ["Cursor", "LogReader"]

logger = logging.getLogger("axonbus")

FETCH = 256  # rows read at once
IDLE_WAIT = 1.0  # seconds a follower sleeps without a change before looking again


@dataclass
class Cursor:
    """A position in the log: the offset of the last row read."""

    after: int = 0


class LogReader:
    """The reading half of :class:`~axonbus.transports.log._transport.LogTransport` (a mixin)."""

    if TYPE_CHECKING:  # provided by the transport
        store: LogStore | None
        _change: asyncio.Event

        def _ready(self) -> tuple[Sink, LogStore]: ...
        async def _wait(self, change: asyncio.Event, timeout: float) -> None: ...

    async def resolve_since(self, since: Any) -> tuple[int, float | None]:
        """``(after, since_time)`` for a ``since=`` argument: an offset (int, included), an event
        id (str: the events after it), a time (a datetime, or epoch seconds as a float), a
        duration back from now (a timedelta), or None (the beginning)."""
        store = self.store
        assert store is not None
        if since is None:
            return 0, None
        if isinstance(since, bool):
            raise TypeError("since= takes an offset, an event id, a time or a timedelta")
        if isinstance(since, int):
            return max(0, since - 1), None
        if isinstance(since, str):
            offset = await store.offset_of(since)
            if offset is None:
                raise LookupError(f"no stored event with id {since!r}")
            return offset, None
        if isinstance(since, datetime):
            return 0, since.timestamp()
        if isinstance(since, timedelta):
            return 0, time.time() - since.total_seconds()
        if isinstance(since, float):
            return 0, since
        raise TypeError(
            "since= takes an offset (int), an event id (str), a datetime, a timedelta or epoch "
            f"seconds (float), not {type(since).__name__}"
        )

    async def resolve_until(self, until: Any) -> tuple[int | None, float | None]:
        """``(until_offset, until_time)`` for an ``until=`` argument: an offset or an event id
        (both included), a time or a timedelta back from now (excluded), or None."""
        if until is None:
            return None, None
        if isinstance(until, int | str) and not isinstance(until, bool):
            after, _ = await self.resolve_since(until)
            return (until if isinstance(until, int) else after), None
        _, until_time = await self.resolve_since(until)
        return None, until_time

    async def replay(
        self, pattern: str, since: Any, until: Any, follow: bool, limit: int | None
    ) -> AsyncIterator[Envelope]:
        """Stored events matching ``pattern`` (see :meth:`axonbus.Bus.replay`)."""
        cursor = Cursor()
        cursor.after, since_time = await self.resolve_since(since)
        until_offset, until_time = await self.resolve_until(until)
        if follow:
            source = self.follow(pattern, cursor, since_time)
        else:
            source = self.read_log(
                pattern,
                cursor,
                until=until_offset,
                since_time=since_time,
                until_time=until_time,
                limit=limit,
            )
        async for row, env in source:
            env.offset = row.offset
            yield env

    async def read_log(
        self,
        pattern: str,
        cursor: Cursor,
        *,
        until: int | None = None,
        since_time: float | None = None,
        until_time: float | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[tuple[Row, Envelope]]:
        """Stored events after ``cursor.after`` matching ``pattern``, in offset order, decoded
        (undecodable ones are logged and skipped). ``cursor.after`` follows every row read."""
        bus, store = self._ready()
        left = limit
        while left is None or left > 0:
            rows = await store.read(
                cursor.after, FETCH, until=until, since_time=since_time, until_time=until_time
            )
            if not rows:
                return
            for row in rows:
                cursor.after = row.offset
                if not match(pattern, row.topic):
                    continue
                try:
                    env = bus.wire_codec.decode(row.data)
                except DecodeError as exc:
                    logger.error("%s: undecodable event at offset %d: %s", self, row.offset, exc)
                    continue
                yield row, env
                if left is not None:
                    left -= 1
                    if left == 0:
                        return

    async def follow(
        self, pattern: str, cursor: Cursor, since_time: float | None = None
    ) -> AsyncIterator[tuple[Row, Envelope]]:
        """Stored events after ``cursor.after``, then each new one once it is committed, in
        offset order: no gap and no duplicate between the stored part and the live part."""
        while True:
            change = self._change
            before = cursor.after
            async for item in self.read_log(pattern, cursor, since_time=since_time):
                yield item
            if cursor.after == before:
                await self._wait(change, IDLE_WAIT)

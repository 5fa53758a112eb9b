"""Feeds: the events one SSE or WebSocket client subscription receives.

Every client of one pattern reads from one :class:`Hub`: a single reader of the bus for that
pattern, which decodes each event once, encodes its JSON record once, and keeps the newest
ones in a ring bounded in events (``queue_size``) and in bytes (``feed_bytes``). A
:class:`HubFeed` is a cursor into that ring, so a client that stops reading holds nothing but
its cursor, and a thousand clients of one pattern cost one copy of each event.

- On a bus with an event log (sqlite://, postgresql://) the hub follows the log. Each event
  carries its offset; a client resumes after the last offset it saw (``Last-Event-ID``), and a
  client that fell behind the ring reads the log itself, a small batch at a time, until it is
  back in the ring: a slow client never loses an event and never holds the bus back.
- Without a log the hub is a live :meth:`Bus.stream`. A client that fell behind the ring
  loses the events that left it (counted in :attr:`HubFeed.dropped`) instead of slowing
  publishers. Events every feed has read leave the ring at once (no new feed would read
  them): an idle client's hub holds nothing, however long the client stays.

The hub closes when its last feed closes, which releases everything it held.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import re
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from ._payload import dumps, envelope_record

if TYPE_CHECKING:
    from .._engine.bus import Bus
    from .._engine.stream import EventStream
    from .._events import Envelope
    from ..transports.log._transport import LogTransport

__all__ = ["Feed", "Hub", "HubFeed", "Hubs", "Item", "Records", "has_log"]

logger = logging.getLogger("axonbus.gateway")

#: a live hub with several feeds forgets what they all read every this many events
TRIM_EVERY = 64
#: events a feed behind the ring reads from the log at once (decoded for it alone)
CATCH_UP = 64
#: bytes of records a feed behind the ring holds at once, whatever their number
CATCH_UP_BYTES = 256 * 1024
#: seconds a read-ahead batch may sit untouched before it is let go (a stalled client's feed
#: then holds nothing: the batch is read again from the log when the client moves on)
CATCH_UP_IDLE = 1.0
#: a ``Last-Event-ID`` that is an offset: ASCII digits, and no more than an int64 has
_OFFSET = re.compile(r"[0-9]{1,19}")


@dataclass(slots=True)
class Item:
    """One event as every client of a pattern receives it, decoded and encoded once."""

    seq: int  # the log offset, or the hub's arrival number without a log
    env: Envelope
    record: bytes | None  # the JSON record; None when it cannot be encoded
    error: str | None = None  # why it cannot be encoded
    _sse: bytes | None = None
    _ws: str | None = None

    @property
    def size(self) -> int:
        return len(self.record) if self.record is not None else 256

    @property
    def sse(self) -> bytes:
        """The event's SSE block (``id``, ``event``, ``data``), made once for every client."""
        block = self._sse
        if block is None:
            assert self.record is not None
            env = self.env
            ident = env.offset if env.offset is not None else env.id
            block = self._sse = (
                f"id: {ident}\nevent: {env.topic}\ndata: ".encode() + self.record + b"\n\n"
            )
        return block

    def ws_text(self, pattern: str) -> str:
        """The event's WebSocket ``event`` frame for ``pattern`` (its hub's: every item of a
        hub has one pattern), made once for every client of the pattern."""
        text = self._ws
        if text is None:
            assert self.record is not None
            head = b'{"op":"event","pattern":' + dumps(pattern) + b","
            text = self._ws = (head + self.record[1:]).decode()
        return text


def make_item(seq: int, env: Envelope, records: Records | None = None) -> Item:
    """Encode ``env``'s record once (once for every hub, with ``records``); an event that
    cannot be encoded (nested too deep, ...) becomes an item that each client skips and counts,
    instead of ending its stream."""
    record, error = records.encode(env) if records is not None else _encode(env)
    return Item(seq, env, record, error)


def _encode(env: Envelope) -> tuple[bytes | None, str | None]:
    try:
        # a copy: orjson's result keeps its 4 KiB output buffer, and a ring keeps thousands
        return bytes(memoryview(dumps(envelope_record(env)))), None
    except (RecursionError, TypeError, ValueError, OverflowError) as exc:
        return None, f"{type(exc).__name__}: cannot encode the event"


class Records:
    """The JSON records of the latest events, by event id: an event that several patterns'
    hubs carry is encoded once (bounded: ``size`` events)."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._cache: OrderedDict[str, tuple[bytes | None, str | None]] = OrderedDict()

    def encode(self, env: Envelope) -> tuple[bytes | None, str | None]:
        found = self._cache.get(env.id)
        if found is None:
            found = self._cache[env.id] = _encode(env)
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return found


class Feed(Protocol):
    pattern: str
    resumable: bool
    notice: str | None

    @property
    def dropped(self) -> int: ...

    @property
    def pending(self) -> int: ...

    async def next(self, timeout: float | None) -> Item | None:
        """The next event; None once the feed ended; ``TimeoutError`` after ``timeout``, or
        once :meth:`interrupt` was called."""

    def interrupt(self) -> None:
        """Make the pending (or next) :meth:`next` raise ``TimeoutError`` (a keep-alive is due)."""

    def close(self) -> None: ...


def has_log(bus: Bus) -> bool:
    """True when the bus's transport keeps an event log (``bus.replay`` works)."""
    return bus.event_log is not None


class Signal:
    """Wakes every task waiting on it when fired; a later :meth:`wait` waits for the next
    :meth:`fire`. Lighter than an ``asyncio.Event`` (no deque until someone waits), and one
    per hub for its whole life."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] | None = None

    async def wait(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if not fut.done() or fut.cancelled():  # cancelled while waiting: let it go
                waiters = self._waiters
                if waiters is not None and fut in waiters:
                    waiters.remove(fut)

    def fire(self) -> None:
        waiters, self._waiters = self._waiters, None
        for fut in waiters or ():
            if not fut.done():
                fut.set_result(None)


class Hub:
    """The one reader of ``pattern`` that every feed of it shares (see the module docstring)."""

    def __init__(
        self,
        bus: Bus,
        pattern: str,
        *,
        after: int,
        log: bool,
        max_items: int,
        max_bytes: int,
        on_empty: Callable[[Hub], None],
        records: Records | None = None,
    ) -> None:
        self.bus = bus
        self.records = records
        self.pattern = pattern
        self.log = log
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.items: list[Item] = []
        self.seqs: list[int] = []
        self.bytes = 0
        #: every event after ``floor`` (and matching the pattern) is in the ring
        self.floor = after
        self.last = after
        self.done = False
        self.refs = 0
        self.feeds: set[HubFeed] = set()
        self.appended = 0
        self.changed = Signal()
        self._on_empty = on_empty
        self._stream: EventStream | None = None
        if not log:
            # registered now, so that nothing published after the first client opened is lost
            self._stream = bus.stream(
                pattern, envelopes=True, maxsize=max_items, overflow="drop_oldest"
            )
        self._task = asyncio.get_running_loop().create_task(
            self._follow(), name=f"axonbus:gateway:hub:{pattern}"
        )

    def __repr__(self) -> str:
        return f"<Hub {self.pattern!r} items={len(self.items)} bytes={self.bytes} refs={self.refs}>"

    async def _follow(self) -> None:
        try:
            if self._stream is not None:
                stream = self._stream
                seq = self.last
                lost = 0
                while (env := await stream.next_envelope()) is not None:
                    # events the stream itself dropped (a burst within one loop tick) leave a
                    # gap in the numbers, which each feed counts as dropped
                    seq += 1 + stream.dropped - lost
                    lost = stream.dropped
                    self._append(make_item(seq, env, self.records))
            else:
                replay = cast(
                    "AsyncGenerator[Envelope, None]",
                    self.bus.replay(self.pattern, since=self.last + 1, follow=True),
                )
                async with contextlib.aclosing(replay) as events:
                    async for env in events:
                        assert env.offset is not None
                        self._append(make_item(env.offset, env, self.records))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the bus closed or the log went away: end these feeds
            logger.info("gateway feed %r ended: %s: %s", self.pattern, type(exc).__name__, exc)
        finally:
            self.done = True
            self._wake()

    def _append(self, item: Item) -> None:
        self.items.append(item)
        self.seqs.append(item.seq)
        self.bytes += item.size
        self.last = item.seq
        self.appended += 1
        if not self.log and self.appended % TRIM_EVERY == 0 and self.feeds:
            # live: what every feed has read is never read again (new feeds start after it)
            self.trim(min(feed.cursor for feed in self.feeds))
        # evict the oldest beyond the count bound, then beyond the byte bound (the newest stays)
        excess = max(len(self.items) - self.max_items, 0)
        held = self.bytes - sum(i.size for i in self.items[:excess])
        while held > self.max_bytes and excess < len(self.items) - 1:
            held -= self.items[excess].size
            excess += 1
        if excess:
            self.floor = self.seqs[excess - 1]
            del self.items[:excess]
            del self.seqs[:excess]
            self.bytes = held
        self._wake()

    def _wake(self) -> None:
        self.changed.fire()

    def after(self, cursor: int) -> Item | None:
        """The first event in the ring after ``cursor`` (``cursor >= floor``), or None."""
        at = bisect.bisect_right(self.seqs, cursor)
        return self.items[at] if at < len(self.items) else None

    def trim(self, upto: int) -> None:
        """Forget the events up to ``upto`` (a live hub's, once every feed has read them: an
        idle client's hub then holds nothing, however long it stays open)."""
        at = bisect.bisect_right(self.seqs, upto)
        if at:
            self.bytes -= sum(i.size for i in self.items[:at])
            self.floor = max(self.floor, self.seqs[at - 1])
            del self.items[:at]
            del self.seqs[:at]

    def acquire(self, feed: HubFeed | None = None) -> None:
        self.refs += 1
        if feed is not None:
            self.feeds.add(feed)

    def release(self, feed: HubFeed | None = None) -> None:
        self.refs -= 1
        if feed is not None:
            self.feeds.discard(feed)
        if self.refs <= 0:
            self.close()

    def close(self) -> None:
        self._task.cancel()
        if self._stream is not None:
            self._stream.close()
        self.items.clear()
        self.seqs.clear()
        self.bytes = 0
        self.done = True
        self._wake()
        self._on_empty(self)


class HubFeed:
    """One client subscription: a cursor into its pattern's :class:`Hub`."""

    def __init__(self, hub: Hub, cursor: int, *, notice: str | None = None) -> None:
        self.hub = hub
        self.pattern = hub.pattern
        self.resumable = hub.log
        self.cursor = cursor
        self.notice = notice
        self.skipped = 0
        self._dropped = 0
        self._batch: deque[Item] | None = None  # made when a catch-up needs one
        self._trim: asyncio.TimerHandle | None = None
        self._taken = 0  # items taken from the batch, as of the last trim check
        self._closed = False
        self._interrupted = False
        hub.acquire(self)

    def __repr__(self) -> str:
        return f"<HubFeed {self.pattern!r} cursor={self.cursor}>"

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def pending(self) -> int:
        """Events the client has yet to receive (for a log: offsets, an upper bound)."""
        return len(self._batch or ()) + max(0, self.hub.last - self.cursor)

    def interrupt(self) -> None:
        self._interrupted = True
        self.hub.changed.fire()  # wakes the feeds of this hub: the others wait again

    async def next(self, timeout: float | None) -> Item | None:
        if timeout is None:  # no timer: thousands of idle clients wait here
            return await self._next()
        async with asyncio.timeout(timeout):
            return await self._next()

    async def _next(self) -> Item | None:
        while not self._closed:
            batch = self._batch
            if batch:
                item = batch.popleft()
                self._taken += 1
                self.cursor = max(self.cursor, item.seq)
                return item
            hub = self.hub
            if self.cursor < hub.floor:
                if not hub.log:  # live: what left the ring is lost to this client
                    self._dropped += hub.floor - self.cursor
                    self.cursor = hub.floor
                elif not await self._catch_up():
                    return None
                continue
            found = hub.after(self.cursor)
            if found is not None:
                if not hub.log:
                    if found.seq > self.cursor + 1:
                        self._dropped += found.seq - self.cursor - 1
                    if hub.refs == 1:  # the only reader: nobody needs it after this
                        hub.trim(found.seq)
                self.cursor = found.seq
                return found
            if hub.done:
                return None
            if self._interrupted:
                self._interrupted = False
                raise TimeoutError
            await hub.changed.wait()
        return None

    async def _catch_up(self) -> bool:
        """Read the next few events after the cursor from the log itself; False when the log
        cannot be read any more (the bus closed)."""
        hub = self.hub
        floor = hub.floor  # before reading: everything up to it was committed by then
        size = 0
        batch = self._batch
        if batch is None:
            batch = self._batch = deque()
        try:
            replay = cast(
                "AsyncGenerator[Envelope, None]",
                hub.bus.replay(self.pattern, since=self.cursor + 1, limit=CATCH_UP),
            )
            async with contextlib.aclosing(replay) as events:
                async for env in events:
                    assert env.offset is not None
                    item = make_item(env.offset, env)
                    batch.append(item)
                    size += item.size
                    if size >= CATCH_UP_BYTES:
                        break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.info("gateway feed %r ended: %s: %s", self.pattern, type(exc).__name__, exc)
            return False
        if not batch:
            self.cursor = max(self.cursor, floor)
        elif self._trim is None:
            self._trim = asyncio.get_running_loop().call_later(CATCH_UP_IDLE, self._idle_check)
        return True

    def _idle_check(self) -> None:
        """Let the read-ahead batch go when nothing was taken from it for a while: the cursor
        still points before it, so nothing is lost, and a stalled client holds no events."""
        self._trim = None
        if not self._batch:
            return
        if self._taken == 0:
            self._batch = None
            return
        self._taken = 0
        self._trim = asyncio.get_running_loop().call_later(CATCH_UP_IDLE, self._idle_check)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._batch = None
            if self._trim is not None:
                self._trim.cancel()
            self.hub.release(self)


class Hubs:
    """The hubs of one gateway, by pattern, and how feeds are opened on them."""

    def __init__(self, bus: Bus, *, max_items: int, max_bytes: int) -> None:
        self.bus = bus
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.hubs: dict[str, Hub] = {}
        self.records = Records()

    def _forget(self, hub: Hub) -> None:
        if self.hubs.get(hub.pattern) is hub:
            del self.hubs[hub.pattern]

    async def _hub(self, pattern: str, log: LogTransport | None) -> Hub:
        hub = self.hubs.get(pattern)
        if hub is not None and not hub.done:
            return hub
        after = 0 if log is None else await _head(log)
        hub = self.hubs.get(pattern)  # another client may have made it meanwhile
        if hub is None or hub.done:
            hub = Hub(
                self.bus,
                pattern,
                after=after,
                log=log is not None,
                max_items=self.max_items,
                max_bytes=self.max_bytes,
                on_empty=self._forget,
                records=self.records,
            )
            self.hubs[pattern] = hub
        return hub

    async def open(self, pattern: str, *, last_event_id: str | None) -> HubFeed:
        """A feed of ``pattern``: from the log after ``last_event_id`` (an offset, or an event
        id) when the bus has a log, else from now on; live only without a log. An offset past
        the newest event is clamped to it (and the feed's ``notice`` says so)."""
        log = self.bus.event_log
        if log is None:
            hub = await self._hub(pattern, None)
            return HubFeed(hub, hub.last)
        head = await _head(log)
        cursor, notice = head, None
        if last_event_id:
            if _OFFSET.fullmatch(last_event_id):
                cursor = int(last_event_id)
                if cursor > head:
                    notice = (
                        f"Last-Event-ID {cursor} is past the newest event ({head}); "
                        f"following from {head + 1}"
                    )
                    cursor = head
            else:
                try:
                    cursor, _ = await log.resolve_since(last_event_id[:200])
                except LookupError:
                    notice = "unknown Last-Event-ID; following from the newest event on"
        hub = await self._hub(pattern, log)
        return HubFeed(hub, cursor, notice=notice)

    def close(self) -> None:
        for hub in list(self.hubs.values()):
            hub.close()

    def stats(self) -> list[dict[str, Any]]:
        return [
            {"pattern": h.pattern, "events": len(h.items), "bytes": h.bytes, "clients": h.refs}
            for h in self.hubs.values()
        ]


async def _head(log: LogTransport) -> int:
    """The offset of the newest stored event (0 for an empty log)."""
    store = log.store
    if store is None:  # not started: nothing stored that we could skip
        return 0
    return await store.head()

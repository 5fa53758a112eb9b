"""Feeds: the events one SSE or WebSocket client subscription receives.

On a bus with an event log (sqlite://, postgresql://) a feed reads the log (:class:`LogFeed`):
each event carries its offset, a client resumes after the last offset it saw, and a slow client
only reads the log more slowly, so it never holds the bus back. Without a log a feed is a live
:meth:`Bus.stream` with a bounded ``drop_oldest`` mailbox (:class:`LiveFeed`): a slow client loses
its oldest events (counted in :attr:`dropped`) instead of slowing publishers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Protocol, cast

from .._exceptions import NoEventLog
from .._replay import log_of

if TYPE_CHECKING:
    from .._bus import Bus
    from .._events import Envelope
    from .._stream import EventStream
    from ..transports._log import LogTransport

__all__ = ["Feed", "LiveFeed", "LogFeed", "has_log", "open_feed"]

logger = logging.getLogger("axonbus.gateway")


class Feed(Protocol):
    pattern: str
    resumable: bool

    @property
    def dropped(self) -> int: ...

    @property
    def pending(self) -> int: ...

    async def next(self, timeout: float | None) -> Envelope | None:
        """The next event; None once the feed ended; ``TimeoutError`` after ``timeout``."""

    def close(self) -> None: ...


def has_log(bus: Bus) -> bool:
    """True when the bus's transport keeps an event log (``bus.replay`` works)."""
    try:
        log_of(bus.transport)
    except NoEventLog:
        return False
    return True


class LiveFeed:
    """Live events only, through a bounded ``drop_oldest`` stream."""

    resumable = False

    def __init__(self, bus: Bus, pattern: str, maxsize: int) -> None:
        self.pattern = pattern
        self._stream: EventStream = bus.stream(
            pattern, envelopes=True, maxsize=maxsize, overflow="drop_oldest"
        )

    @property
    def dropped(self) -> int:
        return self._stream.dropped

    @property
    def pending(self) -> int:
        return self._stream.pending

    async def next(self, timeout: float | None) -> Envelope | None:
        stream = self._stream
        if timeout is None or stream.pending:  # no need for a timer (the stream has no filter)
            return await stream.next_envelope()
        async with asyncio.timeout(timeout):
            return await stream.next_envelope()

    def close(self) -> None:
        self._stream.close()


class LogFeed:
    """Events from the log after a given offset, then each new one as it is committed."""

    resumable = True
    dropped = 0

    def __init__(self, bus: Bus, pattern: str, since: int, buffer: int = 256) -> None:
        self.pattern = pattern
        self.since = since
        self._queue: asyncio.Queue[Envelope | None] = asyncio.Queue(buffer)
        self._done = False
        self._task = asyncio.get_running_loop().create_task(
            self._pump(bus), name=f"axonbus:gateway:feed:{pattern}"
        )

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def _pump(self, bus: Bus) -> None:
        try:
            # bus.replay is an async generator: close it so its reads stop with this feed
            replay = cast(
                "AsyncGenerator[Envelope, None]",
                bus.replay(self.pattern, since=self.since, follow=True),
            )
            async with contextlib.aclosing(replay) as events:
                async for env in events:
                    await self._queue.put(env)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the bus closed or the log went away: end this feed
            logger.info("gateway feed %r ended: %s: %s", self.pattern, type(exc).__name__, exc)
        finally:
            self._done = True
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)

    async def next(self, timeout: float | None) -> Envelope | None:
        if self._done and self._queue.empty():
            return None
        if timeout is None or not self._queue.empty():  # no need for a timer
            return await self._queue.get()
        async with asyncio.timeout(timeout):
            return await self._queue.get()

    def close(self) -> None:
        self._task.cancel()


async def open_feed(
    bus: Bus, pattern: str, *, last_event_id: str | None, maxsize: int
) -> LiveFeed | LogFeed:
    """A feed of ``pattern``: from the log after ``last_event_id`` (an offset, or an event id)
    when the bus has a log, else from now on; live only without a log."""
    if not has_log(bus):
        return LiveFeed(bus, pattern, maxsize)
    log: LogTransport = log_of(bus.transport)
    since: int | None = None
    if last_event_id:
        if last_event_id.isdigit():
            since = int(last_event_id) + 1
        else:
            try:
                after, _ = await log.resolve_since(last_event_id)
            except LookupError:
                logger.info("gateway: unknown Last-Event-ID; following from now on")
            else:
                since = after + 1
    if since is None:
        since = await _head(log) + 1
    return LogFeed(bus, pattern, since)


async def _head(log: LogTransport) -> int:
    """The offset of the newest stored event (0 for an empty log)."""
    store = log.store
    if store is None:  # not started: nothing stored that we could skip
        return 0
    return await store.head()

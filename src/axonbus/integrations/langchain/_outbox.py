"""Publishing from LangChain callbacks, which may run on any thread and any event loop.

LangChain calls a handler where the run happens to be:

- on the bus's loop (``ainvoke``; a sync handler marked ``run_inline``): publish there;
- on another thread (sync ``invoke`` in a worker thread, a LangGraph tool in its executor);
- on another thread *while the bus's loop is blocked* by that very run: a sync ``invoke``
  called from a coroutine holds the loop thread, and LangChain runs an async handler's
  coroutines on a private loop in a worker thread, or fans tools out to worker threads.
  Waiting there for the bus's loop would never end.

:class:`Outbox` keeps one FIFO queue and publishes it with one task on the bus's loop, so
events keep their order whichever thread reported them, and a thread only ever waits for the
loop when its caller said that cannot deadlock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..._exceptions import BusClosed, QueueFull
from ...agent import AgentEvent

if TYPE_CHECKING:
    from ..._engine.bus import Bus

__all__ = ["Outbox"]

logger = logging.getLogger("axonbus.integrations.langchain")

_Item = tuple[AgentEvent, "concurrent.futures.Future[None] | None"]


class Outbox:
    """Publishes events on ``bus`` in the order they are given, from any thread."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._queue: deque[_Item] = deque()  # the head stays until the bus accepted it
        self._lock = threading.Lock()
        self._pump: asyncio.Task[None] | None = None
        self._busy = False  # the pump is awaiting the head's publish

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        return self.bus.loop

    def on_loop(self) -> bool:
        """Called on the bus's loop thread (possibly from sync code the loop is running)."""
        loop = self._loop()
        if loop is None:
            return False
        try:
            return asyncio.get_running_loop() is loop
        except RuntimeError:
            return False

    # -- from coroutines (the async handler) ---------------------------------------------------

    async def publish(self, events: Sequence[AgentEvent]) -> None:
        """On the bus's loop: publish each event (backpressure applies), after anything
        queued. Elsewhere (a private loop LangChain made for a sync run) queue them and return
        at once: the bus's loop may be the thread blocked running this very code."""
        if not events:
            return
        if not self.on_loop():
            self.put(events, wait=False)  # never wait here: see the module's docstring
            return
        for event in events:
            if not self._queue:
                await self.bus.publish(event)
                continue
            future: concurrent.futures.Future[None] = concurrent.futures.Future()
            with self._lock:
                self._queue.append((event, future))
            self._kick()
            await asyncio.wrap_future(future)

    # -- from sync code (the sync handler) -----------------------------------------------------

    def put(
        self, events: Sequence[AgentEvent], *, wait: bool
    ) -> concurrent.futures.Future[None] | None:
        """Publish from synchronous code; never blocks. On the bus's loop thread: at once with
        ``publish_nowait`` (queued instead when a mailbox is full, or behind events already
        queued). On another thread: queued for the loop; with ``wait`` it returns a future
        that completes when the bus accepted the last of them (wait on it to let backpressure
        reach the thread)."""
        if not events:
            return None
        if self.on_loop():
            with self._lock:
                self._flush_nowait()
                for event in events:
                    if not self._queue:
                        try:
                            self.bus.publish_nowait(event)
                            continue
                        except QueueFull:
                            pass  # the pump publishes it, waiting for room
                    self._queue.append((event, None))
            if self._queue:
                self._kick()
            return None
        loop = self._loop()
        if loop is None or self.bus.state != "started":
            raise BusClosed(f"bus {self.bus.name!r} is {self.bus.state}; cannot publish")
        last: concurrent.futures.Future[None] | None = None
        with self._lock:
            for event in events:
                last = concurrent.futures.Future() if wait else None
                self._queue.append((event, last))
        loop.call_soon_threadsafe(self._kick)
        return last  # FIFO: the last one accepted means all were

    def _flush_nowait(self) -> None:
        """Publish what is queued without waiting, in order, up to the first full mailbox.
        Only on the loop thread, under the lock, and not while the pump is mid-publish (its
        event is ahead of these)."""
        while self._queue and not self._busy:
            event, future = self._queue[0]
            try:
                self.bus.publish_nowait(event)
            except QueueFull:
                return
            except Exception as exc:
                self._queue.popleft()
                _settle(future, exc, event)
                continue
            self._queue.popleft()
            _settle(future, None, event)

    # -- the pump, on the bus's loop -------------------------------------------------------------

    def _kick(self) -> None:
        if self._pump is None and self._queue:
            loop = self._loop()
            if loop is not None:
                self._pump = loop.create_task(self._run(), name="axonbus-langchain-outbox")

    async def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        return
                    event, future = self._queue[0]
                    self._busy = True
                error: BaseException | None = None
                try:
                    await self.bus.publish(event)
                except Exception as exc:
                    error = exc
                except BaseException:
                    self._abandon()  # cancelled: nobody may wait for the rest
                    raise
                with self._lock:
                    self._busy = False
                    self._queue.popleft()
                _settle(future, error, event)
        finally:
            self._pump = None

    def _abandon(self) -> None:
        with self._lock:
            self._busy = False
            while self._queue:
                event, future = self._queue.popleft()
                _settle(future, BusClosed("the outbox's publishing task was cancelled"), event)

    async def flush(self) -> None:
        """Wait until every queued event was published (call on the bus's loop)."""
        while True:
            self._kick()
            pump = self._pump
            if pump is None:
                return
            await asyncio.shield(pump)


def _settle(
    future: concurrent.futures.Future[None] | None, error: BaseException | None, event: object
) -> None:
    if future is None:
        if error is not None:
            logger.warning("could not publish %r: %r", event, error)
        return
    if future.cancelled():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)

"""Heartbeat: a publisher driven by the clock instead of by users."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from .._events import Event
from .._exceptions import LifecycleError

if TYPE_CHECKING:
    from .._engine.bus import Bus

__all__ = ["Heartbeat", "HeartbeatTick"]

logger = logging.getLogger("axonbus.channels")


class HeartbeatTick(Event, topic="system.heartbeat", name="axonbus.channels.HeartbeatTick"):
    """One beat of a :class:`Heartbeat`: ``seq`` counts from 1, ``timestamp`` is wall time.

    >>> bus.subscribe(HeartbeatTick, check_scheduled_jobs)   # on "system.heartbeat"
    """

    seq: int
    timestamp: float
    interval: float
    source: str = "heartbeat"


class Heartbeat:
    """Publishes a :class:`HeartbeatTick` on ``topic`` every ``interval`` seconds.

    The first tick comes one interval after :meth:`start`. Ticks keep to a fixed schedule:
    when the bus applies backpressure and a tick is late, missed ticks are skipped rather
    than published in a burst. It stops by itself when the bus closes.

    A Heartbeat is a publisher, not a channel (nothing comes back on ``.out``), so it is not
    attached to a :class:`ChannelManager`; it has its own lifecycle::

        async with Heartbeat(bus, interval=30.0):
            ...                                   # ticks on "system.heartbeat"

    With a custom ``topic``, subscribe to that topic: ``bus.subscribe(HeartbeatTick, h)``
    listens on the class's own ``system.heartbeat``.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        interval: float = 30.0,
        topic: str = "system.heartbeat",
        source: str = "heartbeat",
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        if not topic or any(
            not tok or "*" in tok or ">" in tok or any(c.isspace() for c in tok)
            for tok in topic.split(".")
        ):
            raise ValueError(f"heartbeat topic {topic!r} must be a concrete topic (no wildcards)")
        self.bus = bus
        self.interval = float(interval)
        self.topic = topic
        self.source = source
        self.ticks = 0  # ticks published so far
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Heartbeat {self.topic!r} every {self.interval}s {state}, {self.ticks} ticks>"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start ticking. Idempotent."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._beat(), name=f"axonbus:heartbeat:{self.topic}"
        )

    async def stop(self) -> None:
        """Stop ticking. Idempotent."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> Heartbeat:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            seq = self.ticks + 1
            tick = HeartbeatTick(
                seq=seq, timestamp=time.time(), interval=self.interval, source=self.source
            )
            try:
                await self.bus.publish(self.topic, tick)
            except LifecycleError as exc:
                if self.bus.state in ("closing", "closed"):
                    logger.info("heartbeat %r stops: %s", self.topic, exc)
                    return
                logger.warning("heartbeat %r skipped tick %d: %s", self.topic, seq, exc)
            except Exception as exc:  # never let one bad tick end the heartbeat
                logger.warning(
                    "heartbeat %r failed to publish tick %d: %s: %s",
                    self.topic,
                    seq,
                    type(exc).__name__,
                    exc,
                )
            else:
                self.ticks = seq
            due += self.interval
            now = loop.time()
            if due < now:  # late (backpressure, a blocked loop): skip, don't burst
                due += self.interval * ((now - due) // self.interval + 1)

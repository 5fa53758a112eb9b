"""The bounded mailbox behind every subscription, group and stream."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Literal, get_args

from .._events import log_fields
from .._exceptions import QueueFull

if TYPE_CHECKING:
    from .._events import Envelope
    from .subscription import Subscription

__all__ = ["OVERFLOW_POLICIES", "Mailbox", "Overflow"]

logger = logging.getLogger("axonbus")

Overflow = Literal["block", "drop_oldest", "drop_newest", "error"]
OVERFLOW_POLICIES: frozenset[str] = frozenset(get_args(Overflow))


class Mailbox:
    """A bounded FIFO of envelopes, consumed by worker tasks or by a stream's iterator.

    Publishers append without suspending while there is room (the hot path is inlined in
    ``Bus``); when full, ``overflow`` decides: wait for room, evict the oldest, discard the new
    one, or raise :class:`QueueFull`. Drops are counted and logged once per burst.
    """

    __slots__ = (
        "_getters",
        "_putters",
        "burst_drops",
        "closed",
        "counted",
        "dropped",
        "key",
        "maxsize",
        "members",
        "name",
        "overflow",
        "pattern",
        "queue",
    )

    def __init__(
        self,
        name: str,
        pattern: str,
        *,
        maxsize: int,
        overflow: str,
        counted: bool,
        key: tuple[str, ...] | None = None,
    ) -> None:
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(
                f"unknown overflow policy {overflow!r}; expected one of "
                f"{', '.join(sorted(OVERFLOW_POLICIES))}"
            )
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be a positive int, got {maxsize!r}")
        self.name = name
        self.pattern = pattern
        self.maxsize = maxsize
        self.overflow = overflow
        # counted: drained by workers, so Bus.drain() waits for it (streams are not)
        self.counted = counted
        self.key = key
        self.queue: deque[Envelope] = deque()
        self.members: list[Subscription] = []
        self.dropped = 0
        self.burst_drops = 0
        self.closed = False
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self.queue)

    def __repr__(self) -> str:
        return f"<Mailbox {self.name!r} {len(self.queue)}/{self.maxsize} {self.overflow}>"

    # -- consumer side -------------------------------------------------------------------------

    async def wait_nonempty(self) -> None:
        """Suspend until something is appended (or :meth:`wake_all` is called)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._getters.append(fut)
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()

    def take(self) -> Envelope:
        """Pop the oldest envelope (the caller checked) and let one blocked publisher in."""
        env = self.queue.popleft()
        if self._putters or self.burst_drops:
            self.after_take()
        return env

    def after_take(self) -> None:
        """Bookkeeping after a pop: wake a blocked publisher, note the end of a drop burst."""
        if self._putters:
            self._wake(self._putters)
        if self.burst_drops and len(self.queue) <= self.maxsize // 2:
            logger.warning(
                "mailbox %r recovered after dropping %d events (%s)",
                self.name,
                self.burst_drops,
                self.overflow,
                extra={"subscription": self.name},
            )
            self.burst_drops = 0

    def put_back(self, env: Envelope) -> None:
        """Return an unacknowledged envelope to the front (durable redelivery)."""
        self.queue.appendleft(env)
        self.wake_getter()

    # -- producer side -------------------------------------------------------------------------

    def wake_getter(self) -> None:
        getters = self._getters  # _wake written out: once per request on the RPC path
        while getters:
            fut = getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def wake_all(self) -> None:
        for waiters in (self._getters, self._putters):
            while waiters:
                fut = waiters.popleft()
                if not fut.done():
                    fut.set_result(None)

    @staticmethod
    def _wake(waiters: deque[asyncio.Future[None]]) -> None:
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def has_room(self) -> bool:
        return len(self.queue) < self.maxsize

    def offer_full(self, env: Envelope, *, refuse: bool = True) -> Envelope | None:
        """Apply the non-blocking overflow policies to a full mailbox.

        Returns the envelope that did not make it (the evicted oldest or the rejected newest), or
        raises :class:`QueueFull` for ``"error"``. Not called for ``"block"``. With
        ``refuse=False`` (an event from a broker: there is no publisher to tell) ``"error"``
        drops the new event instead.
        """
        if self.overflow == "error" and refuse:
            raise QueueFull(self.name, self.maxsize)
        self.dropped += 1
        if not self.burst_drops:
            logger.warning(
                "mailbox %r is full (%d): dropping events (%s)",
                self.name,
                self.maxsize,
                self.overflow,
                extra=log_fields(env, self.name),  # the first event of the burst
            )
        self.burst_drops += 1
        if self.overflow != "drop_oldest":
            return env
        evicted = self.queue.popleft()
        self.queue.append(env)
        self.wake_getter()
        return evicted

    async def wait_for_room(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._putters.append(fut)
        try:
            await fut
        except BaseException:
            # pass the wake-up on, so a cancelled publisher does not strand the next one
            if fut.done() and not fut.cancelled() and self.has_room():
                self._wake(self._putters)
            raise

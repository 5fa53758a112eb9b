"""The tracker of a broker delivery: how a subscription acknowledges it, or gives it back.

A transport that feeds a group or durable subscription wraps what the broker needs to settle
the delivery in an :class:`Inbound` and sets it as the envelope's ``tracker`` before handing
the envelope to :meth:`Sink.put <axonbus.transports.Sink.put>`:

>>> from axonbus import Envelope
>>> from axonbus.transports import Inbound
>>> acked = []
>>> env = Envelope("orders.created", {"id": 7})
>>> env.tracker = Inbound(1, ack=lambda: acked.append(env.id))
>>> # ... await sink.put(inbox, env): the handler ran, the subscription settled it
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .._system_events import Outcome

__all__ = ["Inbound"]


class Inbound:
    """The ``tracker`` of a broker delivery that must be acknowledged.

    The subscription reports the delivery's final outcome here, exactly as it does to a
    :class:`PublishResult`: handled, filtered out, or failed and dead-lettered all acknowledge
    it; a drop does not, so the broker delivers it again.

    ``attempt`` counts handler calls, not fetches: the number of the next handler call, from
    what the transport recorded of earlier ones (1 the first time). A fetched event that no
    handler started (it waited in the mailbox of a consumer that died) is not charged. The
    first handler call of a first delivery is not written anywhere (that would cost a write
    per event); every later call, and every call on a ``redelivered`` event, is recorded by
    ``record(n)`` before it starts, so a handler that takes its process down is charged.

    Optional hooks: ``defer(delay, next_attempt)`` asks the broker to redeliver later instead
    of retrying in-process (``defer`` returns False when the transport cannot);
    ``dead(error)`` replaces the acknowledgement of a failed delivery (a store that keeps dead
    letters); ``dropped()`` is called when a full mailbox dropped it; ``lookup()`` reads the
    recorded ``attempt`` of a redelivery when the transport could not read it on fetch.

    >>> env.tracker = Inbound(attempt, ack=lambda: broker.ack(msg_id), redelivered=again)
    >>> await sink.put(inbox, env)  # the subscription acknowledges it after the handler
    """

    __slots__ = (
        "_ack",
        "_dead",
        "_defer",
        "_dropped",
        "_lookup",
        "_record",
        "_recorded_call",
        "attempt",
        "begun",
        "done",
        "expected",
        "redelivered",
    )

    def __init__(
        self,
        attempt: int,
        ack: Callable[[], None],
        defer: Callable[[float, int], None] | None = None,
        dead: Callable[[BaseException | None], None] | None = None,
        dropped: Callable[[], None] | None = None,
        *,
        redelivered: bool = False,
        record: Callable[[int], Awaitable[None]] | None = None,
        lookup: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self.attempt = attempt
        self.expected = 0  # kept for the PublishResult interface; nobody waits on it
        self.done = False
        self.redelivered = redelivered
        self.begun = 0  # the number of the last handler call started here (0: none)
        self._recorded_call = 0  # ... and of the last one recorded
        self._ack = ack
        self._defer = defer
        self._dead = dead
        self._dropped = dropped
        self._record = record
        self._lookup = lookup

    async def resume(self) -> int:
        """The number of the next handler call (reads the record of a redelivery if needed)."""
        if self.redelivered and self._lookup is not None:
            self.attempt = max(self.attempt, await self._lookup())
            self._lookup = None
        return self.attempt

    @property
    def recorded(self) -> bool:
        """A handler call of this event was recorded (the transport keeps a record to drop)."""
        return self._recorded_call > 0

    async def begin(self, attempt: int) -> None:
        """Handler call number ``attempt`` is about to start: record it where it must be."""
        self.begun = attempt
        if self._record is not None and (attempt > 1 or self.redelivered):
            await self._record(attempt)
            self._recorded_call = attempt

    @property
    def interrupted(self) -> bool:
        """A handler call started and was neither settled nor recorded (close cancelled it)."""
        return not self.done and self.begun > self._recorded_call

    async def record_interrupted(self) -> None:
        """Charge the handler call that was cancelled (the bus closed under it)."""
        if self._record is not None and self.interrupted:
            await self._record(self.begun)
            self._recorded_call = self.begun

    def add(self, outcome: Outcome) -> None:
        """The subscription settled the delivery: acknowledge, dead-letter or leave it."""
        if self.done:
            return
        if outcome.status == "dropped":
            if self._dropped is not None:
                self.done = True
                self._dropped()
            return
        self.done = True
        if self._dead is not None and outcome.status in ("error", "timeout", "cancelled"):
            self._dead(outcome.error)
        else:
            self._ack()

    def defer(self, delay: float, next_attempt: int = 0) -> bool:
        """Give the delivery back for ``next_attempt`` (0: no handler call was charged)."""
        if self._defer is None or self.done:
            return False
        self.done = True
        self._defer(delay, next_attempt)
        return True

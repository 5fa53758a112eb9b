"""Queues fed to mailboxes: groups, durables and responders of the ``amqp://`` transport.

Each binding has a channel of its own (so a durable's ``basic.qos`` prefetch is its own), a
consumer on its queue, and a reader task: the driver's callback only appends a delivery to the
binding's deque, and the reader hands them to the mailbox in order, waiting in ``sink.put``
while it is full, so a full mailbox slows one subscription and nothing else.

A durable delivery's :class:`Inbound` counts handler calls from what travels with the message
and what was recorded: the header ``x-axonbus-attempt`` (the number of the next call, set on a
retry), and, for a redelivery, a record queue of one message per event that a handler started
after a redelivery (``{queue}.attempts.{message id}``, see :class:`Inbound`); fetches that no
handler started are not charged.

>>> binding = Binding(inbox, "durable", queue, "orders.#", exchange, prefetch=16)
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..tracker import Inbound

if TYPE_CHECKING:
    from ..sink import Inbox

__all__ = ["ATTEMPT_HEADER", "TOPIC_HEADER", "Binding", "delay_level", "retry_headers"]

logger = logging.getLogger("axonbus")

#: the number of the next handler call of a retried delivery (absent: 1)
ATTEMPT_HEADER = "x-axonbus-attempt"
#: the topic (routing key) a retried delivery was published on: a retry goes to the queue
TOPIC_HEADER = "x-axonbus-topic"
#: routes a retry to the delay queue of its level (headers exchange)
DELAY_HEADER = "axonbus-delay"
#: the retry delays that have a queue, in milliseconds: a delay is rounded down to one of them
DELAY_LEVELS = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 30_000, 60_000,
                120_000, 300_000, 600_000, 1_800_000, 3_600_000)  # fmt: skip
# headers the broker adds that must not travel with a retry (they grow with every pass)
_BROKER_HEADERS = ("x-delivery-count", "x-death", "x-first-death-exchange",
                   "x-first-death-queue", "x-first-death-reason", "x-last-death-exchange",
                   "x-last-death-queue", "x-last-death-reason")  # fmt: skip


def delay_level(delay: float) -> int:
    """The delay queue (ms) for a retry after ``delay`` seconds: 0 for an immediate requeue.

    >>> delay_level(0.003), delay_level(0.15), delay_level(7.0)
    (0, 100, 5000)
    """
    ms = int(delay * 1000)
    level = 0
    for step in DELAY_LEVELS:
        if step > ms:
            break
        level = step
    return level


def retry_headers(headers: dict[str, Any] | None, next_attempt: int) -> dict[str, Any]:
    """The headers of the copy that retries a delivery as call ``next_attempt``."""
    out = {k: v for k, v in (headers or {}).items() if k not in _BROKER_HEADERS}
    out[ATTEMPT_HEADER] = next_attempt
    return out


@dataclass(eq=False)
class Binding:
    """A group, durable or responder mailbox and the queue that feeds it."""

    mailbox: Inbox
    kind: str  # "durable", "group" or "respond"
    queue: str
    key: str  # the binding key of the mailbox's pattern
    exchange: str
    prefetch: int = 0  # a durable's basic.qos; 0: no acknowledgements (groups, responders)
    channel: Any = None
    tag: str | None = None
    generation: int = -1  # the connection it consumes on (-1: none)
    stopped: bool = False  # unbound
    items: deque[Any] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def durable(self) -> bool:
        return self.kind == "durable"

    def on_delivery(self, message: Any) -> None:
        """The driver's consumer callback: queue it for the reader, in order."""
        self.items.append(message)
        self.wake.set()

    def give_back(self) -> None:
        """Give back what the mailbox holds and no handler started (unbind): requeued now."""
        kept = deque(env for env in self.mailbox.queue if not isinstance(env.tracker, Inbound))
        for env in self.mailbox.queue:
            tracker = env.tracker
            if isinstance(tracker, Inbound) and not tracker.done:
                tracker.defer(0)
        self.mailbox.queue.clear()
        self.mailbox.queue.extend(kept)

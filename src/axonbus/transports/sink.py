"""What the Bus offers a transport: the :class:`Sink` it gets at ``start(sink)``.

A transport never calls a handler. It hands envelopes to the sink, and the sink's local
dispatch (mailboxes, workers, bulkhead) does the rest:

- events *other* buses published, for plain subscriptions and streams, go to
  :meth:`Sink.receive` (once per watched pattern that matches);
- deliveries for a group, durable or responder go to :meth:`Sink.put`, into the
  :class:`Inbox` the Bus gave the transport in ``bind(inbox, subscription)``; a delivery the
  broker wants acknowledged carries an :class:`~axonbus.transports.Inbound` as its ``tracker``.

A transport reads the codec, the message-size limit and the unavailable policy from the sink,
and registers the deadline of a request it sends with :attr:`Sink.deadlines`:

>>> async def start(self, sink: Sink) -> None:
...     self.sink = sink
...     self.receive = sink.receive          # bind once: called for every inbound event
...     self.decode = sink.wire_codec.decode
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Literal, Protocol

from .._codec import Codec
from .._events import Envelope
from .._retry import Retry

__all__ = ["Inbox", "RequestDeadlines", "Sink", "SubscriptionInfo"]


class Inbox(Protocol):
    """The shared mailbox of a group, durable or responder, as a transport sees it.

    ``key`` identifies the shared subscription across buses: ``("durable", name)``,
    ``("group", pattern, group)`` or ``("respond", pattern)``. ``queue`` holds the envelopes
    waiting for a handler (read it to fetch no more than there is room for, or to give back
    what was never started at close).

    >>> def bind(self, inbox: Inbox, subscription: SubscriptionInfo) -> None:
    ...     kind = inbox.key[0]  # "durable", "group" or "respond"
    ...     room = inbox.maxsize - len(inbox.queue)  # fetch no more than fits
    """

    @property
    def name(self) -> str: ...
    @property
    def pattern(self) -> str: ...
    @property
    def key(self) -> tuple[str, ...] | None: ...
    @property
    def maxsize(self) -> int: ...
    @property
    def queue(self) -> deque[Envelope]: ...
    @property
    def closed(self) -> bool: ...
    def has_room(self) -> bool: ...


class SubscriptionInfo(Protocol):
    """The options of the subscription behind an :class:`Inbox` (read-only).

    >>> prefetch = max(16, 4 * subscription.concurrency)  # events a durable fetches ahead
    """

    @property
    def pattern(self) -> str: ...
    @property
    def group(self) -> str | None: ...
    @property
    def durable(self) -> str | None: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def retry(self) -> Retry | None: ...


class RequestDeadlines(Protocol):
    """The Bus's one timer for every pending request: it fails ``reply`` with
    :class:`~axonbus.RequestTimeout` at ``deadline`` (loop time).

    >>> sink.deadlines.watch(reply, loop.time() + timeout, env.topic, timeout)
    >>> try:
    ...     return await reply
    ... finally:
    ...     sink.deadlines.forget(reply)
    """

    def watch(
        self, reply: asyncio.Future[Any], deadline: float, topic: str, timeout: float
    ) -> None: ...
    def forget(self, reply: asyncio.Future[Any]) -> None: ...


class Sink(Protocol):
    """Everything the Bus offers a transport. :class:`axonbus.Bus` implements it.

    >>> async def on_message(self, pattern: str, data: bytes) -> None:
    ...     env = self.sink.wire_codec.decode(data)
    ...     await self.sink.receive(pattern, env)  # local subscribers on ``pattern`` get it
    """

    @property
    def name(self) -> str:
        """The bus's name: transports prefix their keys, streams and tables with it."""
        ...

    @property
    def wire_codec(self) -> Codec:
        """Encodes and decodes envelopes for the wire (``Bus(codec=...)`` names it)."""
        ...

    @property
    def max_message_bytes(self) -> int:
        """The largest encoded envelope a publish may send."""
        ...

    @property
    def on_unavailable(self) -> Literal["raise", "log"]:
        """What a publish does when the broker stays unreachable: raise or log."""
        ...

    @property
    def deadlines(self) -> RequestDeadlines:
        """Where a transport registers the deadline of a request it sent."""
        ...

    async def receive(self, pattern: str, env: Envelope) -> None:
        """Dispatch ``env``, published by another bus, to the local mailboxes on ``pattern``."""
        ...

    async def put(self, inbox: Inbox, env: Envelope) -> bool:
        """Hand a broker delivery to ``inbox`` (waits for room); False if it is closed."""
        ...

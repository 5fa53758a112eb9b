"""What a log transport needs from its database: the contract of ``sqlite://`` and
``postgresql://`` stores (see ``_transport`` beside it for the transport built on it).

The log is one append-only table of events, numbered by an ``offset`` that grows in commit
order (a reader that has seen offset N never later finds a new event below N). Beside it:

- consumers: one row per ``durable=`` or ``group=`` name, with its pattern and ``position``
  (every event up to it has been considered: handed out or skipped as not matching);
- pending: the events a durable consumer was handed and has not acknowledged, with their
  delivery count, owner (a process instance) and the time they become visible again;
- dead letters: events a durable consumer gave up on, with the error;
- instances: live processes, by heartbeat; a pending event whose owner stopped beating is
  handed out again;
- idempotency keys; responders, requests and replies (request/reply between processes).

Every table name starts with a prefix derived from the bus name, so several buses share one
database. All methods are coroutines; a store may run them in a thread (SQLite) or on the loop
(asyncpg). Write operations arrive in batches (:meth:`LogStore.write`), one transaction each.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = [
    "Claimed",
    "Compaction",
    "LogStore",
    "Request",
    "Row",
    "read_filter",
    "table_prefix",
]


class Row(NamedTuple):
    """One stored event."""

    offset: int
    timestamp: float
    topic: str
    event_id: str
    origin: str  # the instance that published it
    data: bytes  # the encoded envelope


class Claimed(NamedTuple):
    """An event handed to a consumer: ``attempt`` is the number of its next handler call (1
    on first delivery); ``redelivered`` when it was handed out before."""

    offset: int
    attempt: int
    data: bytes
    redelivered: bool = False


class Request(NamedTuple):
    pattern: str  # the responder pattern it was addressed to
    requester: str  # the instance waiting for the reply
    request_id: str
    deadline: float | None  # epoch seconds; past it nobody waits for the reply
    data: bytes


class Compaction(NamedTuple):
    """What one retention pass removed."""

    deleted: int
    #: events removed although a durable consumer had not acknowledged them (policy "drop")
    unacknowledged: int
    #: durable consumers that lost such events
    consumers: tuple[str, ...]


def read_filter(
    after: int,
    until: int | None,
    since_time: float | None,
    until_time: float | None,
    exclude_origin: str | None,
    limit: int,
    mark: Callable[[int], str],
) -> tuple[str, list[Any]]:
    """The ``WHERE … ORDER BY seq LIMIT …`` tail of :meth:`LogStore.read`, and its parameters;
    ``mark(n)`` is the driver's placeholder for the n-th parameter (``?`` or ``$n``)."""
    args: list[Any] = [after]
    where = [f"seq > {mark(1)}"]
    for clause, value in (
        ("seq <=", until),
        ("ts >=", since_time),
        ("ts <", until_time),
        ("origin <>", exclude_origin),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{clause} {mark(len(args))}")
    args.append(limit)
    return f"WHERE {' AND '.join(where)} ORDER BY seq LIMIT {mark(len(args))}", args


def table_prefix(bus_name: str) -> str:
    """The table-name prefix for a bus: its name in lower case, other characters as ``_``."""
    return "ab_" + re.sub(r"[^a-z0-9_]", "_", bus_name.lower()) + "_"


# Operations of a write batch (tuples; the first item names the kind):
#   ("pub", topic, data, event_id, timestamp, idempotency_key | None)
#       -> result: the new offset, or the event id stored first under that key (a duplicate
#          within the idempotency window: nothing stored)
#   ("ack", consumer, offset)                 delete the pending row
#   ("defer", consumer, offset, delay, next_attempt)
#                                             release it: visible again after ``delay`` seconds,
#                                             its next handler call numbered at least
#                                             ``next_attempt`` (0: unchanged)
#   ("attempt", consumer, offset, next_attempt)
#                                             a handler call started: the next one is numbered
#                                             at least ``next_attempt`` (the pending row's
#                                             ``attempts`` column holds that number)
#   ("dead", consumer, offset, error)         move it to the dead letters
#   ("register", consumer, kind, pattern)     kind "durable" | "group"; create at the current
#                                             end of the log if absent, else update the pattern
#   ("respond", instance, pattern, expires)   a live responder (expires: epoch seconds)
#   ("unrespond", instance, pattern)
#   ("request", pattern, requester, request_id, deadline | None, data)
#   ("reply", requester, request_id, frame)
# Results of everything but "pub" are None.


class LogStore(abc.ABC):
    """Storage of a log transport. ``prefix`` from :func:`table_prefix`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        #: the instance whose publishes this store writes ("origin" of its rows); set by the
        #: transport before open()
        self.origin = ""
        #: seconds an idempotency key is remembered; compact() forgets older ones
        self.idempotency_window = 86_400.0

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the tables if they do not exist (idempotent, concurrent-safe)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection and thread. Never raises."""

    @abc.abstractmethod
    async def write(self, ops: list[tuple[Any, ...]], idempotency_window: float) -> list[Any]:
        """Apply a batch of operations in one transaction, in order; one result per op."""

    @abc.abstractmethod
    async def head(self) -> int:
        """The highest offset in the log (0 when empty)."""

    @abc.abstractmethod
    async def on_topic(self, topic: str, limit: int) -> list[tuple[int, bytes]]:
        """``(offset, data)`` of the oldest ``limit`` events on exactly ``topic``."""

    @abc.abstractmethod
    async def delete_event(self, offset: int) -> None:
        """Remove one event from the log (a dead letter once replayed)."""

    @abc.abstractmethod
    async def position(self, consumer: str) -> int | None:
        """The offset a group or durable consumer has claimed up to (None: no such consumer)."""

    @abc.abstractmethod
    async def read(
        self,
        after: int,
        limit: int,
        *,
        until: int | None = None,
        since_time: float | None = None,
        until_time: float | None = None,
        exclude_origin: str | None = None,
    ) -> list[Row]:
        """Up to ``limit`` events with ``after < offset (<= until)``, by offset, optionally only
        those with ``since_time <= timestamp (< until_time)`` and not from ``exclude_origin``."""

    @abc.abstractmethod
    async def offset_of(self, event_id: str) -> int | None:
        """The offset of the event with this id, if it is stored."""

    @abc.abstractmethod
    async def claim(
        self,
        consumer: str,
        matches: Callable[[str], bool],
        owner: str,
        limit: int,
        *,
        durable: bool,
    ) -> list[Claimed]:
        """Hand out up to ``limit`` events to ``owner``, in one transaction.

        Durable: first pending events that are visible and not owned by a live instance (their
        delivery count goes up), then new ones after the position. Each becomes pending, owned by
        ``owner``. Group: only new events, nothing pending (at most once). Either way the
        position moves past every event read, matching (``matches(topic)``) or not. A consumer
        that is not registered gets nothing.
        """

    @abc.abstractmethod
    async def heartbeat(self, instance: str, ttl: float) -> None:
        """Mark ``instance`` alive for ``ttl`` seconds (and forget instances long dead)."""

    @abc.abstractmethod
    async def release(self, instance: str) -> None:
        """``instance`` stops: its pending events are visible at once, its responders and its
        instance row go."""

    @abc.abstractmethod
    async def responders(self) -> list[str]:
        """Patterns of the live responders (not expired)."""

    @abc.abstractmethod
    async def take_requests(self, patterns: list[str], limit: int) -> list[Request]:
        """Remove and return up to ``limit`` requests addressed to any of ``patterns``, oldest
        first; competing processes never get the same one."""

    @abc.abstractmethod
    async def take_replies(self, requester: str) -> list[tuple[str, bytes]]:
        """Remove and return ``(request_id, frame)`` of every reply for ``requester``."""

    @abc.abstractmethod
    async def compact(
        self, max_age: float, max_events: int, drop_unacknowledged: bool
    ) -> Compaction:
        """Delete events older than ``max_age`` seconds (0: no limit) and all but the newest
        ``max_events`` (0: no limit), and idempotency keys older than ``idempotency_window``. Unless
        ``drop_unacknowledged``, never an event at or after the oldest unacknowledged event of a
        durable consumer (pending, or not yet read); otherwise say what was dropped."""

    @abc.abstractmethod
    async def dead_letters(
        self, consumer: str | None, limit: int
    ) -> list[tuple[str, int, float, str, bytes]]:
        """``(consumer, offset, timestamp, error, data)`` of dead letters, oldest first."""

    @abc.abstractmethod
    async def wait_changed(self, timeout: float) -> bool:
        """Return True once another connection committed something (or at least once when that
        cannot be told), False after ``timeout`` seconds without a change."""

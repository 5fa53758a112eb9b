"""Packs: consecutive same-topic publishes of one batch travel as one NATS message.

A pack is a core publish on the events' subject with the header ``Axonbus-Pack: {count}``;
its payload is every envelope preceded by its length (4 bytes, big-endian), in publish order.
A lone event still goes as a plain message (the envelope as payload, no pack header). Packing
spares both ends the per-message cost of nats-py (a publish coroutine, the read loop, a Msg and
a subscription queue per event), which is most of what an event costs.

The stream captures a pack as one JetStream message (``Nats-Msg-Id`` = ``{first id}+{count}``),
so a durable consumer receives it whole: :class:`Pack` acknowledges it once every envelope in it
is settled, and its envelopes (:class:`PackPart`) are retried in-process, since a nak with delay
would redeliver the whole pack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .._frames import frames, join_frames
from ..tracker import Inbound

__all__ = ["PACK", "PACK_MAX", "Pack", "PackPart", "frames", "pack", "run_end"]

PACK = "Axonbus-Pack"
#: most events in one pack: bounds what a crash redelivers and what one durable member holds
PACK_MAX = 64
#: most payload bytes in one pack (also bounded by the server's max_payload)
PACK_BYTES = 256 * 1024
#: bytes kept free in a pack for its headers ("NATS/1.0", the pack count, "+{count}" of the id)
HEADER_ROOM = 96


def run_end(batch: list[Any], i: int, stop: int, room: int) -> int:
    """The end of the pack starting at ``batch[i]`` (a ``pub`` op): the following publishes
    on the same topic, before index ``stop``, at most :data:`PACK_MAX` events and ``room``
    bytes of payload."""
    topic = batch[i][1]
    size = 4 + len(batch[i][2])
    stop = min(stop, i + PACK_MAX)
    j = i + 1
    while j < stop:
        op = batch[j]
        if op[0] != "pub" or op[1] != topic:
            break
        size += 4 + len(op[2])
        if size > room:
            break
        j += 1
    return j


def pack(ops: list[Any]) -> bytes:
    """The payload of a pack of ``pub`` ops (their encoded envelopes at index 2)."""
    return join_frames(op[2] for op in ops)


class Pack:
    """A durable's JetStream delivery of a pack.

    Acknowledged (``settle(b"+ACK")``) once each of its ``size`` envelopes was settled (handled,
    filtered out, or dead-lettered); never while one is unsettled or dropped. ``release``
    gives the whole pack back to the server (the bus let go of it before that).
    """

    __slots__ = ("_part", "_settle", "done", "left")

    def __init__(
        self, size: int, settle: Callable[[bytes], None], part: Callable[[], None]
    ) -> None:
        self.left = size
        self.done = False
        self._settle = settle
        self._part = part  # called as each envelope is settled (the durable's window)

    def part_done(self) -> None:
        if self.done:
            return
        self.left -= 1
        self._part()
        if self.left <= 0:
            self.done = True
            self._settle(b"+ACK")

    def release(self, payload: bytes) -> None:
        if not self.done:
            self.done = True
            self._settle(payload)


class PackPart(Inbound):
    """The tracker of one envelope of a :class:`Pack`: it cannot be deferred on its own, so
    the subscription retries it in-process; its handler calls are recorded per envelope."""

    __slots__ = ("pack",)

    def __init__(
        self,
        pack: Pack,
        *,
        ack: Callable[[], None] | None = None,
        redelivered: bool = False,
        record: Callable[[int], Awaitable[None]] | None = None,
        lookup: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        super().__init__(
            1, ack or pack.part_done, redelivered=redelivered, record=record, lookup=lookup
        )
        self.pack = pack

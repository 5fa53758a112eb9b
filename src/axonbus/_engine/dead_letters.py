"""Dead letters kept by the transport: list them, replay them.

On every transport that connects processes, ``$bus.dead_letter`` events are kept until they are
replayed: Redis in the stream ``{name}:dead_letters``, NATS in the JetStream stream (once a
durable subscription made it exist), SQLite and PostgreSQL in the event log.

>>> letters = DeadLetters(bus)
>>> for stored in await letters.list():
...     print(stored.letter.original_topic, stored.letter.error_type)
>>> await letters.replay(where=lambda letter: letter.error_type == "TimeoutError")
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._exceptions import DecodeError, NoEventLog
from .._system_events import DeadLetter
from ..transports.base import BrokerTransport

if TYPE_CHECKING:
    from .bus import Bus

__all__ = ["DeadLetters", "StoredDeadLetter"]

logger = logging.getLogger("axonbus")


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as stored: ``key`` names it in the store (letters published together
    may share one), ``letter`` is the :class:`DeadLetter` event."""

    key: str
    letter: DeadLetter


class DeadLetters:
    """The dead letters the transport of a started ``bus`` keeps.

    :class:`NoEventLog` on ``memory://``, which keeps nothing: subscribe to ``DeadLetter``
    there instead.
    """

    def __init__(self, bus: Bus) -> None:
        transport = bus.transport
        if not isinstance(transport, BrokerTransport):
            raise NoEventLog(
                f"{transport.scheme}:// keeps no dead letters; subscribe to DeadLetter instead"
            )
        self.bus = bus
        self._transport = transport

    async def list(self, limit: int = 100) -> list[StoredDeadLetter]:
        """The oldest ``limit`` dead letters kept, oldest first (nothing is removed)."""
        decode = self.bus.wire_codec.decode
        out: list[StoredDeadLetter] = []
        for key, data in await self._transport.stored_dead_letters(limit):
            try:
                event = decode(data).event
            except DecodeError as exc:
                logger.error("stored dead letter %s does not decode: %s", key, exc)
                continue
            if isinstance(event, DeadLetter):
                out.append(StoredDeadLetter(key, event))
        return out

    async def replay(
        self, *, limit: int = 100, where: Callable[[DeadLetter], bool] | None = None
    ) -> int:
        """Publish each kept dead letter's event again, on its original topic with its
        headers, then forget the dead letter; returns how many were published.

        Letters stored together (one key) are replayed together or not at all. A replayed
        event is on the broker before its dead letter is dropped, so a crash in between
        replays it twice rather than losing it.
        """
        by_key: dict[str, list[DeadLetter]] = {}
        for stored in await self.list(limit):
            by_key.setdefault(stored.key, []).append(stored.letter)
        published = 0
        for key, letters in by_key.items():
            if where is not None and not all(where(letter) for letter in letters):
                continue
            for letter in letters:
                await self.bus.publish(
                    letter.original_topic, letter.event, headers=dict(letter.headers) or None
                )
                published += 1
            await self.bus.flush()
            await self._transport.drop_dead_letter(key)
        return published

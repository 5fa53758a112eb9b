"""Small reads and writes on queues, for the ``amqp://`` transport's bookkeeping.

- handler calls recorded (see :class:`~axonbus.transports.Inbound`): a queue per event that a
  handler started after a redelivery, holding one message, the number of the next call
  (``x-max-length`` 1: a new record replaces the old one; ``x-expires`` a day: a record whose
  event was never settled goes by itself);
- the messages a queue keeps, read without taking them (dead letters): fetched with
  ``basic.get`` on a channel of their own, then given back by closing that channel, which
  puts them back where they were.

Each read opens a short-lived channel: a queue that does not exist closes the channel it was
asked on, and this keeps that from touching the transport's other channels.

>>> await records.write("axonbus.shop.durable.billing.attempts.<event id>", 3)
>>> await records.read("axonbus.shop.durable.billing.attempts.<event id>")
3
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..._exceptions import ConnectionLost

try:
    from aiormq import exceptions as aexc
    from pamqp import commands as spec
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the amqp:// transport needs aio-pika: pip install 'axonbus[amqp]'") from exc

if TYPE_CHECKING:
    from ._transport import AmqpTransport

__all__ = ["RECORD_KEPT_MS", "Records"]

logger = logging.getLogger("axonbus")

RECORD_KEPT_MS = 86_400_000  # a record of handler calls unused this long is deleted
_RECORD_ARGS = {"x-max-length": 1, "x-expires": RECORD_KEPT_MS}


class Records:
    """Bookkeeping reads and writes for one transport, each on a channel of its own."""

    def __init__(self, transport: AmqpTransport) -> None:
        self.t = transport

    @contextlib.asynccontextmanager
    async def _channel(self, *, confirms: bool = False) -> AsyncIterator[Any]:
        conn = self.t._conn
        if conn is None or conn.is_closed:
            raise ConnectionLost(f"{self.t.address}: not connected")
        channel = await conn.channel(publisher_confirms=confirms)
        try:
            yield channel
        finally:
            if not channel.is_closed:
                try:
                    await channel.close()
                except Exception as exc:  # closing a channel that broke: nothing to give back
                    logger.debug("%s: closing a channel: %r", self.t, exc)

    async def write(self, queue: str, next_attempt: int) -> None:
        """Record that the next handler call of an event is ``next_attempt`` (confirmed)."""
        async with self._channel(confirms=True) as channel:
            await channel.queue_declare(queue, durable=True, arguments=_RECORD_ARGS)
            props = spec.Basic.Properties(delivery_mode=2)
            await channel.basic_publish(
                str(next_attempt).encode(), routing_key=queue, properties=props
            )

    async def read(self, queue: str) -> int:
        """The recorded number of the next handler call (1: nothing recorded)."""
        async with self._channel() as channel:
            try:
                await channel.queue_declare(queue, passive=True)
            except aexc.ChannelNotFoundEntity:
                return 1
            message = await channel.basic_get(queue, no_ack=False)
            if not isinstance(message.delivery, spec.Basic.GetOk):
                return 1
            try:
                return max(1, int(message.body))
            except ValueError:
                return 1

    async def forget(self, queue: str) -> None:
        """Drop the record of an event once it is settled (a missing one is fine)."""
        try:
            async with self._channel() as channel:
                await channel.queue_delete(queue)
        except (ConnectionLost, aexc.AMQPError, OSError) as exc:  # expires by itself anyway
            logger.debug("%s: could not forget %s: %r", self.t, queue, exc)

    async def ready(self, queue: str) -> int:
        """Messages in ``queue`` waiting for a consumer (0 if there is no such queue)."""
        async with self._channel() as channel:
            try:
                ok = await channel.queue_declare(queue, passive=True)
            except aexc.ChannelNotFoundEntity:
                return 0
            return int(ok.message_count or 0)

    async def peek(self, queue: str, limit: int) -> list[tuple[str, Any, bytes]]:
        """Up to ``limit`` messages of ``queue``, oldest first, left in it: ``(id,
        properties, body)``."""
        out: list[tuple[str, Any, bytes]] = []
        async with self._channel() as channel:
            while len(out) < limit:
                message = await channel.basic_get(queue, no_ack=False)
                if not isinstance(message.delivery, spec.Basic.GetOk):
                    break
                props = message.header.properties
                out.append((props.message_id or "", props, message.body))
        return out  # closing the channel put every one back

    async def take(self, queue: str, key: str) -> None:
        """Remove the message(s) with id ``key`` from ``queue``; the others stay in place."""
        async with self._channel() as channel:
            found = False
            while True:
                message = await channel.basic_get(queue, no_ack=False)
                if not isinstance(message.delivery, spec.Basic.GetOk):
                    break
                if message.header.properties.message_id == key:
                    await channel.basic_ack(message.delivery.delivery_tag)
                    found = True
                elif found:
                    break  # one key is stored as one message: nothing further to look at

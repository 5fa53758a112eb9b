"""The ``nats://`` writer: how a batch of outbox operations reaches the server, and how the
transport learns that it did (a round trip, or JetStream's PubAcks while the stream exists).

Consecutive publishes on one topic go as one pack (see ``_pack``), unless the wire is
``cloudevents``: then each event is one message, its CloudEvent attributes as ``ce-`` headers
(other clients cannot unpack a pack). With a stream, each
message carries ``Nats-Msg-Id`` and a reply subject that collects the PubAcks, so a batch resent
after a reconnect is de-duplicated and counts as sent only once stored.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.aio.msg import Msg

from ..._cloudevents import CloudEvents
from ..._events import Envelope
from ..._exceptions import MessageTooLarge
from ..._topics import match
from ._conn import Batch, Conn, Lost, guard
from ._pack import HEADER_ROOM, PACK, PACK_BYTES, pack, run_end

if TYPE_CHECKING:
    from ..sink import Sink
    from ._jetstream import JetStream

__all__ = ["MSG_ID", "Writer"]

logger = logging.getLogger("axonbus")

MSG_ID = "Nats-Msg-Id"
# bytes a Nats-Msg-Id header adds to a message: "NATS/1.0\r\n" "Nats-Msg-Id: " id "\r\n\r\n"
_HEADER_OVERHEAD = 27
HOLD_REPLIES = 256  # request replies sent before a round trip confirms them (see write_batch)


class Writer:
    """The outbound half of :class:`~axonbus.transports.nats.NatsTransport` (a mixin)."""

    if TYPE_CHECKING:  # provided by the transport
        wire: str
        cloudevents: CloudEvents
        bus: Sink | None
        write_timeout: float
        unconfirmed: int
        js: JetStream
        _ev: str
        _conn: Conn | None
        _watched: dict[str, int]
        _echoes: dict[str, bool]
        _syncs_done: int
        _stream_known: bool
        _max_payload: int
        _cuts: list[int]
        _held: list[Any]
        _held_on: Conn | None

        def current(self) -> Conn: ...
        def _wake_synced(self) -> None: ...
        async def _sync(self, conn: Conn, *, ensure: bool) -> None: ...

    # -- outbound ------------------------------------------------------------------------------

    def publish_op(self, env: Envelope, data: bytes) -> Any:
        event_id = env.id
        if self.wire == "cloudevents":
            # ("pub", topic, body, id, ce- headers): a message of its own, never packed
            headers, body = self.cloudevents.binary(env)
            size = len(body) + _headers_size(headers)  # the encoded event: max_message_bytes
            if self.bus is not None and size > self.bus.max_message_bytes:
                raise MessageTooLarge(size, self.bus.max_message_bytes)
            size += _HEADER_OVERHEAD + len(event_id)
            if size > self._max_payload:
                raise MessageTooLarge(size, self._max_payload)
            return ("pub", env.topic, body, event_id, headers)
        size = len(data) + _HEADER_OVERHEAD + len(event_id)
        if size > self._max_payload:
            raise MessageTooLarge(size, self._max_payload)  # the server would drop the connection
        return ("pub", env.topic, data, event_id)

    async def write_batch(self, batch: list[Any]) -> None:
        """Send ``batch`` in order, then wait until the server read it (and, while the stream
        exists, until it stored every event). Consecutive publishes on one topic go as one
        pack (see ``_pack``)."""
        conn = self.current()
        nc = conn.nc
        ev = self._ev
        acks: Batch | None = None
        if self._stream_known and any(op[0] == "pub" for op in batch):
            token = conn.token("b")
            acks = conn.batches[token] = Batch(sys.maxsize)  # sealed once written
        # With a stream: the Msg-Id header de-duplicates a resent batch, the reply subject
        # collects the PubAcks and marks the events as ours. Without: no header (it costs ~10 us
        # an event on both sides), and a reply subject only on topics this bus hears back (to
        # drop its own events); elsewhere the server would answer "no responders" to each.
        reply = f"{conn.inbox}.{token}" if acks is not None else f"{conn.inbox}.n"
        echoes = self._echoes
        # a resent batch is packed as it was the first time: no pack spans the end of a batch
        # that failed before (its Msg-Ids must be the same for JetStream to drop the copies)
        cuts = self._cuts
        cut = 0
        stop = cuts[0] if cuts else len(batch)
        room = min(PACK_BYTES, self._max_payload) - HEADER_ROOM
        messages = 0
        # a batch of replies only is not confirmed by a round trip of its own: they are held
        # until a later round trip confirms them (and sent again if the connection went)
        confirm = len(self._held) >= HOLD_REPLIES
        i, n = 0, len(batch)
        try:
            if self._held and self._held_on is not conn:
                for op in self._held:
                    await nc.publish(op[1], op[2], headers=op[3])
                confirm = True
            while i < n:
                op = batch[i]
                kind = op[0]
                if kind == "pub":
                    while stop <= i:
                        cut += 1
                        stop = cuts[cut] if cut < len(cuts) else n
                    topic, data, to = op[1], op[2], reply
                    headers: dict[str, str] | None = None
                    if len(op) > 4:  # a CloudEvent: one message, its attributes as headers
                        j = i + 1
                        headers = {**op[4], MSG_ID: op[3]} if acks is not None else op[4]
                    else:
                        j = run_end(batch, i, stop, room - len(op[3]))
                    if headers is not None:
                        pass
                    elif j - i > 1:
                        data, count = pack(batch[i:j]), str(j - i)
                        headers = {PACK: count}
                        if acks is not None:
                            headers[MSG_ID] = f"{op[3]}+{count}"
                    elif acks is not None:
                        headers = {MSG_ID: op[3]}
                    if acks is None:
                        echo = echoes.get(topic)
                        if echo is None:
                            echo = self._echo(topic)
                        to = reply if echo else ""
                    await nc.publish(ev + topic, data, to, headers)
                    messages += 1
                    confirm = True
                    i = j
                    continue
                i += 1
                if kind == "reply":
                    await nc.publish(op[1], op[2], headers=op[3])
                    continue
                confirm = True
                if kind == "raw":
                    await nc.publish(op[1], op[2], headers=op[3])
                elif kind == "sync":
                    await self._sync(conn, ensure=True)
                    self._syncs_done = max(self._syncs_done, op[1])
                    self._wake_synced()
            if confirm:
                await self._round_trip(conn)
                self._held.clear()
            else:
                self._held += batch
                self._held_on = conn
            if acks is not None:
                acks.seal(messages)
                await self._confirm(conn, acks)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            if not cuts or cuts[-1] != n:
                cuts.append(n)
            raise Lost(f"write failed: {exc!r}") from exc
        finally:
            if acks is not None:
                conn.batches.pop(token, None)
        cuts.clear()

    def _echo(self, topic: str) -> bool:
        """Whether this bus's own plain subscriptions hear ``topic`` back from NATS."""
        if len(self._echoes) >= 8192:
            self._echoes.clear()
        echo = self._echoes[topic] = any(match(p, topic) for p in self._watched)
        return echo

    async def _round_trip(self, conn: Conn) -> None:
        """Until the server has read everything written so far on ``conn``.

        A message to our own inbox, not nats-py's ``flush()``: that writes its PING to the
        socket at once, ahead of publishes still in nats-py's pending buffer, so its PONG can
        come back before the server saw them. The marker is queued behind them.
        """
        token = conn.token("r")
        fut: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        conn.waiters[token] = fut
        try:
            await conn.nc.publish(f"{conn.inbox}.{token}", b"")
            await guard(conn, fut, self.write_timeout)
        finally:
            conn.waiters.pop(token, None)

    async def _confirm(self, conn: Conn, acks: Batch) -> None:
        """Wait for a batch's PubAcks (the stream stored it); Lost if the connection goes."""
        try:
            await guard(conn, asyncio.shield(acks.done), self.write_timeout)
        except TimeoutError:
            # the server read the batch (the round trip came back) but JetStream did not say it
            # stored it: perhaps still recovering after a restart. Giving up would lose events a
            # durable is owed, so the batch is sent again after a reconnect; same packs, same
            # Msg-Ids, so whatever was stored the first time is de-duplicated.
            missing = acks.expected - acks.got
            raise Lost(
                f"JetStream did not confirm {missing} of {acks.expected} events within "
                f"{self.write_timeout}s; sending them again"
            ) from None
        if acks.unanswered:
            # no stream leader answered: the stream is gone, or (in a cluster) its leader died
            # and a new one is being elected; then the batch goes again, like an outage
            if not await self.js.stream_missing(conn):
                raise Lost(
                    f"no JetStream leader stored {acks.unanswered} of {acks.expected} messages "
                    "(a cluster electing one?); sending them again"
                )
            self._stream_known = False
            acks.failed += acks.unanswered
        self.unconfirmed += acks.failed  # refused (the stream is gone, or full): not retried

    def stream_found(self) -> None:
        self._stream_known = True

    def _on_reply(self, conn: Conn) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        skip = len(conn.inbox) + 1

        async def on_reply(msg: Msg) -> None:
            token = msg.subject[skip:]
            kind = token[:1]
            if kind == "r":
                fut = conn.waiters.pop(token, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif kind == "b":
                batch = conn.batches.get(token)
                if batch is not None:
                    self._on_puback(msg, batch)
            elif kind == "n" and msg.data[:10] == b'{"stream":':
                self._stream_known = True  # a stream stored an event we did not wait for

        return on_reply

    def _on_puback(self, msg: Msg, batch: Batch) -> None:
        batch.got += 1
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            batch.unanswered += 1  # nobody stored it: see _confirm
        elif b'"error"' in msg.data:
            batch.failed += 1
            if batch.failed == 1:
                logger.error("%s: JetStream refused an event: %s", self, msg.data[:300])
        if batch.got >= batch.expected and not batch.done.done():
            batch.done.set_result(None)

    async def _on_advisory(self, msg: Msg) -> None:
        if ".STREAM.DELETED." in msg.subject:
            self._stream_known = False
            if self._conn is not None:
                self._conn.stream_ok = False
            self.js.kick_all()
        elif ".STREAM.CREATED." in msg.subject:
            self._stream_known = True


def _headers_size(headers: dict[str, str]) -> int:
    """Bytes ``headers`` take in a NATS message ("key: value\r\n" each)."""
    return sum(map(len, headers)) + sum(map(len, headers.values())) + 4 * len(headers)

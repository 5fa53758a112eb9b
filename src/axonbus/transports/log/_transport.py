"""The transport shared by ``sqlite://`` and ``postgresql://``: every event goes to a log.

The log is a table of events numbered by offset (see ``_store`` for the tables). How each
kind of subscription travels:

- plain subscriptions and streams: each bus tails the log and hands events published by other
  buses to its plain subscribers (at most once: a bus sees what was appended while it runs).
- ``group=``: a consumer row with a position; members anywhere claim the next events in one
  transaction, so each event goes to one member (at most once).
- ``durable=``: the same, plus a pending row per handed-out event until it is acknowledged.
  A delivery that fails past its retry budget moves to the dead letters (and
  ``$bus.dead_letter``); one whose process died is handed out again once that process's
  heartbeat stops (``claim_idle``); one deferred by a retry becomes visible after its delay.
- ``request`` / ``respond``: responders register with a heartbeat; a request is a row addressed
  to one live responder pattern, taken by exactly one responder process; the reply comes back
  as a row for the requester.

Writes (publishes, acknowledgements, registrations) queued in one loop tick are one transaction
(group commit). Other processes notice new rows through :meth:`LogStore.wait_changed`.

URL options: ``claim_idle`` (seconds without a heartbeat before a process's deliveries go to
others, default 15), ``max_age`` (seconds an event is kept, default 0: forever), ``max_events``
(events kept, default 0: no limit), ``retention`` (``keep``: never delete what a durable has not
acknowledged, the default; ``drop``: delete anyway and log what was lost), ``compact_every``
(seconds between retention passes, default 60), ``idempotency_window`` (seconds an
``idempotency_key`` is remembered, default 86,400), ``unavailable_timeout``, ``outbox``.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..._events import Envelope
from ..._exceptions import ConnectionLost, DecodeError
from ..._topics import match
from ..base import (
    BrokerTransport,
    float_option,
    int_option,
    prefetch_limit,
)
from ..headers import IDEMPOTENCY_KEY
from ..tracker import Inbound
from ._reading import Cursor, LogReader
from ._rpc import LogRequestReply
from ._store import Compaction, LogStore, table_prefix

if TYPE_CHECKING:
    from ..sink import Inbox, Sink, SubscriptionInfo

__all__ = ["Cursor", "LogTransport"]

logger = logging.getLogger("axonbus")

FETCH = 256  # most rows read or claimed at once
IDLE_WAIT = 1.0  # seconds a loop sleeps without a change before looking again


@dataclass(eq=False)
class _Consumer:
    """A group or durable mailbox fed from its consumer row."""

    mailbox: Inbox
    name: str  # the consumer row
    durable: bool
    stopped: bool = False
    handing: int = 0  # claimed and not yet in the mailbox
    limit: int = FETCH  # a durable's prefetch: most events held (claimed, not settled)
    held: int = 0
    room: asyncio.Event = field(default_factory=asyncio.Event)  # held fell to half the limit

    def settled(self) -> None:
        self.held -= 1
        if self.held <= self.limit // 2:
            self.room.set()


class LogTransport(LogRequestReply, LogReader, BrokerTransport):
    """A :class:`BrokerTransport` over a :class:`LogStore`; subclasses make the store."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.claim_idle = float_option(self.options, "claim_idle", 15.0)
        self.max_age = float_option(self.options, "max_age", 0.0)
        self.max_events = int_option(self.options, "max_events", 0)
        self.compact_every = float_option(self.options, "compact_every", 60.0)
        self.idempotency_window = float_option(self.options, "idempotency_window", 86_400.0)
        retention = self.options.pop("retention", "keep")
        if retention not in ("keep", "drop"):
            raise ValueError(f"URL option retention={retention!r} must be 'keep' or 'drop'")
        self.drop_unacknowledged = retention == "drop"
        if self.claim_idle <= 0:
            raise ValueError("URL option claim_idle must be > 0")
        self.instance = secrets.token_hex(8)
        self.store: LogStore | None = None
        self._watched: dict[str, int] = {}  # pattern -> local mailboxes on it
        self._consumers: dict[int, _Consumer] = {}  # id(mailbox) -> consumer
        self._responders: dict[str, Inbox] = {}  # pattern -> local responder mailbox
        self._replies: dict[str, asyncio.Future[Any]] = {}  # request id -> reply
        self._once: dict[int, asyncio.Future[Any]] = {}  # id(op) -> result of an idempotent pub
        self._change = asyncio.Event()
        self._tail_at = -1  # the last offset the tail has looked at (-1: not started)
        self._registered_upto = 0  # operations queued up to the last registration
        self._generation = 0
        self._opened = False

    @abc.abstractmethod
    def make_store(self, prefix: str) -> LogStore:
        """The store for tables named with ``prefix``."""

    def _ready(self) -> tuple[Sink, LogStore]:
        assert self.bus is not None, "the transport has not started"
        assert self.store is not None, "the transport has not started"
        return self.bus, self.store

    # -- connection ----------------------------------------------------------------------------

    async def start(self, bus: Sink) -> None:
        store = self.store = self.make_store(table_prefix(bus.name))
        store.origin = self.instance
        store.idempotency_window = self.idempotency_window
        self._change = asyncio.Event()  # bound to the running loop
        for consumer in self._consumers.values():  # subscribed before start
            self._register(consumer)
        await super().start(bus)

    async def connect(self) -> None:
        store = self.store
        assert store is not None
        await store.open()
        await store.heartbeat(self.instance, self.claim_idle)
        if self._tail_at < 0:
            self._tail_at = await store.head()  # plain subscribers see what comes from now on
        self._generation += 1
        gen = self._generation
        self.spawn(self._watch_changes(gen), "changes")
        self.spawn(self._housekeeping(gen), "housekeeping")
        self.spawn(self._collect_replies(gen), "replies")
        if self.receiving:
            self.spawn_reader(self._tail(gen), "tail")
            for consumer in self._consumers.values():
                self.spawn_reader(self._consume(consumer, gen), f"consume:{consumer.name}")
            self.spawn_reader(self._serve(gen), "respond")

    async def disconnect(self) -> None:
        self._generation += 1  # every loop of the old connection returns at its next turn
        current = asyncio.current_task()
        # loops of this connection; the writer and a reconnect in progress stay
        loops = {t for t in self._tasks if t is not current and t is not self._writer}
        loops = {t for t in loops if not t.get_name().endswith(":reconnect")}
        await self.stop_tasks(loops)
        if self.store is not None:
            await self.store.close()

    async def close(self) -> None:
        # requests must stop coming here now, not when the registrations expire
        for pattern in self._responders:
            self.send_control(("unrespond", self.instance, pattern))
        self._responders.clear()
        store = self.store
        if store is not None and self._up is not None and self.connected:
            durables = [c.mailbox for c in self._consumers.values() if c.durable]
            await self.record_interrupted(durables)
            try:
                await asyncio.wait_for(self.flush(), self.unavailable_timeout or None)
                # deliveries handed out and not acknowledged go to others now, not after
                # claim_idle
                await store.release(self.instance)
            except (TimeoutError, ConnectionLost, *self.connection_errors) as exc:  # type: ignore[misc]
                logger.warning("%s: could not release deliveries at close: %r", self, exc)
        await super().close()
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(f"{self.address}: the bus closed"))
        for fut in self._once.values():
            if not fut.done():
                fut.set_exception(ConnectionLost(f"{self.address}: the bus closed"))

    def _changed(self) -> None:
        """Wake every loop waiting for new rows."""
        change, self._change = self._change, asyncio.Event()
        change.set()

    async def _wait(self, change: asyncio.Event, timeout: float) -> None:
        """Wait for ``change`` (taken before the query that found nothing) or ``timeout``."""
        if change.is_set():
            return
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives together with the event, and the loop would never stop
        try:
            async with asyncio.timeout(timeout):
                await change.wait()
        except TimeoutError:
            pass

    async def _watch_changes(self, gen: int) -> None:
        store = self.store
        assert store is not None
        try:
            while gen == self._generation:
                if await store.wait_changed(IDLE_WAIT):
                    self._changed()
        except self.connection_errors as exc:
            self.lost(exc)

    async def _housekeeping(self, gen: int) -> None:
        """Heartbeat, responder registrations and retention passes."""
        store = self.store
        assert store is not None
        compact_at = time.monotonic() + min(self.compact_every, 5.0)
        try:
            while gen == self._generation:
                await asyncio.sleep(self.claim_idle / 3)
                await store.heartbeat(self.instance, self.claim_idle)
                expires = time.time() + self.claim_idle
                for pattern in self._responders:
                    self.send_control(("respond", self.instance, pattern, expires))
                if (self.max_age or self.max_events) and time.monotonic() >= compact_at:
                    compact_at = time.monotonic() + self.compact_every
                    await self.compact()
        except self.connection_errors as exc:
            self.lost(exc)

    async def compact(self) -> Compaction:
        """Apply the retention options now (they also apply every ``compact_every`` seconds)."""
        store = self.store
        assert store is not None
        done = await store.compact(self.max_age, self.max_events, self.drop_unacknowledged)
        if done.unacknowledged:
            logger.warning(
                "%s: retention dropped %d events that durable subscriptions %s had not "
                "acknowledged (retention=drop)",
                self,
                done.unacknowledged,
                ", ".join(done.consumers),
            )
        return done

    # -- outbound ------------------------------------------------------------------------------

    dedupes = True
    # a writer thread commits a batch while the loop encodes the next one: smaller batches
    # let the two overlap (one huge batch would leave the publishers waiting for room)
    max_batch = 1024

    def publish_op(self, env: Envelope, data: bytes) -> Any:
        headers = env.headers_or_none
        key = headers.get(IDEMPOTENCY_KEY) if headers else None
        return ("pub", env.topic, data, env.id, env.timestamp, key)

    async def publish_once(self, op: Any) -> str | None:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._once[id(op)] = fut
        try:
            await self.send(op)
            result = await fut
        finally:
            self._once.pop(id(op), None)
        return result if isinstance(result, str) else None

    async def write_batch(self, batch: list[Any]) -> None:
        store = self.store
        if store is None:
            raise ConnectionError("not connected")
        results = await store.write(batch, self.idempotency_window)
        wake = False
        for op, result in zip(batch, results, strict=True):
            kind = op[0]
            if kind == "pub":
                wake = True
                if op[5] is not None:
                    fut = self._once.get(id(op))
                    if fut is not None and not fut.done():
                        fut.set_result(result)
            elif kind in ("request", "reply", "register", "defer"):
                wake = True
                if kind == "defer" and op[3] > 0:
                    # a retry's backoff: visible by the clock, not by a write; look again then
                    # (else the consumer sleeps its whole idle wait, ~1 s, whatever the backoff)
                    asyncio.get_running_loop().call_later(op[3], self._changed)
        if wake:
            self._changed()

    def durable_topic(self, topic: str) -> bool:
        return any(c.durable and match(c.mailbox.pattern, topic) for c in self._consumers.values())

    # -- plain subscriptions: the tail ---------------------------------------------------------

    def watch(self, pattern: str) -> None:
        self._watched[pattern] = self._watched.get(pattern, 0) + 1

    def unwatch(self, pattern: str) -> None:
        count = self._watched.get(pattern, 0) - 1
        if count > 0:
            self._watched[pattern] = count
        else:
            self._watched.pop(pattern, None)

    async def _tail(self, gen: int) -> None:
        bus, store = self._ready()
        decode = bus.wire_codec.decode
        try:
            while self.receiving and gen == self._generation:
                change = self._change
                if not self._watched:
                    head = await store.head()
                    if self._watched:
                        # subscribed while head() ran: the head may already hold events
                        # published after that subscribe, so read on from the last skip
                        continue
                    self._tail_at = head  # nobody listens: skip what is there
                    await self._wait(change, IDLE_WAIT)
                    continue
                rows = await store.read(self._tail_at, FETCH)
                if not rows:
                    await self._wait(change, IDLE_WAIT)
                    continue
                for row in rows:
                    self._tail_at = row.offset
                    if row.origin == self.instance:
                        continue  # published here: delivered locally already
                    targets = [p for p in self._watched if match(p, row.topic)]
                    if not targets:
                        continue
                    try:
                        env = decode(row.data)
                    except DecodeError as exc:
                        logger.error(
                            "%s: undecodable event at offset %d: %s", self, row.offset, exc,
                            extra={"topic": row.topic},
                        )  # fmt: skip
                        continue
                    env.offset = row.offset
                    for pattern in targets:
                        await bus.receive(pattern, env)
        except self.connection_errors as exc:
            self.lost(exc)

    # -- groups and durables -------------------------------------------------------------------

    def bind(self, mailbox: Inbox, subscription: SubscriptionInfo) -> None:
        key = mailbox.key
        assert key is not None
        if key[0] == "respond":
            self._bind_responder(mailbox)
            return
        if key[0] == "durable":
            consumer = _Consumer(mailbox, f"durable:{key[1]}", durable=True)
            consumer.limit = prefetch_limit(mailbox, subscription)
        else:
            consumer = _Consumer(mailbox, f"group:{key[2]}:{mailbox.pattern}", durable=False)
        self._consumers[id(mailbox)] = consumer
        if self.bus is None:
            return  # not started: start() registers it
        self._register(consumer)
        if self.connected and self.receiving:
            self.spawn_reader(self._consume(consumer, self._generation), f"consume:{consumer.name}")

    def _register(self, consumer: _Consumer) -> None:
        # through the outbox, so this bus's next publish is appended after the consumer exists
        kind = "durable" if consumer.durable else "group"
        self.send_control(("register", consumer.name, kind, consumer.mailbox.pattern))
        self._registered_upto = self._queued

    def unbind(self, mailbox: Inbox) -> None:
        key = mailbox.key
        if key is not None and key[0] == "respond":
            if self._responders.pop(mailbox.pattern, None) is not None:
                self.send_control(("unrespond", self.instance, mailbox.pattern))
            return
        consumer = self._consumers.pop(id(mailbox), None)
        if consumer is not None:
            consumer.stopped = True  # the loop returns after its current claim

    async def _consume(self, consumer: _Consumer, gen: int) -> None:
        bus, store = self._ready()
        mb = consumer.mailbox
        pattern = mb.pattern

        def matches(topic: str) -> bool:
            return match(pattern, topic)

        # a durable also looks again after a while: deliveries of a dead process and deferred
        # retries become visible by the clock, not by a write
        idle = min(IDLE_WAIT, self.claim_idle / 3) if consumer.durable else IDLE_WAIT
        try:
            if self._written < self._registered_upto:
                await self.flush()  # the consumer row must exist before claiming
            while self.receiving and not consumer.stopped and gen == self._generation:
                change = self._change
                if consumer.durable:
                    # fetch what the workers can start soon, not what the mailbox could hold
                    if consumer.held > consumer.limit // 2:
                        consumer.room.clear()
                        await self._wait(consumer.room, IDLE_WAIT)
                        continue
                    room = max(1, min(FETCH, consumer.limit - consumer.held))
                else:
                    room = max(1, min(FETCH, mb.maxsize - len(mb.queue)))
                claimed = await store.claim(
                    consumer.name, matches, self.instance, room, durable=consumer.durable
                )
                if not claimed:
                    await self._wait(change, idle)
                    continue
                consumer.handing = len(claimed)
                for i, (offset, attempt, data, redelivered) in enumerate(claimed):
                    consumer.handing = len(claimed) - i
                    try:
                        env = bus.wire_codec.decode(data)
                    except DecodeError as exc:
                        logger.error(
                            "%s: undecodable event at offset %d for %s: %s",
                            self, offset, consumer.name, exc,
                            extra={"subscription": consumer.mailbox.name},
                        )  # fmt: skip
                        if consumer.durable:  # it never will decode: a dead letter, not a loop
                            self.send_control(
                                ("dead", consumer.name, offset, f"undecodable: {exc}")
                            )
                        continue
                    env.offset = offset
                    if consumer.durable:
                        env.tracker = self._inbound(consumer, offset, attempt, redelivered)
                        consumer.held += 1
                    put = await bus.put(mb, env)
                    consumer.handing = len(claimed) - i - 1
                    if not put or consumer.stopped:
                        if consumer.durable:  # not handled here: visible to others at once
                            for c in claimed[i + 1 :]:
                                self.send_control(("defer", consumer.name, c.offset, 0.0, 0))
                            if mb.closed:
                                self.send_control(("defer", consumer.name, offset, 0.0, 0))
                        return
        except self.connection_errors as exc:
            self.lost(exc)
        finally:
            consumer.handing = 0

    # -- dead letters: the $bus.dead_letter events of the log --------------------------------

    async def stored_dead_letters(self, limit: int) -> list[tuple[str, bytes]]:
        _, store = self._ready()
        await self.flush()  # dead letters this bus published are in the log
        return [(str(o), d) for o, d in await store.on_topic(self.DEAD_LETTER_TOPIC, limit)]

    async def drop_dead_letter(self, key: str) -> None:
        _, store = self._ready()
        await store.delete_event(int(key))

    async def catch_up(self) -> None:
        store = self.store
        durables = [c for c in self._consumers.values() if c.durable and not c.stopped]
        if store is None or not durables or not self.connected:
            return
        await self.flush()
        head = await store.head()
        for consumer in durables:
            while self.connected and not consumer.stopped:
                change = self._change
                position = await store.position(consumer.name)
                if (position is None or position >= head) and not consumer.handing:
                    break
                await self._wait(change, 0.05)

    def _inbound(
        self, consumer: _Consumer, offset: int, attempt: int, redelivered: bool
    ) -> Inbound:
        send = self.send_control
        name = consumer.name

        def ack() -> None:
            consumer.settled()
            send(("ack", name, offset))

        def defer(delay: float, next_attempt: int) -> None:
            consumer.settled()
            send(("defer", name, offset, delay, next_attempt))

        def dead(error: BaseException | None) -> None:
            consumer.settled()
            text = f"{type(error).__name__}: {error}" if error is not None else "failed"
            send(("dead", name, offset, text))

        def dropped() -> None:
            consumer.settled()
            send(("defer", name, offset, 0.0, 0))

        async def record(started: int) -> None:
            # committed before the handler runs: if it takes the process down, it is charged
            send(("attempt", name, offset, started + 1))
            await self.flush()

        return Inbound(attempt, ack, defer, dead, dropped, redelivered=redelivered, record=record)

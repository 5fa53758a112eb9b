"""``hub://NAME``: a transport written on the public contract only (``axonbus.transports``).

The buses opened on ``hub://NAME`` in one process meet at an in-memory broker, the hub: plain
subscribers see what the other buses publish, a group shares its events among its members on
every bus, a durable keeps its events while nobody consumes them, a request reaches one
responder anywhere, dead letters are kept until replayed. What it cannot promise: nothing
leaves the process or survives it. Run it: ``python examples/hub_transport.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import deque
from typing import Any

from axonbus import Bus, Envelope, NoResponders, RemoteError, match
from axonbus.transports import (
    BrokerTransport,
    Inbound,
    Inbox,
    Sink,
    SubscriptionInfo,
    register_transport,
)

Key = tuple[str, ...]  # a shared mailbox's key: ("durable", name), ("group", ...), ("respond", ...)
Item = tuple[bytes, int, bool]  # an encoded event, its attempt, whether it is a redelivery


class Queue:
    """The events of one group or durable, waiting for a member to take them."""

    def __init__(self, pattern: str, keeps: bool) -> None:
        self.pattern, self.keeps = pattern, keeps  # keeps: a durable holds events with no member
        self.items: deque[Item] = deque()
        self.ready, self.empty = asyncio.Event(), asyncio.Event()  # items came / all taken
        self.empty.set()

    def push(self, item: Item, *, front: bool = False) -> None:
        (self.items.appendleft if front else self.items.append)(item)
        self.ready.set()
        self.empty.clear()

    async def take(self) -> Item:
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        item = self.items.popleft()
        if not self.items:
            self.empty.set()
        return item


class Hub:
    """The broker: the buses attached to it, the shared queues and the dead letters."""

    def __init__(self) -> None:
        self.transports: set[HubTransport] = set()
        self.queues: dict[Key, Queue] = {}
        self.dead_letters: dict[str, bytes] = {}
        self.ids = itertools.count()

    def consumed(self, key: Key) -> bool:
        return any(key in t.bound for t in self.transports)

    async def publish(self, sender: HubTransport, topic: str, data: bytes) -> None:
        if topic == sender.DEAD_LETTER_TOPIC:
            self.dead_letters[str(next(self.ids))] = data
        for key, queue in self.queues.items():
            if match(queue.pattern, topic) and (queue.keeps or self.consumed(key)):
                queue.push((data, 1, False))
        for other in list(self.transports - {sender}):  # the sender dispatched locally
            await other.deliver(topic, data)


HUBS: dict[str, Hub] = {}


@register_transport
class HubTransport(BrokerTransport):
    """``hub://NAME``: buses of one process, connected through an in-memory broker."""

    scheme = "hub"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.hub = HUBS.setdefault(self.address.removeprefix("hub://"), Hub())
        self.patterns: set[str] = set()  # patterns with local plain mailboxes or streams
        self.bound: dict[Key, Inbox] = {}  # the shared mailboxes this bus holds
        self.held: dict[Key, list[Item]] = {}  # handed to the bus and not settled yet
        self.readers: dict[Key, asyncio.Task[Any]] = {}

    async def start(self, bus: Sink) -> None:
        self.sink = bus
        self.receive = bus.receive  # bound once: called for every inbound event
        self.decode = bus.wire_codec.decode
        await super().start(bus)

    # -- what BrokerTransport calls: connect, write a batch of the outbox, disconnect ---------

    async def connect(self) -> None:
        self.hub.transports.add(self)
        for key in self.bound:
            self.start_reading(key)

    async def disconnect(self) -> None:
        self.hub.transports.discard(self)
        for key in self.bound:
            self.give_back(key)

    async def write_batch(self, batch: list[Any]) -> None:
        for _, topic, data in batch:  # ("pub", topic, data): BrokerTransport.publish_op
            await self.hub.publish(self, topic, data)

    # -- plain subscriptions and streams: events other buses publish -------------------------

    def watch(self, pattern: str) -> None:  # the first local mailbox on ``pattern`` came
        self.patterns.add(pattern)

    def unwatch(self, pattern: str) -> None:  # ... and the last one went
        self.patterns.discard(pattern)

    async def deliver(self, topic: str, data: bytes) -> None:
        for pattern in [p for p in self.patterns if match(p, topic)]:
            await self.receive(pattern, self.decode(data))

    # -- groups, durables and responders ------------------------------------------------------

    def bind(self, mailbox: Inbox, subscription: SubscriptionInfo) -> None:
        assert mailbox.key is not None  # the Bus binds shared mailboxes only
        self.bound[mailbox.key] = mailbox
        if mailbox.key[0] != "respond":  # requests go straight to a responder, unqueued
            keeps = mailbox.key[0] == "durable"
            self.hub.queues.setdefault(mailbox.key, Queue(mailbox.pattern, keeps))
            if self.connected:
                self.start_reading(mailbox.key)

    def start_reading(self, key: Key) -> None:
        if key[0] != "respond":
            self.readers[key] = self.spawn_reader(self.consume(key), "consume")

    def unbind(self, mailbox: Inbox) -> None:
        assert mailbox.key is not None
        reader = self.readers.pop(mailbox.key, None)
        if reader is not None:
            reader.cancel()
        self.give_back(mailbox.key)
        del self.bound[mailbox.key]
        queue = self.hub.queues.get(mailbox.key)
        if queue is not None and not queue.keeps and not self.hub.consumed(mailbox.key):
            del self.hub.queues[mailbox.key]

    def give_back(self, key: Key) -> None:
        """What this bus took and did not settle goes back to the front of the queue."""
        for data, attempt, _ in reversed(self.held.pop(key, [])):
            self.hub.queues[key].push((data, attempt, True), front=True)

    async def consume(self, key: Key) -> None:
        queue = self.hub.queues[key]
        while self.receiving:
            item = await queue.take()
            env = self.decode(item[0])
            env.tracker = self.tracker(key, item)
            self.held.setdefault(key, []).append(item)
            await self.sink.put(self.bound[key], env)

    def tracker(self, key: Key, item: Item) -> Inbound:
        def ack() -> None:  # handled, filtered out, or failed and dead-lettered by the Bus
            if item in self.held.get(key, []):
                self.held[key].remove(item)

        # no ``dropped``: what a full mailbox dropped stays held, and is given back at close
        return Inbound(item[1], ack, redelivered=item[2])

    async def catch_up(self) -> None:
        await self.flush()  # the hub has every publish of this bus; wait until handed over
        for key in [k for k in self.bound if k[0] == "durable"]:
            await self.hub.queues[key].empty.wait()

    # -- request/reply ------------------------------------------------------------------------

    async def request(self, env: Envelope, data: bytes, timeout: float | None) -> Any:
        bound = [(t, key, inbox) for t in self.hub.transports for key, inbox in t.bound.items()]
        found = [
            (t, key) for t, key, mb in bound if key[0] == "respond" and match(mb.pattern, env.topic)
        ]
        if not found:
            raise NoResponders(env.topic)
        responder, key = random.choice(found)
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        if timeout is not None:  # the sink's one timer fails the reply with RequestTimeout
            self.sink.deadlines.watch(reply, loop.time() + timeout, env.topic, timeout)
        try:
            await responder.answer(key, data, reply)
            return await reply
        finally:
            self.sink.deadlines.forget(reply)

    async def answer(self, key: Key, data: bytes, reply: asyncio.Future[Any]) -> None:
        """Hand a request to a local responder; its answer settles the requester's ``reply``."""
        env, codec = self.decode(data), self.sink.wire_codec
        env.reply = answered = asyncio.get_running_loop().create_future()

        def settle(done: asyncio.Future[Any]) -> None:
            if reply.done():
                return  # the requester gave up
            exc = asyncio.CancelledError() if done.cancelled() else done.exception()
            if isinstance(exc, RemoteError):
                reply.set_exception(RemoteError(exc.remote_type, exc.remote_message))
            elif exc is not None:
                reply.set_exception(RemoteError(type(exc).__name__, str(exc)))
            else:  # through the codec, as a reply from another process would come
                wire = codec.encode(Envelope(env.topic, done.result()))
                reply.set_result(codec.decode(wire).event)

        answered.add_done_callback(settle)
        if not await self.sink.put(self.bound[key], env) and not reply.done():
            reply.set_exception(NoResponders(env.topic))

    # -- dead letters -------------------------------------------------------------------------

    async def stored_dead_letters(self, limit: int) -> list[tuple[str, bytes]]:
        return list(self.hub.dead_letters.items())[:limit]

    async def drop_dead_letter(self, key: str) -> None:
        self.hub.dead_letters.pop(key, None)


async def main() -> list[str]:
    lines: list[str] = []
    async with Bus("hub://demo") as first, Bus("hub://demo") as second:
        second.subscribe("greetings.>", lambda event: lines.append(f"second got {event}"))
        second.respond("math.add", lambda req: req["a"] + req["b"])
        await first.publish("greetings.hello", "hello from first")
        lines.append(f"2 + 3 = {await first.request('math.add', {'a': 2, 'b': 3}, timeout=5)}")
        await second.drain()
    return lines


if __name__ == "__main__":
    print("\n".join(asyncio.run(main())))

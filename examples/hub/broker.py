"""The hub: a tiny broker for ``hub://`` buses, on a unix socket, speaking JSON lines.

Every line is a JSON array, ``[op, *args]``. A bus sends ``pub``, ``watch``/``unwatch`` (its
plain subscriptions), ``bind``/``unbind`` (its groups, durables and responders), ``ack``,
``request``/``answer``, ``letters``/``drop`` (dead letters) and ``sync``/``drained`` (wait until
the hub did everything before); the hub sends ``event``, ``item`` (a delivery to acknowledge),
``ask`` (a request for a responder) and ``reply``. Everything is kept in memory: nothing survives
the hub's process. Run it: ``python examples/hub/broker.py /tmp/hub.sock``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
from collections import deque
from typing import Any

from axonbus import match
from axonbus.transports import BrokerTransport

LIMIT = 1 << 24  # longest line: an event of up to 12 MB, base64-encoded
Item = tuple[int, str, int, bool]  # id, encoded event (base64), attempt, redelivered


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


class Client:
    """One bus, as the hub sees it: its patterns, responders, feeders and unsettled events."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer, self.patterns, self.responders = writer, set[str](), dict[str, str]()
        self.feeders: dict[str, asyncio.Task[None]] = {}
        self.held: dict[int, tuple[str, Item]] = {}  # handed to the bus, not acknowledged yet

    def send(self, *message: Any) -> None:
        self.writer.write(json.dumps(message).encode() + b"\n")


class Hub:
    """The broker: the buses connected to it, the shared queues and the dead letters."""

    def __init__(self) -> None:
        self.clients: dict[int, Client] = {}
        self.queues: dict[str, Queue] = {}
        self.dead_letters: dict[str, str] = {}
        self.ids = itertools.count()
        self.waiting: set[asyncio.Task[None]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cid, client = next(self.ids), Client(writer)
        self.clients[cid] = client
        try:
            async for line in reader:
                op, *args = json.loads(line)
                getattr(self, f"on_{op}")(cid, client, *args)
        finally:  # the bus closed or died: what it did not acknowledge goes to another
            del self.clients[cid]
            for key in list(client.feeders):
                self.on_unbind(cid, client, key)
            writer.close()

    def on_pub(self, cid: int, client: Client, topic: str, data: str) -> None:
        if topic == BrokerTransport.DEAD_LETTER_TOPIC:
            self.dead_letters[str(next(self.ids))] = data
        for key, queue in self.queues.items():
            if match(queue.pattern, topic) and (queue.keeps or self.consumed(key)):
                queue.push((next(self.ids), data, 1, False))
        for other in self.clients.values():  # the sender dispatched locally
            if other is not client and any(match(p, topic) for p in other.patterns):
                other.send("event", topic, data)

    def on_watch(self, cid: int, client: Client, pattern: str) -> None:
        client.patterns.add(pattern)

    def on_unwatch(self, cid: int, client: Client, pattern: str) -> None:
        client.patterns.discard(pattern)

    def on_bind(self, cid: int, client: Client, key: str, kind: str, pattern: str) -> None:
        if kind == "respond":
            client.responders[key] = pattern
        elif key not in client.feeders:
            self.queues.setdefault(key, Queue(pattern, keeps=kind == "durable"))
            client.feeders[key] = asyncio.create_task(self.feed(client, key))

    def on_unbind(self, cid: int, client: Client, key: str) -> None:
        client.responders.pop(key, None)
        feeder = client.feeders.pop(key, None)
        if feeder is None:
            return
        feeder.cancel()
        queue = self.queues[key]
        for item_id, (held_key, item) in reversed(list(client.held.items())):
            if held_key == key:  # back to the front of the queue, marked as redelivered
                del client.held[item_id]
                queue.push((*item[:3], True), front=True)
        if not queue.keeps and not self.consumed(key):
            del self.queues[key]

    def consumed(self, key: str) -> bool:
        return any(key in client.feeders for client in self.clients.values())

    async def feed(self, client: Client, key: str) -> None:
        while True:  # no await between taking an item and writing it: nothing is in between
            item = await self.queues[key].take()
            client.held[item[0]] = (key, item)
            client.send("item", key, *item)

    def on_ack(self, cid: int, client: Client, item_id: int) -> None:
        client.held.pop(item_id, None)

    def on_sync(self, cid: int, client: Client, rid: int) -> None:
        client.send("reply", rid, None)  # after everything this bus sent before

    def on_drained(self, cid: int, client: Client, rid: int, keys: list[str]) -> None:
        async def drained() -> None:  # the items are written before the reply
            for key in keys:
                await self.queues[key].empty.wait()
            client.send("reply", rid, None)

        self.waiting.add(task := asyncio.create_task(drained()))  # kept until it is done
        task.add_done_callback(self.waiting.discard)

    def on_request(self, cid: int, client: Client, rid: int, topic: str, data: str) -> None:
        found = [
            (other, key)
            for other in self.clients.values()
            for key, pattern in other.responders.items()
            if match(pattern, topic)
        ]
        if not found:
            return client.send("reply", rid, {"none": True})
        responder, key = random.choice(found)
        responder.send("ask", cid, rid, key, data)

    def on_answer(self, cid: int, client: Client, to: int, rid: int, outcome: Any) -> None:
        if to in self.clients:  # else the requester is gone
            self.clients[to].send("reply", rid, outcome)

    def on_letters(self, cid: int, client: Client, rid: int, limit: int) -> None:
        client.send("reply", rid, list(self.dead_letters.items())[:limit])

    def on_drop(self, cid: int, client: Client, rid: int, key: str) -> None:
        self.dead_letters.pop(key, None)
        client.send("reply", rid, None)


async def serve(path: str) -> asyncio.Server:
    """Start a hub on the unix socket ``path`` in this process."""
    return await asyncio.start_unix_server(Hub().serve, path, limit=LIMIT)


async def main(path: str) -> None:
    server = await serve(path)
    print(f"hub listening on {path}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

"""``hub:///path/to/hub.sock``: a transport written on the public contract only.

Buses in any number of processes meet at a hub (``examples/hub/broker.py``), a tiny broker on a
unix socket: plain subscribers get what other buses publish, a group shares its events among
its members on every bus, a durable keeps its events while nobody consumes them, a request
reaches one responder anywhere, dead letters are kept until replayed. What it cannot promise:
the hub keeps everything in memory, so nothing survives the hub's process.
Run it: ``python examples/hub_transport.py`` starts a hub in a process of its own and two buses.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import tempfile
from base64 import b64decode, b64encode
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from axonbus import Bus, ConnectionLost, Envelope, NoResponders, RemoteError, match
from axonbus.transports import (
    BrokerTransport,
    Inbound,
    Inbox,
    Sink,
    SubscriptionInfo,
    register_transport,
)

LIMIT = 1 << 24  # longest line the hub sends: an event of up to 12 MB, base64-encoded


@register_transport
class HubTransport(BrokerTransport):
    """``hub:///path/to/hub.sock``: buses of any process, connected through a hub."""

    scheme = "hub"
    connection_errors = (ConnectionError, OSError, ConnectionLost)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.path = urlsplit(url).path
        self.patterns: set[str] = set()  # patterns with local plain mailboxes or streams
        self.bound: dict[str, Inbox] = {}  # the shared mailboxes this bus holds, by key
        self.fed: dict[str, asyncio.Queue[list[Any]]] = {}  # what the hub sent them
        self.replies: dict[int, asyncio.Future[Any]] = {}
        self.rids, self.tasks = itertools.count(), dict[str, asyncio.Task[Any]]()  # by key
        self.writer: asyncio.StreamWriter | None = None

    async def start(self, bus: Sink) -> None:
        self.sink, self.decode = bus, bus.wire_codec.decode  # bound once: used for every event
        await super().start(bus)

    # -- what BrokerTransport calls: connect, write a batch of the outbox, disconnect ---------

    async def connect(self) -> None:
        reader, self.writer = await asyncio.open_unix_connection(self.path, limit=LIMIT)
        self.tasks["read"] = self.spawn(self.read(reader), "read")
        for pattern in self.patterns:  # (again, after an outage)
            self.put("watch", pattern)
        for key, inbox in self.bound.items():
            self.put("bind", key, inbox.key[0], inbox.pattern)  # type: ignore[index]
            self.feed(key)

    async def write_batch(self, batch: list[Any]) -> None:
        for op in batch:
            self.put(*op)
        await self.call("sync")  # the hub has done everything in this batch

    async def disconnect(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()
        for reply in self.replies.values():
            if not reply.done():
                reply.set_exception(ConnectionLost(f"{self.address}: disconnected"))

    def publish_op(self, env: Envelope, data: bytes) -> Any:
        return ("pub", env.topic, b64encode(data).decode())

    def put(self, *message: Any) -> None:
        if self.writer is None:
            raise ConnectionLost(f"{self.address}: not connected")
        self.writer.write(json.dumps(message).encode() + b"\n")

    async def call(self, op: str, *args: Any, timeout: float | None = None, topic: str = "") -> Any:
        """Send ``op`` and wait for the hub's reply to it (a request waits ``timeout`` at most)."""
        loop, rid = asyncio.get_running_loop(), next(self.rids)
        reply = self.replies[rid] = loop.create_future()
        if timeout is not None:  # the sink's one timer fails the reply with RequestTimeout
            self.sink.deadlines.watch(reply, loop.time() + timeout, topic, timeout)
        try:
            self.put(op, rid, *args)
            return await reply
        finally:
            self.sink.deadlines.forget(reply)
            self.replies.pop(rid, None)

    async def read(self, reader: asyncio.StreamReader) -> None:
        try:
            async for line in reader:
                op, *args = json.loads(line)
                if op == "event":
                    for pattern in [p for p in self.patterns if match(p, args[0])]:
                        await self.sink.receive(pattern, self.decode(b64decode(args[1])))
                elif op == "item" and args[0] in self.fed:
                    self.fed[args[0]].put_nowait(args[1:])
                elif op == "ask":
                    self.spawn(self.answer(*args), "answer")
                elif op == "reply" and args[0] in self.replies and not self.replies[args[0]].done():
                    self.replies[args[0]].set_result(args[1])
            raise ConnectionResetError("the hub closed the connection")
        except (OSError, ValueError) as exc:  # the hub went away, or sent what is not JSON
            self.lost(exc)  # one task of the base class disconnects and connects again

    # -- plain subscriptions and streams: events other buses publish -------------------------

    def watch(self, pattern: str) -> None:  # the first local mailbox on ``pattern`` came
        self.patterns.add(pattern)
        self.send_control(("watch", pattern))

    def unwatch(self, pattern: str) -> None:  # ... and the last one went
        self.patterns.discard(pattern)
        self.send_control(("unwatch", pattern))

    # -- groups, durables and responders ------------------------------------------------------

    def bind(self, mailbox: Inbox, subscription: SubscriptionInfo) -> None:
        key = json.dumps(mailbox.key)  # ("durable", name), ("group", ...) or ("respond", ...)
        self.bound[key] = mailbox
        self.send_control(("bind", key, mailbox.key[0], mailbox.pattern))  # type: ignore[index]
        if self.connected:
            self.feed(key)

    def unbind(self, mailbox: Inbox) -> None:
        key = json.dumps(mailbox.key)
        del self.bound[key]
        self.fed.pop(key, None)
        if key in self.tasks:
            self.tasks.pop(key).cancel()
        self.send_control(("unbind", key))  # the hub takes back what was not acknowledged

    def feed(self, key: str) -> None:
        if json.loads(key)[0] != "respond":  # requests come as ``ask``, not queued
            self.fed[key] = asyncio.Queue()
            self.tasks[key] = self.spawn_reader(self.consume(key, self.fed[key]), "consume")

    async def consume(self, key: str, fed: asyncio.Queue[list[Any]]) -> None:
        while self.receiving:
            item_id, data, attempt, redelivered = await fed.get()
            env = self.decode(b64decode(data))
            # handled, filtered out, or failed and dead-lettered: the Bus acknowledges it; what
            # a full mailbox dropped stays unacknowledged, and the hub takes it back at close
            ack = lambda item_id=item_id: self.send_control(("ack", item_id))  # noqa: E731
            env.tracker = Inbound(attempt, ack, redelivered=redelivered)
            await self.sink.put(self.bound[key], env)
            fed.task_done()

    async def catch_up(self) -> None:
        await self.flush()  # the hub has every publish of this bus; wait until handed over
        keys = [k for k in self.fed if json.loads(k)[0] == "durable"]
        await self.call("drained", keys)
        for key in keys:
            await self.fed[key].join()

    # -- request/reply ------------------------------------------------------------------------

    async def request(self, env: Envelope, data: bytes, timeout: float | None) -> Any:
        await self.flush()  # the hub knows this bus's responders, and its publishes went first
        encoded = b64encode(data).decode()
        outcome = await self.call("request", env.topic, encoded, timeout=timeout, topic=env.topic)
        if "error" in outcome:
            raise RemoteError(*outcome["error"])
        if "none" in outcome:
            raise NoResponders(env.topic)
        return self.decode(b64decode(outcome["ok"])).event

    async def answer(self, requester: int, rid: int, key: str, data: str) -> None:
        """Hand a request to a local responder, and its answer back to the hub."""
        env, inbox = self.decode(b64decode(data)), self.bound.get(key)
        env.reply = answered = asyncio.get_running_loop().create_future()
        outcome: dict[str, Any] = {"none": True}
        if inbox is not None and await self.sink.put(inbox, env):
            await asyncio.wait([answered])  # a handler cancelled at close answers too
            exc = asyncio.CancelledError() if answered.cancelled() else answered.exception()
            if isinstance(exc, RemoteError):
                outcome = {"error": [exc.remote_type, exc.remote_message]}
            elif exc is not None:
                outcome = {"error": [type(exc).__name__, str(exc)]}
            else:
                wire = self.sink.wire_codec.encode(Envelope(env.topic, answered.result()))
                outcome = {"ok": b64encode(wire).decode()}
        self.put("answer", requester, rid, outcome)

    # -- dead letters -------------------------------------------------------------------------

    async def stored_dead_letters(self, limit: int) -> list[tuple[str, bytes]]:
        return [(key, b64decode(data)) for key, data in await self.call("letters", limit)]

    async def drop_dead_letter(self, key: str) -> None:
        await self.call("drop", key)


async def main() -> list[str]:
    lines: list[str] = []
    hub = Path(__file__).parent / "hub" / "broker.py"
    with tempfile.TemporaryDirectory() as folder:
        path, out = f"{folder}/hub.sock", asyncio.subprocess.PIPE
        broker = await asyncio.create_subprocess_exec(sys.executable, hub, path, stdout=out)
        try:
            assert broker.stdout is not None
            await broker.stdout.readline()  # "hub listening on ...": the hub is up
            async with Bus(f"hub://{path}") as first, Bus(f"hub://{path}") as second:
                second.subscribe("greetings.>", lambda event: lines.append(f"second got {event}"))
                second.respond("math.add", lambda req: req["a"] + req["b"])
                await second.flush()  # the hub knows of the subscription and the responder
                await first.publish("greetings.hello", "hello from first")
                total = await first.request("math.add", {"a": 2, "b": 3}, timeout=5)
                lines.append(f"2 + 3 = {total}")  # the hub sent second the greeting before
                await second.drain()
        finally:
            broker.terminate()
            await broker.wait()
    return lines


if __name__ == "__main__":
    print("\n".join(asyncio.run(main())))

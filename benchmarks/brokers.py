"""axonbus over Redis and NATS against the raw clients, end to end, in one process and one run.

    python -m benchmarks.brokers            # full run, under 3 minutes on 2 cores
    python -m benchmarks.brokers --quick    # smoke run, under 20 s (the test suite runs it)
    python -m benchmarks.brokers --only redis,redis-durable --json artifacts/brokers.json

Every workload is end to end: one publisher sends N events, one subscriber on a separate
connection (same process, same event loop) receives all of them, and the rate is N divided by
the time from the first publish until the last event was received (for the durable workloads:
handled and acknowledged). Every event carries ``{"n": i}``; the raw anchors encode it with
orjson per event and decode it on receipt, axonbus sends its JSON envelope.

- ``redis``: plain pub/sub. axonbus ``publish`` on one bus, ``subscribe`` on another, against
  raw redis-py: a pipeline of ``PUBLISH`` per batch of ``BATCH`` events (the size of axonbus's
  outbox, which is what its writer sends as one pipeline when the publisher does not yield),
  and a subscriber task reading ``pubsub.listen()``. axonbus sends the events of one batch that
  share a topic as one pub/sub message; the anchor sends one message per event, as redis-py
  does. For context: redis-py with one ``await publish`` per event, and FastStream's
  ``RedisBroker``.
- ``redis-durable``: ``subscribe(durable=...)`` against raw streams: pipelined ``XADD`` batches
  (``MAXLEN ~``, as axonbus trims), a consumer reading ``XREADGROUP COUNT 256`` and sending the
  batch's ``XACK`` in the same pipeline as its next read.
- ``redis-rpc``: sequential ``await bus.request`` to a responder on another bus, against raw
  redis-py doing the same design by hand: ``LPUSH`` the request, a responder ``BRPOP``\\s and
  ``PUBLISH``\\es the reply on the requester's channel.
- ``nats``: plain subscriptions against raw nats-py: a ``publish`` loop and a subscriber
  callback; FastStream's ``NatsBroker`` for context.
- ``nats-durable``: ``subscribe(durable=...)`` (JetStream) against raw nats-py JetStream:
  ``publish_async`` with the acks awaited per batch, a pull consumer ``fetch``\\ing batches and
  acknowledging each message.
- ``nats-rpc``: sequential ``await bus.request`` against ``await nc.request``.
- ``rt-nats-send``: the actor runtime across processes: sequential ``await
  client.send_message(Ask(i), AgentId("echo", "default"))`` from a runtime that hosts no agents
  to an agent on a worker runtime (its own bus and connection; same process), against ``await
  nc.request``; ``Bus.request`` on the same buses for context. The agent is created, and the
  client knows where it lives, before the timed part.

Each workload runs every implementation once on a few events (warm-up: connections, scripts,
JIT-free caches), then ``rounds`` interleaved rounds in alternating order (A B C, C B A, ...),
each trial in a fresh event loop. Reported: the median rate of each row and the ratio of
medians to the workload's anchor; the rate of every round is shown too. The machine is shared
and noisy, so only ratios from the same run mean anything.

Services: Redis at ``AXONBUS_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), NATS
with JetStream at ``AXONBUS_BENCH_NATS_URL`` (default ``nats://127.0.0.1:4222``). Every key,
stream, JetStream stream and bus name is unique to the run and removed after each trial.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from ._harness import (
    AXONBUS,
    RUN_PREFIX,
    Countdown,
    Entry,
    Lap,
    Medians,
    Printer,
    Row,
    Target,
    Workload,
    begin,
    bus_pair,
    check_reply,
    conclude,
    environment,
    need,
    one_way,
    payloads,
    probe,
    report,
    require,
    rounds_cli,
    run_fresh,
    run_workloads,
    stopwatch,
    unique,
    workload_results,
)

TOPIC = "bench.tick"
RPC_TOPIC = "bench.rpc"
MAILBOX = 10_000  # axonbus's default maxsize
BATCH = 10_000  # raw pipelines: axonbus's default outbox, i.e. the batch its writer sends
FETCH = 256  # raw stream / JetStream consumers: entries per read (axonbus reads 256)
MAXLEN = 100_000  # raw XADD trimming: axonbus's default maxlen
JS_WINDOW = 1_000  # raw JetStream publish_async: acks awaited every this many publishes
RPC_TIMEOUT = 2.0
STOP = b"stop"  # sentinel that ends a raw anchor's reader task


def redis_url() -> str:
    return os.environ.get("AXONBUS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def nats_url() -> str:
    return os.environ.get("AXONBUS_BENCH_NATS_URL", "nats://127.0.0.1:4222")


# -- services ------------------------------------------------------------------------------------


async def _finish(*tasks: asyncio.Task[Any] | None, grace: float = 2.0) -> None:
    """Wait up to ``grace`` seconds for ``tasks`` to return by themselves, then cancel them.

    The readers of the raw anchors stop on their own (a count reached, a sentinel message):
    redis-py can leave a task stuck for good when it is cancelled inside a blocking read.
    """
    live = [t for t in tasks if t is not None]
    if not live:
        return
    _, pending = await asyncio.wait(live, timeout=grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)


@contextlib.asynccontextmanager
async def redis_client(**kwargs: Any) -> AsyncIterator[Any]:
    need(redis_url())
    aioredis = require("redis.asyncio")
    client = aioredis.Redis.from_url(redis_url(), **kwargs)
    try:
        yield client
    finally:
        await client.aclose()


async def redis_cleanup(name: str, pattern: str = "{name}:*") -> None:
    """Delete this trial's keys: axonbus's ``{bus}:...`` and the raw anchors' ``{name}:...``."""
    async with redis_client() as r:
        keys = [k async for k in r.scan_iter(match=pattern.format(name=name), count=1000)]
        if keys:
            await r.delete(*keys)


@contextlib.asynccontextmanager
async def nats_client() -> AsyncIterator[Any]:
    need(nats_url())
    nats = require("nats")
    nc = await nats.connect(nats_url(), max_reconnect_attempts=0, connect_timeout=2)
    try:
        yield nc
    finally:
        await nc.close()


async def nats_subscribed(nc: Any) -> None:
    """Return once the server holds the subscriptions ``nc`` made so far.

    One ``nc.flush()`` does not promise that: nats-py writes its PING to the socket at once but
    leaves a SUB queued for its flusher task, so the PONG can answer before the server has read
    the SUB (seen on a loaded machine: ``NoRespondersError`` on the first request). The second
    PING goes out after everything the first flush pushed, the SUB included.
    """
    await nc.flush()
    await nc.flush()


async def nats_first_request(nc: Any, subject: str, data: bytes, timeout: float = 10.0) -> Any:
    """The first request, asked again while the server answers "no responders" (the responder
    is on another connection: only its answer proves the subscription is in place)."""
    errors = require("nats.errors")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await nc.request(subject, data, timeout=RPC_TIMEOUT)
        except errors.NoRespondersError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.01)


async def nats_cleanup(name: str, prefix: bool = False) -> None:
    """Delete this trial's JetStream streams (axonbus's ``AXONBUS_{bus}``, the raw anchor's
    ``{name}``); with ``prefix``, every stream whose name contains ``name`` at a word start."""
    async with nats_client() as nc:
        js = nc.jetstream()
        for stream in await js.streams_info():
            found = stream.config.name
            mine = found in (name, f"AXONBUS_{name}")
            if mine or (prefix and (found.startswith(name) or f"_{name}" in found)):
                with contextlib.suppress(Exception):
                    await js.delete_stream(found)


def final_cleanup() -> None:
    """Whatever a failed trial left behind: every key and stream named after this run."""
    name = RUN_PREFIX
    if probe(redis_url()) is None:
        with contextlib.suppress(Exception):
            run_fresh(partial(redis_cleanup, name, "*{name}*"), 30)
    if probe(nats_url()) is None:
        with contextlib.suppress(Exception):
            run_fresh(partial(nats_cleanup, name, prefix=True), 30)


# -- redis: plain pub/sub --------------------------------------------------------------------------


async def _axonbus_one_way(
    url: str, cleanup: Callable[[str], Any], kind: str, n: int, durable: str | None = None
) -> Lap:
    """``await pub.publish(TOPIC, {"n": i})`` on one bus, a no-op subscriber on another; until
    every event was handled (durable: and its acknowledgement is on the server)."""
    need(url)
    name = unique(kind)
    try:
        return await one_way(url, name, TOPIC, n, durable=durable, maxsize=MAILBOX)
    finally:
        await cleanup(name)


async def redis_plain_axonbus(n: int) -> Lap:
    """``publish`` / plain ``subscribe`` over redis:// (pub/sub)."""
    return await _axonbus_one_way(redis_url(), redis_cleanup, "rp", n)


async def _redis_subscriber(client: Any, channel: str, cd: Countdown) -> asyncio.Task[None]:
    """A task reading ``channel`` with ``listen()`` and counting every decoded message."""
    orjson = require("orjson")
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    while (await pubsub.get_message(timeout=1.0) or {}).get("type") != "subscribe":
        pass
    loads = orjson.loads
    hit = cd.hit

    async def read() -> None:
        # listen(): blocking reads, the cheapest way through redis-py (get_message(timeout=...)
        # costs about 7 us more per message). Returns by itself after the last message:
        # redis-py can leave a task hanging when it is cancelled inside a read.
        try:
            async for msg in pubsub.listen():
                if msg["type"] == "message":
                    loads(msg["data"])
                    hit()
                    if cd.left == 0:
                        return
        finally:
            await pubsub.aclose()

    return asyncio.create_task(read())


async def redis_plain_raw(n: int, batch: int = BATCH) -> Lap:
    """redis-py: one pipeline of ``PUBLISH`` per ``batch`` events, each awaited."""
    orjson = require("orjson")
    channel = f"{unique('rr')}/{TOPIC}"
    cd = Countdown(n)
    events = payloads(n)
    async with redis_client() as pub, redis_client() as subc:
        reader = await _redis_subscriber(subc, channel, cd)
        dumps = orjson.dumps
        try:
            t0 = stopwatch()
            for start in range(0, n, batch):
                pipe = pub.pipeline(transaction=False)
                for ev in events[start : start + batch]:
                    pipe.publish(channel, dumps(ev))
                await pipe.execute()
            await cd.done
            lap = t0.stop()
        finally:
            await _finish(reader)
    cd.check()
    return lap


async def redis_plain_raw_await(n: int) -> Lap:
    """redis-py: ``await client.publish(...)`` per event (one round trip each)."""
    orjson = require("orjson")
    channel = f"{unique('ra')}/{TOPIC}"
    cd = Countdown(n)
    events = payloads(n)
    async with redis_client() as pub, redis_client() as subc:
        reader = await _redis_subscriber(subc, channel, cd)
        dumps = orjson.dumps
        publish = pub.publish
        try:
            t0 = stopwatch()
            for ev in events:
                await publish(channel, dumps(ev))
            await cd.done
            lap = t0.stop()
        finally:
            await _finish(reader)
    cd.check()
    return lap


async def _faststream_ready(broker: Any, destination: str, ready: asyncio.Event) -> None:
    """Publish ``{"n": -1}`` until the subscriber saw one: it subscribes from a task."""
    for _ in range(100):
        await broker.publish({"n": -1}, destination)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), 0.05)
            return
    raise TimeoutError(f"the FastStream subscriber on {destination} never got ready")


async def _faststream_one_way(broker_cls: Any, url: str, destination: str, n: int) -> Lap:
    """FastStream: ``await broker.publish(msg, destination)`` per event, a
    ``@subscriber(destination)`` on a second broker (logging off)."""
    cd = Countdown(n)
    events = payloads(n)
    sub_broker = broker_cls(url, logger=None)
    pub_broker = broker_cls(url, logger=None)
    hit = cd.hit

    ready = asyncio.Event()

    @sub_broker.subscriber(destination)  # type: ignore[untyped-decorator]
    async def on_tick(msg: dict[str, int]) -> None:
        if msg["n"] < 0:
            ready.set()
        else:
            hit()

    await sub_broker.start()
    await pub_broker.start()
    try:
        await _faststream_ready(pub_broker, destination, ready)
        publish = pub_broker.publish
        t0 = stopwatch()
        for ev in events:
            await publish(ev, destination)
        await cd.done
        lap = t0.stop()
    finally:
        await pub_broker.stop()
        await sub_broker.stop()
    cd.check()
    return lap


async def redis_plain_faststream(n: int) -> Lap:
    """FastStream ``RedisBroker`` on a pub/sub channel."""
    need(redis_url())
    fs = require("faststream.redis")
    return await _faststream_one_way(fs.RedisBroker, redis_url(), f"{unique('rf')}/{TOPIC}", n)


# -- redis: durable (streams) ----------------------------------------------------------------------


async def redis_durable_axonbus(n: int) -> Lap:
    """``subscribe(durable=...)`` over redis:// (a stream and its consumer group)."""
    return await _axonbus_one_way(redis_url(), redis_cleanup, "rd", n, durable="bench")


async def redis_durable_raw(n: int, batch: int = BATCH) -> Lap:
    """redis-py: pipelined ``XADD MAXLEN ~`` batches; a consumer pipelining the previous
    batch's ``XACK`` with its next ``XREADGROUP COUNT 256 BLOCK``."""
    orjson = require("orjson")
    name = unique("rs")
    stream = f"{name}:stream"
    cd = Countdown(n)
    events = payloads(n)
    try:
        async with redis_client() as pub, redis_client() as cons:
            await cons.xgroup_create(stream, "g", id="0", mkstream=True)
            loads = orjson.loads
            dumps = orjson.dumps
            hit = cd.hit

            async def consume() -> None:
                ids: list[bytes] = []
                while True:
                    pipe = cons.pipeline(transaction=False)
                    if ids:
                        pipe.xack(stream, "g", *ids)
                    if cd.left == 0:
                        await pipe.execute()
                        return
                    pipe.xreadgroup("g", "c", {stream: ">"}, count=FETCH, block=1000)
                    *_, reply = await pipe.execute()
                    ids = []
                    for entry_id, fields in reply[0][1] if reply else ():
                        loads(fields[b"d"])
                        hit()
                        ids.append(entry_id)

            consumer = asyncio.create_task(consume())
            try:
                t0 = stopwatch()
                for start in range(0, n, batch):
                    pipe = pub.pipeline(transaction=False)
                    for ev in events[start : start + batch]:
                        pipe.xadd(stream, {"d": dumps(ev)}, maxlen=MAXLEN, approximate=True)
                    await pipe.execute()
                await consumer  # every entry handled and acknowledged
                lap = t0.stop()
            finally:
                await _finish(consumer)
    finally:
        await redis_cleanup(name)
    cd.check()
    return lap


# -- redis: request/reply ------------------------------------------------------------------------


async def _rpc_axonbus(url: str, cleanup: Callable[[str], Any], n: int) -> Lap:
    name = unique("rpc")

    async def echo(payload: Any) -> Any:
        return payload

    try:
        async with bus_pair(url, name) as (server, client):
            server.respond(RPC_TOPIC, echo)
            await server.flush()  # the responder is registered
            request = client.request
            await request(RPC_TOPIC, {"n": -1}, timeout=RPC_TIMEOUT)
            t0 = stopwatch()
            for i in range(n):
                ev = {"n": i}
                check_reply(ev, await request(RPC_TOPIC, ev, timeout=RPC_TIMEOUT))
            lap = t0.stop()
    finally:
        await cleanup(name)
    return lap


async def redis_rpc_axonbus(n: int) -> Lap:
    """``await client.request(topic, {"n": i}, timeout=2)``, ``server.respond`` echoes."""
    need(redis_url())
    return await _rpc_axonbus(redis_url(), redis_cleanup, n)


async def redis_rpc_raw(n: int) -> Lap:
    """redis-py by hand: ``LPUSH`` the request (reply channel, id, payload); a responder task
    ``BRPOP``\\s it and ``PUBLISH``\\es the reply; a listener resolves the caller's future."""
    orjson = require("orjson")
    name = unique("rr")
    queue, channel = f"{name}:rpc", f"{name}:reply"
    dumps, loads = orjson.dumps, orjson.loads
    loop = asyncio.get_running_loop()
    waiting: dict[bytes, asyncio.Future[Any]] = {}
    try:
        async with (
            redis_client() as req,
            redis_client() as listen_conn,
            redis_client() as resp,
        ):
            pubsub = listen_conn.pubsub()
            await pubsub.subscribe(channel)
            while (await pubsub.get_message(timeout=1.0) or {}).get("type") != "subscribe":
                pass

            async def listen() -> None:
                async for msg in pubsub.listen():
                    if msg["type"] != "message":
                        continue
                    if msg["data"] == STOP:
                        return
                    rid, _, body = msg["data"].partition(b"\n")
                    fut = waiting.pop(rid, None)
                    if fut is not None:
                        fut.set_result(loads(body))

            async def serve() -> None:
                while True:
                    popped = await resp.brpop([queue], timeout=1)
                    if popped is not None:
                        if popped[1] == STOP:
                            return
                        reply_to, rid, body = popped[1].split(b"\n", 2)
                        await resp.publish(reply_to, rid + b"\n" + dumps(loads(body)))

            tasks = [asyncio.create_task(listen()), asyncio.create_task(serve())]
            head = channel.encode() + b"\n"
            try:
                t0 = stopwatch()
                for i in range(n):
                    ev = {"n": i}
                    rid = str(i).encode()
                    fut = waiting[rid] = loop.create_future()
                    await req.lpush(queue, head + rid + b"\n" + dumps(ev))
                    check_reply(ev, await asyncio.wait_for(fut, RPC_TIMEOUT))
                lap = t0.stop()
            finally:
                await req.lpush(queue, STOP)
                await req.publish(channel, STOP)
                await _finish(*tasks)
                await pubsub.aclose()
    finally:
        await redis_cleanup(name)
    return lap


# -- nats: plain ---------------------------------------------------------------------------------


async def nats_plain_axonbus(n: int) -> Lap:
    """``publish`` / plain ``subscribe`` over nats:// (core subjects)."""
    return await _axonbus_one_way(nats_url(), nats_cleanup, "np", n)


async def nats_plain_raw(n: int) -> Lap:
    """nats-py: ``await nc.publish(subject, data)`` loop; a subscriber callback decodes."""
    orjson = require("orjson")
    subject = f"{unique('nr')}.{TOPIC}"
    cd = Countdown(n)
    events = payloads(n)
    loads, dumps = orjson.loads, orjson.dumps
    hit = cd.hit

    async def on_msg(msg: Any) -> None:
        loads(msg.data)
        hit()

    async with nats_client() as pub, nats_client() as subc:
        await subc.subscribe(subject, cb=on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await nats_subscribed(subc)
        publish = pub.publish
        t0 = stopwatch()
        for ev in events:
            await publish(subject, dumps(ev))
        await pub.flush()
        await cd.done
        lap = t0.stop()
    cd.check()
    return lap


async def nats_plain_faststream(n: int) -> Lap:
    """FastStream ``NatsBroker`` on a core subject."""
    need(nats_url())
    fs = require("faststream.nats")
    return await _faststream_one_way(fs.NatsBroker, nats_url(), f"{unique('nf')}.{TOPIC}", n)


# -- nats: durable (JetStream) ------------------------------------------------------------------


async def nats_durable_axonbus(n: int) -> Lap:
    """``subscribe(durable=...)`` over nats:// (a JetStream durable consumer)."""
    return await _axonbus_one_way(nats_url(), nats_cleanup, "nd", n, durable="bench")


async def nats_durable_raw(n: int) -> Lap:
    """nats-py JetStream: ``publish_async`` with the PubAcks awaited every JS_WINDOW
    publishes; a durable pull consumer ``fetch``\\ing FETCH at a time, ``ack`` per message."""
    orjson = require("orjson")
    api = require("nats.js.api")
    errors = require("nats.errors")
    name = unique("nj")
    subject = f"{name}.{TOPIC}"
    cd = Countdown(n)
    events = payloads(n)
    loads, dumps = orjson.loads, orjson.dumps
    hit = cd.hit
    try:
        async with nats_client() as pub, nats_client() as cons:
            js_pub, js_cons = pub.jetstream(), cons.jetstream()
            await js_pub.add_stream(name=name, subjects=[f"{name}.>"])
            psub = await js_cons.pull_subscribe(
                subject,
                durable="bench",
                config=api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=-1),
            )

            async def consume() -> None:
                while cd.left > 0:
                    try:
                        msgs = await psub.fetch(FETCH, timeout=1.0)
                    except errors.TimeoutError:
                        continue
                    for msg in msgs:
                        loads(msg.data)
                        hit()
                        await msg.ack()
                await cons.flush()

            consumer = asyncio.create_task(consume())
            publish = js_pub.publish_async
            try:
                t0 = stopwatch()
                for start in range(0, n, JS_WINDOW):
                    acks = [
                        await publish(subject, dumps(ev))
                        for ev in events[start : start + JS_WINDOW]
                    ]
                    await asyncio.gather(*acks)
                await consumer
                lap = t0.stop()
            finally:
                await _finish(consumer)
    finally:
        await nats_cleanup(name)
    cd.check()
    return lap


# -- nats: request/reply -----------------------------------------------------------------------


async def nats_rpc_axonbus(n: int) -> Lap:
    """``await client.request(topic, {"n": i}, timeout=2)``, ``server.respond`` echoes."""
    need(nats_url())
    return await _rpc_axonbus(nats_url(), nats_cleanup, n)


async def nats_rpc_raw(n: int) -> Lap:
    """nats-py: ``await nc.request(subject, data, timeout=2)``; the responder's callback
    decodes the request and ``msg.respond``\\s with its encoding."""
    orjson = require("orjson")
    subject = f"{unique('nq')}.{RPC_TOPIC}"
    loads, dumps = orjson.loads, orjson.dumps

    async def echo(msg: Any) -> None:
        await msg.respond(dumps(loads(msg.data)))

    async with nats_client() as client, nats_client() as server:
        await server.subscribe(subject, cb=echo)
        await nats_subscribed(server)
        check_reply({"n": -1}, loads((await nats_first_request(client, subject, b'{"n":-1}')).data))
        request = client.request
        t0 = stopwatch()
        for i in range(n):
            ev = {"n": i}
            reply = await request(subject, dumps(ev), timeout=RPC_TIMEOUT)
            check_reply(ev, loads(reply.data))
        return t0.stop()


# -- nats: the actor runtime across processes ---------------------------------------------------


@cache
def _runtime_echo() -> tuple[Any, Any]:
    """The rt-nats-send message and agent: ``Ask(n)`` is answered with ``{"n": n}``, the reply
    of the raw anchor (a dataclass in, JSON out, like a typical tool call)."""
    rt: Any = require("axonbus.runtime")

    @dataclass
    class Ask:
        n: int

    class Echo(rt.RoutedAgent):  # type: ignore[misc]
        @rt.rpc  # type: ignore[untyped-decorator]
        async def answer(self, message: Ask, ctx: Any) -> dict[str, int]:
            return {"n": message.n}

    return Ask, Echo


async def _first_send(client: Any, message: Any, recipient: Any, timeout: float = 10.0) -> Any:
    """The first send, retried until the client has learned which worker hosts the agent."""
    ax, rt = require("axonbus"), require("axonbus.runtime")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await client.send_message(message, recipient, timeout=RPC_TIMEOUT)
        except (rt.AgentNotFound, rt.Undeliverable, ax.NoResponders):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def rt_nats_send_axonbus(n: int) -> Lap:
    """A worker ``AgentRuntime`` hosting ``Echo`` on one bus, a client runtime on another (same
    name, separate connections); sequential ``await client.send_message(Ask(i), echo)``."""
    need(nats_url())
    ax, rt = require("axonbus"), require("axonbus.runtime")
    ask, echo = _runtime_echo()
    name = unique("rt")
    try:
        async with ax.Bus(nats_url(), name=name) as wbus, ax.Bus(nats_url(), name=name) as cbus:
            worker = rt.AgentRuntime(wbus)
            await echo.register(worker, "echo", echo)
            client = rt.AgentRuntime(cbus)
            client.message_types.register(ask)  # it hosts no agent that would register it
            async with worker, client:
                recipient = rt.AgentId("echo", "default")
                check_reply({"n": -1}, await _first_send(client, ask(-1), recipient))
                send = client.send_message
                t0 = stopwatch()
                for i in range(n):
                    reply = await send(ask(i), recipient, timeout=RPC_TIMEOUT)
                    check_reply({"n": i}, reply)
                lap = t0.stop()
    finally:
        await nats_cleanup(name)
    return lap


# -- workloads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Sizes of one run: each trial takes about 0.3-1 s at the rates seen on this machine."""

    redis_n: int = 30_000
    durable_n: int = 30_000
    redis_rpc_n: int = 2_000
    nats_n: int = 100_000
    jetstream_n: int = 20_000
    nats_rpc_n: int = 3_000
    rt_nats_send_n: int = 3_000
    rounds: int = 5
    warmup: float = 0.05  # the warm-up trial runs this fraction of each row's N
    timeout: float = 60.0


FULL = Config()
QUICK = Config(
    redis_n=3_000,
    durable_n=3_000,
    redis_rpc_n=300,
    nats_n=10_000,
    jetstream_n=2_000,
    nats_rpc_n=300,
    rt_nats_send_n=300,
    rounds=2,
    warmup=0.1,
    timeout=15.0,
)

RAW_REDIS = "redis-py pipelined"
RAW_STREAMS = "redis-py streams pipelined"
RAW_REDIS_RPC = "redis-py LPUSH/BRPOP/PUBLISH"
RAW_NATS = "nats-py"
RAW_JS = "nats-py JetStream"
RAW_NATS_RPC = "nats-py request"
FASTSTREAM_REDIS = "FastStream Redis"
FASTSTREAM_NATS = "FastStream NATS"

WORKLOADS = [
    Workload(
        "redis",
        "redis: plain pub/sub, 1 publisher -> 1 subscriber",
        RAW_REDIS,
        [
            Entry(AXONBUS, redis_plain_axonbus, note="a topic's run = 1 pub/sub message"),
            Entry(RAW_REDIS, redis_plain_raw, note=f"PUBLISH pipelines of {BATCH:,}"),
            Entry("redis-py await publish", redis_plain_raw_await, 0.25, "one round trip each"),
            Entry(FASTSTREAM_REDIS, redis_plain_faststream, 0.1, "await broker.publish each"),
        ],
        lambda c: c.redis_n,
    ),
    Workload(
        "redis-durable",
        "redis-durable: durable subscription (streams), handled and acknowledged",
        RAW_STREAMS,
        [
            Entry(AXONBUS, redis_durable_axonbus, note="subscribe(durable=...)"),
            Entry(RAW_STREAMS, redis_durable_raw, note="XADD pipelines; XREADGROUP 256 + XACK"),
        ],
        lambda c: c.durable_n,
    ),
    Workload(
        "redis-rpc",
        "redis-rpc: sequential request/reply",
        RAW_REDIS_RPC,
        [
            Entry(AXONBUS, redis_rpc_axonbus, note="request / respond"),
            Entry(RAW_REDIS_RPC, redis_rpc_raw, note="the same design by hand"),
        ],
        lambda c: c.redis_rpc_n,
        unit="round trips/s",
    ),
    Workload(
        "nats",
        "nats: plain pub/sub, 1 publisher -> 1 subscriber",
        RAW_NATS,
        [
            Entry(AXONBUS, nats_plain_axonbus, note="publish(topic, dict) / subscribe"),
            Entry(RAW_NATS, nats_plain_raw, note="publish loop, subscriber callback"),
            Entry(FASTSTREAM_NATS, nats_plain_faststream, 0.1, "await broker.publish each"),
        ],
        lambda c: c.nats_n,
    ),
    Workload(
        "nats-durable",
        "nats-durable: durable subscription (JetStream), handled and acknowledged",
        RAW_JS,
        [
            Entry(AXONBUS, nats_durable_axonbus, note="subscribe(durable=...)"),
            Entry(RAW_JS, nats_durable_raw, note=f"publish_async, pull fetch {FETCH} + ack"),
        ],
        lambda c: c.jetstream_n,
    ),
    Workload(
        "nats-rpc",
        "nats-rpc: sequential request/reply",
        RAW_NATS_RPC,
        [
            Entry(AXONBUS, nats_rpc_axonbus, note="request / respond"),
            Entry(RAW_NATS_RPC, nats_rpc_raw, note="await nc.request"),
        ],
        lambda c: c.nats_rpc_n,
        unit="round trips/s",
    ),
    Workload(
        "rt-nats-send",
        "rt-nats-send: the actor runtime's send_message, client and worker runtimes over NATS",
        RAW_NATS_RPC,
        [
            Entry(AXONBUS, rt_nats_send_axonbus, note="AgentRuntime.send_message, 2 runtimes"),
            Entry(RAW_NATS_RPC, nats_rpc_raw, note="await nc.request"),
            Entry("axonbus Bus.request", nats_rpc_axonbus, note="request / respond, for context"),
        ],
        lambda c: c.rt_nats_send_n,
        unit="round trips/s",
    ),
]

WORKLOAD_KEYS = tuple(w.key for w in WORKLOADS)


# -- targets and the run ---------------------------------------------------------------------------


def targets(results: dict[str, list[Row]]) -> list[Target]:
    med = Medians(results)
    return [
        med.at_least("redis plain / raw redis-py pipelined", "redis", RAW_REDIS, 0.8),
        med.at_least("redis plain / FastStream Redis", "redis", FASTSTREAM_REDIS, 5),
        med.at_least("redis durable / raw XADD+XREADGROUP+XACK", "redis-durable", RAW_STREAMS, 0.7),
        med.at_least("nats plain / raw nats-py", "nats", RAW_NATS, 0.5),
        med.at_least("nats durable / raw nats-py JetStream", "nats-durable", RAW_JS, 0.7),
        med.at_least("nats request / raw nats-py request", "nats-rpc", RAW_NATS_RPC, 0.7),
        med.at_least(
            "runtime send over NATS / raw nats-py request", "rt-nats-send", RAW_NATS_RPC, 0.5
        ),
    ]


VERSIONS = ("axonbus", "pydantic", "orjson", "redis", "hiredis", "nats-py", "faststream")


def run(cfg: Config, printer: Printer, only: set[str] | None = None) -> dict[str, Any]:
    env = environment(VERSIONS)
    env["redis_url"], env["nats_url"] = redis_url(), nats_url()
    started = begin(
        printer,
        "axonbus broker benchmarks",
        env,
        services=f"{redis_url()} {nats_url()}",
        preload=("axonbus", "redis.asyncio", "nats", "orjson", "faststream"),
    )
    results = run_workloads(WORKLOADS, cfg, printer, only)
    final_cleanup()
    goals = targets(results)
    elapsed = conclude(printer, "targets (ratios of medians within this run)", goals, started)
    return report(env, cfg, elapsed, goals, workloads=workload_results(WORKLOADS, results))


def main(argv: Sequence[str] | None = None) -> int:
    return rounds_cli(
        argv,
        prog="python -m benchmarks.brokers",
        description=__doc__,
        workloads=WORKLOAD_KEYS,
        full=FULL,
        quick=QUICK,
        run=run,
    )


if __name__ == "__main__":
    sys.exit(main())

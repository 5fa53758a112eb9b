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

import argparse
import asyncio
import contextlib
import gc
import itertools
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

from ._harness import (
    Countdown,
    Entry,
    Lap,
    Printer,
    Row,
    Skip,
    Target,
    environment,
    fmt_rate,
    fmt_ratio,
    ratio,
    require,
    run_and_report,
    run_fresh,
    selected,
    stopwatch,
    verdict,
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

RUN = secrets.token_hex(3)  # in every name this run creates
_names = itertools.count(1)


def unique(kind: str) -> str:
    """A fresh name for one trial's keys, streams and buses (letters and digits only: a NATS
    token, a Redis key prefix and a JetStream stream name alike)."""
    return f"axbench{RUN}{kind}{next(_names)}"


def redis_url() -> str:
    return os.environ.get("AXONBUS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def nats_url() -> str:
    return os.environ.get("AXONBUS_BENCH_NATS_URL", "nats://127.0.0.1:4222")


def payloads(n: int) -> list[dict[str, int]]:
    return [{"n": i} for i in range(n)]


# -- services ------------------------------------------------------------------------------------

_probed: dict[str, str | None] = {}


def probe(url: str) -> str | None:
    """None if something accepts TCP connections at ``url``, else why not (cached per run)."""
    if url not in _probed:
        parts = urlsplit(url)
        port = parts.port or (6379 if parts.scheme.startswith("redis") else 4222)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=1.0):
                _probed[url] = None
        except OSError as exc:
            _probed[url] = f"{type(exc).__name__}: {exc}"
    return _probed[url]


def need(url: str) -> None:
    problem = probe(url)
    if problem is not None:
        raise Skip(f"no service at {url} ({problem})")


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
    name = f"axbench{RUN}"
    if probe(redis_url()) is None:
        with contextlib.suppress(Exception):
            run_fresh(partial(redis_cleanup, name, "*{name}*"), 30)
    if probe(nats_url()) is None:
        with contextlib.suppress(Exception):
            run_fresh(partial(nats_cleanup, name, prefix=True), 30)


@contextlib.asynccontextmanager
async def bus_pair(url: str, name: str) -> AsyncIterator[tuple[Any, Any]]:
    """A subscriber bus and a publisher bus, started, on separate connections."""
    ax = require("axonbus")
    async with ax.Bus(url, name=name) as sub, ax.Bus(url, name=name) as pub:
        yield sub, pub


# -- redis: plain pub/sub --------------------------------------------------------------------------


async def _axonbus_one_way(
    url: str, cleanup: Callable[[str], Any], kind: str, n: int, durable: str | None = None
) -> Lap:
    """``await pub.publish(TOPIC, {"n": i})`` on one bus, a no-op subscriber on another; until
    every event was handled (durable: and its acknowledgement is on the server)."""
    need(url)
    name = unique(kind)
    cd = Countdown(n)
    events = payloads(n)
    try:
        async with bus_pair(url, name) as (sub, pub):
            sub.subscribe(TOPIC, cd.handler(), durable=durable, maxsize=MAILBOX)
            await sub.flush()  # the subscription (stream, group, binding) is on the server
            await pub.flush()
            publish = pub.publish
            t0 = stopwatch()
            for ev in events:
                await publish(TOPIC, ev)
            await cd.done
            if durable is not None:
                await sub.flush()  # the acknowledgements are on the server
            lap = t0.stop()
    finally:
        await cleanup(name)
    cd.check()
    return lap


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


def _check_reply(request: Any, reply: Any) -> None:
    if reply != request:
        raise AssertionError(f"reply {reply!r} to request {request!r}")


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
                _check_reply(ev, await request(RPC_TOPIC, ev, timeout=RPC_TIMEOUT))
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
                    _check_reply(ev, await asyncio.wait_for(fut, RPC_TIMEOUT))
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
        await subc.flush()
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
        await server.flush()
        request = client.request
        t0 = stopwatch()
        for i in range(n):
            ev = {"n": i}
            reply = await request(subject, dumps(ev), timeout=RPC_TIMEOUT)
            _check_reply(ev, loads(reply.data))
        return t0.stop()


# -- workloads -------------------------------------------------------------------------------------

AXONBUS = "axonbus"


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    anchor: str  # the row axonbus is compared with
    entries: list[Entry]
    n: Callable[[Config], int]
    unit: str = "events/s"


@dataclass(frozen=True)
class Config:
    """Sizes of one run: each trial takes about 0.3-1 s at the rates seen on this machine."""

    redis_n: int = 30_000
    durable_n: int = 30_000
    redis_rpc_n: int = 2_000
    nats_n: int = 100_000
    jetstream_n: int = 20_000
    nats_rpc_n: int = 3_000
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
]

WORKLOAD_KEYS = tuple(w.key for w in WORKLOADS)


# -- measuring -----------------------------------------------------------------------------------


def measure(
    workload: Workload, cfg: Config, progress: Callable[[str], None] | None = None
) -> list[Row]:
    """Warm-up, then ``cfg.rounds`` rounds over every entry, in alternating order."""
    n = workload.n(cfg)
    entries = workload.entries
    rows = [
        Row(workload.key, e.name, max(1, int(n * e.scale)), workload.unit, note=e.note)
        for e in entries
    ]

    def trial(entry: Entry, row: Row, events: int) -> Lap | None:
        try:
            return run_fresh(partial(entry.trial, events), cfg.timeout)
        except Skip as exc:
            row.failed, row.note = True, f"skipped: {exc}"
        except Exception as exc:
            row.failed, row.note = True, f"error: {type(exc).__name__}: {exc}"[:160]
        return None

    for entry, row in zip(entries, rows, strict=True):
        if progress:
            progress(f"{workload.key} warm-up: {entry.name}")
        trial(entry, row, max(1, int(row.n * cfg.warmup)))
    for i in range(cfg.rounds):
        pairs = list(zip(entries, rows, strict=True))
        for entry, row in pairs if i % 2 == 0 else reversed(pairs):
            if row.failed:
                continue
            if progress:
                progress(f"{workload.key} round {i + 1}: {entry.name} (n={row.n:,})")
            lap = trial(entry, row, row.n)
            if lap is not None:
                row.rates.append(row.n / lap.wall)
                row.quiet.append(lap.quiet)
    return rows


def _median(row: Row | None) -> float | None:
    return None if row is None or row.failed else row.median


def _find(rows: Sequence[Row], name: str) -> Row | None:
    return next((r for r in rows if r.name == name), None)


def rate_table(printer: Printer, workload: Workload, rows: list[Row]) -> None:
    anchor = _median(_find(rows, workload.anchor))
    ax = _median(_find(rows, AXONBUS))
    body = []
    for r in rows:
        med = _median(r)
        body.append(
            [
                r.name,
                f"{r.n:,}",
                fmt_rate(med),
                fmt_ratio(ratio(med, anchor)),
                fmt_ratio(ratio(ax, med)),
                " ".join(fmt_rate(x) for x in r.rates) or "-",
                f"{sum(r.quiet)}/{len(r.rates)}",
                r.note,
            ]
        )
    columns = [
        "implementation",
        "N",
        f"median {workload.unit}",
        "x anchor",
        "axonbus/this",
        "each round",
        "quiet",
        "notes",
    ]
    printer.table(f"{workload.title}  (anchor: {workload.anchor})", columns, body)


def targets(results: dict[str, list[Row]]) -> list[Target]:
    def med(key: str, name: str) -> float | None:
        return _median(_find(results.get(key, []), name))

    def at_least(label: str, key: str, anchor: str, floor: float) -> Target:
        x = ratio(med(key, AXONBUS), med(key, anchor))
        return Target(label, fmt_ratio(x), f">= {floor:g}x", None if x is None else x >= floor)

    return [
        at_least("redis plain / raw redis-py pipelined", "redis", RAW_REDIS, 0.8),
        at_least("redis plain / FastStream Redis", "redis", FASTSTREAM_REDIS, 5),
        at_least("redis durable / raw XADD+XREADGROUP+XACK", "redis-durable", RAW_STREAMS, 0.7),
        at_least("nats plain / raw nats-py", "nats", RAW_NATS, 0.5),
        at_least("nats durable / raw nats-py JetStream", "nats-durable", RAW_JS, 0.7),
        at_least("nats request / raw nats-py request", "nats-rpc", RAW_NATS_RPC, 0.7),
    ]


VERSIONS = ("axonbus", "pydantic", "orjson", "redis", "hiredis", "nats-py", "faststream")


def run(cfg: Config, printer: Printer, only: set[str] | None = None) -> dict[str, Any]:
    env = environment()
    env["versions"] = {}
    for dist in VERSIONS:
        try:
            env["versions"][dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env["versions"][dist] = "not installed"
    env["redis_url"], env["nats_url"] = redis_url(), nats_url()
    printer.line(
        f"axonbus broker benchmarks: python {env['python']} on {env['platform']}, "
        f"{env['cpus']} cpus, load {env['loadavg']}"
    )
    printer.line("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    printer.line(f"services: {redis_url()} {nats_url()}")
    started = time.perf_counter()
    for module in ("axonbus", "redis.asyncio", "nats", "orjson", "faststream"):
        with contextlib.suppress(Skip):
            require(module)
    gc.collect()
    gc.freeze()

    results: dict[str, list[Row]] = {}
    for workload in WORKLOADS:
        if only is not None and workload.key not in only:
            continue
        rows = measure(workload, cfg, printer.progress)
        results[workload.key] = rows
        rate_table(printer, workload, rows)

    final_cleanup()
    goals = targets(results)
    printer.table(
        "targets (ratios of medians within this run)",
        ["target", "measured", "goal", "result"],
        [[t.name, t.measured, t.threshold, verdict(t.passed)] for t in goals],
    )
    elapsed = time.perf_counter() - started
    printer.line(f"total {elapsed:.0f} s")
    anchors = {w.key: w.anchor for w in WORKLOADS}
    return {
        "environment": env,
        "config": asdict(cfg),
        "elapsed_s": elapsed,
        "workloads": {
            key: {
                "anchor": anchors[key],
                "rows": [
                    {**asdict(r), "median": _median(r), "x_anchor": ratio(_median(r), anchor)}
                    for r in rows
                    for anchor in [_median(_find(rows, anchors[key]))]
                ],
            }
            for key, rows in results.items()
        },
        "targets": [asdict(t) for t in goals],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.brokers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small N, one round (smoke test)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--rounds", type=int, metavar="K", help="interleaved rounds (default 3)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every N")
    parser.add_argument(
        "--only", metavar="LIST", help=f"comma-separated subset of: {','.join(WORKLOAD_KEYS)}"
    )
    parser.add_argument("--plain", action="store_true", help="plain text tables, not rich")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args(argv)

    cfg = QUICK if args.quick else FULL
    if args.rounds:
        cfg = replace(cfg, rounds=args.rounds)
    if args.scale != 1.0:
        sizes = {
            f.name: max(1, int(getattr(cfg, f.name) * args.scale))
            for f in cfg.__dataclass_fields__.values()
            if f.name.endswith("_n")
        }
        cfg = replace(cfg, **sizes)
    only = selected(parser, args.only, WORKLOAD_KEYS)
    return run_and_report(
        lambda printer: run(cfg, printer, only),
        plain=args.plain,
        json_path=args.json,
        strict=args.strict,
    )


if __name__ == "__main__":
    sys.exit(main())

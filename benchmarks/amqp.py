"""axonbus over RabbitMQ against raw aio-pika and FastStream, end to end, in one run.

    python -m benchmarks.amqp               # full run, a few minutes on 2 cores
    python -m benchmarks.amqp --quick       # smoke run
    python -m benchmarks.amqp --only amqp,amqp-durable --json artifacts/amqp.json

Every workload is end to end, as in ``benchmarks.brokers``: one publisher sends N events, one
subscriber on a separate connection (same process, same event loop) receives all of them, and
the rate is N divided by the time from the first publish until the last event was received
(for the durable workloads: handled and acknowledged). Every event carries ``{"n": i}``; the
raw anchors encode it with orjson per event and decode it on receipt, axonbus sends its JSON
envelope. Every publish, axonbus's and the anchors', goes on a channel with publisher confirms.

- ``amqp``: plain subscriptions. axonbus ``publish`` / ``subscribe`` against raw aio-pika: a
  topic exchange, an exclusive server-named queue bound to the topic and consumed without
  acknowledgements; the publisher sends batches of ``BATCH`` publishes at once
  (``asyncio.gather`` of ``exchange.publish``, each confirmed). For context: FastStream's
  ``RabbitBroker`` with ``await broker.publish`` per event.
- ``amqp-durable``: ``subscribe(durable=...)`` against raw aio-pika on a durable quorum queue:
  persistent messages published in confirmed batches as above, a consumer with the same
  prefetch as axonbus's (64) acknowledging each message after decoding it. FastStream on a
  durable quorum queue for context.
- ``amqp-rpc``: sequential ``await bus.request`` against raw aio-pika doing the same design by
  hand: direct reply-to, a ``mandatory`` request on a confirming channel, a responder
  consuming the request queue and publishing the reply.

Each workload runs every implementation once on a few events (warm-up), then interleaved rounds
in alternating order, each trial in a fresh event loop; reported are the medians and their
ratios to the workload's anchor. The machine is shared and noisy: only ratios from the same run
mean anything.

Service: RabbitMQ at ``AXONBUS_BENCH_AMQP_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``).
Every exchange, queue and bus name is unique to the trial and deleted after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from ._harness import (
    AXONBUS,
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
    report,
    require,
    rounds_cli,
    run_workloads,
    stopwatch,
    unique,
    workload_results,
)

TOPIC = "bench.tick"
RPC_TOPIC = "bench.rpc"
MAILBOX = 10_000  # axonbus's default maxsize
BATCH = 1_000  # raw anchors: publishes in flight at once, each confirmed
PREFETCH = 64  # what axonbus's durable consumer holds with the default options
RPC_TIMEOUT = 2.0


def amqp_url() -> str:
    return os.environ.get("AXONBUS_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


# -- services ------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connection() -> AsyncIterator[Any]:
    need(amqp_url())
    aio_pika = require("aio_pika")
    conn = await aio_pika.connect(amqp_url())
    try:
        yield conn
    finally:
        await conn.close()


async def cleanup(name: str, queues: Sequence[str] = (), exchanges: Sequence[str] = ()) -> None:
    """Delete what a trial made: axonbus's ``axonbus.{name}`` names, and the anchors' own."""
    root = f"axonbus.{name}"
    async with connection() as conn:
        channel = await conn.channel()
        for queue in (f"{root}.dead_letters", f"{root}.durable.bench", *queues):
            await channel.queue_delete(queue)
        for exchange in (root, f"{root}.rpc", f"{root}.retry", *exchanges):
            await channel.exchange_delete(exchange)


async def _publish_batches(exchange: Any, routing_key: str, n: int, persistent: bool) -> None:
    aio_pika = require("aio_pika")
    dumps = require("orjson").dumps
    mode = aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
    events = payloads(n)
    publish = exchange.publish
    for start in range(0, n, BATCH):
        await asyncio.gather(
            *(
                publish(aio_pika.Message(dumps(ev), delivery_mode=mode), routing_key)
                for ev in events[start : start + BATCH]
            )
        )


# -- axonbus -------------------------------------------------------------------------------------


async def _axonbus_one_way(kind: str, n: int, durable: str | None = None) -> Lap:
    need(amqp_url())
    name = unique(kind)
    try:
        return await one_way(amqp_url(), name, TOPIC, n, durable=durable, maxsize=MAILBOX)
    finally:
        await cleanup(name)


async def amqp_plain_axonbus(n: int) -> Lap:
    """``publish`` / plain ``subscribe`` over amqp:// (a topic exchange, a queue per bus)."""
    return await _axonbus_one_way("ap", n)


async def amqp_durable_axonbus(n: int) -> Lap:
    """``subscribe(durable=...)`` over amqp:// (a quorum queue)."""
    return await _axonbus_one_way("ad", n, durable="bench")


async def amqp_rpc_axonbus(n: int) -> Lap:
    """``await client.request(topic, {"n": i}, timeout=2)``, ``server.respond`` echoes."""
    need(amqp_url())
    name = unique("arpc")

    async def echo(payload: Any) -> Any:
        return payload

    try:
        async with bus_pair(amqp_url(), name) as (server, client):
            server.respond(RPC_TOPIC, echo)
            await server.flush()
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


# -- raw aio-pika --------------------------------------------------------------------------------


async def amqp_plain_raw(n: int) -> Lap:
    """aio-pika: confirmed publishes in batches of ``BATCH`` to a topic exchange; an exclusive
    queue bound to the topic, consumed without acknowledgements."""
    aio_pika = require("aio_pika")
    loads = require("orjson").loads
    name = unique("rawp")
    cd = Countdown(n)
    hit = cd.hit
    async with connection() as sub_conn, connection() as pub_conn:
        sub = await sub_conn.channel()
        exchange = await sub.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
        queue = await sub.declare_queue(exclusive=True)
        await queue.bind(exchange, TOPIC)

        async def on_message(message: Any) -> None:
            loads(message.body)
            hit()

        await queue.consume(on_message, no_ack=True)
        pub = await pub_conn.channel(publisher_confirms=True)
        target = await pub.get_exchange(name)
        t0 = stopwatch()
        await _publish_batches(target, TOPIC, n, persistent=False)
        await cd.done
        lap = t0.stop()
        await exchange.delete()
    cd.check()
    return lap


async def amqp_durable_raw(n: int) -> Lap:
    """aio-pika: persistent messages in confirmed batches to a durable quorum queue; a
    consumer with prefetch ``PREFETCH`` acknowledging each message after decoding it."""
    loads = require("orjson").loads
    name = unique("rawd")
    cd = Countdown(n)
    hit = cd.hit
    async with connection() as sub_conn, connection() as pub_conn:
        sub = await sub_conn.channel()
        await sub.set_qos(prefetch_count=PREFETCH)
        queue = await sub.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        try:

            async def on_message(message: Any) -> None:
                loads(message.body)
                await message.ack()
                hit()

            tag = await queue.consume(on_message)
            pub = await pub_conn.channel(publisher_confirms=True)
            t0 = stopwatch()
            await _publish_batches(pub.default_exchange, name, n, persistent=True)
            await cd.done
            lap = t0.stop()
            await queue.cancel(tag)
        finally:
            await queue.delete(if_unused=False, if_empty=False)
    cd.check()
    return lap


async def amqp_rpc_raw(n: int) -> Lap:
    """aio-pika by hand: a ``mandatory`` request with ``reply_to`` set to direct reply-to on a
    confirming channel; a responder consuming the request queue publishes the reply."""
    aio_pika = require("aio_pika")
    orjson = require("orjson")
    dumps, loads = orjson.dumps, orjson.loads
    name = unique("rawr")
    loop = asyncio.get_running_loop()
    waiting: dict[str, asyncio.Future[Any]] = {}
    async with connection() as server_conn, connection() as client_conn:
        server = await server_conn.channel()
        requests = await server.declare_queue(name, auto_delete=True)

        async def serve(message: Any) -> None:
            await server.default_exchange.publish(
                aio_pika.Message(dumps(loads(message.body)), correlation_id=message.correlation_id),
                message.reply_to,
            )

        await requests.consume(serve, no_ack=True)
        client = await client_conn.channel(publisher_confirms=True)
        replies = await client.get_queue("amq.rabbitmq.reply-to")

        async def on_reply(message: Any) -> None:
            fut = waiting.pop(message.correlation_id, None)
            if fut is not None:
                fut.set_result(loads(message.body))

        await replies.consume(on_reply, no_ack=True)
        publish = client.default_exchange.publish
        t0 = stopwatch()
        for i in range(n):
            ev = {"n": i}
            rid = str(i)
            fut = waiting[rid] = loop.create_future()
            message = aio_pika.Message(
                dumps(ev), correlation_id=rid, reply_to="amq.rabbitmq.reply-to"
            )
            await publish(message, name, mandatory=True)
            check_reply(ev, await asyncio.wait_for(fut, RPC_TIMEOUT))
        lap = t0.stop()
    return lap


# -- FastStream ----------------------------------------------------------------------------------


async def _faststream(n: int, durable: bool) -> Lap:
    """FastStream ``RabbitBroker``: ``await broker.publish(msg, queue)`` per event, a
    ``@subscriber(queue)`` on a second broker (logging off)."""
    need(amqp_url())
    fs = require("faststream.rabbit")
    name = unique("fsd" if durable else "fsp")
    queue = (
        fs.RabbitQueue(name, durable=True, queue_type=fs.QueueType.QUORUM)
        if durable
        else fs.RabbitQueue(name, auto_delete=True)
    )
    cd = Countdown(n)
    hit = cd.hit
    ready = asyncio.Event()
    sub_broker = fs.RabbitBroker(amqp_url(), logger=None)
    pub_broker = fs.RabbitBroker(amqp_url(), logger=None)

    @sub_broker.subscriber(queue)  # type: ignore[untyped-decorator]
    async def on_tick(msg: dict[str, int]) -> None:
        if msg["n"] < 0:
            ready.set()
        else:
            hit()

    await sub_broker.start()
    await pub_broker.start()
    try:
        for _ in range(100):
            await pub_broker.publish({"n": -1}, queue, persist=durable)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 0.05)
                break
        publish = pub_broker.publish
        events = payloads(n)
        t0 = stopwatch()
        for ev in events:
            await publish(ev, queue, persist=durable)
        await cd.done
        lap = t0.stop()
    finally:
        await pub_broker.stop()
        await sub_broker.stop()
        await cleanup(name, queues=[name])
    cd.check()
    return lap


async def amqp_plain_faststream(n: int) -> Lap:
    """FastStream ``RabbitBroker`` on an auto-delete queue."""
    return await _faststream(n, durable=False)


async def amqp_durable_faststream(n: int) -> Lap:
    """FastStream ``RabbitBroker`` on a durable quorum queue, persistent messages."""
    return await _faststream(n, durable=True)


# -- workloads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Sizes of one run: each trial takes about 0.5-2 s at the rates seen on this machine."""

    plain_n: int = 10_000
    durable_n: int = 5_000
    rpc_n: int = 500
    rounds: int = 3
    warmup: float = 0.05
    timeout: float = 90.0


FULL = Config()
QUICK = Config(plain_n=2_000, durable_n=1_000, rpc_n=200, rounds=2, warmup=0.1, timeout=30.0)

RAW = "aio-pika confirmed"
RAW_DURABLE = "aio-pika quorum queue"
RAW_RPC = "aio-pika direct reply-to"
FASTSTREAM = "FastStream Rabbit"
FASTSTREAM_DURABLE = "FastStream Rabbit quorum"

WORKLOADS = [
    Workload(
        "amqp",
        "amqp: plain subscriptions, 1 publisher -> 1 subscriber",
        RAW,
        [
            Entry(AXONBUS, amqp_plain_axonbus, note="publish / subscribe"),
            Entry(RAW, amqp_plain_raw, note=f"confirmed batches of {BATCH:,}, no-ack consumer"),
            Entry(FASTSTREAM, amqp_plain_faststream, 0.1, "await broker.publish each"),
        ],
        lambda c: c.plain_n,
    ),
    Workload(
        "amqp-durable",
        "amqp-durable: durable subscription (quorum queue), handled and acknowledged",
        RAW_DURABLE,
        [
            Entry(AXONBUS, amqp_durable_axonbus, note="subscribe(durable=...)"),
            Entry(RAW_DURABLE, amqp_durable_raw, note=f"confirmed batches, prefetch {PREFETCH}"),
            Entry(FASTSTREAM_DURABLE, amqp_durable_faststream, 0.1, "await broker.publish each"),
        ],
        lambda c: c.durable_n,
    ),
    Workload(
        "amqp-rpc",
        "amqp-rpc: sequential request/reply",
        RAW_RPC,
        [
            Entry(AXONBUS, amqp_rpc_axonbus, note="request / respond"),
            Entry(RAW_RPC, amqp_rpc_raw, note="the same design by hand"),
        ],
        lambda c: c.rpc_n,
        unit="round trips/s",
    ),
]

WORKLOAD_KEYS = tuple(w.key for w in WORKLOADS)


def targets(results: dict[str, list[Row]]) -> list[Target]:
    med = Medians(results)
    return [
        med.at_least("amqp plain / raw aio-pika", "amqp", RAW, 0.8),
        med.at_least("amqp plain / FastStream Rabbit", "amqp", FASTSTREAM, 5),
        med.at_least("amqp durable / raw aio-pika", "amqp-durable", RAW_DURABLE, 0.8),
        med.at_least("amqp durable / FastStream Rabbit", "amqp-durable", FASTSTREAM_DURABLE, 5),
        med.at_least("amqp request / raw aio-pika", "amqp-rpc", RAW_RPC, 0.7),
    ]


VERSIONS = ("axonbus", "pydantic", "orjson", "aio-pika", "aiormq", "faststream")


def run(cfg: Config, printer: Printer, only: set[str] | None = None) -> dict[str, Any]:
    env = environment(VERSIONS)
    from axonbus.transports.base import redact_url

    env["amqp_url"] = redact_url(amqp_url())  # no password in the report
    started = begin(
        printer,
        "axonbus AMQP benchmarks",
        env,
        services=env["amqp_url"],
        preload=("axonbus", "aio_pika", "orjson", "faststream"),
    )
    results = run_workloads(WORKLOADS, cfg, printer, only)
    goals = targets(results)
    elapsed = conclude(printer, "targets (ratios of medians within this run)", goals, started)
    return report(env, cfg, elapsed, goals, workloads=workload_results(WORKLOADS, results))


def main(argv: Sequence[str] | None = None) -> int:
    return rounds_cli(
        argv,
        prog="python -m benchmarks.amqp",
        description=__doc__,
        workloads=WORKLOAD_KEYS,
        full=FULL,
        quick=QUICK,
        run=run,
    )


if __name__ == "__main__":
    sys.exit(main())

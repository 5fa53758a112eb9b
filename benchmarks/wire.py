"""The wire formats side by side: ``wire="cloudevents"`` against the compact default and the raw
clients, on Redis, NATS and RabbitMQ, end to end, in one run.

    python -m benchmarks.wire            # full run, about 2 minutes on 2 cores
    python -m benchmarks.wire --quick    # smoke run (the test suite runs it)
    python -m benchmarks.wire --only nats,redis --json artifacts/wire.json
    python -m benchmarks.wire --only amqp,amqp-durable      # RabbitMQ only

The workloads are those of ``benchmarks.brokers`` (one publisher sends N events ``{"n": i}``
to one subscriber on another connection, same process; the rate is N over the time from the
first publish until the last event was handled, for durables also acknowledged):

- ``axonbus``: the compact wire (the default): the events of one writer batch that share a
  topic travel as one broker message (a Redis pub/sub message, a NATS pack).
- ``axonbus cloudevents``: ``wire=cloudevents``: each event is one broker message, a structured
  CloudEvent (Redis) or a binary-mode one with its ``ce-`` headers (NATS, RabbitMQ, where
  ``datacontenttype`` is the ``content_type`` property). On RabbitMQ the compact wire is one
  message per event too (see ``benchmarks.amqp`` for its anchors and workloads).
- the raw client, one plain JSON message per event (the anchor of the ratios), and the raw client
  sending the same CloudEvents axonbus sends (each built with orjson, per event): what the open
  wire costs any client, without axonbus.

The rows run interleaved in alternating order, each trial in a fresh event loop (see
``benchmarks.brokers``); only ratios from the same run mean anything on a shared machine.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
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
    at_least,
    begin,
    conclude,
    environment,
    need,
    one_way,
    payloads,
    ratio,
    report,
    require,
    rounds_cli,
    run_workloads,
    stopwatch,
    unique,
    workload_results,
)
from .amqp import BATCH as AMQP_BATCH
from .amqp import MAILBOX, RAW, RAW_DURABLE, amqp_durable_raw, amqp_plain_raw, amqp_url
from .amqp import cleanup as amqp_cleanup
from .amqp import connection as amqp_connection
from .brokers import (
    BATCH,
    RAW_JS,
    RAW_NATS,
    RAW_REDIS,
    RAW_STREAMS,
    TOPIC,
    _axonbus_one_way,
    _finish,
    _redis_subscriber,
    final_cleanup,
    nats_cleanup,
    nats_client,
    nats_durable_raw,
    nats_plain_raw,
    nats_subscribed,
    nats_url,
    redis_cleanup,
    redis_client,
    redis_durable_raw,
    redis_plain_raw,
    redis_url,
)

CE = "axonbus cloudevents"
RAW_CE = "raw + CloudEvents"


def _cloudevents(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}wire=cloudevents"


def _attributes(i: int) -> dict[str, Any]:
    """The attributes axonbus sends with ``{"n": i}`` (what the raw CloudEvents rows build)."""
    return {
        "specversion": "1.0",
        "source": "axonbus://bench/host/1/raw",
        "id": f"raw-{i}",
        "type": "axonbus.value",
        "subject": TOPIC,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
        "datacontenttype": "application/json",
    }


# -- redis -------------------------------------------------------------------------------------


async def redis_compact(n: int) -> Lap:
    return await _axonbus_one_way(redis_url(), redis_cleanup, "wrc", n)


async def redis_ce(n: int) -> Lap:
    return await _axonbus_one_way(_cloudevents(redis_url()), redis_cleanup, "wre", n)


async def redis_raw_ce(n: int, batch: int = BATCH) -> Lap:
    """redis-py: pipelines of ``PUBLISH``, each message a structured CloudEvent (orjson)."""
    orjson = require("orjson")
    channel = f"{unique('wrr')}/{TOPIC}"
    cd = Countdown(n)
    events = payloads(n)
    dumps = orjson.dumps
    async with redis_client() as pub, redis_client() as subc:
        reader = await _redis_subscriber(subc, channel, cd)
        try:
            t0 = stopwatch()
            for start in range(0, n, batch):
                pipe = pub.pipeline(transaction=False)
                for i in range(start, min(start + batch, n)):
                    pipe.publish(channel, dumps({**_attributes(i), "data": events[i]}))
                await pipe.execute()
            await cd.done
            lap = t0.stop()
        finally:
            await _finish(reader)
    cd.check()
    return lap


async def redis_durable_compact(n: int) -> Lap:
    return await _axonbus_one_way(redis_url(), redis_cleanup, "wdc", n, durable="bench")


async def redis_durable_ce(n: int) -> Lap:
    url = _cloudevents(redis_url())
    return await _axonbus_one_way(url, redis_cleanup, "wde", n, durable="bench")


# -- nats --------------------------------------------------------------------------------------


async def nats_compact(n: int) -> Lap:
    return await _axonbus_one_way(nats_url(), nats_cleanup, "wnc", n)


async def nats_ce(n: int) -> Lap:
    return await _axonbus_one_way(_cloudevents(nats_url()), nats_cleanup, "wne", n)


async def nats_raw_ce(n: int) -> Lap:
    """nats-py: a ``publish`` loop, each message a binary-mode CloudEvent (``ce-`` headers,
    the orjson body); the subscriber callback decodes the body."""
    orjson = require("orjson")
    subject = f"{unique('wnr')}.{TOPIC}"
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
        for i, ev in enumerate(events):
            attrs = _attributes(i)
            headers = {"ce-" + k: v for k, v in attrs.items() if k != "datacontenttype"}
            headers["content-type"] = "application/json"
            await publish(subject, dumps(ev), headers=headers)
        await pub.flush()
        await cd.done
        lap = t0.stop()
    cd.check()
    return lap


async def nats_durable_compact(n: int) -> Lap:
    return await _axonbus_one_way(nats_url(), nats_cleanup, "wjc", n, durable="bench")


async def nats_durable_ce(n: int) -> Lap:
    url = _cloudevents(nats_url())
    return await _axonbus_one_way(url, nats_cleanup, "wje", n, durable="bench")


# -- amqp --------------------------------------------------------------------------------------


async def _amqp_one_way(kind: str, n: int, wire: str, durable: str | None = None) -> Lap:
    need(amqp_url())
    name = unique(kind)
    url = _cloudevents(amqp_url()) if wire == "cloudevents" else amqp_url()
    try:
        return await one_way(url, name, TOPIC, n, durable=durable, maxsize=MAILBOX)
    finally:
        await amqp_cleanup(name)


async def amqp_compact(n: int) -> Lap:
    return await _amqp_one_way("wac", n, "compact")


async def amqp_ce(n: int) -> Lap:
    return await _amqp_one_way("wae", n, "cloudevents")


async def amqp_durable_compact(n: int) -> Lap:
    return await _amqp_one_way("wqc", n, "compact", durable="bench")


async def amqp_durable_ce(n: int) -> Lap:
    return await _amqp_one_way("wqe", n, "cloudevents", durable="bench")


async def amqp_raw_ce(n: int) -> Lap:
    """aio-pika: confirmed batches to a topic exchange, each message a binary-mode CloudEvent
    (``ce-`` headers, ``content_type``, the orjson body); a no-ack consumer decodes the body."""
    aio_pika = require("aio_pika")
    orjson = require("orjson")
    loads, dumps = orjson.loads, orjson.dumps
    name = unique("wraw")
    cd = Countdown(n)
    hit = cd.hit
    events = payloads(n)
    async with amqp_connection() as sub_conn, amqp_connection() as pub_conn:
        sub = await sub_conn.channel()
        exchange = await sub.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
        queue = await sub.declare_queue(exclusive=True)
        await queue.bind(exchange, TOPIC)

        async def on_message(message: Any) -> None:
            loads(message.body)
            hit()

        await queue.consume(on_message, no_ack=True)
        pub = await pub_conn.channel(publisher_confirms=True)
        publish = (await pub.get_exchange(name)).publish

        def message(i: int) -> Any:
            attrs = _attributes(i)
            headers = {"ce-" + k: v for k, v in attrs.items() if k != "datacontenttype"}
            return aio_pika.Message(dumps(events[i]), headers=headers,
                                    content_type="application/json")  # fmt: skip

        t0 = stopwatch()
        for start in range(0, n, AMQP_BATCH):
            stop = min(start + AMQP_BATCH, n)
            await asyncio.gather(*(publish(message(i), TOPIC) for i in range(start, stop)))
        await cd.done
        lap = t0.stop()
        await exchange.delete()
    cd.check()
    return lap


# -- workloads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    redis_n: int = 30_000
    durable_n: int = 20_000
    nats_n: int = 60_000
    jetstream_n: int = 15_000
    amqp_n: int = 10_000
    amqp_durable_n: int = 5_000
    rounds: int = 5
    warmup: float = 0.05
    timeout: float = 60.0


FULL = Config()
QUICK = Config(
    redis_n=3_000, durable_n=2_000, nats_n=6_000, jetstream_n=1_500, amqp_n=1_000,
    amqp_durable_n=500, rounds=2, warmup=0.1, timeout=15.0,
)  # fmt: skip

WORKLOADS = [
    Workload(
        "redis",
        "redis: plain pub/sub, 1 publisher -> 1 subscriber",
        RAW_REDIS,
        [
            Entry(AXONBUS, redis_compact, note="compact: a topic's run = 1 message"),
            Entry(CE, redis_ce, note="1 structured CloudEvent per message"),
            Entry(RAW_REDIS, redis_plain_raw, note=f"PUBLISH pipelines of {BATCH:,}"),
            Entry(RAW_CE, redis_raw_ce, note="the same, each a structured CloudEvent"),
        ],
        lambda c: c.redis_n,
    ),
    Workload(
        "redis-durable",
        "redis-durable: durable subscription (streams), handled and acknowledged",
        RAW_STREAMS,
        [
            Entry(AXONBUS, redis_durable_compact, note="compact envelope per entry"),
            Entry(CE, redis_durable_ce, note="structured CloudEvent per entry"),
            Entry(RAW_STREAMS, redis_durable_raw, note="XADD pipelines; XREADGROUP 256 + XACK"),
        ],
        lambda c: c.durable_n,
    ),
    Workload(
        "nats",
        "nats: plain pub/sub, 1 publisher -> 1 subscriber",
        RAW_NATS,
        [
            Entry(AXONBUS, nats_compact, note="compact: a topic's run = 1 pack"),
            Entry(CE, nats_ce, note="1 binary-mode CloudEvent per message"),
            Entry(RAW_NATS, nats_plain_raw, note="publish loop, subscriber callback"),
            Entry(RAW_CE, nats_raw_ce, note="the same, with the ce- headers"),
        ],
        lambda c: c.nats_n,
    ),
    Workload(
        "nats-durable",
        "nats-durable: durable subscription (JetStream), handled and acknowledged",
        RAW_JS,
        [
            Entry(AXONBUS, nats_durable_compact, note="compact: packs stored whole"),
            Entry(CE, nats_durable_ce, note="1 stored message per event"),
            Entry(RAW_JS, nats_durable_raw, note="publish_async, pull fetch + ack"),
        ],
        lambda c: c.jetstream_n,
    ),
    Workload(
        "amqp",
        "amqp: plain subscriptions (RabbitMQ), 1 publisher -> 1 subscriber",
        RAW,
        [
            Entry(AXONBUS, amqp_compact, note="compact envelope per message"),
            Entry(CE, amqp_ce, note="1 binary-mode CloudEvent per message"),
            Entry(RAW, amqp_plain_raw, note=f"confirmed batches of {AMQP_BATCH:,}"),
            Entry(RAW_CE, amqp_raw_ce, note="the same, with the ce- headers"),
        ],
        lambda c: c.amqp_n,
    ),
    Workload(
        "amqp-durable",
        "amqp-durable: durable subscription (quorum queue), handled and acknowledged",
        RAW_DURABLE,
        [
            Entry(AXONBUS, amqp_durable_compact, note="compact envelope per message"),
            Entry(CE, amqp_durable_ce, note="1 binary-mode CloudEvent per message"),
            Entry(RAW_DURABLE, amqp_durable_raw, note="confirmed batches, prefetch 64"),
        ],
        lambda c: c.amqp_durable_n,
    ),
]

WORKLOAD_KEYS = tuple(w.key for w in WORKLOADS)


def targets(results: dict[str, list[Row]]) -> list[Target]:
    """Floors for what the open wire keeps: of the compact wire's rate (which packs many events
    into one message, so the gap is the per-message cost of the broker clients), and of the
    raw client sending the same CloudEvents (what axonbus itself adds)."""
    med = Medians(results)
    goals = [
        at_least(f"{key}: cloudevents / compact", ratio(med(key, CE), med(key, AXONBUS)), floor)
        for key, floor in (("redis", 0.15), ("redis-durable", 0.4), ("nats", 0.1),
                           ("nats-durable", 0.08), ("amqp", 0.5), ("amqp-durable", 0.5))
    ]  # fmt: skip
    goals += [
        at_least(f"{key}: cloudevents / {RAW_CE}", ratio(med(key, CE), med(key, RAW_CE)), floor)
        for key, floor in (("redis", 0.7), ("nats", 0.4), ("amqp", 0.4))
    ]
    return goals


VERSIONS = ("axonbus", "pydantic", "orjson", "redis", "hiredis", "nats-py", "aio-pika", "aiormq")


def run(cfg: Config, printer: Printer, only: set[str] | None = None) -> dict[str, Any]:
    env = environment(VERSIONS)
    env["redis_url"], env["nats_url"] = redis_url(), nats_url()
    from axonbus.transports.base import redact_url

    env["amqp_url"] = redact_url(amqp_url())  # no password in the report
    started = begin(
        printer,
        "axonbus wire formats: compact and CloudEvents",
        env,
        services=f"{redis_url()} {nats_url()} {env['amqp_url']}",
        preload=("axonbus", "redis.asyncio", "nats", "aio_pika", "orjson"),
    )
    results = run_workloads(WORKLOADS, cfg, printer, only)
    final_cleanup()
    goals = targets(results)
    elapsed = conclude(printer, "cloudevents against compact (ratios of medians)", goals, started)
    return report(env, cfg, elapsed, goals, workloads=workload_results(WORKLOADS, results))


def main(argv: Sequence[str] | None = None) -> int:
    return rounds_cli(
        argv,
        prog="python -m benchmarks.wire",
        description=__doc__,
        workloads=WORKLOAD_KEYS,
        full=FULL,
        quick=QUICK,
        run=run,
    )


if __name__ == "__main__":
    sys.exit(main())

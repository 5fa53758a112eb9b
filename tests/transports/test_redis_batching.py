"""The ``redis://`` writer's batches: one publish script call per run of publishes, consecutive
events on one topic as one pub/sub message, one XACK per run of acks (shared Redis)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis.asyncio as aioredis

from axonbus import Bus, Context
from axonbus.testing import settle
from axonbus.transports.redis._transport import PUBLISH_CHUNK, PUBLISH_CHUNK_BYTES


@pytest.fixture
def name(redis_bus_name: str) -> str:
    return redis_bus_name


@pytest.fixture
def raw(redis_raw: aioredis.Redis) -> aioredis.Redis:
    return redis_raw


async def test_a_mixed_burst_arrives_in_publish_order(redis_service: str, name: str) -> None:
    # one loop tick of publishes: one writer batch, runs of one topic coalesced on the wire
    topics = ["mix.a", "mix.a", "mix.b", "mix.a", "mix.c", "mix.c", "mix.c", "mix.b"] * 50
    every: list[tuple[str, int]] = []
    only_a: list[int] = []
    async with Bus(redis_service, name=name) as sub, Bus(redis_service, name=name) as pub:
        sub.subscribe("mix.>", lambda e, ctx: every.append((ctx.topic, e)))
        sub.subscribe("mix.a", only_a.append)
        await sub.flush()
        for i, topic in enumerate(topics):
            pub.publish_nowait(topic, i)
        await pub.flush()
        await settle(sub, lambda: len(every) == len(topics))
    assert every == [(topic, i) for i, topic in enumerate(topics)]
    assert only_a == [i for i, topic in enumerate(topics) if topic == "mix.a"]


async def test_batches_longer_than_a_script_call_are_split_in_order(
    redis_service: str, name: str
) -> None:
    n = 2 * PUBLISH_CHUNK + 7
    plain: list[int] = []
    durable: list[int] = []
    async with Bus(redis_service, name=name) as sub, Bus(redis_service, name=name) as pub:
        sub.subscribe("many.x", plain.append)
        sub.subscribe("many.x", durable.append, durable="keep")
        await sub.flush()
        for i in range(n):
            pub.publish_nowait("many.x", i)
        await pub.flush()
        await settle(sub, lambda: len(plain) == n and len(durable) == n)
    assert plain == list(range(n))
    assert durable == list(range(n))


async def test_large_events_are_split_by_size(redis_service: str, name: str) -> None:
    blob = "x" * (PUBLISH_CHUNK_BYTES // 3)
    got: list[int] = []
    async with Bus(redis_service, name=name) as sub, Bus(redis_service, name=name) as pub:
        sub.subscribe("big.x", lambda e: got.append(e["i"]))
        await sub.flush()
        for i in range(7):  # about 2.3 MB in one batch: three script calls
            pub.publish_nowait("big.x", {"i": i, "blob": blob})
        await pub.flush()
        await settle(sub, lambda: len(got) == 7)
    assert got == list(range(7))


async def test_an_event_redis_refuses_is_logged_and_the_rest_go_out(
    redis_service: str, name: str, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="axonbus")
    # a binding whose stream key holds a string: XADD fails with WRONGTYPE for "bad.*" topics
    await raw.set(f"{name}:broken", "not a stream")
    await raw.hset(f"{name}:bindings", f"{name}:broken", "bad.*")
    got: list[Any] = []
    async with Bus(redis_service, name=name) as sub, Bus(redis_service, name=name) as pub:
        sub.subscribe(">", lambda e, ctx: got.append((ctx.topic, e)))
        await sub.flush()
        for topic, i in [("ok.x", 1), ("bad.x", 2), ("ok.x", 3), ("bad.y", 4), ("ok.y", 5)]:
            pub.publish_nowait(topic, i)
        await pub.flush()
        await settle(sub, lambda: len(got) == 3)
    # like a failed single publish: not on pub/sub either, and the events around it unharmed
    assert got == [("ok.x", 1), ("ok.x", 3), ("ok.y", 5)]
    refused = [r.getMessage() for r in caplog.records if "refused pub" in r.getMessage()]
    assert len(refused) == 2
    assert "bad.x" in refused[0]
    assert "bad.y" in refused[1]
    assert "WRONGTYPE" in refused[0]


async def test_acknowledgements_of_a_batch_leave_nothing_pending(
    redis_service: str, name: str, raw: aioredis.Redis
) -> None:
    got: list[int] = []

    async def handle(event: int, ctx: Context) -> None:
        got.append(event)

    async with Bus(redis_service, name=name) as sub, Bus(redis_service, name=name) as pub:
        sub.subscribe("acks.x", handle, durable="acks")
        await sub.flush()
        for i in range(600):
            pub.publish_nowait("acks.x", i)
        await pub.flush()
        await settle(sub, lambda: len(got) == 600)
        await sub.flush()  # the acknowledgements are on the server
        pending = await raw.xpending(f"{name}:durable:acks", "axonbus")
    assert got == list(range(600))
    assert pending["pending"] == 0

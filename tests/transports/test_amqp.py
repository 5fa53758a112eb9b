"""What only the ``amqp://`` transport does: topic mapping, retries as delayed requeues, handler
calls counted across consumers, confirms behind ``flush()``, credentials kept out of messages."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiormq
import pytest

from axonbus import (
    Bus,
    ConnectionFailed,
    ConnectionLost,
    Context,
    DeadLetter,
    InvalidTopic,
    NoResponders,
    RemoteError,
    RequestTimeout,
    Retry,
)
from axonbus.transports.amqp._consumers import delay_level
from axonbus.transports.amqp._names import binding_key, check_routable
from tests.support.brokers import free_port
from tests.support.services import with_address

DEADLINE = 20.0


async def until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)


def test_patterns_become_exact_binding_keys() -> None:
    assert binding_key("orders.created") == "orders.created"
    assert binding_key("orders.*") == "orders.*"
    assert binding_key("orders.>") == "orders.*.#"  # one or more tokens, as in axonbus
    assert binding_key(">") == "*.#"


@pytest.mark.parametrize("topic", ["chat.#", "#", "a.#.b", "x" * 256, "é" * 128])
def test_topics_amqp_cannot_route_are_refused(topic: str) -> None:
    with pytest.raises(InvalidTopic):
        check_routable(topic)


def test_tokens_with_a_hash_inside_are_routable() -> None:
    check_routable("chat.#general")
    check_routable("x" * 255)


def test_retry_delays_round_down_to_a_level() -> None:
    assert delay_level(0.0) == 0
    assert delay_level(0.009) == 0
    assert delay_level(0.15) == 100
    assert delay_level(3.0) == 2000
    assert delay_level(100_000.0) == 3_600_000


async def test_wildcards_match_exactly_across_buses(amqp_service: str, amqp_bus_name: str) -> None:
    async with (
        Bus(amqp_service, name=amqp_bus_name) as sub,
        Bus(amqp_service, name=amqp_bus_name) as pub,
    ):
        deep: list[str] = []
        one: list[str] = []
        sub.subscribe("orders.>", lambda e: deep.append(e))
        sub.subscribe("*.created", lambda e: one.append(e))
        await sub.flush()
        for topic in ("orders", "orders.created", "orders.eu.created", "$bus.x.created"):
            await pub.publish(topic, topic)
        await pub.publish("end.created", "end")
        await until(lambda: "end" in one, "the last event")
        await until(lambda: len(deep) >= 2, "the deep pattern's events")
        await asyncio.sleep(0.2)  # anything wrongly routed would arrive by now
        assert sorted(deep) == ["orders.created", "orders.eu.created"]
        assert sorted(one) == ["end", "orders.created"]


async def test_a_hash_token_is_refused_on_publish_and_subscribe(
    amqp_service: str, amqp_bus_name: str
) -> None:
    async with Bus(amqp_service, name=amqp_bus_name) as bus:
        with pytest.raises(InvalidTopic):
            await bus.publish("chat.#", "x")
        with pytest.raises(InvalidTopic):
            bus.subscribe("chat.#", lambda e: None, durable="hash")


async def test_flush_means_the_broker_has_it(amqp_service: str, amqp_bus_name: str) -> None:
    durable = f"kept{uuid.uuid4().hex[:6]}"
    async with Bus(amqp_service, name=amqp_bus_name) as holder:
        holder.subscribe("jobs.>", lambda e: None, durable=durable)
        await holder.flush()
    async with Bus(amqp_service, name=amqp_bus_name) as pub:
        for i in range(200):
            await pub.publish("jobs.work", i)
        await pub.flush()
        conn = await aiormq.connect(amqp_service)
        try:
            channel = await conn.channel()
            queue = f"axonbus.{amqp_bus_name}.durable.{durable}"
            ok = await channel.queue_declare(queue, passive=True)
            assert ok.message_count == 200
            await channel.queue_delete(queue)
        finally:
            await conn.close()


async def test_a_retry_is_a_delayed_requeue(amqp_service: str, amqp_bus_name: str) -> None:
    calls: list[tuple[int, float]] = []

    async def flaky(event: Any, ctx: Context) -> None:
        calls.append((ctx.attempt, time.monotonic()))
        if ctx.attempt < 3:
            raise RuntimeError("not yet")

    retry = Retry(attempts=3, backoff=0.2, jitter=False)  # 0.2 s, then 0.4 s
    async with Bus(amqp_service, name=amqp_bus_name) as bus:
        bus.subscribe("jobs.retry", flaky, durable="retried", retry=retry)
        await bus.publish("jobs.retry", 1)
        await until(lambda: len(calls) >= 3, "three handler calls")
    assert [a for a, _ in calls] == [1, 2, 3]
    # the broker held the event between calls (never sooner than its level: 200, then 200 ms)
    assert calls[1][1] - calls[0][1] >= 0.19
    assert calls[2][1] - calls[1][1] >= 0.19


async def test_handler_calls_are_counted_across_consumers(
    amqp_service: str, amqp_bus_name: str
) -> None:
    """A handler call cut short by close is charged: the next consumer sees attempt 2."""
    started = asyncio.Event()
    seen: list[int] = []

    async def hangs(event: Any, ctx: Context) -> None:
        seen.append(ctx.attempt)
        started.set()
        await asyncio.sleep(3600)

    first = Bus(amqp_service, name=amqp_bus_name)
    first.subscribe("jobs.hang", hangs, durable="hung", retry=Retry(attempts=5))
    await first.start()
    await first.publish("jobs.hang", 1)
    await asyncio.wait_for(started.wait(), DEADLINE)
    await first.close(timeout=0.2)  # cancels the call and records it
    again: list[int] = []

    async def finishes(event: Any, ctx: Context) -> None:
        again.append(ctx.attempt)

    async with Bus(amqp_service, name=amqp_bus_name) as second:
        second.subscribe("jobs.hang", finishes, durable="hung", retry=Retry(attempts=5))
        await until(lambda: bool(again), "the redelivery")
    assert seen == [1]
    assert again == [2]


async def test_close_gives_unhandled_events_back(amqp_service: str, amqp_bus_name: str) -> None:
    handled: list[int] = []

    async def slow(event: int) -> None:
        await asyncio.sleep(0.05)
        handled.append(event)

    first = Bus(amqp_service, name=amqp_bus_name)
    first.subscribe("jobs.slow", slow, durable="slow")
    await first.start()
    async with Bus(amqp_service, name=amqp_bus_name) as pub:
        for i in range(60):
            await pub.publish("jobs.slow", i)
        await pub.flush()
    await until(lambda: len(handled) >= 2, "a few handled")
    await first.close(timeout=0.05)
    attempts: list[int] = []

    async def fast(event: int, ctx: Context) -> None:
        handled.append(event)
        attempts.append(ctx.attempt)

    async with Bus(amqp_service, name=amqp_bus_name) as second:
        second.subscribe("jobs.slow", fast, durable="slow")
        await until(lambda: set(handled) == set(range(60)), "every event handled")
    assert max(attempts) <= 2  # only a call cut short by close is charged


async def test_requests(amqp_service: str, amqp_bus_name: str) -> None:
    async with (
        Bus(amqp_service, name=amqp_bus_name) as server,
        Bus(amqp_service, name=amqp_bus_name) as client,
    ):

        async def slow(x: int) -> int:
            await asyncio.sleep(5)
            return x

        def broken(x: int) -> int:
            raise KeyError("nope")

        server.respond("rpc.double", lambda x: x * 2)
        server.respond("rpc.slow", slow)
        server.respond("rpc.broken", broken)
        await server.flush()
        assert await client.request("rpc.double", 21, timeout=5) == 42
        with pytest.raises(RequestTimeout):
            await client.request("rpc.slow", 1, timeout=0.3)
        with pytest.raises(RemoteError) as err:
            await client.request("rpc.broken", 1, timeout=5)
        assert err.value.remote_type == "KeyError"
        with pytest.raises(NoResponders):
            await client.request("rpc.nobody", 1, timeout=5)


async def test_dead_letters_carry_the_error(amqp_service: str, amqp_bus_name: str) -> None:
    letters: list[DeadLetter] = []

    def fails(event: Any) -> None:
        raise ValueError("broken payload")

    async with Bus(amqp_service, name=amqp_bus_name) as bus:
        bus.subscribe(DeadLetter, letters.append)
        bus.subscribe("jobs.bad", fails, durable="bad", retry=Retry(attempts=2, backoff=0.01))
        await bus.publish("jobs.bad", {"n": 1})
        await until(lambda: bool(letters), "the dead letter")
    assert letters[0].error_type == "ValueError"
    assert letters[0].attempts == 2
    assert "broken payload" in letters[0].error_message


async def test_a_wrong_password_is_refused_without_showing_it(
    amqp_service: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts = amqp_service.split("@", 1)
    url = "amqp://guest:s3cr3t-pw@" + parts[1]
    bus = Bus(url, name="pw")
    assert "s3cr3t-pw" not in repr(bus.transport)
    caplog.set_level(logging.DEBUG, logger="axonbus")
    with pytest.raises(ConnectionFailed) as err:
        await bus.start()
    assert "s3cr3t-pw" not in str(err.value)
    assert "s3cr3t-pw" not in caplog.text


async def test_an_unreachable_broker(amqp_service: str) -> None:
    url = with_address(amqp_service, "127.0.0.1", free_port()) + "?unavailable_timeout=0.5"
    with pytest.raises(ConnectionLost):
        await Bus(url, name="down").start()
    bus = Bus(url, name="down", on_unavailable="log")
    await bus.start()  # connects in the background
    try:
        await bus.publish("x.y", 1)  # logged and counted, not raised
        assert bus.transport.lost_publishes == 1  # type: ignore[attr-defined]
    finally:
        await bus.close()

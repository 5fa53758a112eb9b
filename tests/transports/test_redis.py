"""What only ``redis://`` does: streams, claims, trimming, globs, options (shared Redis)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from axonbus import Bus, ConnectionLost, Context, DeadLetter, InvalidTopic, Retry
from axonbus.testing import settle
from axonbus.transports.redis._transport import _glob
from tests.support.brokers import free_port


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (settle() would wait for the stuck handlers to finish)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
def name(redis_bus_name: str) -> str:
    return redis_bus_name


@pytest.fixture
def raw(redis_raw: aioredis.Redis) -> aioredis.Redis:
    return redis_raw


async def test_durable_streams_are_trimmed_to_maxlen(
    redis_service: str, name: str, raw: aioredis.Redis
) -> None:
    async with Bus(f"{redis_service}?maxlen=10", name=name) as bus:
        sub = bus.subscribe("trim.x", lambda e: None, durable="keep")
        await bus.flush()
        bus.unsubscribe(sub)  # parked: nobody reads, so only trimming bounds the stream
        for i in range(2000):
            await bus.publish("trim.x", i)
        await bus.flush()
    length = await raw.xlen(f"{name}:durable:keep")
    # MAXLEN ~ trims whole radix-tree nodes (100 entries by default), never below maxlen
    assert 10 <= length <= 200, length


async def test_a_deleted_stream_gets_its_group_back(
    redis_service: str, name: str, raw: aioredis.Redis
) -> None:
    got: list[int] = []
    async with Bus(redis_service, name=name) as bus:
        bus.subscribe("gone.x", got.append, durable="d")
        await bus.flush()
        await bus.publish("gone.x", 1)
        await settle(bus, lambda: got == [1])
        await raw.delete(f"{name}:durable:d")  # as after a Redis restart without AOF
        await asyncio.sleep(1.2)  # the consumer notices NOGROUP and registers again
        await bus.publish("gone.x", 2)
        await settle(bus, lambda: got == [1, 2])


async def test_entries_of_a_stopped_consumer_are_claimed_then_dead_lettered(
    redis_service: str, name: str, raw: aioredis.Redis
) -> None:
    url = f"{redis_service}?claim_idle=0.2"
    retry = Retry(attempts=2, backoff=0.001)
    attempts: list[int] = []
    release = asyncio.Event()

    async def stuck(event: Any, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        await release.wait()  # never acknowledged: the bus closes under it

    for _ in range(2):  # two consumers stop mid-handler: deliveries 1 and 2
        seen = len(attempts)
        bus = Bus(url, name=name)
        async with bus:
            bus.subscribe("claim.x", stuck, durable="d", retry=retry)
            await bus.flush()
            if not seen:
                await bus.publish("claim.x", "job")
            await until(lambda seen=seen: len(attempts) > seen)  # type: ignore[misc]
            await bus.close(timeout=0.05)
    assert attempts == [1, 2], attempts

    letters: list[DeadLetter] = []
    async with Bus(url, name=name) as bus:
        bus.subscribe("$bus.dead_letter", letters.append)
        bus.subscribe("claim.x", stuck, durable="d", retry=retry)
        await until(lambda: len(letters) == 1)
        await bus.flush()
    assert attempts == [1, 2], "the third delivery is over budget and must not be handled"
    assert letters[0].error_type == "RedeliveryExhausted"
    assert letters[0].attempts == 3
    assert letters[0].event == "job"
    pending = await raw.xpending(f"{name}:durable:d", "axonbus")
    assert pending["pending"] == 0, "the dead-lettered entry was not acknowledged"


async def test_garbage_on_a_channel_is_logged_and_skipped(
    redis_service: str, name: str, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="axonbus")
    got: list[Any] = []
    async with Bus(redis_service, name=name) as bus:
        bus.subscribe("junk.>", got.append)
        await bus.flush()
        await raw.publish(f"{name}/junk.x", b"0123456789abcdef" + b"not an envelope")
        async with Bus(redis_service, name=name) as other:
            await other.publish("junk.y", "fine")
        await settle(bus, lambda: got == ["fine"])
    assert any("undecodable" in r.getMessage() for r in caplog.records)


def test_glob_escapes_redis_specials() -> None:
    assert _glob("a.*.>") == "a.*.*"
    assert _glob("a[1].b?.c*") == "a\\[1\\].b\\?.c\\*"


async def test_topics_with_glob_characters_match_exactly(redis_service: str, name: str) -> None:
    got: list[str] = []
    async with Bus(redis_service, name=name) as listener, Bus(redis_service, name=name) as pub:
        listener.subscribe("room[1].*", lambda e, ctx: got.append(ctx.topic))
        await listener.flush()
        for topic in ("room1.x", "room[1].x", "roomX.x", "room[1].y"):
            await pub.publish(topic, None)
        await settle(listener, lambda: len(got) >= 2)
        await asyncio.sleep(0.1)
    assert got == ["room[1].x", "room[1].y"]


async def test_unreachable_redis_fails_start_with_connection_lost() -> None:
    bus = Bus(f"redis://127.0.0.1:{free_port()}/0?unavailable_timeout=0.5")
    with pytest.raises(ConnectionLost, match="cannot reach"):
        await bus.start()


@pytest.mark.parametrize(
    "query", ["maxlen=lots", "claim_idle=-1", "unavailable_timeout=x", "outbox=0"]
)
def test_bad_url_options_are_refused(query: str) -> None:
    with pytest.raises(ValueError, match="URL option"):
        Bus(f"redis://127.0.0.1:6379/0?{query}")


def test_the_password_never_shows() -> None:
    bus = Bus("redis://app:s3cret@127.0.0.1:6379/0")
    assert "s3cret" not in repr(bus.transport)
    assert "s3cret" not in repr(bus)
    assert "s3cret" not in bus.transport.address  # type: ignore[attr-defined]


async def test_publish_nowait_and_wait_reach_another_bus(redis_service: str, name: str) -> None:
    got: list[int] = []
    async with Bus(redis_service, name=name) as here, Bus(redis_service, name=name) as there:
        there.subscribe("nw.x", got.append)
        await there.flush()
        here.publish_nowait("nw.x", 1)
        result = await here.publish("nw.x", 2, wait=True)
        assert result.ok
        assert len(result) == 0  # no local subscriber; the broker confirmed it
        await settle(there, lambda: got == [1, 2])


async def test_log_policy_still_refuses_to_lose_durable_events(private_redis: Any) -> None:
    url = f"{private_redis.url}?unavailable_timeout=0.3"
    async with Bus(url, name="outage", on_unavailable="log") as bus:
        bus.subscribe("orders.>", lambda e: None, durable="billing")
        await bus.flush()
        await private_redis.akill()
        await until(lambda: not bus.transport.connected)  # type: ignore[attr-defined]
        await bus.publish("chat.x", "dropped, counted")  # plain: logged and counted
        assert bus.transport.lost_publishes == 1  # type: ignore[attr-defined]
        with pytest.raises(ConnectionLost, match="durable"):
            await bus.publish("orders.new", {"id": 1})
        await private_redis.arestart()
        got: list[Any] = []
        bus.subscribe("chat.>", got.append)
        await until(lambda: bus.transport.connected, timeout=5)  # type: ignore[attr-defined]
        await bus.publish("chat.y", "after")
        await settle(bus, lambda: got == ["after"])


@pytest.mark.parametrize("topic", ["a..b", "a.*", "has space", ""])
async def test_invalid_topics_are_refused_before_the_broker_sees_them(
    redis_service: str, name: str, topic: str
) -> None:
    seen: list[Any] = []
    async with Bus(redis_service, name=name) as bus, Bus(redis_service, name=name) as other:
        other.subscribe_all(seen.append)
        await other.flush()
        with pytest.raises(InvalidTopic):
            await bus.publish(topic, 1)
        with pytest.raises(InvalidTopic):
            bus.publish_nowait(topic, 1)
        with pytest.raises(InvalidTopic):
            await bus.request(topic, 1, timeout=1)
        await bus.publish("valid.topic", 2)
        await settle(other, lambda: seen == [2])


async def test_responders_of_crashed_processes_are_forgotten(
    redis_service: str, name: str, raw: aioredis.Redis
) -> None:
    # a process killed without unregistering leaves its entry; a request deletes it a minute
    # after it expired (and ignores it before), so the hash does not grow with every crash
    long_ago = 1_000  # ms since the epoch: expired long ago
    await raw.hset(f"{name}:responders", mapping={"dead\nmath.gone": long_ago})
    async with Bus(redis_service, name=name) as bus:
        bus.respond("math.add", lambda req: req["a"] + req["b"])
        await bus.flush()
        assert await bus.request("math.add", {"a": 1, "b": 2}, timeout=5) == 3
        entries = await raw.hgetall(f"{name}:responders")
    assert b"dead\nmath.gone" not in entries
    assert any(key.endswith(b"\nmath.add") for key in entries)

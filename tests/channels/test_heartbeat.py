from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from axonbus import Bus
from axonbus.channels import Heartbeat, HeartbeatTick

Eventually = Callable[[Callable[[], bool]], Awaitable[None]]


async def test_heartbeat_ticks_on_system_heartbeat(bus: Bus, eventually: Eventually) -> None:
    ticks: list[HeartbeatTick] = []

    async def on_tick(tick: HeartbeatTick) -> None:
        ticks.append(tick)

    bus.subscribe(HeartbeatTick, on_tick)  # by type: "system.heartbeat"
    async with Heartbeat(bus, interval=0.01) as heartbeat:
        assert heartbeat.running
        await eventually(lambda: len(ticks) >= 3)
    assert not heartbeat.running
    assert [t.seq for t in ticks[:3]] == [1, 2, 3]
    assert all(t.interval == 0.01 and t.source == "heartbeat" for t in ticks)
    assert ticks[0].timestamp <= ticks[1].timestamp <= ticks[2].timestamp
    assert heartbeat.ticks >= 3


async def test_heartbeat_stop_stops_ticks(bus: Bus, eventually: Eventually) -> None:
    seen: list[int] = []

    async def on_tick(tick: HeartbeatTick) -> None:
        seen.append(tick.seq)

    bus.subscribe("system.heartbeat", on_tick)
    heartbeat = Heartbeat(bus, interval=0.01)
    await heartbeat.start()
    await heartbeat.start()  # idempotent
    await eventually(lambda: len(seen) >= 2)
    await heartbeat.stop()
    await heartbeat.stop()  # idempotent
    await bus.drain()
    count = len(seen)
    await asyncio.sleep(0.05)
    await bus.drain()
    assert len(seen) == count
    assert heartbeat.ticks == count


async def test_heartbeat_first_tick_after_one_interval(bus: Bus) -> None:
    seen: list[int] = []

    async def on_tick(tick: HeartbeatTick) -> None:
        seen.append(tick.seq)

    bus.subscribe("system.heartbeat", on_tick)
    async with Heartbeat(bus, interval=30.0):
        await asyncio.sleep(0.05)
        await bus.drain()
    assert seen == []


async def test_heartbeat_custom_topic(bus: Bus, eventually: Eventually) -> None:
    seen: list[tuple[str, HeartbeatTick]] = []

    async def on_tick(tick: HeartbeatTick, ctx: object) -> None:
        seen.append((ctx.topic, tick))  # type: ignore[attr-defined]

    bus.subscribe("lena.clock", on_tick)
    async with Heartbeat(bus, interval=0.01, topic="lena.clock", source="lena"):
        await eventually(lambda: len(seen) >= 1)
    topic, tick = seen[0]
    assert topic == "lena.clock"
    assert isinstance(tick, HeartbeatTick)
    assert tick.source == "lena"


async def test_heartbeat_ends_when_the_bus_closes(eventually: Eventually) -> None:
    bus = Bus()
    await bus.start()
    heartbeat = Heartbeat(bus, interval=0.01)
    await heartbeat.start()
    await bus.close()
    await eventually(lambda: not heartbeat.running)
    await heartbeat.stop()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval": 0}, "interval"),
        ({"interval": -1.0}, "interval"),
        ({"topic": "system.*"}, "topic"),
        ({"topic": "a..b"}, "topic"),
        ({"topic": ""}, "topic"),
    ],
)
async def test_heartbeat_rejects_bad_arguments(
    bus: Bus, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Heartbeat(bus, **kwargs)  # type: ignore[arg-type]

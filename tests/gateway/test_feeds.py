"""Feeds share one hub per pattern: events decoded once, a ring bounded in bytes, released on
close; a client behind the ring catches up from the log (never a gap) or, live, is told what
it lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from axonbus import Bus
from axonbus.gateway._feeds import Hubs

BIG = "x" * 10_000  # about 10 kB per event


@pytest.mark.parametrize("log", [False, True])
async def test_feeds_of_one_pattern_share_one_bounded_hub(tmp_path: Path, log: bool) -> None:
    url = f"sqlite:///{tmp_path}/hub.db" if log else "memory://"
    async with Bus(url) as bus:
        hubs = Hubs(bus, max_items=1000, max_bytes=100_000)
        feeds = [await hubs.open("big.>", last_event_id=None) for _ in range(20)]
        assert len(hubs.hubs) == 1
        for i in range(100):  # 1 MB in all; nobody reads (20 stalled clients)
            await bus.publish("big.x", {"i": i, "pad": BIG})
        await bus.flush()
        hub = hubs.hubs["big.>"]
        async with asyncio.timeout(10):
            while hub.last < 100:
                await asyncio.sleep(0.01)
        assert hub.bytes <= 100_000  # the ring: about 10 events, not 100 x 20 clients
        assert len(hub.items) <= 10
        first = [await feed.next(5) for feed in feeds[:2]]
        assert first[0] is not None
        assert first[1] is not None
        if log:  # behind the ring: read from the log, every event, in order
            got = [first[0].env.event["i"]]
            while len(got) < 100:
                item = await feeds[0].next(5)
                assert item is not None
                got.append(item.env.event["i"])
            assert got == list(range(100))
        else:  # live: the oldest are lost, and counted
            assert feeds[0].dropped == first[0].env.event["i"]
            assert first[0].env is first[1].env  # one decoded envelope for every client
        for feed in feeds:
            feed.close()
        assert hubs.hubs == {}  # the last close released the hub
        assert hub.items == []


async def test_in_the_ring_every_client_gets_the_same_encoded_record() -> None:
    async with Bus() as bus:
        hubs = Hubs(bus, max_items=100, max_bytes=1_000_000)
        a = await hubs.open("a.>", last_event_id=None)
        b = await hubs.open("a.>", last_event_id=None)
        await bus.publish("a.b", {"n": 1})
        one, two = await a.next(5), await b.next(5)
        assert one is two  # decoded and encoded once
        assert one is not None
        assert one.record is not None
        assert b'"n":1' in one.record
        a.close()
        b.close()


async def test_a_live_hub_forgets_what_every_feed_has_read() -> None:
    """An idle client (one feed, say its session's topic) holds no events once it read them,
    however many went by; with several feeds, what they all read leaves every TRIM_EVERY
    events, and what a slower feed has yet to read stays."""
    from axonbus.gateway._feeds import TRIM_EVERY

    async with Bus() as bus:
        hubs = Hubs(bus, max_items=1000, max_bytes=1_000_000)
        alone = await hubs.open("one.>", last_event_id=None)
        for i in range(50):
            await bus.publish("one.x", {"i": i})
            item = await alone.next(5)
            assert item is not None
            assert item.env.event == {"i": i}
        hub = hubs.hubs["one.>"]
        assert (hub.items, hub.bytes) == ([], 0)
        assert alone.dropped == 0

        fast = await hubs.open("many.>", last_event_id=None)
        slow = await hubs.open("many.>", last_event_id=None)
        total = 2 * TRIM_EVERY
        for i in range(total):
            await bus.publish("many.x", {"i": i})
        got = []
        while len(got) < total:
            item = await fast.next(5)
            assert item is not None
            got.append(item.env.event["i"])
        assert got == list(range(total))
        many = hubs.hubs["many.>"]
        assert len(many.items) == total  # the slow feed has read none of them
        for i in range(TRIM_EVERY):
            item = await slow.next(5)
            assert item is not None
            assert item.env.event == {"i": i}
        for i in range(TRIM_EVERY):  # the next trim: what both have read leaves
            await bus.publish("many.x", {"i": total + i})
        async with asyncio.timeout(10):
            while many.last < total + TRIM_EVERY:
                await asyncio.sleep(0.01)
        assert many.items[0].env.event == {"i": TRIM_EVERY}
        assert (fast.dropped, slow.dropped) == (0, 0)
        for feed in (alone, fast, slow):
            feed.close()

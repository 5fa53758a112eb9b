"""The ``nats://`` writer's packs: consecutive same-topic publishes of one batch travel as one
NATS message (and one JetStream message), for plain, group and durable subscribers alike. And its
replies: a batch of nothing but replies waits for no round trip; a later one confirms them."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
from nats.aio.msg import Msg

from axonbus import Bus, Context, DeadLetter, Retry
from axonbus._events import Envelope
from axonbus.testing import settle
from axonbus.transports.nats import NatsTransport
from axonbus.transports.nats._pack import PACK, PACK_MAX, frames, pack, run_end
from tests.support.proxy import TcpProxy


@pytest.fixture
def name(nats_bus_name: str) -> str:
    return nats_bus_name


async def _js_api(url: str, subject: str) -> Any:
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        msg = await nc.request(f"$JS.API.{subject}", b"", timeout=2)
        return json.loads(msg.data)
    finally:
        await nc.close()


async def _consumer(url: str, name: str, durable: str) -> Any:
    return await _js_api(url, f"CONSUMER.INFO.AXONBUS_{name}.{durable}")


class Wire:
    """What a raw nats-py subscriber sees on the bus's event subjects."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, int, str | None]] = []  # topic, events, Nats-Msg-Id

    async def on_msg(self, msg: Msg) -> None:
        headers = msg.headers or {}
        count = len(frames(msg.data)[0]) if PACK in headers else 1
        self.messages.append((msg.subject.split(".ev.", 1)[1], count, headers.get("Nats-Msg-Id")))


async def _eventually(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def _transport(bus: Bus) -> NatsTransport:
    assert isinstance(bus.transport, NatsTransport)
    return bus.transport


def test_pack_frames_round_trip_and_runs_stop_at_topic_size_and_cut() -> None:
    ops = [("pub", "a", b"x" * n, f"id{n}") for n in (1, 2, 3)] + [("pub", "b", b"yy", "idb")]
    payload = pack(ops[:3])
    assert frames(payload) == ([b"x", b"xx", b"xxx"], True)
    assert frames(payload[:-1]) == ([b"x", b"xx"], False), "a truncated frame is reported"
    assert run_end(ops, 0, len(ops), 1 << 20) == 3, "the run ends where the topic changes"
    assert run_end(ops, 0, 2, 1 << 20) == 2, "nor does it cross a cut"
    assert run_end(ops, 0, len(ops), 4 + 1 + 4 + 2) == 2, "nor the byte budget"
    many = [("pub", "a", b"x", str(i)) for i in range(PACK_MAX + 5)]
    assert run_end(many, 0, len(many), 1 << 20) == PACK_MAX


async def test_mixed_topics_arrive_in_publish_order(nats_service: str, name: str) -> None:
    topics = ["mix.a", "mix.a", "mix.b", "mix.a", "mix.a", "mix.a"] * 30
    every: list[tuple[str, int]] = []
    only_a: list[int] = []
    grouped: list[int] = []
    own: list[int] = []
    wire = Wire()
    nc = await nats.connect(nats_service)
    try:
        await nc.subscribe(f"{name}.ev.mix.>", cb=wire.on_msg)
        await nc.flush()
        async with Bus(nats_service, name=name) as sub, Bus(nats_service, name=name) as pub:
            sub.subscribe("mix.>", lambda e, ctx: every.append((ctx.topic, e)))
            sub.subscribe("mix.a", only_a.append)
            sub.subscribe("mix.*", grouped.append, group="g")
            pub.subscribe("mix.>", own.append)  # the publisher hears its own events once
            await sub.flush()
            await pub.flush()
            for i, topic in enumerate(topics):
                pub.publish_nowait(topic, i)  # one loop tick: one batch
            await pub.flush()
            await settle(sub, lambda: len(every) == len(grouped) == len(topics))
            await settle(pub, lambda: len(own) == len(topics))
            await asyncio.sleep(0.2)
    finally:
        await nc.close()
    assert every == [(topic, i) for i, topic in enumerate(topics)]
    assert only_a == [i for i, topic in enumerate(topics) if topic == "mix.a"]
    assert grouped == list(range(len(topics)))
    assert own == list(range(len(topics))), "echo suppression works on packs too"
    # on the wire: one message per run of a topic (cut at PACK_MAX), lone events as they were
    assert sum(count for _, count, _ in wire.messages) == len(topics)
    assert [(t, c) for t, c, _ in wire.messages[:3]] == [("mix.a", 2), ("mix.b", 1), ("mix.a", 5)]


async def test_a_pack_is_acked_once_every_event_in_it_settled(nats_service: str, name: str) -> None:
    release = asyncio.Event()
    got: list[int] = []

    async def handler(event: int) -> None:
        if event == 1:
            await release.wait()
        got.append(event)

    async with Bus(nats_service, name=name) as sub, Bus(nats_service, name=name) as pub:
        sub.subscribe("pk.x", handler, durable="pk", concurrency=3)
        await sub.flush()
        for i in range(3):
            pub.publish_nowait("pk.x", i)
        await pub.flush()
        await _eventually(lambda: sorted(got) == [0, 2])  # and 1 waits
        stream = await _js_api(nats_service, f"STREAM.INFO.AXONBUS_{name}")
        assert stream["state"]["messages"] == 1, "the stream captured the pack as one message"
        await asyncio.sleep(0.2)
        await sub.flush()  # whatever was to be acknowledged is sent
        consumer = await _consumer(nats_service, name, "pk")
        assert consumer["num_ack_pending"] == 1, "not acked while one of its events is handled"
        release.set()
        await settle(sub, lambda: len(got) == 3)
        await sub.flush()
        consumer = await _consumer(nats_service, name, "pk")
    assert sorted(got) == [0, 1, 2]
    assert consumer["num_ack_pending"] == 0, "acked once all three were handled"
    assert consumer["delivered"]["consumer_seq"] == 1
    assert consumer["num_redelivered"] == 0


async def test_a_failing_event_in_a_pack_is_retried_in_process_then_dead_lettered(
    nats_service: str, name: str
) -> None:
    attempts: list[tuple[int, int]] = []
    letters: list[DeadLetter] = []

    async def handler(event: int, ctx: Context) -> None:
        attempts.append((event, ctx.attempt))
        if event == 1:
            raise RuntimeError(f"attempt {ctx.attempt}")

    retry = Retry(attempts=3, backoff=0.05, jitter=False)
    async with Bus(nats_service, name=name) as sub, Bus(nats_service, name=name) as pub:
        sub.subscribe("fl.x", handler, durable="fl", retry=retry)
        sub.subscribe(DeadLetter, letters.append)
        await sub.flush()
        for i in range(3):
            pub.publish_nowait("fl.x", i)
        await pub.flush()
        await settle(sub, lambda: len(letters) >= 1 and len(attempts) >= 5)
        await sub.flush()
        consumer = await _consumer(nats_service, name, "fl")
    assert attempts == [(0, 1), (1, 1), (1, 2), (1, 3), (2, 1)], "neighbours handled once"
    assert consumer["delivered"]["consumer_seq"] == 1, "retried in-process: one delivery"
    assert consumer["num_ack_pending"] == 0, "acked once the failing event was dead-lettered"
    letter = letters[0]
    assert (letter.event, letter.attempts, letter.error_message) == (1, 3, "attempt 3")


async def test_a_pack_held_by_a_dead_bus_is_redelivered_whole(nats_service: str, name: str) -> None:
    stuck = asyncio.Event()
    seen: list[tuple[str, int, int]] = []

    async def dying(event: int, ctx: Context) -> None:
        seen.append(("dying", event, ctx.attempt))
        if event == 1:
            stuck.set()
            await asyncio.sleep(60)

    opts = "?ack_wait=1&unavailable_timeout=0.3"
    parts = urlsplit(nats_service)
    async with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 4222) as proxy:
        dead = Bus(proxy.url_for(nats_service) + opts, name=name)
        async with Bus(nats_service + opts, name=name) as survivor:
            await dead.start()
            dead.subscribe("cr.x", dying, durable="cr")
            await dead.flush()
            for i in range(3):
                survivor.publish_nowait("cr.x", i)
            await survivor.flush()
            await asyncio.wait_for(stuck.wait(), 5)
            proxy.cut()  # it can neither ack, nak nor keep the pack in progress
            survivor.subscribe(
                "cr.x", lambda e, c: seen.append(("survivor", e, c.attempt)), durable="cr"
            )
            await settle(survivor, lambda: len(seen) >= 5, timeout=5)
            await dead.close(timeout=0.1)
    # event 0 was handled before the crash and comes again: duplicates are bounded by the pack;
    # no call was charged (first calls of a first delivery are not recorded; 2 never started)
    assert seen == [
        ("dying", 0, 1),
        ("dying", 1, 1),
        ("survivor", 0, 1),
        ("survivor", 1, 1),
        ("survivor", 2, 1),
    ]


async def test_a_closing_bus_gives_its_pack_back_at_once(nats_service: str, name: str) -> None:
    started = asyncio.Event()
    seen: list[tuple[str, int, int]] = []

    async def stuck(event: int, ctx: Context) -> None:
        seen.append(("first", event, ctx.attempt))
        started.set()
        await asyncio.sleep(60)

    first = Bus(nats_service, name=name)
    async with Bus(nats_service, name=name) as second:
        async with first:
            first.subscribe("cl.x", stuck, durable="cl")
            await first.flush()
            for i in range(3):
                second.publish_nowait("cl.x", i)
            await second.flush()
            await asyncio.wait_for(started.wait(), 5)
            second.subscribe(
                "cl.x", lambda e, c: seen.append(("second", e, c.attempt)), durable="cl"
            )
            await second.flush()
            await first.close(timeout=0.1)  # naks the pack: not after ack_wait
        await settle(second, lambda: len(seen) >= 4, timeout=3)
    # the call the close cancelled is charged; events 1 and 2 never started: not charged
    assert seen == [("first", 0, 1), ("second", 0, 2), ("second", 1, 1), ("second", 2, 1)]


async def test_a_resent_pack_is_stored_once(nats_service: str, name: str) -> None:
    got: list[int] = []
    wire = Wire()
    nc = await nats.connect(nats_service)
    try:
        await nc.subscribe(f"{name}.ev.rs.>", cb=wire.on_msg)
        await nc.flush()
        async with Bus(nats_service, name=name) as sub, Bus(nats_service, name=name) as bus:
            sub.subscribe("rs.x", got.append, durable="rs")
            await sub.flush()
            transport = _transport(bus)  # its writer runs nothing but these batches
            await _eventually(lambda: transport._stream_known)  # so events carry Msg-Ids

            def ops(first: int) -> list[Any]:
                envs = [Envelope("rs.x", i, id=f"e{i}") for i in range(first, first + 4)]
                return [transport.publish_op(env, bus._codec.encode(env)) for env in envs]

            for _ in range(2):  # as after a reconnect that resends the batch
                for op in ops(0):
                    transport.send_nowait(op)
                await bus.flush()
            for _ in range(2):
                # after a batch of the first two failed, the resend packs as that batch did
                transport._cuts.append(2)
                for op in ops(10):
                    transport.send_nowait(op)
                await bus.flush()
            await settle(sub, lambda: len(got) >= 8)
            await asyncio.sleep(0.3)
            info = await _js_api(nats_service, f"STREAM.INFO.AXONBUS_{name}")
    finally:
        await nc.close()
    assert got == [0, 1, 2, 3, 10, 11, 12, 13]
    assert [m[2] for m in wire.messages] == ["e0+4", "e0+4", *["e10+2", "e12+2"] * 2]
    assert info["state"]["last_seq"] == 3, "JetStream dropped the copies"


async def test_replies_wait_for_no_round_trip_until_a_flush(nats_service: str, name: str) -> None:
    async with Bus(nats_service, name=name) as server, Bus(nats_service, name=name) as client:
        server.respond("rr.x", lambda req: req + 1)
        await server.flush()
        transport = _transport(server)
        for i in range(3):
            assert await client.request("rr.x", i, timeout=2) == i + 1
        assert len(transport._held) == 3, "sent, not yet confirmed"
        await server.flush()
        assert transport._held == [], "the flush's round trip confirmed them"


async def test_a_batch_jetstream_did_not_confirm_is_sent_again(
    nats_service: str, name: str
) -> None:
    got: list[int] = []
    url = f"{nats_service}?write_timeout=0.5"
    async with Bus(url, name=name) as consumer, Bus(url, name=name) as publisher:
        consumer.subscribe("unconfirmed.x", got.append, durable="keep")
        await consumer.flush()
        await publisher.flush()
        transport = publisher.transport
        assert isinstance(transport, NatsTransport)
        swallowed: list[Msg] = []
        real = transport._on_puback

        def lose_the_first_acks(msg: Msg, batch: Any) -> None:
            if len(swallowed) < 3:  # as if JetStream had stayed silent about this batch
                swallowed.append(msg)
                return
            real(msg, batch)

        transport._on_puback = lose_the_first_acks  # type: ignore[method-assign]
        for i in range(3):
            publisher.publish_nowait("unconfirmed.x", i)
        await publisher.flush(timeout=10)  # confirmed only by the resend
        assert len(swallowed) == 3, "each unconfirmed send is retried (one PubAck per pack)"
        await settle(consumer, lambda: len(got) >= 3)
        await asyncio.sleep(0.3)
        assert got == [0, 1, 2], "the resend must be de-duplicated, nothing lost"
        assert transport.unconfirmed == 0

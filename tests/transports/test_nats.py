"""What only ``nats://`` does: JetStream durables, queue groups, native request/reply, outages.

Most tests use the shared nats-server (``AXONBUS_TEST_NATS_URL``); the outage tests run a
private one (``private_nats``) or go through a fault-injecting TCP proxy.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import logging
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest

from axonbus import (
    Bus,
    ConnectionLost,
    Context,
    DeadLetter,
    NoResponders,
    RemoteError,
    RequestTimeout,
    Retry,
)
from axonbus._events import Envelope
from axonbus.testing import settle
from axonbus.transports.nats import NatsTransport
from tests.support.brokers import NatsServer
from tests.support.fixtures import delete_nats_stream
from tests.support.proxy import TcpProxy


async def _js_api(url: str, subject: str) -> Any:
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        msg = await nc.request(f"$JS.API.{subject}", b"", timeout=2)
        return json.loads(msg.data)
    finally:
        await nc.close()


@pytest.fixture
def name(nats_bus_name: str) -> str:
    return nats_bus_name


@pytest.fixture
async def url(nats_service: str) -> str:
    return nats_service


def _proxy_to(url: str) -> TcpProxy:
    parts = urlsplit(url)
    return TcpProxy(parts.hostname or "127.0.0.1", parts.port or 4222)


def _transport(bus: Bus) -> NatsTransport:
    assert isinstance(bus.transport, NatsTransport)
    return bus.transport


async def _eventually(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


# -- durable subscriptions (JetStream) ---------------------------------------------------------


async def test_durable_keeps_what_was_published_while_its_bus_was_away(url: str, name: str) -> None:
    got: list[int] = []
    async with Bus(url, name=name) as consumer:
        consumer.subscribe("orders.*", got.append, durable="billing")
        await consumer.flush()
        async with Bus(url, name=name) as publisher:
            await publisher.publish("orders.1", 1)
            await settle(consumer, lambda: got == [1])
    async with Bus(url, name=name) as publisher:
        for i in range(2, 6):
            await publisher.publish(f"orders.{i}", i)
        await publisher.flush()
    info = await _js_api(url, f"STREAM.INFO.AXONBUS_{name}")
    assert info["state"]["messages"] == 4, "the stream keeps them for the absent durable"
    async with Bus(url, name=name) as consumer:
        consumer.subscribe("orders.*", got.append, durable="billing")
        await settle(consumer, lambda: len(got) >= 5)
        await asyncio.sleep(0.1)
    assert got == [1, 2, 3, 4, 5]


async def test_bus_stopped_mid_handler_hands_the_event_to_another_bus(url: str, name: str) -> None:
    started = asyncio.Event()
    attempts: list[tuple[str, int]] = []

    async def stuck(event: Any, ctx: Context) -> None:
        attempts.append(("first", ctx.attempt))
        started.set()
        await asyncio.sleep(60)

    first = Bus(url, name=name)
    async with Bus(url, name=name) as second:
        async with first:
            first.subscribe("jobs.x", stuck, durable="jobs")
            await first.flush()
            await first.publish("jobs.x", "work")
            await asyncio.wait_for(started.wait(), 5)
            second.subscribe(
                "jobs.x", lambda e, c: attempts.append(("second", c.attempt)), durable="jobs"
            )
            await second.flush()
            t0 = time.monotonic()
            await first.close(timeout=0.1)  # cancels the handler: the delivery is not acked
        await settle(second, lambda: len(attempts) >= 2)
        assert time.monotonic() - t0 < 5, "redelivered after ack_wait, not at once (nak)"
    assert attempts == [("first", 1), ("second", 2)]


async def test_a_bus_that_dies_mid_handler_loses_its_delivery_after_ack_wait(
    url: str, name: str
) -> None:
    started = asyncio.Event()
    attempts: list[tuple[str, int]] = []

    async def stuck(event: Any, ctx: Context) -> None:
        attempts.append(("dying", ctx.attempt))
        started.set()
        await asyncio.sleep(60)

    opts = "?ack_wait=1&unavailable_timeout=0.3"
    async with _proxy_to(url) as proxy:
        dying = Bus(proxy.url_for(url) + opts, name=name)
        async with Bus(url + opts, name=name) as survivor:
            await dying.start()
            dying.subscribe("jobs.x", stuck, durable="jobs")
            await dying.flush()
            await survivor.publish("jobs.x", "work")
            await asyncio.wait_for(started.wait(), 5)
            proxy.cut()  # the dying bus can neither ack, nak nor keep the delivery in progress
            survivor.subscribe(
                "jobs.x", lambda e, c: attempts.append(("survivor", c.attempt)), durable="jobs"
            )
            await settle(survivor, lambda: len(attempts) >= 2, timeout=5)
            await dying.close(timeout=0.1)
    # the first handler call of a first delivery is not recorded (no write per event), so
    # the survivor's call is numbered 1 again; from then on every call is charged
    assert attempts == [("dying", 1), ("survivor", 1)]


async def test_a_delivery_held_longer_than_ack_wait_is_kept_in_progress(
    url: str, name: str
) -> None:
    attempts: list[int] = []

    async def slow(event: Any, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        await asyncio.sleep(2.2)  # over twice the ack_wait of 1 s

    async with Bus(f"{url}?ack_wait=1", name=name) as a, Bus(f"{url}?ack_wait=1", name=name) as b:
        a.subscribe("long.x", slow, durable="long")
        b.subscribe("long.x", slow, durable="long")  # would get a redelivery
        await a.flush()
        await b.flush()
        await a.publish("long.x", "work")
        await settle(a, lambda: len(attempts) >= 1)
        await b.drain()
        await asyncio.sleep(0.3)
    assert attempts == [1], "the holder kept it in progress (+WPI): no redelivery"


async def test_redelivered_past_the_budget_is_dead_lettered(url: str, name: str) -> None:
    retry = Retry(attempts=2, backoff=0.001)
    started = asyncio.Event()

    async def stuck(event: Any) -> None:
        started.set()
        await asyncio.sleep(60)

    for round in range(2):  # two buses in a row stop mid-handler on the same event
        started.clear()
        async with Bus(url, name=name) as bus:
            bus.subscribe("pay.x", stuck, durable="pay", retry=retry)
            await bus.flush()
            if round == 0:
                await bus.publish("pay.x", "poison")
            await asyncio.wait_for(started.wait(), 5)
            await bus.close(timeout=0.05)
    handled: list[Any] = []
    letters: list[DeadLetter] = []
    async with Bus(url, name=name) as bus:
        bus.subscribe(DeadLetter, letters.append)
        bus.subscribe("pay.x", handled.append, durable="pay", retry=retry)
        await settle(bus, lambda: len(letters) >= 1)
    assert handled == [], "the third delivery is over the budget of 2: not handled again"
    letter = letters[0]
    assert (letter.error_type, letter.attempts, letter.event) == (
        "RedeliveryExhausted",
        3,
        "poison",
    )


async def test_failures_are_naked_with_backoff_then_dead_lettered(url: str, name: str) -> None:
    seen: list[tuple[int, float]] = []
    letters: list[DeadLetter] = []

    async def failing(event: Any, ctx: Context) -> None:
        seen.append((ctx.attempt, time.monotonic()))
        raise RuntimeError(f"attempt {ctx.attempt}")

    retry = Retry(attempts=3, backoff=0.2, jitter=False)  # delays 0.2 s then 0.4 s
    async with Bus(url, name=name) as bus:
        bus.subscribe("mail.x", failing, durable="mail", retry=retry)
        bus.subscribe(DeadLetter, letters.append)
        await bus.flush()
        await bus.publish("mail.x", "hello")
        await settle(bus, lambda: len(letters) >= 1)
        consumer = await _js_api(url, f"CONSUMER.INFO.AXONBUS_{name}.mail")
    assert [a for a, _ in seen] == [1, 2, 3]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(seen)]
    assert 0.18 <= gaps[0] < 1.0, gaps
    assert 0.38 <= gaps[1] < 1.5, gaps
    # the retries went through the server (nak with delay), not an in-process sleep
    assert consumer["delivered"]["consumer_seq"] == 3, "three deliveries by the server"
    assert consumer["num_ack_pending"] == 0, "dead-lettered means acknowledged"
    letter = letters[0]
    assert (letter.error_type, letter.error_message, letter.attempts) == (
        "RuntimeError",
        "attempt 3",
        3,
    )


async def test_same_event_id_is_stored_once(url: str, name: str) -> None:
    got: list[Any] = []
    async with Bus(url, name=name) as bus:
        bus.subscribe("dedupe.x", got.append, durable="dedupe")
        await bus.flush()
        transport = _transport(bus)
        env = Envelope("dedupe.x", "once", id="fixed-event-id-1")
        data = bus._codec.encode(env)
        for _ in range(3):  # as after a reconnect that resends a batch
            await transport.send(transport.publish_op(env, data))
            await bus.flush()
        await settle(bus, lambda: len(got) >= 1)
        await asyncio.sleep(0.3)
        info = await _js_api(url, f"STREAM.INFO.AXONBUS_{name}")
    assert got == ["once"]
    assert info["state"]["last_seq"] == 1, info["state"]


async def test_publishers_learn_when_the_stream_appears_and_goes(url: str, name: str) -> None:
    async with Bus(url, name=name) as publisher:
        stored = lambda: _transport(publisher)._stream_known  # noqa: E731
        assert not stored(), "no durable yet: batches are confirmed by a round trip"
        async with Bus(url, name=name) as consumer:
            consumer.subscribe("late.x", lambda e: None, durable="late")
            await consumer.flush()
            await _eventually(stored, 10)  # the stream-created advisory
        await delete_nats_stream(url, name)
        # the deleted-stream advisory, or else the 503 PubAck of the next publish, tells it;
        # either way a flush is not stuck waiting for PubAcks from a stream that is gone
        async with asyncio.timeout(10):
            await publisher.publish("late.x", 1)
            await publisher.flush()
        await _eventually(lambda: not stored(), 10)


async def test_durable_concurrency_runs_handlers_at_once(url: str, name: str) -> None:
    active = 0
    peak = 0
    four = asyncio.Event()

    async def handler(event: int) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if active >= 4:
            four.set()
        await asyncio.wait_for(four.wait(), 5)
        active -= 1

    async with Bus(url, name=name) as bus:
        bus.subscribe("par.x", handler, durable="par", concurrency=4)
        bus.subscribe("par.y", handler, group="par", concurrency=4)
        await bus.flush()
        for i in range(4):
            await bus.publish("par.x", i)
        await asyncio.wait_for(four.wait(), 5)
        assert peak == 4
        await bus.drain()
        four.clear()
        peak = 0
        for i in range(4):
            await bus.publish("par.y", i)
        await asyncio.wait_for(four.wait(), 5)
        assert peak == 4


async def test_durable_fetches_no_more_than_its_mailbox_holds(url: str, name: str) -> None:
    release = asyncio.Event()
    got: list[int] = []

    async def slow(event: int) -> None:
        await release.wait()
        got.append(event)

    async with Bus(url, name=name) as bus:
        sub = bus.subscribe("lim.x", slow, durable="lim", maxsize=3)
        await bus.flush()
        for i in range(20):
            await bus.publish("lim.x", i)
            await bus.flush()  # one message each (a burst would go as one pack, taken whole)
        await asyncio.sleep(0.3)
        stats = sub.stats()
        assert stats.queued + stats.in_flight <= 3
        consumer = await _js_api(url, f"CONSUMER.INFO.AXONBUS_{name}.lim")
        assert consumer["num_ack_pending"] <= 3
        release.set()
        await settle(bus, lambda: len(got) >= 20)
    assert got == list(range(20))


# -- groups, request/reply, plain --------------------------------------------------------------


async def test_group_across_buses_gives_each_event_to_one_member(url: str, name: str) -> None:
    seen: dict[str, list[int]] = {"a": [], "b": []}
    async with Bus(url, name=name) as a, Bus(url, name=name) as b:
        a.subscribe("work.*", seen["a"].append, group="workers")
        b.subscribe("work.*", seen["b"].append, group="workers")
        b.subscribe("work.*", lambda e: None, group="others")  # another group: its own copy
        await a.flush()
        await b.flush()
        for i in range(100):
            await a.publish(f"work.{i % 3}", i)
        await settle(a, lambda: len(seen["a"]) + len(seen["b"]) >= 100)
        await asyncio.sleep(0.2)
        await b.drain()
    assert sorted(seen["a"] + seen["b"]) == list(range(100))
    assert seen["a"], "a queue group spreads the events over its members"
    assert seen["b"], "a queue group spreads the events over its members"


async def test_responders_in_two_buses_share_the_requests(url: str, name: str) -> None:
    async with (
        Bus(url, name=name) as a,
        Bus(url, name=name) as b,
        Bus(url, name=name) as client,
    ):
        a.respond("calc.add", lambda req: ("a", req["x"] + 1))
        b.respond("calc.add", lambda req: ("b", req["x"] + 1))
        await a.flush()
        await b.flush()
        replies = await asyncio.gather(
            *(client.request("calc.add", {"x": i}, timeout=5) for i in range(60))
        )
    assert [r[1] for r in replies] == [i + 1 for i in range(60)]
    by = {r[0] for r in replies}
    assert by == {"a", "b"}, f"both responders answered: {by}"


async def test_request_errors_are_mapped(url: str, name: str) -> None:
    async def slow(req: Any) -> str:
        await asyncio.sleep(0.6)
        return "late"

    def broken(req: Any) -> None:
        raise KeyError("missing")

    async with Bus(url, name=name) as server, Bus(url, name=name) as client:
        server.respond("rpc.slow", slow)
        server.respond("rpc.broken", broken)
        server.respond("rpc.odd", lambda req: object())  # the reply cannot be encoded
        await server.flush()
        with pytest.raises(NoResponders) as no:
            await client.request("rpc.nobody", 1, timeout=2)
        assert no.value.topic == "rpc.nobody"
        t0 = time.monotonic()
        with pytest.raises(RequestTimeout) as late:
            await client.request("rpc.slow", 1, timeout=0.3)
        assert 0.25 < time.monotonic() - t0 < 1.5
        assert isinstance(late.value, TimeoutError)
        assert (late.value.topic, late.value.timeout) == ("rpc.slow", 0.3)
        with pytest.raises(RemoteError) as remote:
            await client.request("rpc.broken", 1, timeout=2)
        assert (remote.value.remote_type, remote.value.topic) == ("KeyError", "rpc.broken")
        assert "missing" in remote.value.remote_message
        with pytest.raises(RemoteError) as odd:
            await client.request("rpc.odd", 1, timeout=2)
        assert odd.value.remote_type == "TypeError"
        # timeout=None waits as long as it takes
        assert await client.request("rpc.slow", 1, timeout=None) == "late"


async def test_plain_wildcards_do_not_see_system_topics_of_other_buses(url: str, name: str) -> None:
    seen: list[str] = []
    async with Bus(url, name=name) as a, Bus(url, name=name) as b:
        b.subscribe(">", lambda e, ctx: seen.append(ctx.topic))
        b.subscribe("*.x", lambda e, ctx: seen.append(ctx.topic))
        await b.flush()
        await a.publish("$sys.x", 1)  # NATS itself would deliver this to both
        await a.publish("app.x", 2)
        await settle(b, lambda: len(seen) >= 2)
        await asyncio.sleep(0.2)
    assert sorted(seen) == ["app.x", "app.x"]


async def test_a_bus_does_not_hear_its_own_plain_publishes_twice(url: str, name: str) -> None:
    got: list[int] = []
    async with Bus(url, name=name) as bus:
        bus.subscribe("echo.x", got.append)
        bus.subscribe("echo.x", lambda e: None, durable="echo")  # the stream exists: PubAcks
        await bus.flush()
        for i in range(50):
            await bus.publish("echo.x", i)
        await bus.flush()
        await asyncio.sleep(0.3)
        await bus.drain()
    assert got == list(range(50))


async def test_bus_names_must_be_one_token(url: str) -> None:
    for bad in ("a.b", "a b", "a*", "a>", ""):
        bus = Bus(url, name=bad or None)
        if bad:
            with pytest.raises(ValueError, match="one token"):
                await bus.start()


async def test_url_options_and_secrets(url: str) -> None:
    with pytest.raises(ValueError, match="unknown URL option"):
        Bus(f"{url}?ack_wiat=3")
    with pytest.raises(ValueError, match="stream_storage"):
        Bus(f"{url}?stream_storage=tape")
    assert type(Bus("tls://127.0.0.1:4222").transport).__name__ == "TlsNatsTransport"
    bus = Bus("nats://alice:s3cret@127.0.0.1:1?unavailable_timeout=0.2&ack_wait=5")
    transport = _transport(bus)
    assert transport.ack_wait == 5.0
    assert "s3cret" not in repr(transport)
    with pytest.raises(ConnectionLost) as lost:
        await bus.start()
    assert "s3cret" not in str(lost.value)
    assert lost.value.__cause__ is not None


async def test_publish_nowait_and_wait_reach_another_bus(url: str, name: str) -> None:
    got: list[int] = []
    async with Bus(url, name=name) as here, Bus(url, name=name) as there:
        there.subscribe("nw.x", got.append)
        await there.flush()
        here.publish_nowait("nw.x", 1)
        result = await here.publish("nw.x", 2, wait=True)
        assert result.ok
        assert len(result) == 0  # no local subscriber; the server confirmed it
        await settle(there, lambda: got == [1, 2])


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in [m for m in sys.modules if m == "nats" or m.startswith("nats.")]:
        monkeypatch.setitem(sys.modules, module, None)
    # the package and its modules, so the driver import runs again
    for module in [m for m in sys.modules if m.startswith("axonbus.transports.nats")]:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(ImportError, match=r"pip install 'axonbus\[nats\]'"):
        importlib.import_module("axonbus.transports.nats")


# -- outages -----------------------------------------------------------------------------------


async def test_publish_raises_connection_lost_when_the_server_is_gone(
    private_nats: NatsServer,
) -> None:
    async with Bus(f"{private_nats.url}?unavailable_timeout=0.5", name="down") as bus:
        await bus.publish("a.b", 1)
        await bus.flush()
        await private_nats.akill()
        await _eventually(lambda: not _transport(bus).connected, 3)
        t0 = time.monotonic()
        with pytest.raises(ConnectionLost):
            await bus.publish("a.b", 2)
        assert 0.4 < time.monotonic() - t0 < 2.0
        t0 = time.monotonic()
        with pytest.raises(ConnectionLost):
            await bus.request("a.b", 1, timeout=None)
        assert time.monotonic() - t0 < 2.0


async def test_on_unavailable_log_counts_lost_publishes_but_not_durable_ones(
    private_nats: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="axonbus")
    url = f"{private_nats.url}?unavailable_timeout=0.3"
    async with Bus(url, name="down") as other:
        other.subscribe("orders.>", lambda e: None, durable="billing")  # kept in another bus
        await other.flush()
        bus = Bus(url, name="down", on_unavailable="log")
        async with bus:
            bus.subscribe("audit.*", lambda e: None, durable="audit")  # and in this one
            await bus.flush()
            await _eventually(lambda: _transport(bus).durable_topic("orders.new"), 3)
            await private_nats.akill()
            await _eventually(lambda: not _transport(bus).connected, 3)
            await bus.publish("chat.x", 1)  # plain: logged and counted, not raised
            await bus.publish("chat.y", 2)
            assert _transport(bus).lost_publishes == 2
            with pytest.raises(ConnectionLost, match="durable"):
                await bus.publish("orders.new", {"id": 1})
            with pytest.raises(ConnectionLost, match="durable"):
                await bus.publish("audit.x", 3)
    assert "not sent (2 lost so far)" in caplog.text


async def test_subscriptions_come_back_after_a_server_restart(private_nats: NatsServer) -> None:
    url = f"{private_nats.url}?unavailable_timeout=2"
    plain: list[int] = []
    group: list[int] = []
    durable: list[int] = []
    async with Bus(url, name="rs") as sub, Bus(url, name="rs") as pub:
        sub.subscribe("r.x", plain.append)
        sub.subscribe("r.x", group.append, group="g")
        sub.subscribe("r.x", durable.append, durable="d")
        await sub.flush()
        await pub.publish("r.x", 0)
        await settle(sub, lambda: len(plain) == len(group) == len(durable) == 1)

        await private_nats.arestart()
        t0 = time.monotonic()
        await _eventually(lambda: _transport(sub).connects == _transport(pub).connects == 2, 5)
        await _eventually(lambda: _transport(sub).connected and _transport(pub).connected, 5)
        i = 1
        while not (plain[-1:] == group[-1:] == durable[-1:] == [i - 1] and i > 1):
            assert time.monotonic() - t0 < 5, (plain, group, durable)
            try:
                await pub.publish("r.x", i)
            except ConnectionLost:
                pass
            i += 1
            await asyncio.sleep(0.1)
    assert durable == sorted(set(durable)), "no duplicates on the durable"


async def test_reconnects_after_a_cut_connection(url: str, name: str) -> None:
    got: list[int] = []
    async with (
        _proxy_to(url) as proxy,
        Bus(proxy.url_for(url), name=name) as via_proxy,
        Bus(url, name=name) as direct,
    ):
        via_proxy.subscribe("cut.x", got.append)
        await via_proxy.flush()
        proxy.cut()
        await _eventually(lambda: not _transport(via_proxy).connected, 3)
        proxy.heal()
        t0 = time.monotonic()
        await _eventually(lambda: _transport(via_proxy).connected, 5)
        assert time.monotonic() - t0 < 5
        await direct.publish("cut.x", 1)
        await settle(via_proxy, lambda: got == [1], timeout=5)
    assert _transport(via_proxy).connects == 2


async def _publish_until_refused(bus: Bus) -> None:
    for i in range(100_000):  # queued until the outage is noticed, then refused
        await bus.publish("bh.x", i)


async def test_a_blackholed_connection_hangs_nothing(url: str, name: str) -> None:
    opts = "?unavailable_timeout=0.5&write_timeout=1"
    async with _proxy_to(url) as proxy:
        bus = Bus(proxy.url_for(url) + opts, name=name)
        await bus.start()
        bus.respond("bh.rpc", lambda r: r)
        await bus.flush()
        proxy.blackhole()
        async with asyncio.timeout(8):
            t0 = time.monotonic()
            with pytest.raises(ConnectionLost):
                await bus.publish("bh.x", 1, wait=True)  # never confirmed: raises in time
            with pytest.raises((RequestTimeout, ConnectionLost)):
                await bus.request("bh.rpc", 1, timeout=1)
            with pytest.raises(ConnectionLost):
                await _publish_until_refused(bus)
            with pytest.raises(ConnectionLost):
                await bus.flush()
            assert time.monotonic() - t0 < 6
            await bus.close(timeout=1)
        proxy.heal()

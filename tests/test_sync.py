"""axonbus.sync.Bus: the blocking client, from plain threads."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from axonbus import BusClosed, Event, NoResponders, RemoteError, RequestTimeout
from axonbus.sync import Bus
from tests.support.services import nats_url, redis_url, require


class Order(Event, topic="orders.{region}.new"):
    region: str
    order_id: int


@pytest.fixture(params=["memory", "redis", "nats"])
def bus(request: pytest.FixtureRequest) -> Any:
    """The blocking client on each transport (seed 003 runs it against Redis)."""
    if request.param == "memory":
        url = "memory://"
    else:
        url = redis_url() if request.param == "redis" else nats_url()
        require(request.param, url)
    with Bus(url, name=f"sync{uuid.uuid4().hex[:8]}") as b:
        yield b


def test_publish_subscribe_with_plain_handlers_in_threads(bus: Bus) -> None:
    seen: list[tuple[int, str]] = []
    loop_thread = bus._thread
    bus.subscribe(Order, lambda o: seen.append((o.order_id, threading.current_thread().name)))
    for i in range(5):
        bus.publish(Order(region="eu", order_id=i))
    bus.drain()
    assert [i for i, _ in seen] == list(range(5))
    assert all(name != loop_thread.name for _, name in seen)  # offloaded, not on the loop


def test_async_handlers_and_publish_wait(bus: Bus) -> None:
    async def double(event: int) -> int:
        return event * 2

    bus.subscribe("math.x", double)
    result = bus.publish_wait("math.x", 21)
    assert [o.value for o in result] == [42]


def test_request_reply_and_errors(bus: Bus) -> None:
    bus.respond("math.add", lambda req: req["a"] + req["b"])

    def slow(req: Any) -> None:
        time.sleep(1)

    bus.respond("math.slow", slow)
    bus.respond("math.div", lambda req: req["a"] / req["b"])
    assert bus.request("math.add", {"a": 1, "b": 2}) == 3
    with pytest.raises(RemoteError, match="ZeroDivisionError"):
        bus.request("math.div", {"a": 1, "b": 0})
    with pytest.raises(NoResponders):
        bus.request("math.none", {})
    with pytest.raises(RequestTimeout):
        bus.request("math.slow", {}, timeout=0.05)


def test_responder_blocking_does_not_stall_other_traffic(bus: Bus) -> None:
    gate = threading.Event()
    bus.respond("slow.op", lambda req: gate.wait(5))
    got: list[int] = []
    bus.subscribe("fast.x", got.append)
    t = threading.Thread(target=lambda: bus.request("slow.op", None))
    t.start()
    bus.publish("fast.x", 1)  # no drain(): the slow request is still pending on purpose
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got == [1]
    gate.set()
    t.join(5)


def test_wait_for_from_another_thread(bus: Bus) -> None:
    def later() -> None:
        time.sleep(0.05)
        bus.publish("job.done", {"id": 7})

    t = threading.Thread(target=later)
    t.start()
    assert bus.wait_for("job.done", where=lambda e: e["id"] == 7, timeout=5) == {"id": 7}
    t.join()
    with pytest.raises(TimeoutError):
        bus.wait_for("job.never", timeout=0.05)


def test_stream_is_a_blocking_iterator(bus: Bus) -> None:
    with bus.stream("feed.>") as events:
        for i in range(3):
            bus.publish(f"feed.{i}", i)
        assert [events.get(timeout=5) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(TimeoutError):
            events.get(timeout=0.05)


def test_stream_ends_when_bus_closes() -> None:
    b = Bus()
    events = b.stream("x.>")
    b.publish("x.a", 1)
    b.close()
    assert list(events) == [1]


def test_stats_history_and_unsubscribe() -> None:
    with Bus(history=10) as b:
        sub = b.subscribe("h.x", lambda e: None)
        b.publish("h.x", 1)
        b.drain()
        assert b.handler_count() == 1
        assert b.stats()[0].delivered == 1
        assert [e.event for e in b.history("h.>")] == [1]
        assert b.unsubscribe(sub)
        assert b.handler_count() == 0


def test_close_is_idempotent_and_calls_after_close_raise() -> None:
    b = Bus()
    assert b.state == "started"
    b.close()
    b.close()
    with pytest.raises(BusClosed):
        b.publish("a.b", 1)
    assert not b._thread.is_alive()


def test_blocking_call_from_own_handler_is_refused(bus: Bus) -> None:
    errors: list[str] = []

    async def handler(event: Any) -> None:
        try:
            bus.publish("other.x", 1)
        except RuntimeError as exc:
            errors.append(str(exc))

    bus.subscribe("self.x", handler)
    bus.publish("self.x", 1)
    bus.drain()
    assert errors
    assert "inside one of its own handlers" in errors[0]


def test_bad_url_fails_at_construction_and_stops_the_thread() -> None:
    before = threading.active_count()
    with pytest.raises(ValueError, match="no transport"):
        Bus("kafka://nowhere")
    time.sleep(0.05)
    assert threading.active_count() <= before

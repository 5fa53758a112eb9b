"""Connection faults between a bus and the shared broker, injected by a TCP proxy.

The bus under test (``a``) reaches the broker (the shared Redis, nats-server or RabbitMQ)
only through :class:`TcpProxy`; a second bus ``b`` on the same bus name connects directly and
plays the rest of the system. Before and after each fault the test checks every path: a plain
subscription, a durable subscription and a responder on ``a`` fed by ``b``, and ``a``'s own
publishes reaching ``b``.

- cut: every connection is reset, and so is every new one until healed;
- blackhole: a half-open network (nothing passes, nothing closes). Redis notices it through its
  socket timeout (``max(5, unavailable_timeout)`` s) or, on an idle connection, an unanswered
  PING (after 3 s, given up ``max(5, unavailable_timeout)`` s later); NATS through its
  ``write_timeout`` (``max(2, unavailable_timeout)`` s) or its pings; RabbitMQ through AMQP
  heartbeats (aiormq gives up after ``3 * (heartbeat + 1)`` s, 18 s with the default 5).

Timings are printed (``-s``) and bounded by the assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from axonbus import Bus, ConnectionLost, NoResponders, RequestTimeout
from tests.support.fixtures import delete_amqp_bus
from tests.support.proxy import TcpProxy
from tests.support.services import amqp_url, host_port, nats_url, redis_url, require

UNAVAILABLE = 0.5  # the URL's unavailable_timeout for the bus behind the proxy
MARGIN = 1.0  # scheduling slack on a busy 2-core machine
RECONNECT = 5.0  # the issue: reconnect within 5 s after the fault heals
# the longest a half-open connection may go unnoticed (see the module docstring)
DETECTION = {
    "redis": 3.0 + max(5.0, UNAVAILABLE),
    "nats": 2 * max(2.0, UNAVAILABLE) + 5.0,
    "amqp": 3 * (5 + 1) + 5.0,  # aiormq's grace, and the heartbeat check's own period
}

pytestmark = pytest.mark.slow


def with_options(url: str, **options: Any) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update({k: str(v) for k, v in options.items()})
    return parts._replace(query=urlencode(query)).geturl()


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition``; the seconds it took, AssertionError after ``timeout``."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


@pytest.fixture(params=["redis", "nats", "amqp"])
def service(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, URL) of a shared broker; skips (fails in CI) if it is not up."""
    url = {"redis": redis_url, "nats": nats_url, "amqp": amqp_url}[request.param]()
    require(request.param, url)
    return request.param, url


@pytest.fixture
async def proxy(service: tuple[str, str]) -> AsyncIterator[TcpProxy]:
    async with TcpProxy(*host_port(service[1])) as p:
        yield p
        assert not p.errors, p.errors


@pytest.fixture
def bus_name(service: tuple[str, str]) -> Iterator[str]:
    """A bus name of its own; what it left on the shared broker is deleted afterwards."""
    name = f"faults{uuid.uuid4().hex[:10]}"
    yield name
    kind, url = service
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(url)
        try:
            keys = list(client.scan_iter(match=f"{name}[:/]*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
    elif kind == "amqp":
        asyncio.run(delete_amqp_bus(url, name, durables=["faulty", "faulty-closing"]))
    else:
        asyncio.run(_delete_stream(url, f"AXONBUS_{name}"))


async def _delete_stream(url: str, stream: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url, allow_reconnect=False)
    try:
        await nc.jetstream().delete_stream(stream)
    except NotFoundError:
        pass
    finally:
        await nc.close()


class Recorder:
    """A handler that records what it gets."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.got.append(event)

    async def wait_for(self, value: Any, timeout: float = RECONNECT) -> None:
        await wait_until(lambda: value in self.got, timeout, f"{value!r} never arrived")


class System:
    """Bus ``a`` (through the proxy) with a plain, a durable subscription and a responder;
    bus ``b`` (direct) publishing to them, requesting, and subscribed to ``a``'s publishes."""

    def __init__(self, a: Bus, b: Bus) -> None:
        self.a, self.b = a, b
        self.plain, self.durable, self.outbound = Recorder(), Recorder(), Recorder()
        a.subscribe("fault.plain", self.plain)
        a.subscribe("fault.durable", self.durable, durable="faulty")
        a.respond("fault.rpc", lambda x: x * 2)
        b.subscribe("fault.out", self.outbound)

    async def check(self, label: str, timeout: float = RECONNECT) -> float:
        """Every path works; the seconds it took."""
        t0 = time.monotonic()
        await self.b.publish("fault.durable", f"{label}-durable")
        await self.a.publish("fault.out", f"{label}-out")
        # the responder's bus may still be restoring its subscription (NATS then answers "no
        # responders" at once): ask again until the deadline
        async with asyncio.timeout(timeout):
            while True:
                try:
                    reply = await self.b.request("fault.rpc", 21, timeout=timeout)
                    break
                except NoResponders:
                    await asyncio.sleep(0.05)
        assert reply == 42
        await self.durable.wait_for(f"{label}-durable", timeout)
        await self.outbound.wait_for(f"{label}-out", timeout)

        # plain pub/sub is at most once: a subscriber misses what is published while its
        # subscription is not yet back, so publish until one arrives
        async def plain() -> None:
            while f"{label}-plain" not in self.plain.got:
                await self.b.publish("fault.plain", f"{label}-plain")
                await asyncio.sleep(0.05)

        await asyncio.wait_for(plain(), timeout)
        return time.monotonic() - t0


@pytest.mark.timeout(40)
async def test_connection_cut_and_healed(
    service: tuple[str, str], proxy: TcpProxy, bus_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="axonbus")
    kind, direct = service
    url = with_options(proxy.url_for(direct), unavailable_timeout=UNAVAILABLE)
    a = Bus(url, name=bus_name)
    logs = Bus(url, name=bus_name, on_unavailable="log")
    b = Bus(direct, name=bus_name)
    system = System(a, b)
    async with a, logs, b:
        await a.flush()
        await system.check("before")

        proxy.cut()
        connections_before = proxy.connections_total
        t_cut = time.monotonic()
        detected = await wait_until(
            lambda: not a.transport.connected and not logs.transport.connected,  # type: ignore[attr-defined]
            2,
            "the cut was not noticed",
        )
        # durable events published meanwhile wait on the broker for the subscriber
        await b.publish("fault.durable", "during-durable")

        t0 = time.monotonic()
        with pytest.raises(ConnectionLost):
            await a.publish("fault.out", "refused")
        publish_raised = time.monotonic() - t0
        assert publish_raised <= UNAVAILABLE + MARGIN

        t0 = time.monotonic()
        with pytest.raises(ConnectionLost):
            await a.request("fault.rpc", 1, timeout=10)
        request_raised = time.monotonic() - t0
        assert request_raised <= UNAVAILABLE + MARGIN

        # on_unavailable="log": the publish returns after unavailable_timeout, counted as lost
        lost_before = logs.transport.lost_publishes  # type: ignore[attr-defined]
        t0 = time.monotonic()
        await logs.publish("fault.out", "logged-and-lost")
        logged_returned = time.monotonic() - t0
        assert logs.transport.lost_publishes == lost_before + 1  # type: ignore[attr-defined]
        assert logged_returned <= UNAVAILABLE + MARGIN

        # both buses retried meanwhile, with backoff: a few attempts, not a tight loop
        attempts = proxy.connections_total - connections_before
        outage = time.monotonic() - t_cut
        proxy.heal()
        reconnected = await wait_until(
            lambda: a.transport.connected and logs.transport.connected,  # type: ignore[attr-defined]
            RECONNECT,
            "no reconnect after the cut healed",
        )
        restored = await system.check("after")
        await system.durable.wait_for("during-durable")
        assert "refused" not in system.outbound.got  # raised means not sent
        await asyncio.sleep(0.2)
        assert "logged-and-lost" not in system.outbound.got

    messages = [r.getMessage() for r in caplog.records]
    assert any("connection lost" in m for m in messages), messages
    assert any("not sent" in m for m in messages), messages  # the logged, lost publish
    assert any(m.endswith("reconnected") for m in messages), messages
    print(
        f"{kind} cut: noticed in {detected:.2f}s; publish raised in {publish_raised:.2f}s, request "
        f"in {request_raised:.2f}s, logged publish returned in {logged_returned:.2f}s; "
        f"{attempts} connection attempts in {outage:.2f}s of outage; reconnected "
        f"{reconnected:.2f}s after heal, all paths working {restored:.2f}s later"
    )
    assert 2 <= attempts <= 40, attempts


@pytest.mark.timeout(60)
async def test_half_open_connection(
    service: tuple[str, str], proxy: TcpProxy, bus_name: str
) -> None:
    kind, direct = service
    url = with_options(proxy.url_for(direct), unavailable_timeout=UNAVAILABLE)
    a = Bus(url, name=bus_name)
    closing = Bus(url, name=bus_name)
    b = Bus(direct, name=bus_name)
    system = System(a, b)
    closing.subscribe("fault.plain", lambda _: None)
    closing.subscribe("fault.durable", lambda _: None, durable="faulty-closing")
    async with a, b, contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(closing.close)  # closed in the test; again is a no-op
        await closing.start()
        await closing.flush()
        await a.flush()
        await system.check("before")

        proxy.blackhole()
        t_fault = time.monotonic()
        timings: dict[str, float] = {}

        # a publish queues the event and returns (the socket looks fine): bounded, not hung
        t0 = time.monotonic()
        try:
            await a.publish("fault.out", "during-out")
        except ConnectionLost:
            pass
        timings["publish"] = time.monotonic() - t0
        assert timings["publish"] <= UNAVAILABLE + MARGIN

        # a request gives up within its own timeout
        t0 = time.monotonic()
        with pytest.raises((RequestTimeout, ConnectionLost)):
            await a.request("fault.rpc", 1, timeout=1.0)
        timings["request"] = time.monotonic() - t0
        assert timings["request"] <= 1.0 + MARGIN

        # flush has no answer to wait for; its timeout bounds it
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await a.flush(timeout=1.0)
        timings["flush"] = time.monotonic() - t0

        # closing a bus on a dead network ends too, with an unsent publish and blocked readers
        await closing.publish("fault.out", "never-sent")
        t0 = time.monotonic()
        await asyncio.wait_for(closing.close(), 20)
        timings["close"] = time.monotonic() - t0

        # the dead connection is noticed: a write or socket timeout, or an unanswered PING
        await wait_until(
            lambda: not a.transport.connected,  # type: ignore[attr-defined]
            DETECTION[kind] + MARGIN - (time.monotonic() - t_fault),
            "the half-open connection was not noticed",
        )
        timings["noticed"] = time.monotonic() - t_fault
        t0 = time.monotonic()
        with pytest.raises(ConnectionLost):
            await a.publish("fault.out", "refused")
        timings["publish after"] = time.monotonic() - t0
        assert timings["publish after"] <= UNAVAILABLE + MARGIN

        proxy.heal()
        timings["reconnect"] = await wait_until(
            lambda: a.transport.connected,  # type: ignore[attr-defined]
            RECONNECT,
            "no reconnect after the blackhole healed",
        )
        timings["paths"] = await system.check("after")
        # what was queued before the fault was noticed is sent after the reconnect
        await system.outbound.wait_for("during-out")
        assert "refused" not in system.outbound.got

    print(f"{kind} half-open: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))

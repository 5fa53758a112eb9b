"""``Bus(on_unavailable="log")`` starts without its broker and connects in the background.

The broker is a private server started on its own port only after the bus started (PostgreSQL
and RabbitMQ, shared here, sit behind a proxy that refuses connections until healed).
Meanwhile publishes follow the outage rules (logged and counted); once connected, the
subscriptions made before are in place and events flow both ways.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from axonbus import Bus, ConnectionLost, NoResponders, RequestTimeout
from tests.support.fixtures import drop_postgres_tables, make_nats, make_redis
from tests.support.proxy import TcpProxy
from tests.support.services import host_port

DEADLINE = 20.0  # generous: a loaded 2-core machine, and the reconnect backoff (up to 2 s)


async def until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)


async def exercise(bus: Bus, url: str, name: str) -> None:
    """``bus`` was started before its broker; once it is up, every path works."""
    plain: list[Any] = []
    grouped: list[Any] = []
    bus.subscribe("bg.plain", plain.append)
    bus.subscribe("bg.group", grouped.append, group="workers")
    bus.respond("bg.double", lambda x: x * 2)
    await until(lambda: bus.transport.connected, "the bus connected")  # type: ignore[attr-defined]
    async with Bus(url, name=name) as other:
        outbound: list[Any] = []
        other.subscribe("bg.out", outbound.append)
        await other.publish("bg.group", "g1")
        await until(lambda: "g1" in grouped, "the group delivery")
        # plain subscriptions are at most once: publish until one gets through (the other
        # bus's own subscriptions may take a moment on a slow machine)
        await keep_publishing(lambda: other.publish("bg.plain", "p"), lambda: "p" in plain)
        reply = None
        deadline = time.monotonic() + DEADLINE
        while reply is None:
            try:
                reply = await other.request("bg.double", 21, timeout=2.0)
            except (NoResponders, RequestTimeout):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert reply == 42
        await keep_publishing(lambda: bus.publish("bg.out", "o"), lambda: "o" in outbound)


async def keep_publishing(publish: Callable[[], Any], arrived: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not arrived():
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing arrived within {DEADLINE}s")
        await publish()
        again = time.monotonic() + 0.5
        while not arrived() and time.monotonic() < again:
            await asyncio.sleep(0.02)


async def start_early(url: str, name: str, caplog: pytest.LogCaptureFixture) -> Bus:
    bus = Bus(url, name=name, on_unavailable="log")
    with caplog.at_level(logging.WARNING, logger="axonbus"):
        await bus.start()
    assert "connecting in the background" in caplog.text
    assert bus.state == "started"
    transport: Any = bus.transport
    assert not transport.connected
    await bus.publish("bg.lost", 1)  # logged and counted, as during any outage
    assert transport.lost_publishes == 1
    return bus


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["redis", "nats"])
async def test_starts_before_its_broker(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_redis(tmp_path / kind) if kind == "redis" else make_nats(tmp_path / kind)
    name = f"bg{uuid.uuid4().hex[:8]}"
    url = f"{server.url}?unavailable_timeout=0.5"
    bus = await start_early(url, name, caplog)
    try:
        await server.astart()
        await exercise(bus, server.url, name)
    finally:
        await bus.close()
        await server.astop()


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_postgres_starts_before_it_is_reachable(
    postgres_service: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"bg{uuid.uuid4().hex[:8]}"
    async with TcpProxy(*host_port(postgres_service)) as proxy:
        proxy.cut()
        url = proxy.url_for(postgres_service) + "?unavailable_timeout=0.5"
        bus = await start_early(url, name, caplog)
        try:
            proxy.heal()
            await exercise(bus, postgres_service, name)
        finally:
            await bus.close()
            await drop_postgres_tables(postgres_service, name)


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_amqp_starts_before_it_is_reachable(
    amqp_service: str, amqp_bus_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with TcpProxy(*host_port(amqp_service)) as proxy:
        proxy.cut()
        url = proxy.url_for(amqp_service) + "?unavailable_timeout=0.5"
        bus = await start_early(url, amqp_bus_name, caplog)
        try:
            proxy.heal()
            await exercise(bus, amqp_service, amqp_bus_name)
        finally:
            await bus.close()


async def test_raise_policy_still_raises(tmp_path: Path) -> None:
    server = make_redis(tmp_path / "redis")  # never started: nothing listens on its port
    bus = Bus(f"{server.url}?unavailable_timeout=0.5")
    with pytest.raises(ConnectionLost):
        await bus.start()
    await bus.close()

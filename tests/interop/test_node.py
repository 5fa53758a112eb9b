"""Node.js clients talk to axonbus in CloudEvents: the official ``nats``, ``redis`` and
``amqplib`` npm clients and the ``cloudevents`` npm SDK (versions pinned in
``node/package.json`` and its lock), installed once per session with ``npm ci``. The Node
program (``node/interop.mjs``) receives the bus's events and checks each with the SDK,
publishes events axonbus handlers receive, and on NATS and RabbitMQ calls an axonbus responder
and answers an axonbus request.

Skipped without ``node`` and ``npm`` (and their services), failed when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from axonbus import Bus, Event
from tests.support.services import skip_or_fail, with_option

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = NODE_DIR / "interop.mjs"


class Order(Event, name="interop.order"):
    order: int
    item: str


@pytest.fixture(scope="session")
def node_peer() -> list[str]:
    """The command that runs the Node peer, its packages installed (``npm ci``, once)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        skip_or_fail("node and npm are needed for the Node.js interop tests")
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    stamp = NODE_DIR / "node_modules" / ".axonbus-lock"
    # npm ci wipes and reinstalls node_modules: skipped when the lock did not change
    if not stamp.exists() or stamp.read_bytes() != lock:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            skip_or_fail(f"npm ci failed in {NODE_DIR}: {done.stderr[-2000:]}")
        stamp.write_bytes(lock)
    return [node, str(SCRIPT)]


class Peer:
    """The running Node program: its JSON lines, read one at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, key: str, timeout: float = 30.0) -> Any:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    err = await self.proc.stderr.read() if self.proc.stderr else b""
                    pytest.fail(f"the Node peer exited: {err.decode()[-2000:]}")
                message = json.loads(raw)
                if "error" in message:
                    pytest.fail(f"the Node peer failed: {message['error']}")
                if key in message:
                    return message[key]


@pytest.fixture
async def start_peer(node_peer: list[str]) -> AsyncIterator[Any]:
    started: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> Peer:
        proc = await asyncio.create_subprocess_exec(
            *node_peer,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        started.append(proc)
        return Peer(proc)

    yield start
    for proc in started:
        if proc.stdin is not None:
            proc.stdin.close()  # the peer returns once its stdin ends
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _until(condition: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def _check_received(received: list[dict[str, Any]], name: str) -> None:
    """What the SDK read from the bus's three events: the documented attributes."""
    assert [e["type"] for e in received] == ["interop.order", "axonbus.value", "axonbus.value"]
    assert [e["data"] for e in received] == [
        {"order": 7, "item": "tea"},
        {"text": "hi"},
        [1, 2, 3],
    ]
    first = received[0]
    assert first["specversion"] == "1.0"
    assert first["subject"] == "interop.to_node"
    assert first["source"].startswith(f"axonbus://{name}/")
    assert first["correlationid"] == "corr-7"
    assert first["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert first["datacontenttype"] == "application/json"
    assert first["time"].endswith("Z")


async def _publish_to_node(bus: Bus) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await bus.publish(
        "interop.to_node",
        Order(order=7, item="tea"),
        correlation_id="corr-7",
        headers={"traceparent": traceparent},
    )
    await bus.publish("interop.to_node", {"text": "hi"})
    await bus.publish("interop.to_node", [1, 2, 3])


def _check_from_node(got: list[Any], headers: list[dict[str, str]]) -> None:
    assert got == [
        Order(order=1, item="tea"),  # decoded to the registered class by its type
        {"__event__": "com.example.note", "text": "from node"},  # no class: a dict
    ]
    assert headers[0] == {}  # correlationid is the envelope's, not a header


@pytest.mark.timeout(120)
async def test_node_over_nats(start_peer: Any, nats_service: str, nats_bus_name: str) -> None:
    name = nats_bus_name
    got: list[Any] = []
    headers: list[dict[str, str]] = []
    correlations: list[str | None] = []
    async with Bus(with_option(nats_service, "wire", "cloudevents"), name=name) as bus:

        async def on_event(event: Any, ctx: Any) -> None:
            got.append(event)
            headers.append(dict(ctx.envelope.headers))
            correlations.append(ctx.envelope.correlation_id)

        bus.subscribe("interop.from_node", on_event)

        async def py_rpc(order: Order) -> dict[str, Any]:
            return {"double": order.order * 2, "item": order.item}

        bus.respond("interop.py_rpc", py_rpc)
        await bus.flush()
        peer = await start_peer("nats", nats_service, name, "3")
        await peer.line("ready")
        await _publish_to_node(bus)
        _check_received(await peer.line("received"), name)
        reply = await peer.line("reply")
        assert reply["data"] == {"double": 42, "item": "cake"}
        assert reply["subject"] == "interop.py_rpc"
        assert reply["source"].startswith(f"axonbus://{name}/")
        await peer.line("published")
        await _until(lambda: len(got) >= 2)
        _check_from_node(got, headers)
        assert correlations[0] == "node-corr"
        # an axonbus request answered by the Node responder
        answer = await bus.request("interop.node_rpc", {"a": 2, "b": 3}, timeout=10)
        assert answer == {"__event__": "interop.node_reply", "sum": 5, "asked": "axonbus.value"}


@pytest.mark.timeout(120)
async def test_node_over_amqp(start_peer: Any, amqp_service: str, amqp_bus_name: str) -> None:
    name = amqp_bus_name
    got: list[Any] = []
    headers: list[dict[str, str]] = []
    correlations: list[str | None] = []
    async with Bus(with_option(amqp_service, "wire", "cloudevents"), name=name) as bus:

        async def on_event(event: Any, ctx: Any) -> None:
            got.append(event)
            headers.append(dict(ctx.envelope.headers))
            correlations.append(ctx.envelope.correlation_id)

        bus.subscribe("interop.from_node", on_event)

        async def py_rpc(order: Order) -> dict[str, Any]:
            return {"double": order.order * 2, "item": order.item}

        bus.respond("interop.py_rpc", py_rpc)
        await bus.flush()
        peer = await start_peer("amqp", amqp_service, name, "3")
        await peer.line("ready")
        await _publish_to_node(bus)
        _check_received(await peer.line("received"), name)
        reply = await peer.line("reply")
        assert reply["data"] == {"double": 42, "item": "cake"}
        assert reply["subject"] == "interop.py_rpc"
        assert reply["source"].startswith(f"axonbus://{name}/")
        await peer.line("published")
        await _until(lambda: len(got) >= 2)
        _check_from_node(got, headers)
        assert correlations[0] == "node-corr"
        # an axonbus request answered by the Node responder
        answer = await bus.request("interop.node_rpc", {"a": 2, "b": 3}, timeout=10)
        assert answer == {"__event__": "interop.node_reply", "sum": 5, "asked": "axonbus.value"}


@pytest.mark.timeout(120)
async def test_node_over_redis(
    start_peer: Any, redis_service: str, redis_raw: Any, redis_bus_name: str
) -> None:
    name = redis_bus_name
    got: list[Any] = []
    headers: list[dict[str, str]] = []
    async with Bus(with_option(redis_service, "wire", "cloudevents"), name=name) as bus:

        async def on_event(event: Any, ctx: Any) -> None:
            got.append(event)
            headers.append(dict(ctx.envelope.headers))

        bus.subscribe("interop.from_node", on_event)
        await bus.flush()
        peer = await start_peer("redis", redis_service, name, "3")
        await peer.line("ready")
        await _publish_to_node(bus)
        _check_received(await peer.line("received"), name)
        await peer.line("published")
        await _until(lambda: len(got) >= 2)
        _check_from_node(got, headers)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("broker", ["nats", "redis", "amqp"])
async def test_node_events_reach_a_compact_bus(
    broker: str, start_peer: Any, nats_service: str, redis_service: str, redis_raw: Any,
    amqp_service: str, nats_bus_name: str, redis_bus_name: str, amqp_bus_name: str,
) -> None:  # fmt: skip
    # a bus on the default wire still receives CloudEvents from other clients
    url, name = {
        "nats": (nats_service, nats_bus_name),
        "redis": (redis_service, redis_bus_name),
        "amqp": (amqp_service, amqp_bus_name),
    }[broker]
    got: list[Any] = []
    async with Bus(url, name=name) as bus:

        async def py_rpc(order: Order) -> dict[str, Any]:
            return {"double": order.order * 2, "item": order.item}

        bus.respond("interop.py_rpc", py_rpc)
        bus.subscribe("interop.from_node", got.append)
        await bus.flush()
        peer = await start_peer(broker, url, name, "0")
        await peer.line("ready")
        if broker != "redis":  # a CloudEvent request is answered with one, whatever the wire
            assert (await peer.line("reply"))["data"] == {"double": 42, "item": "cake"}
        await peer.line("published")
        await _until(lambda: len(got) >= 2)
    assert got == [
        Order(order=1, item="tea"),
        {"__event__": "com.example.note", "text": "from node"},
    ]

"""``wire=cloudevents`` on Redis and NATS, against plain clients (redis-py, nats-py) and the
CloudEvents SDK: what axonbus emits is valid, what other clients publish is received, and a
message that is neither format is counted and logged, never fatal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import orjson
import pytest
import redis.asyncio as aioredis
from cloudevents.core.bindings.http import HTTPMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from axonbus import Bus, Event, MessageTooLarge, RemoteError
from tests.support.services import with_option

WIRES = ["compact", "cloudevents"]


class Ordered(Event, name="ce.wire.ordered"):
    order: int


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def foreign(**attrs: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "f-1", "source": "/python/raw", **attrs}


def validate_binary(headers: dict[str, str], body: bytes) -> Any:
    return from_binary(HTTPMessage(dict(headers), body), JSONFormat())


# -- Redis ---------------------------------------------------------------------------------------


async def test_redis_emits_one_structured_cloudevent_per_message_and_entry(
    redis_service: str, redis_bus_name: str, redis_raw: aioredis.Redis
) -> None:
    name = redis_bus_name
    pubsub = redis_raw.pubsub()
    await pubsub.psubscribe(f"{name}/*")
    async with Bus(with_option(redis_service, "wire", "cloudevents"), name=name) as bus:
        bus.subscribe("orders.*", lambda e: None, durable="keep")
        await bus.flush()
        for i in range(5):  # one loop tick: compact mode would pack them in one message
            await bus.publish("orders.new", Ordered(order=i), correlation_id=f"c{i}")
        await bus.flush()
        seen: list[Any] = []
        async with asyncio.timeout(10):
            while len(seen) < 5:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if msg is not None:
                    seen.append(JSONFormat().read(None, msg["data"]))
        entries = await redis_raw.xrange(f"{name}:durable:keep")
    await pubsub.aclose()
    assert [e.get_data() for e in seen] == [{"order": i} for i in range(5)]
    assert {e.get_type() for e in seen} == {"ce.wire.ordered"}
    assert [e.get_extension("correlationid") for e in seen] == [f"c{i}" for i in range(5)]
    stored = [JSONFormat().read(None, fields[b"d"]) for _, fields in entries]
    assert [e.get_subject() for e in stored] == ["orders.new"] * 5


@pytest.mark.parametrize("wire", WIRES)
async def test_redis_receives_other_clients_cloudevents_and_counts_the_rest(
    wire: str,
    redis_service: str,
    redis_bus_name: str,
    redis_raw: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="axonbus")
    name = redis_bus_name
    got: list[Any] = []
    async with Bus(with_option(redis_service, "wire", wire), name=name) as bus:
        bus.subscribe("orders.>", got.append)
        grouped: list[Any] = []
        bus.subscribe("orders.>", grouped.append, group="workers")
        await bus.flush()
        # an agent publishing plain JSON on the same channel: not a CloudEvent
        await redis_raw.publish(f"{name}/orders.new", b'{"text": "plain JSON"}')
        await redis_raw.publish(f"{name}/orders.new", b"\x00\x00\x00garbage")
        event = foreign(type="ce.wire.ordered", data={"order": 3}, traceparent="00-ab-cd-01")
        await redis_raw.publish(f"{name}/orders.new", orjson.dumps(event))
        unknown = foreign(type="com.example.note", data={"text": "hi"})
        await redis_raw.publish(f"{name}/orders.note", orjson.dumps(unknown))
        await until(lambda: len(got) >= 2)
        assert got == [Ordered(order=3), {"__event__": "com.example.note", "text": "hi"}]
        assert bus.transport.undecodable.count == 2  # type: ignore[attr-defined]
        await bus.publish("orders.after", {"still": "working"})
        await until(lambda: len(got) >= 3)
    logged = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(logged) == 1, logged  # once per burst, with the reason
    assert "specversion" in logged[0]
    assert f"{name}/orders.new" in logged[0]


# -- NATS ----------------------------------------------------------------------------------------


@pytest.fixture
async def raw_nats(nats_service: str) -> AsyncIterator[nats.NATS]:
    nc = await nats.connect(nats_service)
    yield nc
    await nc.close()


async def test_nats_emits_one_binary_cloudevent_per_message(
    nats_service: str, nats_bus_name: str, raw_nats: nats.NATS
) -> None:
    name = nats_bus_name
    seen: list[Any] = []

    async def on_msg(msg: Any) -> None:
        seen.append(validate_binary(msg.headers or {}, msg.data))

    await raw_nats.subscribe(f"{name}.ev.>", cb=on_msg)
    await raw_nats.flush()
    async with Bus(with_option(nats_service, "wire", "cloudevents"), name=name) as bus:
        for i in range(5):  # one loop tick: compact mode would pack them in one message
            await bus.publish("orders.new", Ordered(order=i), headers={"priority": "high"})
        await bus.publish("orders.raw", b"\x01\x02")
        await bus.flush()
        await until(lambda: len(seen) >= 6)
    assert [e.get_data() for e in seen[:5]] == [{"order": i} for i in range(5)]
    assert {e.get_extension("priority") for e in seen[:5]} == {"high"}
    assert seen[5].get_type() == "axonbus.bytes"
    assert seen[5].get_datacontenttype() == "application/octet-stream"
    data = seen[5].get_data()  # the SDK reads the raw body as text
    assert (data.encode() if isinstance(data, str) else data) == b"\x01\x02"


@pytest.mark.parametrize("wire", WIRES)
async def test_nats_receives_other_clients_cloudevents_and_counts_the_rest(
    wire: str, nats_service: str, nats_bus_name: str, raw_nats: nats.NATS
) -> None:
    name = nats_bus_name
    got: list[Any] = []
    async with Bus(with_option(nats_service, "wire", wire), name=name) as bus:
        bus.subscribe("orders.>", got.append)
        await bus.flush()
        subject = f"{name}.ev.orders.new"
        await raw_nats.publish(subject, b'{"text": "plain JSON"}')
        binary = {"ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/go/app",
                  "ce-type": "ce.wire.ordered", "content-type": "application/json"}  # fmt: skip
        await raw_nats.publish(subject, b'{"order": 5}', headers=binary)
        structured = foreign(type="com.example.note", data={"text": "hi"})
        await raw_nats.publish(subject, orjson.dumps(structured))
        await raw_nats.flush()
        await until(lambda: len(got) >= 2)
        assert got == [Ordered(order=5), {"__event__": "com.example.note", "text": "hi"}]
        assert bus.transport.undecodable.count == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("wire", WIRES)
async def test_a_plain_nats_client_calls_an_axonbus_responder_with_a_cloudevent(
    wire: str, nats_service: str, nats_bus_name: str, raw_nats: nats.NATS
) -> None:
    name = nats_bus_name
    async with Bus(with_option(nats_service, "wire", wire), name=name) as bus:

        async def double(order: Ordered) -> dict[str, int]:
            if order.order < 0:
                raise ValueError("negative order")
            return {"double": order.order * 2}

        bus.respond("calc.double", double)
        await bus.flush()
        headers = {"ce-specversion": "1.0", "ce-id": "req-1", "ce-source": "/node/cli",
                   "ce-type": "ce.wire.ordered", "content-type": "application/json"}  # fmt: skip
        reply = await raw_nats.request(
            f"{name}.rpc.calc.double", b'{"order": 21}', 5, headers=headers
        )
        event = validate_binary(reply.headers or {}, reply.data)
        assert event.get_data() == {"double": 42}
        assert event.get_extension("causationid") == "req-1"
        assert event.get_subject() == "calc.double"
        failed = await raw_nats.request(
            f"{name}.rpc.calc.double", b'{"order": -1}', 5, headers={**headers, "ce-id": "r2"}
        )
        error = validate_binary(failed.headers or {}, failed.data)
        assert error.get_type() == "axonbus.error"
        assert error.get_data() == {"error": "ValueError", "message": "negative order"}


@pytest.mark.parametrize("structured", [False, True])
async def test_an_axonbus_request_calls_a_plain_nats_responder(
    structured: bool, nats_service: str, nats_bus_name: str, raw_nats: nats.NATS
) -> None:
    name = nats_bus_name
    asked: list[Any] = []

    async def responder(msg: Any) -> None:
        request = validate_binary(msg.headers or {}, msg.data)
        asked.append(request)
        order = request.get_data()["order"]
        if structured:
            body = foreign(id="rep", type="com.example.reply", data={"n": order + 1})
            # not msg.respond: nats-py would send the request's headers back with it
            await raw_nats.publish(msg.reply, orjson.dumps(body))
            return
        headers = {"ce-specversion": "1.0", "ce-id": "rep", "ce-source": "/go/responder",
                   "ce-type": "com.example.reply", "content-type": "application/json"}  # fmt: skip
        await raw_nats.publish(msg.reply, orjson.dumps({"n": order + 1}), headers=headers)

    await raw_nats.subscribe(f"{name}.rpc.calc.inc", cb=responder)
    await raw_nats.flush()
    async with Bus(with_option(nats_service, "wire", "cloudevents"), name=name) as bus:
        reply = await bus.request("calc.inc", Ordered(order=1), timeout=5)
        assert reply == {"__event__": "com.example.reply", "n": 2}
    assert asked[0].get_type() == "ce.wire.ordered"
    assert asked[0].get_subject() == "calc.inc"


async def test_a_plain_responder_error_reply_raises_remote_error(
    nats_service: str, nats_bus_name: str, raw_nats: nats.NATS
) -> None:
    name = nats_bus_name

    async def responder(msg: Any) -> None:
        body = foreign(type="axonbus.error", data={"error": "KeyError", "message": "no such"})
        await raw_nats.publish(msg.reply, orjson.dumps(body))

    await raw_nats.subscribe(f"{name}.rpc.calc.err", cb=responder)
    await raw_nats.flush()
    async with Bus(with_option(nats_service, "wire", "cloudevents"), name=name) as bus:
        with pytest.raises(RemoteError, match="no such") as caught:
            await bus.request("calc.err", {"x": 1}, timeout=5)
    assert caught.value.remote_type == "KeyError"


@pytest.mark.parametrize("broker", ["redis", "nats"])
async def test_max_message_bytes_counts_the_cloudevent(
    broker: str,
    redis_service: str,
    nats_service: str,
    redis_bus_name: str,
    nats_bus_name: str,
    redis_raw: aioredis.Redis,  # removes the bus's keys afterwards
) -> None:
    url, name = (
        (redis_service, redis_bus_name) if broker == "redis" else (nats_service, nats_bus_name)
    )
    # the compact envelope fits; the CloudEvent with its attributes does not
    compact = len(orjson.dumps({"v": 1, "id": "x" * 32, "topic": "t.x", "timestamp": 1.0,
                                "kind": "value", "data": "a" * 600}))  # fmt: skip
    async with Bus(url, name=name, wire="cloudevents", max_message_bytes=compact + 40) as bus:
        with pytest.raises(MessageTooLarge):
            await bus.publish("t.x", "a" * 600)
        await bus.publish("t.x", "small")

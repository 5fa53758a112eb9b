"""``wire=cloudevents`` on RabbitMQ, against a plain client (aio-pika) and the CloudEvents SDK's
RabbitMQ binding: what axonbus emits is valid, what other clients publish (binary, structured,
or with the AMQP 1.0 binding's ``cloudEvents_`` names) is received in both wires, requests go
both ways, and a message that is neither format is counted and rejected, never fatal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import orjson
import pytest
from cloudevents.core.bindings.rabbitmq import RabbitMQMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from axonbus import Bus, Event, MessageTooLarge, RemoteError, Retry
from tests.support.services import with_option

WIRES = ["compact", "cloudevents"]


class Ordered(Event, name="ce.amqp.ordered"):
    order: int


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def validate(message: aio_pika.abc.AbstractIncomingMessage) -> Any:
    """The SDK's reading of a binary-mode message (fails on an invalid CloudEvent)."""
    headers = {k: v for k, v in (message.headers or {}).items() if isinstance(v, str)}
    raw = RabbitMQMessage(headers, message.content_type, message.body)
    return from_binary(raw, JSONFormat())


def binary_headers(**more: str) -> dict[str, Any]:
    return {"ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/node/app",
            "ce-type": "ce.amqp.ordered", **more}  # fmt: skip


@pytest.fixture
async def raw(amqp_service: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    conn = await aio_pika.connect(amqp_service)
    async with conn:
        yield await conn.channel()


async def exchange(
    channel: aio_pika.abc.AbstractChannel, name: str
) -> aio_pika.abc.AbstractExchange:
    return await channel.get_exchange(name, ensure=False)


async def test_emits_one_binary_cloudevent_per_message(
    amqp_service: str, amqp_bus_name: str, raw: aio_pika.abc.AbstractChannel
) -> None:
    name = amqp_bus_name
    seen: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with Bus(with_option(amqp_service, "wire", "cloudevents"), name=name) as bus:
        queue = await raw.declare_queue("", exclusive=True)
        await queue.bind(f"axonbus.{name}", routing_key="orders.#")
        await queue.consume(seen.append, no_ack=True)
        for i in range(5):
            await bus.publish("orders.new", Ordered(order=i), headers={"priority": "high"})
        await bus.publish("orders.raw", b"\x01\x02", correlation_id="c-9")
        await bus.flush()
        await until(lambda: len(seen) >= 6)
    events = [validate(m) for m in seen]
    assert [e.get_data() for e in events[:5]] == [{"order": i} for i in range(5)]
    assert {e.get_type() for e in events[:5]} == {"ce.amqp.ordered"}
    assert {e.get_subject() for e in events[:5]} == {"orders.new"}
    assert {e.get_extension("priority") for e in events[:5]} == {"high"}
    assert {m.content_type for m in seen[:5]} == {"application/json"}
    assert events[0].get_source().startswith(f"axonbus://{name}/")
    assert events[5].get_type() == "axonbus.bytes"
    assert seen[5].content_type == "application/octet-stream"
    assert events[5].get_extension("correlationid") == "c-9"
    data = events[5].get_data()
    assert (data.encode() if isinstance(data, str) else data) == b"\x01\x02"


@pytest.mark.parametrize("wire", WIRES)
async def test_receives_other_clients_cloudevents_and_counts_the_rest(
    wire: str, amqp_service: str, amqp_bus_name: str, raw: aio_pika.abc.AbstractChannel
) -> None:
    name = amqp_bus_name
    plain: list[Any] = []
    kept: list[Any] = []
    async with Bus(with_option(amqp_service, "wire", wire), name=name) as bus:
        bus.subscribe("orders.>", plain.append)
        bus.subscribe("orders.>", kept.append, durable="keep")
        await bus.flush()
        events = await exchange(raw, f"axonbus.{name}")

        async def send(body: bytes, **props: Any) -> None:
            await events.publish(aio_pika.Message(body, **props), routing_key="orders.new")

        await send(b'{"text": "plain JSON"}')  # neither: counted, rejected
        await send(b'{"order": 5}', headers=binary_headers(), content_type="application/json")
        structured = {"specversion": "1.0", "id": "s1", "source": "/go/app",
                      "type": "com.example.note", "data": {"text": "hi"}}  # fmt: skip
        await send(orjson.dumps(structured), content_type="application/cloudevents+json")
        amqp10 = {"cloudEvents_specversion": "1.0", "cloudEvents_id": "a1",
                  "cloudEvents_source": "/java/jms",
                  "cloudEvents_type": "ce.amqp.ordered"}  # fmt: skip
        await send(b'{"order": 7}', headers=amqp10, content_type="application/json")
        expected = [Ordered(order=5), {"__event__": "com.example.note", "text": "hi"},
                    Ordered(order=7)]  # fmt: skip
        await until(lambda: len(plain) >= 3 and len(kept) >= 3)
        assert plain == expected
        assert kept == expected
        # the plain queue and the durable's each met the undecodable message once
        await until(lambda: bus.transport.undecodable.count == 2)  # type: ignore[attr-defined]
    durable = await raw.declare_queue(f"axonbus.{name}.durable.keep", passive=True)
    assert durable.declaration_result.message_count == 0  # rejected, not requeued


@pytest.mark.parametrize("wire", WIRES)
async def test_a_plain_client_calls_an_axonbus_responder_with_a_cloudevent(
    wire: str, amqp_service: str, amqp_bus_name: str, raw: aio_pika.abc.AbstractChannel
) -> None:
    name = amqp_bus_name
    async with Bus(with_option(amqp_service, "wire", wire), name=name) as bus:

        async def double(order: Ordered) -> dict[str, int]:
            if order.order < 0:
                raise ValueError("negative order")
            return {"double": order.order * 2}

        bus.respond("calc.double", double)
        await bus.flush()
        replies = await raw.declare_queue("", exclusive=True)
        got: list[aio_pika.abc.AbstractIncomingMessage] = []
        await replies.consume(got.append, no_ack=True)
        rpc = await exchange(raw, f"axonbus.{name}.rpc")
        for request_id, order in (("req-1", 21), ("req-2", -1)):
            message = aio_pika.Message(
                orjson.dumps({"order": order}), headers=binary_headers(**{"ce-id": request_id}),
                content_type="application/json", reply_to=replies.name, correlation_id=request_id,
            )  # fmt: skip
            await rpc.publish(message, routing_key="calc.double")
        await until(lambda: len(got) >= 2)
    by_id = {m.correlation_id: validate(m) for m in got}
    assert by_id["req-1"].get_data() == {"double": 42}
    assert by_id["req-1"].get_extension("causationid") == "req-1"
    assert by_id["req-1"].get_subject() == "calc.double"
    assert by_id["req-2"].get_type() == "axonbus.error"
    assert by_id["req-2"].get_data() == {"error": "ValueError", "message": "negative order"}


@pytest.mark.parametrize("error", [False, True])
async def test_an_axonbus_request_calls_a_plain_responder(
    error: bool, amqp_service: str, amqp_bus_name: str, raw: aio_pika.abc.AbstractChannel
) -> None:
    name = amqp_bus_name
    asked: list[Any] = []
    async with Bus(with_option(amqp_service, "wire", "cloudevents"), name=name) as bus:
        # the responder's queue, bound like an axonbus responder's
        queue = await raw.declare_queue("", exclusive=True)
        await queue.bind(f"axonbus.{name}.rpc", routing_key="calc.inc")

        async def responder(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            request = validate(msg)
            asked.append(request)
            if error:
                data = {"error": "KeyError", "message": "no such"}
                kind = "axonbus.error"
            else:
                data, kind = {"n": request.get_data()["order"] + 1}, "com.example.reply"
            headers = binary_headers(**{"ce-id": "rep", "ce-type": kind})
            reply = aio_pika.Message(orjson.dumps(data), headers=headers,
                                     content_type="application/json",
                                     correlation_id=msg.correlation_id)  # fmt: skip
            await raw.default_exchange.publish(reply, routing_key=msg.reply_to or "")

        await queue.consume(responder, no_ack=True)
        if error:
            with pytest.raises(RemoteError, match="no such") as caught:
                await bus.request("calc.inc", Ordered(order=1), timeout=10)
            assert caught.value.remote_type == "KeyError"
        else:
            reply = await bus.request("calc.inc", Ordered(order=1), timeout=10)
            assert reply == {"__event__": "com.example.reply", "n": 2}
    assert asked[0].get_type() == "ce.amqp.ordered"
    assert asked[0].get_subject() == "calc.inc"


async def test_max_message_bytes_counts_the_cloudevent(
    amqp_service: str, amqp_bus_name: str
) -> None:
    # the compact envelope fits; the CloudEvent with its attributes does not
    compact = len(orjson.dumps({"v": 1, "id": "x" * 32, "topic": "t.x", "timestamp": 1.0,
                                "kind": "value", "data": "a" * 600}))  # fmt: skip
    url = with_option(amqp_service, "wire", "cloudevents")
    async with Bus(url, name=amqp_bus_name, max_message_bytes=compact + 40) as bus:
        with pytest.raises(MessageTooLarge):
            await bus.publish("t.x", "a" * 600)
        with pytest.raises(MessageTooLarge):  # a request is a CloudEvent too
            await bus.request("t.x", "a" * 600, timeout=5)
        await bus.publish("t.x", "small")


@pytest.mark.parametrize("backoff", [0.0, 0.05])  # an immediate requeue, a delay queue
async def test_a_retried_cloudevent_without_subject_keeps_its_topic(
    backoff: float, amqp_service: str, amqp_bus_name: str, raw: aio_pika.abc.AbstractChannel
) -> None:
    name = amqp_bus_name
    calls: list[tuple[Any, str]] = []

    async def flaky(order: Ordered, ctx: Any) -> None:
        calls.append((order, ctx.envelope.topic))
        if len(calls) == 1:
            raise RuntimeError("not yet")

    async with Bus(with_option(amqp_service, "wire", "cloudevents"), name=name) as bus:
        retry = Retry(attempts=3, backoff=backoff)
        bus.subscribe("orders.>", flaky, durable="flaky", retry=retry)
        await bus.flush()
        events = await exchange(raw, f"axonbus.{name}")
        message = aio_pika.Message(b'{"order": 4}', headers=binary_headers(),
                                   content_type="application/json")  # fmt: skip
        await events.publish(message, routing_key="orders.new")  # no ce-subject
        await until(lambda: len(calls) >= 2, timeout=20)
        assert calls == [(Ordered(order=4), "orders.new")] * 2
        assert bus.transport.undecodable.count == 0  # type: ignore[attr-defined]


async def test_a_reply_too_large_for_the_wire_is_an_error_reply(
    amqp_service: str, amqp_bus_name: str
) -> None:
    url = with_option(amqp_service, "wire", "cloudevents")
    async with (
        Bus(url, name=amqp_bus_name, max_message_bytes=2_000) as server,
        Bus(url, name=amqp_bus_name) as client,
    ):
        server.respond("calc.big", lambda n: "a" * n)
        await server.flush()
        assert await client.request("calc.big", 10, timeout=10) == "a" * 10
        with pytest.raises(RemoteError) as caught:
            await client.request("calc.big", 5_000, timeout=10)
        assert caught.value.remote_type == "MessageTooLarge"


def test_the_wire_option_is_the_bus_s_not_aiormq_s() -> None:
    bus = Bus("amqp://guest:guest@127.0.0.1:5672/?wire=cloudevents")
    assert bus.transport.wire == "cloudevents"  # type: ignore[attr-defined]
    assert "wire" not in bus.transport._amqp_url  # type: ignore[attr-defined]
    assert Bus("amqp://127.0.0.1/").transport.wire == "compact"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="wire"):
        Bus("amqp://127.0.0.1/?wire=bogus")

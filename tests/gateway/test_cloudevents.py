"""CloudEvents at the gateway: ``POST /v1/publish`` in structured and binary mode, and
``GET /v1/events?format=cloudevents``; what it emits is checked by the CloudEvents SDK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from cloudevents.core.formats.json import JSONFormat

from axonbus import Bus, Event
from axonbus.gateway import TokenSet, create_app
from tests.gateway.helpers import SECRET_UI, SSEReader, asgi_client, auth, running_server

MakeApp = Callable[..., Any]


class Shipped(Event, name="gw.ce.shipped"):
    order: int
    carrier: str = "post"


def structured(**attrs: Any) -> bytes:
    event = {"specversion": "1.0", "id": "ext-1", "source": "/shop/web", **attrs}
    return orjson.dumps(event)


STRUCTURED = {"content-type": "application/cloudevents+json"}


async def test_a_structured_cloudevent_is_published_on_its_subject(
    bus: Bus, make_app: MakeApp
) -> None:
    seen: list[tuple[Any, dict[str, str], str | None]] = []
    bus.subscribe("orders.>", lambda e, ctx: seen.append((e, ctx.headers, ctx.correlation_id)))
    body = structured(type="gw.ce.shipped", subject="orders.shipped", data={"order": 3},
                      traceparent="00-ab-cd-01", correlationid="c-9")  # fmt: skip
    async with asgi_client(make_app()) as client:
        r = await client.post("/v1/publish", content=body, headers=STRUCTURED)
    assert r.status_code == 200, r.text
    assert r.json()["topic"] == "orders.shipped"
    await bus.drain()
    event, headers, correlation = seen[0]
    assert event == Shipped(order=3)
    assert headers == {"traceparent": "00-ab-cd-01", "cloudeventid": "ext-1",
                       "cloudeventsource": "/shop/web"}  # fmt: skip
    assert correlation == "c-9"


async def test_a_binary_cloudevent_and_the_topic_in_the_path(bus: Bus, make_app: MakeApp) -> None:
    seen: list[Any] = []
    bus.subscribe("orders.>", seen.append)
    headers = {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "/go",
               "ce-type": "com.example.note", "content-type": "application/json"}  # fmt: skip
    async with asgi_client(make_app()) as client:
        r = await client.post("/v1/publish/orders.note", content=b'{"text": "hi"}', headers=headers)
        assert r.status_code == 200, r.text
        text = await client.post(
            "/v1/publish/orders.text",
            content=b"plain words",
            headers={**headers, "content-type": "text/plain"},
        )
        assert text.status_code == 200, text.text
    await bus.drain()
    assert seen == [
        {"__event__": "com.example.note", "text": "hi"},  # no class of that type: a dict
        {"__event__": "com.example.note", "data": "plain words"},
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [(structured(type="t"), 400, "no_topic"),
     (structured(subject="a.b"), 400, "invalid_cloudevent"),
     (b'{"specversion": "0.3"}', 400, "invalid_cloudevent"),
     (b"not json", 400, "invalid_cloudevent"),
     (structured(type="gw.ce.shipped", subject="a.b", data={"order": "x"}), 422,
      "invalid_event")],
)  # fmt: skip
async def test_what_is_not_a_cloudevent_is_refused_with_the_reason(
    bus: Bus, make_app: MakeApp, body: bytes, status: int, code: str
) -> None:
    async with asgi_client(make_app()) as client:
        r = await client.post("/v1/publish", content=body, headers=STRUCTURED)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


async def test_publish_without_a_topic_takes_only_cloudevents(bus: Bus, make_app: MakeApp) -> None:
    async with asgi_client(make_app()) as client:
        r = await client.post("/v1/publish", json={"text": "plain"})
    assert r.status_code == 415


async def test_the_token_must_allow_the_cloudevents_topic(bus: Bus, tokens: TokenSet) -> None:
    app = create_app(bus, tokens=tokens)
    body = structured(type="t.x", subject="admin.secret", data={})
    async with asgi_client(app) as client:
        r = await client.post(
            "/v1/publish", content=body, headers={**STRUCTURED, **auth(SECRET_UI)}
        )
    assert r.status_code == 403, r.text


async def test_events_stream_as_cloudevents(bus: Bus) -> None:
    async with running_server(create_app(bus)) as base, httpx.AsyncClient(base_url=base) as client:
        async with client.stream("GET", "/v1/events?pattern=orders.>&format=cloudevents") as r:
            assert r.status_code == 200
            reader = SSEReader(r)
            await reader.block()
            sent = await bus.publish("orders.shipped", Shipped(order=1), correlation_id="c1")
            await bus.publish("orders.raw", b"\x00\x01")
            one = await reader.event()
            two = await reader.event()
        bad = await client.get("/v1/events?format=xml")
    assert bad.status_code == 400
    assert one["event"] == "orders.shipped"
    first = JSONFormat().read(None, orjson.dumps(one["data"]))
    assert first.get_id() == sent.id
    assert first.get_type() == "gw.ce.shipped"
    assert first.get_subject() == "orders.shipped"
    assert first.get_extension("correlationid") == "c1"
    assert first.get_data() == {"order": 1, "carrier": "post"}
    second = JSONFormat().read(None, orjson.dumps(two["data"]))
    assert second.get_data() == b"\x00\x01"

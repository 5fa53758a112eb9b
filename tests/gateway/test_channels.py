"""WebhookChannel (outbound POSTs with retries and signatures, inbound route) and signatures."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from axonbus import Bus, HandlerFailed, Retry
from axonbus.channels import ChannelManager, ChannelMessage, ChannelReply
from axonbus.gateway import (
    TokenSet,
    WebhookChannel,
    WebhookDeliveryFailed,
    create_app,
    sign,
    verify,
)
from tests.gateway.helpers import SECRET_ADMIN, SECRET_UI, asgi_client, auth

FAST = Retry(attempts=3, backoff=0.001, max_backoff=0.01, jitter=False)
REPLY = ChannelReply(channel_type="crm", user_id="u1", content="hello", reply_to="m1")


def _mock(responses: list[Any], seen: list[httpx.Request]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def test_sign_and_verify() -> None:
    body = b'{"x": 1}'
    ts = str(int(time.time()))
    headers = {"X-Axonbus-Timestamp": ts, "X-Axonbus-Signature": sign("k", ts, body)}
    assert verify("k", headers, body)
    assert not verify("other", headers, body)
    assert not verify("k", headers, body + b" ")
    assert not verify("k", {}, body)
    old = str(int(time.time()) - 3600)
    stale = {"X-Axonbus-Timestamp": old, "X-Axonbus-Signature": sign("k", old, body)}
    assert not verify("k", stale, body)
    assert not verify("k", {**headers, "X-Axonbus-Timestamp": "soon"}, body)


async def test_replies_are_posted_and_signed(bus: Bus) -> None:
    seen: list[httpx.Request] = []
    client = _mock([httpx.Response(200)], seen)
    hook = WebhookChannel(
        bus, "https://hooks.test/in", channel_type="crm", secret="s3cr3t-hook", retry=FAST,
        client=client,
        headers={"X-Team": "a"},
    )  # fmt: skip
    async with ChannelManager(bus) as manager:
        await manager.attach(hook)
        await bus.publish(REPLY)
        await bus.drain()
    (request,) = seen
    assert request.url == "https://hooks.test/in"
    assert json.loads(request.content) == REPLY.model_dump(mode="json")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-team"] == "a"
    assert verify("s3cr3t-hook", request.headers, request.content)
    assert hook.delivered == 1
    assert "s3cr3t" not in repr(hook)
    await client.aclose()


async def test_retries_with_backoff_then_succeeds(bus: Bus) -> None:
    seen: list[httpx.Request] = []
    answers = [
        httpx.ConnectError("refused"),
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(204),
    ]
    client = _mock(answers, seen)
    retry = Retry(attempts=4, backoff=0.001, max_backoff=0.01, jitter=False)
    hook = WebhookChannel(bus, "https://hooks.test/in", retry=retry, client=client)
    await hook.start()
    try:
        await hook.send(REPLY)
    finally:
        await hook.stop()
        await client.aclose()
    assert len(seen) == 4
    assert "x-axonbus-signature" not in seen[0].headers  # no secret: unsigned


async def test_a_refused_reply_is_not_retried(bus: Bus) -> None:
    seen: list[httpx.Request] = []
    client = _mock([httpx.Response(400)], seen)
    hook = WebhookChannel(bus, "https://hooks.test/in", retry=FAST, client=client)
    await hook.start()
    try:
        with pytest.raises(WebhookDeliveryFailed, match="HTTP 400") as info:
            await hook.send(REPLY)
    finally:
        await hook.stop()
        await client.aclose()
    assert info.value.attempts == 1
    assert len(seen) == 1


async def test_giving_up_is_a_contained_handler_failure(bus: Bus) -> None:
    seen: list[httpx.Request] = []
    client = _mock([httpx.Response(500)] * 3, seen)
    failures: list[HandlerFailed] = []
    bus.subscribe("$bus.handler_failed", failures.append)
    hook = WebhookChannel(bus, "https://h.test/in", channel_type="crm", retry=FAST, client=client)
    async with ChannelManager(bus) as manager:
        await manager.attach(hook)
        await bus.publish(REPLY)
        await bus.drain()
    await client.aclose()
    assert len(seen) == 3
    assert hook.failed == 1
    (failure,) = failures
    assert failure.error_type == "WebhookDeliveryFailed"


async def test_owns_its_client_when_none_is_given(bus: Bus) -> None:
    hook = WebhookChannel(bus, "https://hooks.test/in")
    await hook.start()
    assert hook._client is not None
    await hook.stop()
    assert hook._client is None
    with pytest.raises(WebhookDeliveryFailed, match="not started"):
        await hook.send(REPLY)


async def test_inbound_signed_webhook(bus: Bus) -> None:
    got: list[ChannelMessage] = []
    bus.subscribe("channel.crm.in", got.append)
    hook = WebhookChannel(bus, "https://hooks.test/in", channel_type="crm", secret="k")
    async with ChannelManager(bus) as manager:
        await manager.attach(hook)
        app = create_app(bus, channels=manager)
        body = json.dumps({"user_id": "u1", "content": "hi", "metadata": {"lang": "en"}}).encode()
        ts = str(int(time.time()))
        good = {
            "X-Axonbus-Timestamp": ts,
            "X-Axonbus-Signature": sign("k", ts, body),
            "Content-Type": "application/json",
        }
        async with asgi_client(app) as client:
            r = await client.post("/v1/channels/crm/in", content=body, headers=good)
            assert r.status_code == 202
            assert r.json()["topic"] == "channel.crm.in"
            bad = {**good, "X-Axonbus-Signature": sign("wrong", ts, body)}
            r = await client.post("/v1/channels/crm/in", content=body, headers=bad)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "bad_signature"
            r = await client.post("/v1/channels/crm/in", content=body)
            assert r.status_code == 401
            junk = b'{"user_id": 5}'
            signed_junk = {
                "X-Axonbus-Timestamp": ts,
                "X-Axonbus-Signature": sign("k", ts, junk),
                "Content-Type": "application/json",
            }
            r = await client.post("/v1/channels/crm/in", content=junk, headers=signed_junk)
            assert r.status_code == 400
        await bus.drain()
    assert [(m.user_id, m.content, m.metadata) for m in got] == [("u1", "hi", {"lang": "en"})]
    assert got[0].id == r.json().get("id", got[0].id)


async def test_inbound_unsigned_webhook_needs_a_token(bus: Bus, tokens: TokenSet) -> None:
    hook = WebhookChannel(bus, "https://hooks.test/in", channel_type="web")
    async with ChannelManager(bus) as manager:
        await manager.attach(hook)
        app = create_app(bus, channels=manager, tokens=tokens)
        message = {"user_id": "u1", "content": "hi"}
        async with asgi_client(app) as client:
            r = await client.post("/v1/channels/web/in", json=message)
            assert r.status_code == 401
            r = await client.post("/v1/channels/web/in", json=message, headers=auth(SECRET_UI))
            assert r.status_code == 202
            await manager.detach("web")
            r = await client.post("/v1/channels/web/in", json=message, headers=auth(SECRET_ADMIN))
            assert r.status_code == 404

"""SlackChannel: Events API in (through the gateway and standalone), chat.postMessage out
against a local Slack (tests/channels/fake_slack.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from axonbus import Bus, HandlerFailed, Retry
from axonbus.channels import (
    ChannelManager,
    ChannelMessage,
    ChannelReply,
    SlackChannel,
    slack_signature,
)
from axonbus.gateway import create_app
from tests.channels.fake_slack import FakeSlack, message_event, signed_request

Eventually = Callable[[Callable[[], bool]], Awaitable[None]]

BOT_TOKEN = "xoxb-1111-2222-secret-bot-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
EVENTS = "/v1/channels/slack/events"


@pytest.fixture
def fake() -> FakeSlack:
    return FakeSlack(BOT_TOKEN)


@pytest.fixture
async def base_url(fake: FakeSlack) -> AsyncIterator[str]:
    async with fake.serve() as base:
        yield base


@pytest.fixture
async def manager(bus: Bus, base_url: str) -> AsyncIterator[ChannelManager]:
    channel = SlackChannel(
        bus,
        BOT_TOKEN,
        SIGNING_SECRET,
        base_url=base_url,
        retry=Retry(attempts=3, backoff=0.05, jitter=False),
    )
    async with ChannelManager(bus) as manager:
        await manager.attach(channel)
        yield manager


@pytest.fixture
def slack(manager: ChannelManager) -> SlackChannel:
    channel = manager.get("slack")
    assert isinstance(channel, SlackChannel)
    return channel


@pytest.fixture
async def gateway(bus: Bus, manager: ChannelManager) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(bus, channels=manager))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


def _inbox(bus: Bus) -> list[ChannelMessage]:
    received: list[ChannelMessage] = []

    async def collect(msg: ChannelMessage) -> None:
        received.append(msg)

    bus.subscribe("channel.slack.in", collect)
    return received


async def _post(
    client: httpx.AsyncClient, payload: dict[str, object], **sign: object
) -> httpx.Response:
    headers, body = signed_request(SIGNING_SECRET, payload, **sign)  # type: ignore[arg-type]
    return await client.post(EVENTS, content=body, headers=headers)


# -- inbound -----------------------------------------------------------------------------------


async def test_a_signed_message_event_is_published(bus: Bus, gateway: httpx.AsyncClient) -> None:
    received = _inbox(bus)
    r = await _post(gateway, message_event("hello", channel="D1", user="U7"))
    assert r.status_code == 200
    assert r.json() == {"ok": True}
    await bus.drain()
    msg = received[0]
    assert (msg.channel_type, msg.user_id, msg.content) == ("slack", "D1", "hello")
    assert msg.metadata["user"] == "U7"
    assert msg.metadata["event_id"] == "Ev001"
    assert msg.metadata["team"] == "T1"
    assert msg.metadata["conversation_type"] == "im"


async def test_url_verification_answers_the_challenge(gateway: httpx.AsyncClient) -> None:
    payload = {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
               "type": "url_verification"}  # fmt: skip
    r = await _post(gateway, payload)
    assert r.status_code == 200
    assert r.json() == {"challenge": payload["challenge"]}


@pytest.mark.parametrize("case", ["wrong_secret", "tampered", "stale", "future", "missing"])
async def test_bad_signatures_are_401(bus: Bus, gateway: httpx.AsyncClient, case: str) -> None:
    received = _inbox(bus)
    payload = message_event("hi")
    if case == "wrong_secret":
        headers, body = signed_request("not-the-secret", payload)
    elif case == "stale":
        headers, body = signed_request(SIGNING_SECRET, payload, timestamp=time.time() - 301)
    elif case == "future":
        headers, body = signed_request(SIGNING_SECRET, payload, timestamp=time.time() + 301)
    else:
        headers, body = signed_request(SIGNING_SECRET, payload)
        if case == "tampered":
            body = body.replace(b"hi", b"ho")
        else:
            del headers["X-Slack-Signature"]
    r = await gateway.post(EVENTS, content=body, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "bad_signature"
    await bus.drain()
    assert received == []


async def test_a_signature_within_five_minutes_is_accepted(
    bus: Bus, gateway: httpx.AsyncClient
) -> None:
    r = await _post(gateway, message_event("hi"), timestamp=time.time() - 290)
    assert r.status_code == 200


async def test_slack_retries_are_deduplicated_by_event_id(
    bus: Bus, gateway: httpx.AsyncClient, slack: SlackChannel
) -> None:
    received = _inbox(bus)
    event = message_event("once", event_id="Ev42")
    assert (await _post(gateway, event)).json() == {"ok": True}
    for n in (1, 2):
        r = await _post(gateway, event, retry_num=n)
        assert r.json() == {"ok": True, "duplicate": True}
    assert (await _post(gateway, message_event("other", event_id="Ev43"))).status_code == 200
    await bus.drain()
    assert [m.content for m in received] == ["once", "other"]
    assert slack.duplicates == 2


@pytest.mark.parametrize(
    "extra",
    [{"bot_id": "B1"}, {"subtype": "bot_message"}, {"subtype": "message_changed"},
     {"subtype": "channel_join"}],
)  # fmt: skip
async def test_bot_and_non_person_messages_are_ignored(
    bus: Bus, gateway: httpx.AsyncClient, extra: dict[str, str]
) -> None:
    received = _inbox(bus)
    r = await _post(gateway, message_event("beep", **extra))
    assert r.status_code == 200
    assert "ignored" in r.json()
    await bus.drain()
    assert received == []


async def test_bad_bodies_and_unknown_channels(bus: Bus, gateway: httpx.AsyncClient) -> None:
    ts = str(int(time.time()))
    body = b"not json"
    headers = {"X-Slack-Request-Timestamp": ts,
               "X-Slack-Signature": slack_signature(SIGNING_SECRET, ts, body)}  # fmt: skip
    assert (await gateway.post(EVENTS, content=body, headers=headers)).status_code == 400
    r = await _post(gateway, {"type": "app_rate_limited"})
    assert r.json() == {"ok": True, "ignored": "app_rate_limited"}
    r = await gateway.post("/v1/channels/other/events", content=b"{}")
    assert r.status_code == 404
    big = {"type": "event_callback", "pad": "x" * (bus.max_message_bytes + 1)}
    assert (await _post(gateway, big)).status_code == 413


async def test_a_stopped_channel_answers_503_so_slack_retries(bus: Bus) -> None:
    channel = SlackChannel(bus, BOT_TOKEN, SIGNING_SECRET)
    event = message_event("hi", event_id="Ev9")
    status, answer = await channel.handle_request(*signed_request(SIGNING_SECRET, event))
    assert status == 503
    assert answer["error"]["code"] == "unavailable"
    received = _inbox(bus)
    await channel.start()
    try:
        # the retry gets through: the event was not remembered as handled
        headers, body = signed_request(SIGNING_SECRET, event, retry_num=1)
        assert (await channel.handle_request(headers, body)) == (200, {"ok": True})
    finally:
        await channel.stop()
    await bus.drain()
    assert [m.content for m in received] == ["hi"]


async def test_standalone_asgi_app(bus: Bus, slack: SlackChannel) -> None:
    received = _inbox(bus)
    app = slack.asgi_app("/slack/events", max_body=1000)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        headers, body = signed_request(SIGNING_SECRET, message_event("standalone"))
        r = await client.post("/slack/events", content=body, headers=headers)
        assert r.status_code == 200
        headers, body = signed_request(SIGNING_SECRET, message_event("x" * 2000))
        r = await client.post("/slack/events", content=body, headers=headers)
        assert r.status_code == 413
        headers["X-Slack-Signature"] = "v0=00"
        r = await client.post("/slack/events", content=b"{}", headers=headers)
        assert r.status_code == 401
    await bus.drain()
    assert [m.content for m in received] == ["standalone"]


# -- outbound ----------------------------------------------------------------------------------


async def test_replies_are_posted_in_the_thread_with_the_bot_token(
    bus: Bus, gateway: httpx.AsyncClient, fake: FakeSlack, eventually: Eventually
) -> None:
    async def echo(msg: ChannelMessage) -> None:
        await bus.publish(msg.reply(f"echo: {msg.content}"))

    bus.subscribe("channel.slack.in", echo)
    await _post(gateway, message_event("top level", event_id="Ev1", channel="C1"))
    await _post(gateway, message_event("in thread", event_id="Ev2", channel="C1",
                                        thread_ts="1700000000.000100"))  # fmt: skip
    await eventually(lambda: len(fake.messages) == 2)
    first, second = fake.messages
    assert first == {"channel": "C1", "text": "echo: top level"}
    assert second == {"channel": "C1", "text": "echo: in thread", "thread_ts": "1700000000.000100"}
    assert {p.authorization for p in fake.posts} == {f"Bearer {BOT_TOKEN}"}


async def test_429_retry_after_and_5xx_are_retried(
    bus: Bus, slack: SlackChannel, fake: FakeSlack, eventually: Eventually
) -> None:
    slack.retry = Retry(attempts=4, backoff=0.05, jitter=False)
    fake.fail(429, retry_after=0.3)
    fake.fail(500)
    fake.fail(200, error="internal_error")
    await bus.publish(ChannelReply(channel_type="slack", user_id="D1", content="hi"))
    await eventually(lambda: slack.sent == 1)
    assert [p.status for p in fake.posts] == [429, 500, 200, 200]
    assert fake.posts[1].at - fake.posts[0].at >= 0.29
    assert fake.posts[2].at - fake.posts[1].at >= 0.095  # backoff 0.05, then 0.1


@pytest.mark.parametrize(
    ("user_id", "error", "posts"),
    [("C404", "channel_not_found", 1), ("D1", "fatal_error", 3)],
)
async def test_ok_false_errors_become_handler_failures(
    bus: Bus,
    slack: SlackChannel,
    fake: FakeSlack,
    eventually: Eventually,
    user_id: str,
    error: str,
    posts: int,
) -> None:
    failures: list[HandlerFailed] = []

    async def on_failed(event: HandlerFailed) -> None:
        failures.append(event)

    bus.subscribe("$bus.handler_failed", on_failed)
    if error == "fatal_error":
        fake.fail(200, error="fatal_error", times=3)
    await bus.publish(ChannelReply(channel_type="slack", user_id=user_id, content="hi"))
    await eventually(lambda: len(failures) == 1)
    assert failures[0].error_type == "ChannelApiError"
    assert error in failures[0].error_message
    assert len(fake.posts) == posts
    assert slack.running


async def test_an_invalid_token_and_the_logs(
    bus: Bus,
    base_url: str,
    fake: FakeSlack,
    eventually: Eventually,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="axonbus")
    failures: list[HandlerFailed] = []

    async def on_failed(event: HandlerFailed) -> None:
        failures.append(event)

    bus.subscribe("$bus.handler_failed", on_failed)
    wrong = "xoxb-wrong-token-0000"
    channel = SlackChannel(bus, wrong, SIGNING_SECRET, base_url=base_url)
    async with ChannelManager(bus) as manager:
        await manager.attach(channel)
        await bus.publish(ChannelReply(channel_type="slack", user_id="D1", content="hi"))
        await eventually(lambda: len(failures) == 1)
    assert "invalid_auth" in failures[0].error_message
    assert repr(channel) == f"<SlackChannel 'slack' {base_url} stopped>"
    for secret in (wrong, SIGNING_SECRET):
        assert secret not in caplog.text
        assert secret not in repr(channel)

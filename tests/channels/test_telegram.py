"""TelegramChannel against a local Bot API (tests/channels/fake_telegram.py)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from axonbus import Bus, HandlerFailed, Retry
from axonbus.channels import (
    ChannelApiError,
    ChannelManager,
    ChannelMessage,
    ChannelReply,
    FileOffsetStore,
    OffsetStore,
    RestartPolicy,
    TelegramChannel,
)
from tests.channels.fake_telegram import FakeTelegram
from tests.support.brokers import free_port

Eventually = Callable[[Callable[[], bool]], Awaitable[None]]

TOKEN = "123456:AAF-secret-bot-token-xyz"
FAST_RESTART = RestartPolicy(backoff=0.01, max_backoff=0.05, jitter=False, max_restarts=5)
NO_RETRY = Retry(attempts=1)


@pytest.fixture
def fake() -> FakeTelegram:
    return FakeTelegram(TOKEN)


@pytest.fixture
async def base_url(fake: FakeTelegram) -> AsyncIterator[str]:
    async with fake.serve() as base:
        yield base


def _channel(bus: Bus, base_url: str, **options: object) -> TelegramChannel:
    options.setdefault("poll_timeout", 1)
    options.setdefault("retry", Retry(attempts=3, backoff=0.01, jitter=False))
    return TelegramChannel(bus, TOKEN, base_url=base_url, **options)  # type: ignore[arg-type]


def _inbox(bus: Bus) -> list[ChannelMessage]:
    received: list[ChannelMessage] = []

    async def collect(msg: ChannelMessage) -> None:
        received.append(msg)

    bus.subscribe("channel.telegram.in", collect)
    return received


async def test_messages_in_replies_out(
    bus: Bus, fake: FakeTelegram, base_url: str, eventually: Eventually
) -> None:
    async def echo(msg: ChannelMessage) -> None:
        await bus.publish(msg.reply(f"echo: {msg.content}"))

    bus.subscribe("channel.telegram.in", echo)
    received = _inbox(bus)
    update_id = fake.push("hello", chat_id=42, username="ada")
    async with ChannelManager(bus) as manager:
        await manager.attach(_channel(bus, base_url))
        await eventually(lambda: len(fake.sent) == 1)
    msg = received[0]
    assert (msg.channel_type, msg.user_id, msg.content) == ("telegram", "42", "hello")
    assert msg.metadata["chat_id"] == 42
    assert msg.metadata["update_id"] == update_id
    assert msg.metadata["message_id"] == 1
    assert msg.metadata["username"] == "ada"
    assert fake.sent[0]["chat_id"] == 42
    assert fake.sent[0]["text"] == "echo: hello"


async def test_long_poll_returns_as_soon_as_a_message_arrives(
    bus: Bus, fake: FakeTelegram, base_url: str, eventually: Eventually
) -> None:
    received = _inbox(bus)
    async with ChannelManager(bus) as manager:
        await manager.attach(_channel(bus, base_url, poll_timeout=10))
        await eventually(lambda: len(fake.calls_of("getUpdates")) == 1)
        await asyncio.sleep(0.1)  # the poll is waiting on the server
        loop = asyncio.get_running_loop()
        pushed = loop.time()
        fake.push("are you there?")
        await eventually(lambda: len(received) == 1)
        assert loop.time() - pushed < 2  # not the 10 s poll timeout
        # the next poll confirms the update
        await eventually(lambda: len(fake.calls_of("getUpdates")) == 2)
        polls = fake.calls_of("getUpdates")
        assert polls[0].params["timeout"] == 10
        assert "offset" not in polls[0].params
        assert polls[1].params["offset"] == received[0].metadata["update_id"] + 1


async def test_non_text_updates_are_skipped_but_confirmed(
    bus: Bus, fake: FakeTelegram, base_url: str, eventually: Eventually
) -> None:
    received = _inbox(bus)
    fake.push_update({"edited_message": {"message_id": 9, "chat": {"id": 1}, "text": "x"}})
    fake.push_update({"message": {"message_id": 10, "chat": {"id": 1}, "sticker": {}}})
    last = fake.push("text")
    channel = _channel(bus, base_url)
    async with ChannelManager(bus) as manager:
        await manager.attach(channel)
        await eventually(lambda: channel.offset == last + 1)
        await bus.drain()
    assert [m.content for m in received] == ["text"]


async def test_updates_are_handled_once_across_manager_restarts(
    bus: Bus, fake: FakeTelegram, base_url: str, eventually: Eventually
) -> None:
    fake.confirm = False  # the server keeps returning everything: only our offset saves us
    received = _inbox(bus)
    fake.push("a")
    fake.push("b")
    channel = _channel(bus, base_url)
    async with ChannelManager(bus, restart=FAST_RESTART) as manager:
        await manager.attach(channel)
        await eventually(lambda: len(received) == 2)
        fake.fail("getUpdates", 200, body="<html>502 Bad Gateway (proxy)</html>")
        fake.push("c")  # wakes the poll in flight; the next poll gets the garbage
        await eventually(lambda: manager.status()["telegram"].restarts == 1)
        fake.push("d")
        await eventually(lambda: len(received) == 4)
        status = manager.status()["telegram"]
        assert status.state == "running"
        assert "not the Bot API" in (status.last_error or "")
        await asyncio.sleep(0.2)  # a few more polls: nothing is handled twice
        await bus.drain()
    assert [m.content for m in received] == ["a", "b", "c", "d"]


async def test_offset_store_survives_a_new_process(
    bus: Bus, fake: FakeTelegram, base_url: str, tmp_path: Path, eventually: Eventually
) -> None:
    fake.confirm = False  # the old process died before its confirming getUpdates
    path = tmp_path / "state" / "telegram.offset"
    received = _inbox(bus)
    for text in ("one", "two", "three"):
        fake.push(text)
    first = _channel(bus, base_url, offset_store=str(path))
    assert isinstance(first.offset_store, FileOffsetStore)
    async with ChannelManager(bus) as manager:
        await manager.attach(first)
        await eventually(lambda: len(received) == 3)
    assert path.read_text().strip() == str(first.offset)

    last = fake.push("four")
    second = _channel(bus, base_url, offset_store=FileOffsetStore(path))
    async with ChannelManager(bus) as manager:
        await manager.attach(second)
        await eventually(lambda: second.offset == last + 1)
        await bus.drain()
    assert [m.content for m in received] == ["one", "two", "three", "four"]

    # without the store, the same restart would handle everything again
    third = _channel(bus, base_url)
    async with ChannelManager(bus) as manager:
        await manager.attach(third)
        await eventually(lambda: third.offset == last + 1)
        await bus.drain()
    assert len(received) == 8


async def test_file_offset_store(tmp_path: Path) -> None:
    store = FileOffsetStore(tmp_path / "offset")
    assert isinstance(store, OffsetStore)
    assert await store.load() is None
    await store.save(41)
    await store.save(42)
    assert await store.load() == 42
    (tmp_path / "offset").write_text("garbage")
    with pytest.raises(ValueError, match="expected a Telegram update offset"):
        await store.load()


async def test_429_waits_the_retry_after_telegram_asks_for(
    bus: Bus, fake: FakeTelegram, base_url: str, eventually: Eventually
) -> None:
    received = _inbox(bus)
    fake.fail("getUpdates", 429, retry_after=0.4)
    fake.push("hi")
    async with ChannelManager(bus) as manager:
        await manager.attach(_channel(bus, base_url))
        await eventually(lambda: len(received) == 1)
        assert manager.status()["telegram"].restarts == 0
    polls = fake.calls_of("getUpdates")
    assert polls[0].status == 429
    assert polls[1].status == 200
    assert polls[1].at - polls[0].at >= 0.39


async def test_5xx_is_retried_with_exponential_backoff(
    bus: Bus, fake: FakeTelegram, base_url: str, eventually: Eventually
) -> None:
    received = _inbox(bus)
    fake.fail("getUpdates", 500, times=2)
    fake.fail("getUpdates", 502)
    fake.push("hi")
    retry = Retry(attempts=5, backoff=0.1, jitter=False)  # waits 0.1, 0.2, 0.4
    async with ChannelManager(bus) as manager:
        await manager.attach(_channel(bus, base_url, retry=retry))
        await eventually(lambda: len(received) == 1)
        assert manager.status()["telegram"].restarts == 0
    polls = fake.calls_of("getUpdates")
    assert [p.status for p in polls[:4]] == [500, 500, 502, 200]
    gaps = [b.at - a.at for a, b in itertools.pairwise(polls[:4])]
    for gap, wait in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert wait - 0.01 <= gap < wait + 0.5


async def test_retries_exhausted_make_the_manager_restart_the_channel(
    bus: Bus, fake: FakeTelegram, base_url: str, eventually: Eventually
) -> None:
    received = _inbox(bus)
    fake.fail("getUpdates", 500, times=3)  # = the channel's attempts
    fake.push("after the outage")
    async with ChannelManager(bus, restart=FAST_RESTART) as manager:
        await manager.attach(_channel(bus, base_url))
        await eventually(lambda: len(received) == 1)
        status = manager.status()["telegram"]
        assert status.restarts == 1
        assert "after 3 attempts" in (status.last_error or "")
        assert "HTTP 500" in (status.last_error or "")


async def test_send_retries_5xx_and_429_then_delivers(
    bus: Bus, fake: FakeTelegram, base_url: str, eventually: Eventually
) -> None:
    fake.fail("sendMessage", 500)
    fake.fail("sendMessage", 429, retry_after=0.2)
    async with ChannelManager(bus) as manager:
        await manager.attach(_channel(bus, base_url))
        await bus.publish(ChannelReply(channel_type="telegram", user_id="7", content="hi"))
        await eventually(lambda: len(fake.sent) == 1)
    sends = fake.calls_of("sendMessage")
    assert [s.status for s in sends] == [500, 429, 200]
    assert sends[2].at - sends[1].at >= 0.19
    assert fake.sent[0]["chat_id"] == 7


async def test_send_failure_is_a_contained_handler_failure(
    bus: Bus, fake: FakeTelegram, base_url: str, eventually: Eventually
) -> None:
    failures: list[HandlerFailed] = []

    async def on_failed(event: HandlerFailed) -> None:
        failures.append(event)

    bus.subscribe("$bus.handler_failed", on_failed)
    fake.blocked.add(9)
    channel = _channel(bus, base_url)
    async with ChannelManager(bus) as manager:
        await manager.attach(channel)
        await bus.publish(ChannelReply(channel_type="telegram", user_id="9", content="hi"))
        await eventually(lambda: len(failures) == 1)
        await bus.publish(ChannelReply(channel_type="telegram", user_id="10", content="ok"))
        await eventually(lambda: len(fake.sent) == 1)
        assert manager.status()["telegram"].state == "running"
    assert failures[0].error_type == "ChannelApiError"
    assert "403" in failures[0].error_message
    assert "blocked by the user" in failures[0].error_message
    assert len(fake.calls_of("sendMessage")) == 2  # a 403 is not retried


async def test_long_replies_are_split_and_options_passed(
    bus: Bus, fake: FakeTelegram, base_url: str, eventually: Eventually
) -> None:
    text = "x" * 4096 + "y" * 10
    async with ChannelManager(bus) as manager:
        await manager.attach(_channel(bus, base_url))
        reply = ChannelReply(
            channel_type="telegram",
            user_id="ignored",
            content=text,
            metadata={"chat_id": -100123, "parse_mode": "HTML", "reply_to_message_id": 5},
        )
        await bus.publish(reply)
        await eventually(lambda: len(fake.sent) == 2)
    first, second = fake.sent
    assert (first["chat_id"], len(first["text"]), first["parse_mode"]) == (-100123, 4096, "HTML")
    assert first["reply_parameters"]["message_id"] == 5
    assert second["text"] == "y" * 10
    assert "reply_parameters" not in second


async def test_the_token_never_shows_in_logs_errors_or_reprs(
    bus: Bus,
    fake: FakeTelegram,
    base_url: str,
    eventually: Eventually,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="axonbus")
    received = _inbox(bus)
    fake.fail("getUpdates", 500)
    fake.fail("getUpdates", 200, body=f"<html>echoing /bot{TOKEN}/getUpdates</html>")
    fake.push("hi")
    channel = _channel(bus, base_url)
    async with ChannelManager(bus, restart=FAST_RESTART) as manager:
        await manager.attach(channel)
        await eventually(lambda: len(received) == 1)
        status = manager.status()["telegram"]
        assert status.restarts == 1
        assert TOKEN not in (status.last_error or "")
        assert TOKEN not in repr(channel)
        await bus.publish(ChannelReply(channel_type="telegram", user_id="42", content="yo"))
        await eventually(lambda: len(fake.sent) == 1)

    # unreachable API: the connection error names no URL with the token in it
    dead = TelegramChannel(
        bus, TOKEN, base_url=f"http://127.0.0.1:{free_port()}", poll_timeout=0, retry=NO_RETRY
    )
    await dead.start()
    try:
        with pytest.raises(ChannelApiError) as info:
            await dead.run()
    finally:
        await dead.stop()
    assert info.value.retryable
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert TOKEN not in str(info.value)

    assert "HTTP Request: POST" in caplog.text  # httpx logged the requests...
    assert "/bot***/getUpdates" in caplog.text  # ...with the token redacted
    assert TOKEN not in caplog.text
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
        if record.exc_info:
            assert TOKEN not in str(record.exc_info[1])


async def test_a_wrong_token_fails_for_good(
    bus: Bus, fake: FakeTelegram, base_url: str, eventually: Eventually
) -> None:
    channel = TelegramChannel(bus, "999:wrong-token", base_url=base_url, poll_timeout=0)
    policy = RestartPolicy(backoff=0.01, jitter=False, max_restarts=1)
    async with ChannelManager(bus, restart=policy) as manager:
        await manager.attach(channel)
        await eventually(lambda: manager.status()["telegram"].state == "failed")
        error = manager.status()["telegram"].last_error or ""
    assert "HTTP 401: Unauthorized" in error
    assert "wrong-token" not in error
    assert len(fake.calls_of("getUpdates")) == 2  # 401 is not retried; one restart


def test_constructor_checks(bus: Bus) -> None:
    with pytest.raises(ValueError, match="token"):
        TelegramChannel(bus, " ")
    with pytest.raises(ValueError, match="base_url"):
        TelegramChannel(bus, TOKEN, base_url="api.telegram.org")
    with pytest.raises(ValueError, match="limit"):
        TelegramChannel(bus, TOKEN, limit=101)
    channel = TelegramChannel(bus, TOKEN, base_url="https://example.test/")
    assert channel.base_url == "https://example.test"
    assert repr(channel) == "<TelegramChannel 'telegram' https://example.test stopped>"

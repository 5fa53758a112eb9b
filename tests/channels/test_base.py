from __future__ import annotations

import asyncio
from typing import Any

import pytest

from axonbus import AxonbusError, Bus, HandlerFailed, LifecycleError
from axonbus.channels import (
    Channel,
    ChannelMessage,
    ChannelNotStarted,
    ChannelReply,
    MemoryChannel,
)


async def test_receive_before_start_raises(bus: Bus) -> None:
    channel = MemoryChannel(bus, "telegram")
    with pytest.raises(ChannelNotStarted, match="telegram"):
        await channel.receive("u1", "hi")
    err = ChannelNotStarted("x")
    assert isinstance(err, RuntimeError)
    assert isinstance(err, LifecycleError)
    assert isinstance(err, AxonbusError)


async def test_receive_after_stop_raises(bus: Bus) -> None:
    channel = MemoryChannel(bus, "telegram")
    await channel.start()
    await channel.stop()
    with pytest.raises(ChannelNotStarted):
        await channel.receive("u1", "hi")


async def test_receive_publishes_channel_message_on_in_topic(bus: Bus) -> None:
    seen: list[tuple[str, Any]] = []

    async def handler(event: Any, ctx: Any) -> None:
        seen.append((ctx.topic, event))

    bus.subscribe("channel.>", handler)
    async with MemoryChannel(bus, "telegram") as channel:
        first = await channel.receive("user_001", "what time is it?", chat_id=42)
        second = await channel.receive("user_002", "hello")
        await bus.drain()
    topics = [t for t, _ in seen]
    assert topics == ["channel.telegram.in", "channel.telegram.in"]
    msg = seen[0][1]
    assert isinstance(msg, ChannelMessage)
    assert msg is first
    assert (msg.channel_type, msg.user_id, msg.content) == (
        "telegram",
        "user_001",
        "what time is it?",
    )
    assert msg.metadata == {"chat_id": 42}
    assert msg.id
    assert first.id != second.id
    assert msg.topic == "channel.telegram.in"


async def test_channel_events_topics_and_names() -> None:
    msg = ChannelMessage(channel_type="discord", user_id="u", content="x")
    reply = msg.reply("y", embed=True)
    assert reply.topic == "channel.discord.out"
    assert (reply.user_id, reply.content, reply.reply_to) == ("u", "y", msg.id)
    assert reply.metadata == {"embed": True}
    assert ChannelMessage.topic_pattern() == "channel.*.in"
    assert ChannelReply.topic_pattern() == "channel.*.out"
    assert ChannelMessage.__event_name__ == "axonbus.channels.ChannelMessage"
    assert ChannelReply.__event_name__ == "axonbus.channels.ChannelReply"
    assert ChannelMessage(channel_type="a", user_id="u", content="x").id != msg.id


async def test_replies_on_out_topic_reach_send(bus: Bus) -> None:
    async def agent(msg: ChannelMessage) -> None:
        await bus.publish(msg.reply(f"echo: {msg.content}"))

    bus.subscribe("channel.*.in", agent)
    telegram = MemoryChannel(bus, "telegram")
    discord = MemoryChannel(bus, "discord")
    async with telegram, discord:
        msg = await telegram.receive("u1", "ping")
        await bus.drain()
    assert [r.content for r in telegram.outbox] == ["echo: ping"]
    assert telegram.outbox[0].reply_to == msg.id
    assert discord.outbox == []  # replies go to the channel of their type only


async def test_mapping_published_on_out_is_sent(bus: Bus) -> None:
    async with MemoryChannel(bus, "sms") as channel:
        await bus.publish("channel.sms.out", {"user_id": "u9", "content": "code 1234"})
        await bus.drain()
    assert len(channel.outbox) == 1
    assert channel.outbox[0].channel_type == "sms"
    assert (channel.outbox[0].user_id, channel.outbox[0].content) == ("u9", "code 1234")


async def test_bad_payload_and_failing_send_are_contained_by_the_bus(bus: Bus) -> None:
    failures: list[HandlerFailed] = []
    bus.subscribe(HandlerFailed, failures.append)

    class Broken(MemoryChannel):
        async def send(self, reply: ChannelReply) -> None:
            if reply.content == "boom":
                raise ConnectionError("api down")
            await super().send(reply)

    async with Broken(bus, "tg") as channel:
        await bus.publish("channel.tg.out", 12345)  # not a reply
        await bus.publish(ChannelReply(channel_type="tg", user_id="u", content="boom"))
        await bus.publish(ChannelReply(channel_type="tg", user_id="u", content="ok"))
        await bus.drain()
    assert [r.content for r in channel.outbox] == ["ok"]
    assert sorted(f.error_type for f in failures) == ["ConnectionError", "TypeError"]
    assert all(f.subscription == "channel:tg:send" for f in failures)


async def test_start_subscribes_and_stop_unsubscribes(bus: Bus) -> None:
    channel = MemoryChannel(bus, "telegram")
    assert bus.handler_count("channel.telegram.out") == 0
    await channel.start()
    await channel.start()  # idempotent
    assert channel.running
    assert bus.handler_count("channel.telegram.out") == 1
    await channel.stop()
    await channel.stop()  # idempotent
    assert not channel.running
    assert bus.handler_count("channel.telegram.out") == 0
    await bus.publish(ChannelReply(channel_type="telegram", user_id="u", content="late"))
    await bus.drain()
    assert channel.outbox == []


async def test_stop_flushes_replies_already_queued(bus: Bus) -> None:
    release = asyncio.Event()

    class Slow(MemoryChannel):
        async def send(self, reply: ChannelReply) -> None:
            await release.wait()
            await super().send(reply)

    channel = Slow(bus, "slow")
    await channel.start()
    for i in range(3):
        await bus.publish(ChannelReply(channel_type="slow", user_id="u", content=str(i)))
    await asyncio.sleep(0)
    stopping = asyncio.create_task(channel.stop())
    await asyncio.sleep(0.01)
    assert not stopping.done()  # waiting for the queued replies
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert [r.content for r in channel.outbox] == ["0", "1", "2"]


async def test_stop_called_from_send_does_not_deadlock(bus: Bus) -> None:
    class SelfStopping(MemoryChannel):
        async def send(self, reply: ChannelReply) -> None:
            await super().send(reply)
            await self.stop()

    channel = SelfStopping(bus, "once")
    await channel.start()
    await bus.publish(ChannelReply(channel_type="once", user_id="u", content="bye"))
    await asyncio.wait_for(bus.drain(), 5)
    assert not channel.running
    assert len(channel.outbox) == 1


@pytest.mark.parametrize("bad", ["", "a.b", "a*", "x>", "has space", "$sys", 3])
async def test_invalid_channel_type_is_rejected(bus: Bus, bad: Any) -> None:
    with pytest.raises(ValueError, match="invalid channel_type"):
        MemoryChannel(bus, bad)

    class Custom(Channel):
        channel_type = bad

        async def send(self, reply: ChannelReply) -> None:
            pass

    with pytest.raises(ValueError, match="invalid channel_type"):
        await Custom(bus).start()


async def test_channel_type_as_class_attribute_and_abstract_channel_type(bus: Bus) -> None:
    class Incomplete(Channel):
        async def send(self, reply: ChannelReply) -> None:
            pass

    with pytest.raises(TypeError):
        Incomplete(bus)  # type: ignore[abstract]

    class ListenOnly(Channel):  # send() is optional: see test_inbound_only.py
        channel_type = "x"

    assert not ListenOnly(bus).can_send

    class Plain(Channel):
        channel_type = "plain"

        async def send(self, reply: ChannelReply) -> None:
            pass

    channel = Plain(bus)
    assert (channel.inbound_topic, channel.outbound_topic) == (
        "channel.plain.in",
        "channel.plain.out",
    )
    assert "plain" in repr(channel)
    await channel.run()  # the default run() returns at once


async def test_memory_channel_on_send_callback(bus: Bus) -> None:
    sync_seen: list[str] = []
    async_seen: list[str] = []

    async def record(reply: ChannelReply) -> None:
        async_seen.append(reply.content)

    a = MemoryChannel(bus, "a", on_send=lambda r: sync_seen.append(r.content))
    b = MemoryChannel(bus, "b", on_send=record)
    async with a, b:
        await bus.publish(ChannelReply(channel_type="a", user_id="u", content="1"))
        await bus.publish(ChannelReply(channel_type="b", user_id="u", content="2"))
        await bus.drain()
    assert (sync_seen, async_seen) == (["1"], ["2"])


async def test_receive_on_closed_bus_raises_bus_error() -> None:
    bus = Bus()
    await bus.start()
    channel = MemoryChannel(bus, "t")
    await channel.start()
    await bus.close()
    with pytest.raises(LifecycleError):
        await channel.receive("u", "x")
    await channel.stop()  # still fine after the bus closed


def test_exports_are_sorted_and_resolvable() -> None:
    import axonbus.channels as channels

    assert channels.__all__ == sorted(channels.__all__)
    for name in channels.__all__:
        assert getattr(channels, name) is not None

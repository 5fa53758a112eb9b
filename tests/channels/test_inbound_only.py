"""An inbound-only channel (``channel_type``, ``start``, ``stop``; no ``send()``) works unchanged;
a reply routed to it is logged and counted, never a crash."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from axonbus import Bus
from axonbus.channels import Channel, ChannelManager, ChannelMessage, MemoryChannel
from tests.channels.conftest import Eventually


class MockChannel(Channel):
    """The shape of a listen-only channel as written for a plain pub/sub bus."""

    def __init__(self, channel_type: str, bus: Bus) -> None:
        super().__init__(bus)
        self._ct = channel_type
        self.events: list[str] = []

    @property
    def channel_type(self) -> str:
        return self._ct

    async def start(self) -> None:
        await super().start()
        self.events.append("started")

    async def stop(self) -> None:
        await super().stop()
        self.events.append("stopped")


async def test_an_inbound_only_channel_instantiates_and_receives(
    bus: Bus, eventually: Eventually
) -> None:
    heard: list[ChannelMessage] = []
    bus.subscribe("channel.*.in", heard.append)
    async with ChannelManager(bus) as manager:
        telegram = MockChannel("telegram", bus)
        assert not telegram.can_send
        await manager.attach(telegram)
        await telegram.receive("u1", "hello")
        await eventually(lambda: len(heard) == 1)
        await manager.detach("telegram")
    assert heard[0].content == "hello"
    assert telegram.events == ["started", "stopped"]


async def test_a_reply_to_a_channel_that_cannot_send_is_logged_and_counted(
    bus: Bus, eventually: Eventually, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[Any] = []
    bus.subscribe("$bus.handler_failed", failures.append)
    caplog.set_level(logging.DEBUG, logger="axonbus.channels")
    async with ChannelManager(bus) as manager:
        mock = MockChannel("mock", bus)
        await manager.attach(mock)
        message = await mock.receive("u1", "hi")
        await bus.publish(message.reply("first"))
        await bus.publish("channel.mock.out", {"user_id": "u2", "content": "second"})
        await eventually(lambda: mock.replies_dropped == 2)
        assert manager.status()["mock"].replies_dropped == 2
        assert manager.status()["mock"].state == "running"  # not a crash
        await manager.detach("mock")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once, then at DEBUG: a chatty agent must not flood the log
    assert "channel 'mock' cannot send (MockChannel defines no send())" in warnings[0].message
    assert "'u1'" in warnings[0].message
    assert any("2 dropped so far" in r.message for r in caplog.records)
    assert failures == []


async def test_a_channel_with_send_can_send(bus: Bus) -> None:
    channel = MemoryChannel(bus, "memory")
    assert channel.can_send
    assert channel.replies_dropped == 0

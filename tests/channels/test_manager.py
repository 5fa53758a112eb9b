from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from axonbus import Bus, LifecycleError
from axonbus.channels import (
    ChannelAlreadyAttached,
    ChannelManager,
    ChannelMessage,
    ChannelNotStarted,
    MemoryChannel,
    RestartPolicy,
)

Eventually = Callable[[Callable[[], bool]], Awaitable[None]]

FAST = RestartPolicy(backoff=0.01, max_backoff=0.05, jitter=False, max_restarts=5)


class FlakyStart(MemoryChannel):
    """start() raises ``failures`` times, then works; records when each attempt happened."""

    def __init__(self, bus: Bus, channel_type: str, failures: int) -> None:
        super().__init__(bus, channel_type)
        self.failures_left = failures
        self.attempts: list[float] = []

    async def start(self) -> None:
        self.attempts.append(asyncio.get_running_loop().time())
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError(f"connect failed ({self.failures_left} more)")
        await super().start()


class CrashingRun(MemoryChannel):
    """run() raises ``crashes`` times, then serves until cancelled."""

    def __init__(self, bus: Bus, channel_type: str, crashes: int) -> None:
        super().__init__(bus, channel_type)
        self.crashes_left = crashes
        self.starts = 0
        self.stops = 0
        self.runs = 0

    async def start(self) -> None:
        self.starts += 1
        await super().start()

    async def stop(self) -> None:
        self.stops += 1
        await super().stop()

    async def run(self) -> None:
        self.runs += 1
        await asyncio.sleep(0)
        if self.crashes_left:
            self.crashes_left -= 1
            raise RuntimeError("poll loop died")
        await asyncio.Event().wait()


async def _echo_agent(bus: Bus) -> None:
    async def agent(msg: ChannelMessage) -> None:
        await bus.publish(msg.reply(f"re: {msg.content}"))

    bus.subscribe("channel.*.in", agent)


async def test_attach_and_detach_at_run_time(bus: Bus) -> None:
    await _echo_agent(bus)
    async with ChannelManager(bus) as manager:
        telegram = MemoryChannel(bus, "telegram")
        status = await manager.attach(telegram)
        assert status.state == "running"
        assert manager.list_channels() == ["telegram"]
        await telegram.receive("u1", "one")

        discord = MemoryChannel(bus, "discord")
        await manager.attach(discord)
        assert manager.list_channels() == ["telegram", "discord"]
        assert manager.get("discord") is discord
        assert "discord" in manager
        await discord.receive("u2", "two")
        await bus.drain()

        assert await manager.detach("telegram") is True
        assert manager.list_channels() == ["discord"]
        assert manager.get("telegram") is None
        assert not telegram.running
        with pytest.raises(ChannelNotStarted):
            await telegram.receive("u1", "three")
        await discord.receive("u3", "four")
        await bus.drain()
    assert [r.content for r in telegram.outbox] == ["re: one"]
    assert [r.content for r in discord.outbox] == ["re: two", "re: four"]
    assert manager.list_channels() == []  # close() detached discord
    assert not discord.running
    assert bus.handler_count() == 1  # only the agent: both .out subscriptions are gone


async def test_attach_same_type_twice_raises(bus: Bus) -> None:
    async with ChannelManager(bus) as manager:
        await manager.attach(MemoryChannel(bus, "telegram"))
        with pytest.raises(ChannelAlreadyAttached, match="telegram") as info:
            await manager.attach(MemoryChannel(bus, "telegram"))
        assert isinstance(info.value, ValueError)
        assert manager.list_channels() == ["telegram"]
        await manager.detach("telegram")
        await manager.attach(MemoryChannel(bus, "telegram"))  # fine once detached


async def test_detach_unknown_is_a_no_op(bus: Bus) -> None:
    async with ChannelManager(bus) as manager:
        await manager.attach(MemoryChannel(bus, "telegram"))
        assert await manager.detach("nope") is False
        assert manager.list_channels() == ["telegram"]


async def test_close_detaches_everything_and_rejects_attach(bus: Bus) -> None:
    manager = ChannelManager(bus)
    channels = [MemoryChannel(bus, name) for name in ("a", "b", "c")]
    for channel in channels:
        await manager.attach(channel)
    await manager.close()
    await manager.close()  # idempotent
    assert manager.list_channels() == []
    assert not any(c.running for c in channels)
    with pytest.raises(LifecycleError):
        await manager.attach(MemoryChannel(bus, "d"))


async def test_crashing_start_is_restarted_with_backoff(
    bus: Bus,
    caplog: pytest.LogCaptureFixture,
    eventually: Eventually,
) -> None:
    caplog.set_level(logging.WARNING, logger="axonbus")
    policy = RestartPolicy(backoff=0.05, factor=2.0, jitter=False, max_restarts=5)
    async with ChannelManager(bus, restart=policy) as manager:
        flaky = FlakyStart(bus, "slack", failures=2)
        status = await manager.attach(flaky)  # does not raise
        assert status.state == "restarting"
        assert status.last_error == "ConnectionError: connect failed (1 more)"
        await eventually(lambda: manager.status()["slack"].state == "running")
        status = manager.status()["slack"]
    assert status.restarts == 2
    assert status.last_error == "ConnectionError: connect failed (0 more)"
    gaps = [b - a for a, b in zip(flaky.attempts, flaky.attempts[1:], strict=False)]
    assert len(gaps) == 2
    # exponential: ~0.05 s then ~0.1 s (small slack for timer granularity, none for load)
    assert gaps[0] >= 0.045
    assert gaps[1] >= 0.095
    assert "channel 'slack' crashed in start()" in caplog.text
    crash_records = [r for r in caplog.records if "crashed in start()" in r.getMessage()]
    assert crash_records
    assert all(r.exc_info for r in crash_records)  # traceback kept


async def test_crashing_run_is_restarted_and_others_are_unaffected(
    bus: Bus, eventually: Eventually
) -> None:
    await _echo_agent(bus)
    async with ChannelManager(bus, restart=FAST) as manager:
        good = MemoryChannel(bus, "good")
        await manager.attach(good)
        bad = CrashingRun(bus, "bad", crashes=3)
        assert (await manager.attach(bad)).state == "running"
        await good.receive("u", "during the crashes")
        await eventually(lambda: bad.runs == 4)
        await good.receive("u", "after")
        await bus.drain()
        status = manager.status()
        assert status["bad"].state == "running"
        assert status["bad"].restarts == 3
        assert status["bad"].last_error == "RuntimeError: poll loop died"
        assert status["good"].state == "running"
        assert status["good"].restarts == 0
        assert bad.starts == 4
        assert bad.stops == 3  # stopped after each crash, before the restart
        await bad.receive("u", "bad is back")
        await bus.drain()
    assert [r.content for r in good.outbox] == ["re: during the crashes", "re: after"]
    assert [r.content for r in bad.outbox] == ["re: bad is back"]


async def test_gives_up_after_max_restarts(bus: Bus, eventually: Eventually) -> None:
    policy = RestartPolicy(backoff=0.005, jitter=False, max_restarts=2)
    async with ChannelManager(bus, restart=policy) as manager:
        good = MemoryChannel(bus, "good")
        await manager.attach(good)
        hopeless = CrashingRun(bus, "hopeless", crashes=10**6)
        await manager.attach(hopeless)
        await eventually(lambda: manager.status()["hopeless"].state == "failed")
        await asyncio.sleep(0.05)
        status = manager.status()["hopeless"]
        assert status.restarts == 2
        assert hopeless.runs == 3  # first run + 2 restarts, then nothing more
        assert not hopeless.running
        assert manager.status()["good"].state == "running"
        assert manager.list_channels() == ["good", "hopeless"]  # still listed until detached
        assert await manager.detach("hopeless") is True
        await good.receive("u", "still fine")


async def test_max_restarts_zero_fails_at_once(bus: Bus) -> None:
    async with ChannelManager(bus) as manager:
        status = await manager.attach(
            FlakyStart(bus, "x", failures=1), restart=RestartPolicy(max_restarts=0)
        )
        assert status.state == "failed"
        assert status.restarts == 0


async def test_detach_while_restarting_stops_the_retries(bus: Bus) -> None:
    policy = RestartPolicy(backoff=0.05, jitter=False, max_restarts=None)
    async with ChannelManager(bus, restart=policy) as manager:
        flaky = FlakyStart(bus, "slack", failures=10**6)
        await manager.attach(flaky)
        assert manager.status()["slack"].state == "restarting"
        await manager.detach("slack")
        attempts = len(flaky.attempts)
        await asyncio.sleep(0.15)
        assert len(flaky.attempts) == attempts
        assert manager.status() == {}


async def test_run_returning_keeps_the_channel_attached(bus: Bus) -> None:
    class OneShot(MemoryChannel):
        async def run(self) -> None:
            await self.receive("u", "only message")

    seen: list[str] = []

    async def record(msg: ChannelMessage) -> None:
        seen.append(msg.content)

    bus.subscribe("channel.*.in", record)
    async with ChannelManager(bus) as manager:
        channel = OneShot(bus, "oneshot")
        await manager.attach(channel)
        await asyncio.sleep(0.02)
        await bus.drain()
        assert seen == ["only message"]
        assert manager.status()["oneshot"].state == "running"
        assert manager.status()["oneshot"].restarts == 0
        assert channel.running


async def test_errors_in_stop_are_contained(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="axonbus")

    class BadStop(MemoryChannel):
        async def stop(self) -> None:
            await super().stop()
            raise OSError("socket already closed")

    async with ChannelManager(bus) as manager:
        await manager.attach(BadStop(bus, "bad"))
        assert await manager.detach("bad") is True
    assert "stop() failed" in caplog.text


async def test_detach_from_inside_run(bus: Bus, eventually: Eventually) -> None:
    holder: dict[str, ChannelManager] = {}

    class Quitter(MemoryChannel):
        async def run(self) -> None:
            await holder["manager"].detach(self.channel_type)
            raise RuntimeError("ignored: detached already")

    async with ChannelManager(bus, restart=FAST) as manager:
        holder["manager"] = manager
        channel = Quitter(bus, "quitter")
        await manager.attach(channel)
        await eventually(lambda: "quitter" not in manager)
        await asyncio.sleep(0.05)
        assert not channel.running
        assert manager.list_channels() == []


async def test_restart_policy() -> None:
    policy = RestartPolicy(backoff=0.1, factor=2.0, max_backoff=0.5, jitter=False, max_restarts=3)
    assert [policy.delay(n) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert not policy.gives_up(3)
    assert policy.gives_up(4)
    assert not RestartPolicy(max_restarts=None).gives_up(10**9)
    jittered = RestartPolicy(backoff=1.0, jitter=True)
    assert all(0.5 <= jittered.delay(1) <= 1.0 for _ in range(50))
    for bad in (
        {"max_restarts": -1},
        {"backoff": -1.0},
        {"factor": 0.5},
        {"reset_after": -1.0},
    ):
        with pytest.raises(ValueError, match="must be"):
            RestartPolicy(**bad)  # type: ignore[arg-type]


async def test_failures_do_not_reach_the_caller_or_the_log_as_unhandled(
    bus: Bus,
    caplog: pytest.LogCaptureFixture,
    eventually: Eventually,
) -> None:
    caplog.set_level(logging.INFO, logger="axonbus")
    async with ChannelManager(bus, restart=FAST) as manager:
        await manager.attach(CrashingRun(bus, "c", crashes=1))
        await eventually(lambda: manager.status()["c"].restarts == 1)
    messages = [r.getMessage() for r in caplog.records]
    assert "channel 'c' attached" in messages
    assert "channel 'c' restarted (restart 1)" in messages
    assert "channel 'c' detached" in messages

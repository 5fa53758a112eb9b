"""start / stop / stop_when_idle / stop_when / close, and what happens to messages in flight."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from axonbus import Bus, LifecycleError
from axonbus.runtime import (
    AgentId,
    AgentRuntime,
    DefaultTopicId,
    MessageContext,
    RoutedAgent,
    RuntimeClosed,
    RuntimeNotStarted,
    Undeliverable,
    default_subscription,
    handler,
)


@dataclass
class Sleep:
    seconds: float


@default_subscription
class Sleeper(RoutedAgent):
    done: list[float] = []
    closed: list[str] = []

    @handler
    async def sleep(self, m: Sleep, ctx: MessageContext) -> str:
        await asyncio.sleep(m.seconds)
        Sleeper.done.append(m.seconds)
        return "slept"

    async def close(self) -> None:
        Sleeper.closed.append(self.id.key)


@pytest.fixture(autouse=True)
def _reset() -> None:
    Sleeper.done = []
    Sleeper.closed = []


async def fresh() -> AgentRuntime:
    runtime = AgentRuntime()
    await Sleeper.register(runtime, "sleeper", Sleeper)
    return runtime


async def _until_queued(runtime: AgentRuntime, count: int) -> None:
    for _ in range(1000):  # event-loop turns, not time: the sends only need to run
        if runtime.unprocessed_messages_count >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{runtime.unprocessed_messages_count} queued, expected {count}")


async def test_sends_and_publishes_before_start_wait_for_it() -> None:
    # as in autogen-core: queued until start(), not refused
    runtime = await fresh()
    assert runtime.state == "new"
    call = asyncio.create_task(runtime.send_message(Sleep(0), AgentId("sleeper", "x")))
    await runtime.publish_message(Sleep(0), DefaultTopicId())
    await _until_queued(runtime, 2)
    assert not call.done()
    with pytest.raises(RuntimeNotStarted, match="new") as info:
        await runtime.stop_when_idle()
    assert isinstance(info.value, LifecycleError)
    assert isinstance(info.value, RuntimeError)
    await runtime.stop()  # nothing to stop: no error
    runtime.start()
    assert await asyncio.wait_for(call, 5) == "slept"
    await runtime.stop_when_idle()
    assert Sleeper.done == [0, 0]
    assert runtime.unprocessed_messages_count == 0
    await runtime.close()


async def test_close_without_start_fails_the_waiting_sends() -> None:
    runtime = await fresh()
    call = asyncio.create_task(runtime.send_message(Sleep(0), AgentId("sleeper", "x")))
    await _until_queued(runtime, 1)
    await asyncio.wait_for(runtime.close(), 5)
    with pytest.raises(Undeliverable):
        await asyncio.wait_for(call, 5)
    assert Sleeper.done == []


async def test_process_next_steps_one_message_at_a_time() -> None:
    runtime = await fresh()
    first = asyncio.create_task(runtime.send_message(Sleep(0), AgentId("sleeper", "a")))
    second = asyncio.create_task(runtime.send_message(Sleep(0), AgentId("sleeper", "b")))
    await _until_queued(runtime, 2)
    await runtime.process_next()  # the oldest: "a"
    assert await asyncio.wait_for(first, 5) == "slept"
    assert runtime.unprocessed_messages_count == 1
    assert not second.done()
    await runtime.process_next()
    assert await asyncio.wait_for(second, 5) == "slept"
    waiting = asyncio.create_task(runtime.process_next())  # nothing queued: it waits
    await asyncio.sleep(0)
    assert not waiting.done()
    runtime.start()  # the workers take over: the waiting step ends
    await asyncio.wait_for(waiting, 5)
    with pytest.raises(RuntimeNotStarted, match="only before start"):
        await runtime.process_next()
    await runtime.close()


async def test_start_without_await_as_in_autogen() -> None:
    runtime = await fresh()
    runtime.start()
    runtime.start()  # idempotent
    assert runtime.state == "started"
    assert await runtime.send_message(Sleep(0), AgentId("sleeper", "x")) == "slept"
    await runtime.stop_when_idle()
    assert runtime.state == "stopped"
    await runtime.close()
    assert runtime.state == "closed"
    assert runtime.bus.state == "closed"  # the runtime owned its bus


async def test_restart_after_stop_keeps_agents() -> None:
    runtime = await fresh()
    runtime.start()
    await runtime.send_message(Sleep(0), AgentId("sleeper", "x"))
    await runtime.stop()
    with pytest.raises(RuntimeNotStarted):
        await runtime.send_message(Sleep(0), AgentId("sleeper", "x"))
    runtime.start()
    await runtime.send_message(Sleep(0), AgentId("sleeper", "x"))
    await runtime.close()
    assert Sleeper.done == [0, 0]
    assert Sleeper.closed == ["x"]  # one instance, closed once


async def test_stop_when_idle_waits_for_cascades() -> None:
    @dataclass
    class Countdown:
        n: int

    seen: list[int] = []

    @default_subscription
    class Relay(RoutedAgent):
        @handler
        async def on_count(self, m: Countdown) -> None:
            await asyncio.sleep(0.001)
            seen.append(m.n)
            if m.n:
                await self.runtime.publish_message(Countdown(m.n - 1), DefaultTopicId())

    runtime = AgentRuntime()
    await Relay.register(runtime, "relay", Relay)
    runtime.start()
    await runtime.publish_message(Countdown(5), DefaultTopicId())
    await asyncio.wait_for(runtime.stop_when_idle(), 5)
    assert seen == [5, 4, 3, 2, 1, 0]
    await runtime.close()


async def test_stop_lets_running_handlers_finish_and_fails_queued_sends() -> None:
    runtime = await fresh()
    runtime.start()
    sid = AgentId("sleeper", "x")
    running = asyncio.create_task(runtime.send_message(Sleep(0.05), sid))
    queued = asyncio.create_task(runtime.send_message(Sleep(0), sid))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(runtime.stop(), 5)
    assert await running == "slept"
    with pytest.raises(Undeliverable, match="stopped before sleeper/x handled Sleep"):
        await queued
    await runtime.close()


async def test_stop_cancels_handlers_still_running_after_the_timeout() -> None:
    runtime = await fresh()
    runtime.start()
    stuck = asyncio.create_task(runtime.send_message(Sleep(60), AgentId("sleeper", "x")))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(runtime.stop(timeout=0.05), 5)
    with pytest.raises(Undeliverable, match="stopped while sleeper/x was handling it"):
        await asyncio.wait_for(stuck, 1)
    # the runtime can start again, and the agent still answers
    runtime.start()
    assert await runtime.send_message(Sleep(0), AgentId("sleeper", "x")) == "slept"
    await runtime.close()


async def test_queued_publishes_are_dropped_at_stop() -> None:
    runtime = await fresh()
    runtime.start()
    for _ in range(3):
        await runtime.publish_message(Sleep(0.02), DefaultTopicId())
    await asyncio.sleep(0.005)
    await runtime.stop()
    assert Sleeper.done == [0.02]  # the running one finished; the two queued never ran
    await runtime.close()


async def test_nested_send_during_stop_fails_instead_of_hanging() -> None:
    @dataclass
    class Ask:
        pass

    class Asker(RoutedAgent):
        @handler
        async def ask(self, m: Ask) -> Any:
            await asyncio.sleep(0.05)  # stop() begins meanwhile
            return await self.send_message(Sleep(0), AgentId("sleeper", "y"))

    runtime = await fresh()
    await Asker.register(runtime, "asker", Asker)
    runtime.start()
    call = asyncio.create_task(runtime.send_message(Ask(), AgentId("asker", "a")))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(runtime.stop(), 5)
    with pytest.raises(Exception, match="RuntimeNotStarted"):
        await call
    await runtime.close()


async def test_stop_when_condition() -> None:
    runtime = await fresh()
    runtime.start()
    await runtime.publish_message(Sleep(0.01), DefaultTopicId())
    await asyncio.wait_for(runtime.stop_when(lambda: bool(Sleeper.done), check_period=0.005), 5)
    assert runtime.state == "stopped"
    await runtime.close()


async def test_close_handles_what_was_accepted() -> None:
    async with AgentRuntime() as runtime:
        await Sleeper.register(runtime, "sleeper", Sleeper)
        for _ in range(3):
            await runtime.publish_message(Sleep(0.005), DefaultTopicId())
    assert Sleeper.done == [0.005] * 3
    assert Sleeper.closed == ["default"]
    assert runtime.state == "closed"


async def test_close_gives_up_after_its_timeout() -> None:
    runtime = await fresh()
    runtime.start()
    stuck = asyncio.create_task(runtime.send_message(Sleep(60), AgentId("sleeper", "x")))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(runtime.close(timeout=0.05), 5)
    with pytest.raises(Undeliverable):
        await stuck


async def test_closed_runtime_refuses_everything() -> None:
    runtime = await fresh()
    await runtime.close()
    await runtime.close()  # idempotent
    with pytest.raises(RuntimeClosed):
        runtime.start()
    with pytest.raises(RuntimeClosed):
        await runtime.send_message(Sleep(0), AgentId("sleeper", "x"))
    with pytest.raises(RuntimeClosed):
        await Sleeper.register(runtime, "other", Sleeper)


async def test_a_given_bus_is_left_alone() -> None:
    async with Bus() as bus:
        runtime = AgentRuntime(bus)
        await runtime.start()
        await runtime.close()
        assert bus.state == "started"


async def test_await_start_starts_the_owned_bus() -> None:
    runtime = AgentRuntime()
    await runtime.start()
    assert runtime.bus.state == "started"
    await runtime.close()


def test_a_broker_bus_makes_a_distributed_runtime() -> None:
    from axonbus.runtime._distributed import DistributedPlacement
    from axonbus.runtime._runtime import LocalPlacement

    runtime = AgentRuntime(Bus("redis://localhost:6379/0"), heartbeat=0.5)
    assert isinstance(runtime._placement, DistributedPlacement)
    assert runtime._placement.heartbeat == 0.5
    assert isinstance(AgentRuntime()._placement, LocalPlacement)
    with pytest.raises(ValueError, match="heartbeat"):
        AgentRuntime(heartbeat=0)


async def test_a_handler_may_stop_the_runtime() -> None:
    @dataclass
    class Quit:
        pass

    class Quitter(RoutedAgent):
        @handler
        async def quit(self, m: Quit) -> str:
            await self.runtime.stop()
            return "bye"

    runtime = AgentRuntime()
    await Quitter.register(runtime, "quitter", Quitter)
    runtime.start()
    assert await asyncio.wait_for(runtime.send_message(Quit(), AgentId("quitter", "q")), 5) == "bye"
    assert runtime.state == "stopped"
    runtime.start()  # and it starts again cleanly
    assert await runtime.send_message(Quit(), AgentId("quitter", "q")) == "bye"
    await runtime.close()


async def test_stop_during_a_slow_factory_fails_the_send() -> None:
    gate = asyncio.Event()

    async def slow_factory() -> Sleeper:
        await gate.wait()
        return Sleeper()

    runtime = AgentRuntime()
    await runtime.register_factory("slow", slow_factory)
    runtime.start()
    call = asyncio.create_task(runtime.send_message(Sleep(0), AgentId("slow", "x")))
    await asyncio.sleep(0.01)
    await runtime.stop()
    gate.set()
    with pytest.raises(RuntimeNotStarted):
        await asyncio.wait_for(call, 2)
    await runtime.close()

"""Registration, lazy instantiation with the id bound in __init__, get(), instances registered
by hand, ClosureAgent, metadata."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from axonbus.runtime import (
    Agent,
    AgentId,
    AgentInstantiationContext,
    AgentNotBound,
    AgentNotFound,
    AgentRuntime,
    AgentType,
    ClosureAgent,
    ClosureContext,
    DefaultSubscription,
    DefaultTopicId,
    MessageContext,
    RemoteError,
    RoutedAgent,
    handler,
)


@dataclass
class Hello:
    text: str


class Greeter(RoutedAgent):
    created: list[AgentId] = []

    def __init__(self, greeting: str = "hi") -> None:
        super().__init__("greets")
        # the id is known in __init__, before the runtime sees the object
        Greeter.created.append(self.id)
        self.greeting = greeting
        self.runtime_seen = self.runtime

    @handler
    async def hello(self, m: Hello, ctx: MessageContext) -> str:
        return f"{self.greeting} {m.text} from {self.id.key}"


@pytest.fixture(autouse=True)
def _reset_created() -> None:
    Greeter.created = []


async def test_agents_are_created_lazily_on_first_message(runtime: AgentRuntime) -> None:
    agent_type = await Greeter.register(runtime, "greeter", Greeter)
    assert agent_type == AgentType("greeter")
    assert Greeter.created == []
    assert await runtime.send_message(Hello("ada"), AgentId("greeter", "k1")) == "hi ada from k1"
    assert await runtime.send_message(Hello("bob"), AgentId("greeter", "k1")) == "hi bob from k1"
    assert await runtime.send_message(Hello("cy"), AgentId("greeter", "k2")) == "hi cy from k2"
    assert Greeter.created == [AgentId("greeter", "k1"), AgentId("greeter", "k2")]


async def test_factory_context_gives_id_and_runtime(runtime: AgentRuntime) -> None:
    seen: list[tuple[AgentRuntime, AgentId]] = []

    def factory() -> Greeter:
        seen.append(
            (
                AgentInstantiationContext.current_runtime(),
                AgentInstantiationContext.current_agent_id(),
            )
        )
        assert AgentInstantiationContext.is_in_factory_call()
        return Greeter(greeting=f"hey({AgentInstantiationContext.current_agent_id().key})")

    await Greeter.register(runtime, "greeter", factory)
    assert await runtime.send_message(Hello("x"), AgentId("greeter", "z")) == "hey(z) x from z"
    assert seen == [(runtime, AgentId("greeter", "z"))]
    agent = await runtime.try_get_underlying_agent_instance(AgentId("greeter", "z"), Greeter)
    assert agent.runtime_seen is runtime
    assert not AgentInstantiationContext.is_in_factory_call()


async def test_async_factory_runs_once_for_concurrent_first_messages(
    runtime: AgentRuntime,
) -> None:
    calls = 0

    async def factory() -> Greeter:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return Greeter()

    await runtime.register_factory("greeter", factory, expected_class=Greeter)
    gid = AgentId("greeter", "same")
    replies = await asyncio.gather(*(runtime.send_message(Hello(str(i)), gid) for i in range(5)))
    assert replies == [f"hi {i} from same" for i in range(5)]
    assert calls == 1


async def test_get_is_lazy_unless_asked(runtime: AgentRuntime) -> None:
    await Greeter.register(runtime, "greeter", Greeter)
    assert await runtime.get("greeter", "a") == AgentId("greeter", "a")
    assert await runtime.get(AgentType("greeter")) == AgentId("greeter", "default")
    assert await runtime.get(AgentId("greeter", "b")) == AgentId("greeter", "b")
    assert await runtime.get("never-registered", "x") == AgentId("never-registered", "x")
    assert Greeter.created == []
    assert await runtime.get("greeter", "c", lazy=False) == AgentId("greeter", "c")
    assert Greeter.created == [AgentId("greeter", "c")]
    with pytest.raises(AgentNotFound):
        await runtime.get("never-registered", "x", lazy=False)


async def test_send_to_unknown_type_raises_agent_not_found(runtime: AgentRuntime) -> None:
    with pytest.raises(AgentNotFound, match="nobody/x") as info:
        await runtime.send_message(Hello("?"), AgentId("nobody", "x"))
    assert isinstance(info.value, LookupError)
    assert info.value.agent_id == "nobody/x"


async def test_register_twice_is_an_error(runtime: AgentRuntime) -> None:
    await Greeter.register(runtime, "greeter", Greeter)
    with pytest.raises(ValueError, match="already registered"):
        await runtime.register_factory("greeter", Greeter)


async def test_factory_of_the_wrong_class_fails_the_send(runtime: AgentRuntime) -> None:
    class Other(RoutedAgent):
        pass

    await runtime.register_factory("greeter", Other, expected_class=Greeter)
    with pytest.raises(RemoteError) as info:
        await runtime.send_message(Hello("x"), AgentId("greeter", "k"))
    assert info.value.remote_type == "TypeError"
    assert "expected a Greeter" in info.value.remote_message


async def test_failing_factory_reaches_the_caller_as_remote_error(runtime: AgentRuntime) -> None:
    def broken() -> Greeter:
        raise RuntimeError("no config")

    await Greeter.register(runtime, "greeter", broken)
    with pytest.raises(RemoteError, match="no config") as info:
        await runtime.send_message(Hello("x"), AgentId("greeter", "k"))
    assert info.value.remote_type == "RuntimeError"
    # nothing half-made is kept: the next message tries the factory again
    with pytest.raises(RemoteError):
        await runtime.send_message(Hello("x"), AgentId("greeter", "k"))


async def test_register_agent_instance(runtime: AgentRuntime) -> None:
    agent = Greeter.__new__(Greeter)
    RoutedAgent.__init__(agent, "by hand")
    agent.greeting = "yo"
    with pytest.raises(AgentNotBound):
        _ = agent.id
    gid = await runtime.register_agent_instance(agent, AgentId("hand", "one"))
    assert agent.id == gid
    assert agent.runtime is runtime
    assert await runtime.send_message(Hello("x"), gid) == "yo x from one"
    # no factory for other keys of that type
    with pytest.raises(AgentNotFound, match="only instances"):
        await runtime.send_message(Hello("x"), AgentId("hand", "two"))
    with pytest.raises(ValueError, match="already exists"):
        await runtime.register_agent_instance(agent, gid)
    await Greeter.register(runtime, "greeter", Greeter)
    other = Greeter.__new__(Greeter)
    with pytest.raises(ValueError, match="has a factory"):
        await runtime.register_agent_instance(other, AgentId("greeter", "x"))


async def test_register_instance_adds_direct_subscription(runtime: AgentRuntime) -> None:
    got: list[str] = []

    class Listener(RoutedAgent):
        @handler
        async def on_hello(self, m: Hello) -> None:
            got.append(m.text)

    for key in ("a", "b"):
        await Listener("l").register_instance(runtime, AgentId("listener", key))
    await runtime.publish_message(Hello("direct"), DefaultTopicId("listener:", "b"))
    await runtime.stop_when_idle()
    assert got == ["direct"]


def test_unbound_agent_explains_itself() -> None:
    agent = Greeter.__new__(Greeter)
    Agent.__init__(agent)
    with pytest.raises(AgentNotBound, match="registered factory"):
        _ = agent.id
    with pytest.raises(AgentNotBound):
        _ = agent.runtime
    with pytest.raises(AgentNotBound, match="factory call"):
        AgentInstantiationContext.current_agent_id()
    assert "unbound" in repr(agent)


async def test_metadata_and_underlying_instance(runtime: AgentRuntime) -> None:
    await Greeter.register(runtime, "greeter", Greeter)
    gid = AgentId("greeter", "m")
    assert await runtime.agent_metadata(gid) == {
        "type": "greeter",
        "key": "m",
        "description": "greets",
    }
    with pytest.raises(TypeError, match="not a ClosureAgent"):
        await runtime.try_get_underlying_agent_instance(gid, ClosureAgent)


async def test_plain_agent_with_on_message_impl(runtime: AgentRuntime) -> None:
    class Echo(Agent):
        async def on_message_impl(self, message: Any, ctx: MessageContext) -> Any:
            return (message, ctx.is_rpc, ctx.sender)

    await Echo.register(runtime, "echo", Echo)
    sender = AgentId("someone", "s")
    reply = await runtime.send_message("hi", AgentId("echo", "default"), sender=sender)
    assert reply == ("hi", True, sender)


async def test_closure_agent_collects_published_messages(runtime: AgentRuntime) -> None:
    results: asyncio.Queue[Hello] = asyncio.Queue()

    async def collect(agent: ClosureContext, message: Hello, ctx: MessageContext) -> None:
        assert agent.id == AgentId("collector", "default")
        await results.put(message)

    await ClosureAgent.register_closure(
        runtime, "collector", collect, subscriptions=lambda: [DefaultSubscription()]
    )
    await runtime.publish_message(Hello("one"), DefaultTopicId())
    await runtime.publish_message("not a Hello", DefaultTopicId())
    await runtime.stop_when_idle()
    assert results.qsize() == 1
    assert (await results.get()).text == "one"


async def test_closure_agent_answers_sends(runtime: AgentRuntime) -> None:
    async def double(agent: ClosureContext, n: int, ctx: MessageContext) -> int:
        return n * 2

    await ClosureAgent.register_closure(runtime, "double", double)
    assert await runtime.send_message(21, AgentId("double", "x")) == 42

"""RoutedAgent: routing by message type (MRO, most specific wins), @event / @rpc / @handler,
match= predicates, free parameter names, unhandled messages, handler validation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from axonbus import InvalidHandler
from axonbus.runtime import (
    AgentId,
    AgentRuntime,
    CantHandle,
    MessageContext,
    RoutedAgent,
    TopicId,
    TypeSubscription,
    event,
    handler,
    message_handler,
    rpc,
)


@dataclass
class Animal:
    name: str


@dataclass
class Dog(Animal):
    pass


@dataclass
class Puppy(Dog):
    pass


@dataclass
class Cat(Animal):
    pass


@dataclass
class Unknown:
    pass


class Zoo(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("routes animals")
        self.seen: list[tuple[str, str, bool]] = []

    @handler
    async def any_animal(self, a: Animal, ctx: MessageContext) -> str:
        self.seen.append(("animal", a.name, ctx.is_rpc))
        return "animal"

    @handler
    async def dog(self, d: Dog) -> str:  # no ctx parameter, free names
        self.seen.append(("dog", d.name, True))
        return "dog"

    @rpc
    async def cat_rpc(self, c: Cat, ctx: MessageContext) -> str:
        self.seen.append(("cat-rpc", c.name, ctx.is_rpc))
        return "cat-rpc"

    @event
    async def cat_event(self, c: Cat, ctx: MessageContext) -> None:
        self.seen.append(("cat-event", c.name, ctx.is_rpc))


async def zoo(runtime: AgentRuntime) -> tuple[AgentId, Zoo]:
    await Zoo.register(runtime, "zoo", Zoo)
    await runtime.add_subscription(TypeSubscription("animals", "zoo"))
    agent_id = AgentId("zoo", "default")
    return agent_id, await runtime.try_get_underlying_agent_instance(agent_id, Zoo)


async def test_most_specific_handler_wins(runtime: AgentRuntime) -> None:
    zid, _ = await zoo(runtime)
    assert await runtime.send_message(Animal("generic"), zid) == "animal"
    assert await runtime.send_message(Dog("rex"), zid) == "dog"
    # no handler for Puppy itself: the nearest base class in its MRO is Dog
    assert await runtime.send_message(Puppy("bit"), zid) == "dog"


async def test_rpc_and_event_split_by_delivery_kind(runtime: AgentRuntime) -> None:
    zid, agent = await zoo(runtime)
    assert await runtime.send_message(Cat("tom"), zid) == "cat-rpc"
    await runtime.publish_message(Cat("felix"), TopicId("animals", "default"))
    await runtime.stop_when_idle()
    assert agent.seen == [("cat-rpc", "tom", True), ("cat-event", "felix", False)]


async def test_handler_takes_both_kinds(runtime: AgentRuntime) -> None:
    zid, agent = await zoo(runtime)
    await runtime.publish_message(Animal("pub"), TopicId("animals", "default"))
    await runtime.stop_when_idle()
    runtime.start()
    await runtime.send_message(Animal("send"), zid)
    assert agent.seen == [("animal", "pub", False), ("animal", "send", True)]


async def test_kind_mismatch_falls_back_to_a_less_specific_handler(
    runtime: AgentRuntime,
) -> None:
    seen: list[str] = []

    class Kennel(RoutedAgent):
        @rpc
        async def dog_rpc(self, d: Dog) -> str:
            seen.append("dog-rpc")
            return "dog-rpc"

        @handler
        async def animal(self, a: Animal) -> str:
            seen.append("animal")
            return "animal"

    await Kennel.register(runtime, "kennel", Kennel)
    await runtime.add_subscription(TypeSubscription("k", "kennel"))
    assert await runtime.send_message(Dog("d"), AgentId("kennel", "default")) == "dog-rpc"
    # a published Dog: the Dog handler takes only sends, so the Animal handler gets it
    await runtime.publish_message(Dog("p"), TopicId("k", "default"))
    await runtime.stop_when_idle()
    assert seen == ["dog-rpc", "animal"]


async def test_unhandled_send_raises_cant_handle(runtime: AgentRuntime) -> None:
    zid, _ = await zoo(runtime)
    with pytest.raises(CantHandle, match="zoo/default has no handler for Unknown"):
        await runtime.send_message(Unknown(), zid)


async def test_unhandled_publish_is_dropped_and_logged_at_info(
    runtime: AgentRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    _, agent = await zoo(runtime)
    caplog.set_level(logging.INFO, logger="axonbus.runtime")
    await runtime.publish_message(Unknown(), TopicId("animals", "default"))
    await runtime.publish_message(Dog("after"), TopicId("animals", "default"))
    await runtime.stop_when_idle()
    assert agent.seen == [("dog", "after", True)]
    [record] = [r for r in caplog.records if "Unhandled message" in r.getMessage()]
    assert record.levelno == logging.INFO  # autogen-core's wording and level
    assert record.getMessage().startswith("Unhandled message: Unknown()")


async def test_on_unhandled_message_can_handle_it(runtime: AgentRuntime) -> None:
    class Fallback(RoutedAgent):
        async def on_unhandled_message(self, message: Any, ctx: MessageContext) -> Any:
            return f"fallback:{type(message).__name__}"

    await Fallback.register(runtime, "fb", Fallback)
    assert await runtime.send_message(Unknown(), AgentId("fb", "x")) == "fallback:Unknown"


async def test_match_predicates_pick_the_first_matching_handler_by_name(
    runtime: AgentRuntime,
) -> None:
    class Router(RoutedAgent):
        @handler(match=lambda m, ctx: m.name.startswith("a"))
        async def a_first(self, m: Animal) -> str:
            return "a"

        @message_handler(match=lambda m, ctx: True)
        async def b_second(self, m: Animal) -> str:
            return "b"

        @message_handler(match=lambda m, ctx: True)
        async def c_never(self, m: Animal) -> str:
            return "c"

    await Router.register(runtime, "router", Router)
    rid = AgentId("router", "default")
    assert await runtime.send_message(Animal("alpha"), rid) == "a"
    assert await runtime.send_message(Animal("zed"), rid) == "b"


async def test_match_falling_through_every_handler_is_unhandled(runtime: AgentRuntime) -> None:
    class Picky(RoutedAgent):
        @rpc(match=lambda m, ctx: False)
        async def never(self, m: Animal) -> str:
            return "never"

    await Picky.register(runtime, "picky", Picky)
    with pytest.raises(CantHandle):
        await runtime.send_message(Animal("x"), AgentId("picky", "default"))


async def test_union_any_and_builtin_types(runtime: AgentRuntime) -> None:
    class Mixed(RoutedAgent):
        @handler
        async def numbers(self, n: int | float) -> str:
            return f"number:{n}"

        @handler
        async def lists(self, items: list[int]) -> int:
            return len(items)

        @handler
        async def anything(self, x: Any) -> str:
            return f"any:{type(x).__name__}"

    await Mixed.register(runtime, "mixed", Mixed)
    mid = AgentId("mixed", "default")
    assert await runtime.send_message(3, mid) == "number:3"
    assert await runtime.send_message(2.5, mid) == "number:2.5"
    assert await runtime.send_message([1, 2, 3], mid) == 3
    assert await runtime.send_message("s", mid) == "any:str"
    # bool is an int subclass: the int handler is more specific than Any
    assert await runtime.send_message(True, mid) == "number:True"


async def test_forward_references_resolve_on_first_use(runtime: AgentRuntime) -> None:
    class Late(RoutedAgent):
        @handler
        async def on_later(self, m: DefinedLater) -> str:
            return m.text

    await Late.register(runtime, "late", Late)
    assert await runtime.send_message(DefinedLater("ok"), AgentId("late", "default")) == "ok"


@dataclass
class DefinedLater:
    text: str


async def test_handlers_are_inherited_and_overridable(runtime: AgentRuntime) -> None:
    class Base(RoutedAgent):
        @handler
        async def on_dog(self, d: Dog) -> str:
            return "base"

        @handler
        async def on_cat(self, c: Cat) -> str:
            return "base-cat"

    class Derived(Base):
        @handler
        async def on_dog(self, d: Dog) -> str:
            return "derived"

    await Derived.register(runtime, "derived", Derived)
    did = AgentId("derived", "default")
    assert await runtime.send_message(Dog("d"), did) == "derived"
    assert await runtime.send_message(Cat("c"), did) == "base-cat"
    assert set(Derived._handled_types()) == {Dog, Cat}


async def test_on_message_impl_override_still_runs(runtime: AgentRuntime) -> None:
    class Wrapped(RoutedAgent):
        @handler
        async def on_dog(self, d: Dog) -> str:
            return "dog"

        async def on_message_impl(self, message: Any, ctx: MessageContext) -> Any:
            return f"wrapped:{await super().on_message_impl(message, ctx)}"

    await Wrapped.register(runtime, "wrapped", Wrapped)
    assert await runtime.send_message(Dog("d"), AgentId("wrapped", "default")) == "wrapped:dog"


def test_handler_validation() -> None:
    with pytest.raises(InvalidHandler, match="async def"):

        @handler
        def not_async(self: Any, m: Dog) -> None: ...

    with pytest.raises(InvalidHandler, match=r"\(self, message\)"):

        @handler
        async def too_many(self: Any, m: Dog, ctx: MessageContext, extra: int) -> None: ...

    class NoAnnotation(RoutedAgent):
        @handler
        async def bare(self, m, ctx):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(InvalidHandler, match="annotate"):
        NoAnnotation()


def test_a_handler_named_like_the_entry_point_is_refused() -> None:
    # it would replace the routing entry point and the agent would silently handle nothing
    with pytest.raises(TypeError, match="routing entry point"):

        class Shadowing(RoutedAgent):
            @message_handler
            async def on_message(self, message: int, ctx: MessageContext) -> None:
                return None

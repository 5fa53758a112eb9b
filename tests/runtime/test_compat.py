"""autogen-core API the runtime's port needs beyond the quickstart: serializers, the context
classes, AgentProxy, ClosureAgent's unknown_type_policy, tracer_provider, target_types, and
what a publish to an agent that cannot be created does."""

from __future__ import annotations

import logging
from dataclasses import dataclass, make_dataclass
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from axonbus import Bus
from axonbus.runtime import (
    AgentId,
    AgentNotBound,
    AgentProxy,
    AgentRuntime,
    CantHandle,
    ClosureAgent,
    ClosureContext,
    DefaultSubscription,
    DefaultTopicId,
    MessageContext,
    MessageHandlerContext,
    RoutedAgent,
    SubscriptionInstantiationContext,
    TypeSubscription,
    Undeliverable,
    UnknownPayload,
    handler,
    rpc,
    try_get_known_serializers_for_type,
)
from axonbus.runtime._serialization import MessageTypes
from axonbus.runtime._serializers import SerializationRegistry
from axonbus.runtime._types import AnyType
from tests.runtime.messages import Line, Order, Point

# -- serializers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [Point(1, 2), Line(Point(0, 1), Point(2, 3)), Order(id=7, items=["a"]), Timestamp(seconds=5)],
)
def test_known_serializers_round_trip(message: Any) -> None:
    [serializer] = try_get_known_serializers_for_type(type(message))
    assert serializer.deserialize(serializer.serialize(message)) == message


def test_serializer_names_and_content_types() -> None:
    [point] = try_get_known_serializers_for_type(Point)
    [stamp] = try_get_known_serializers_for_type(Timestamp)
    assert (point.type_name, point.data_content_type) == ("Point", "application/json")
    assert stamp.type_name == "google.protobuf.Timestamp"
    assert stamp.data_content_type == "application/x-protobuf"
    assert try_get_known_serializers_for_type(int) == []


def test_registry_gives_unknown_payload_for_unknown_types() -> None:
    registry = SerializationRegistry()
    registry.add_serializer(try_get_known_serializers_for_type(Point))
    assert registry.is_registered("Point", "application/json")
    raw = registry.serialize(Point(1, 2), type_name="Point", data_content_type="application/json")
    assert registry.deserialize(raw, type_name="Point", data_content_type="application/json") == (
        Point(1, 2)
    )
    unknown = registry.deserialize(b"{}", type_name="Nope", data_content_type="application/json")
    assert unknown == UnknownPayload("Nope", "application/json", b"{}")
    with pytest.raises(ValueError, match="no serializer for 'Nope'"):
        registry.serialize(Point(1, 2), type_name="Nope", data_content_type="application/json")


def test_added_serializers_carry_messages_by_their_name() -> None:
    # two processes with different classes of one name (a script's __main__ on one side)
    @dataclass
    class Job:
        n: int

    @dataclass
    class JobElsewhere:
        n: int

    JobElsewhere.__name__ = "Job"
    sender, receiver = AgentRuntime(), AgentRuntime()
    sender.add_message_serializer(try_get_known_serializers_for_type(Job))
    receiver.add_message_serializer(try_get_known_serializers_for_type(JobElsewhere))
    stamps = try_get_known_serializers_for_type(Timestamp)
    sender.add_message_serializer(stamps)
    receiver.add_message_serializer(stamps)
    wire = sender.message_types.dump(Job(3))
    assert wire["type"] == "Job"
    assert receiver.message_types.load(wire) == JobElsewhere(3)
    stamp = Timestamp(seconds=9)
    assert receiver.message_types.load(sender.message_types.dump(stamp)) == stamp
    with pytest.raises(TypeError, match="add its serializer here too"):
        AgentRuntime().message_types.load(wire)


def test_a_main_module_class_gets_an_error_that_says_what_to_do() -> None:
    with pytest.raises(TypeError) as info:
        MessageTypes().load({"type": "__main__.Job", "data": {"n": 1}})
    assert "defined in the sending process's __main__" in str(info.value)
    assert "runtime.message_types.register(Job, name='Job')" in str(info.value)


def test_a_namesake_from_a_main_module_is_named_in_the_error() -> None:
    # the worker ran its script as __main__; the client imported the class from its module
    in_script = make_dataclass("Point", [("x", int), ("y", int)])
    in_script.__module__ = "__main__"
    worker = MessageTypes()
    worker.register(in_script)
    with pytest.raises(TypeError) as info:
        worker.load({"type": "shapes.Point", "data": {"x": 1, "y": 2}})
    assert "this process knows Point as '__main__.Point'" in str(info.value)
    assert "runtime.message_types.register(Point, name='Point')" in str(info.value)


def test_message_types_can_be_registered_under_a_shared_name() -> None:
    sender, receiver = MessageTypes(), MessageTypes()
    sender.register(Point)  # e.g. by Agent.register, under its module path
    sender.register(Point, name="geo.Point")
    receiver.register(Point, name="geo.Point")
    wire = sender.dump(Point(1, 2))
    assert wire["type"] == "geo.Point"
    assert receiver.load(wire) == Point(1, 2)


# -- handlers' declared types ----------------------------------------------------------------------


class Clerk(RoutedAgent):
    @handler
    async def on_order(self, order: Order | Point, ctx: MessageContext) -> Any:
        return None

    @rpc
    async def later(self, message: Later) -> Point:
        return Point(0, 0)


@dataclass
class Later:
    pass


def test_handlers_declare_target_and_produced_types() -> None:
    assert Clerk.on_order.target_types == [Order, Point]  # type: ignore[attr-defined]
    assert Clerk.on_order.produces_types == [AnyType]  # type: ignore[attr-defined]
    Clerk._handled_types()  # a forward reference resolves when the class is first used
    assert Clerk.later.target_types == [Later]  # type: ignore[attr-defined]
    assert Clerk.later.produces_types == [Point]  # type: ignore[attr-defined]


# -- context classes and AgentProxy ----------------------------------------------------------------


class Echo(RoutedAgent):
    seen_by: list[AgentId] = []

    def __init__(self) -> None:
        super().__init__("echoes")
        self.count = 0

    @rpc
    async def echo(self, text: str) -> str:
        Echo.seen_by.append(MessageHandlerContext.agent_id())
        self.count += 1
        return text

    async def save_state(self) -> dict[str, Any]:
        return {"count": self.count}

    async def load_state(self, state: Any) -> None:
        self.count = state["count"]


async def test_message_handler_context_and_agent_proxy(runtime: AgentRuntime) -> None:
    Echo.seen_by = []
    await Echo.register(runtime, "echo", Echo)
    proxy = AgentProxy(AgentId("echo", "k"), runtime)
    assert await proxy.send_message("hi", sender=AgentId("me", "x")) == "hi"
    assert Echo.seen_by == [AgentId("echo", "k")]
    assert (await proxy.metadata)["description"] == "echoes"
    assert await proxy.save_state() == {"count": 1}
    await proxy.load_state({"count": 5})
    assert await proxy.save_state() == {"count": 5}
    with pytest.raises(AgentNotBound, match="only known inside a handler"):
        MessageHandlerContext.agent_id()


async def test_subscription_instantiation_context(runtime: AgentRuntime) -> None:
    seen = []

    def subscriptions() -> list[TypeSubscription]:
        agent_type = SubscriptionInstantiationContext.agent_type()
        seen.append(agent_type.type)
        return [TypeSubscription("jobs", agent_type)]

    async def take(agent: ClosureContext, message: str, ctx: MessageContext) -> None:
        return None

    await ClosureAgent.register_closure(runtime, "taker", take, subscriptions=subscriptions)
    assert seen == ["taker"]
    with pytest.raises(AgentNotBound, match="only known while an agent type is being registered"):
        SubscriptionInstantiationContext.agent_type()


# -- ClosureAgent.register_closure(unknown_type_policy=) -------------------------------------------


async def _closure_runtime(policy: Any, ignore: bool = True) -> AgentRuntime:
    async def take(agent: ClosureContext, message: int, ctx: MessageContext) -> int:
        return message

    runtime = AgentRuntime(ignore_unhandled_exceptions=ignore)
    await ClosureAgent.register_closure(
        runtime,
        "taker",
        take,
        unknown_type_policy=policy,
        subscriptions=lambda: [DefaultSubscription()],
    )
    runtime.start()
    return runtime


async def test_closure_policy_error_raises_for_sends_and_publishes() -> None:
    runtime = await _closure_runtime("error", ignore=False)
    with pytest.raises(CantHandle, match="takes int, not str"):
        await runtime.send_message("text", AgentId("taker", "default"))
    await runtime.publish_message("text", DefaultTopicId())
    with pytest.raises(CantHandle):
        await runtime.stop_when_idle()
    await runtime.close()


async def test_closure_policy_ignore_drops_them(caplog: pytest.LogCaptureFixture) -> None:
    runtime = await _closure_runtime("ignore")
    caplog.set_level(logging.DEBUG, logger="axonbus.runtime")
    assert await runtime.send_message("text", AgentId("taker", "default")) is None
    assert await runtime.send_message(3, AgentId("taker", "default")) == 3
    await runtime.close()
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


async def test_closure_policy_warn_logs_then_acts_as_unhandled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = await _closure_runtime("warn")
    caplog.set_level(logging.WARNING, logger="axonbus.runtime")
    with pytest.raises(CantHandle):
        await runtime.send_message("text", AgentId("taker", "default"))
    assert any("takes int, not str" in r.getMessage() for r in caplog.records)
    await runtime.close()
    with pytest.raises(ValueError, match="unknown_type_policy"):
        await _closure_runtime("loud")


# -- tracer_provider -------------------------------------------------------------------------------


async def test_tracer_provider_traces_the_runtimes_own_bus() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with AgentRuntime(tracer_provider=provider) as runtime:
        await runtime.bus.publish("orders.created", {"id": 1})
    assert "publish orders.created" in [span.name for span in exporter.get_finished_spans()]
    with pytest.raises(ValueError, match="OpenTelemetryMiddleware"):
        AgentRuntime(Bus(), tracer_provider=provider)


# -- publishes to agents that cannot be created ----------------------------------------------------


class Greeter(RoutedAgent):
    @handler
    async def greet(self, text: str) -> None:
        return None


async def test_a_publish_to_a_key_that_cannot_be_created_raises_from_stop_when_idle() -> None:
    runtime = AgentRuntime(ignore_unhandled_exceptions=False)
    await Greeter().register_instance(runtime, AgentId("greeter", "default"))
    await runtime.add_subscription(TypeSubscription("hello", "greeter"))
    runtime.start()
    await runtime.publish_message("hi", DefaultTopicId("hello", "elsewhere"))
    with pytest.raises(Undeliverable, match="greeter/elsewhere") as info:
        await runtime.stop_when_idle()
    assert isinstance(info.value, RuntimeError)  # as autogen-core's error is
    await runtime.close()


async def test_a_factory_failing_during_a_publish_is_logged_and_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> Greeter:
        raise OSError("no database")

    runtime = AgentRuntime(ignore_unhandled_exceptions=False)
    await runtime.register_factory("greeter", broken)
    await runtime.add_subscription(TypeSubscription("hello", "greeter"))
    caplog.set_level(logging.ERROR, logger="axonbus.runtime")
    runtime.start()
    await runtime.publish_message("hi", DefaultTopicId("hello", "a"))
    with pytest.raises(OSError, match="no database"):
        await runtime.stop_when_idle()
    assert any(r.getMessage() == "Error constructing agent greeter/a" for r in caplog.records)
    await runtime.close()

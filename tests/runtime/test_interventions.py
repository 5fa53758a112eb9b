"""Intervention handlers: rewrite or drop sends, publishes and replies."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from axonbus.runtime import (
    AgentId,
    AgentRuntime,
    DefaultInterventionHandler,
    DefaultTopicId,
    DropMessage,
    InterventionHandler,
    MessageContext,
    MessageDropped,
    RoutedAgent,
    default_subscription,
    handler,
)


@dataclass
class Text:
    value: str


@default_subscription
class Sink(RoutedAgent):
    got: list[str] = []

    @handler
    async def on_text(self, t: Text, ctx: MessageContext) -> str:
        Sink.got.append(t.value)
        return f"reply:{t.value}"


@pytest.fixture(autouse=True)
def _reset() -> None:
    Sink.got = []


class Upper(InterventionHandler):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def on_send(
        self, message: Any, *, message_context: MessageContext, recipient: AgentId
    ) -> Any:
        self.calls.append(("send", (message_context.is_rpc, recipient)))
        return Text(message.value.upper())

    async def on_publish(self, message: Any, *, message_context: MessageContext) -> Any:
        self.calls.append(("publish", message_context.topic_id))
        return Text(message.value.upper())

    async def on_response(self, message: Any, *, sender: AgentId, recipient: AgentId | None) -> Any:
        self.calls.append(("response", (sender, recipient)))
        return f"{message}!"


class DropAll(DefaultInterventionHandler):
    async def on_send(
        self, message: Any, *, message_context: MessageContext, recipient: AgentId
    ) -> Any:
        return DropMessage

    async def on_publish(self, message: Any, *, message_context: MessageContext) -> Any:
        return DropMessage()


async def make(*handlers: InterventionHandler) -> AgentRuntime:
    runtime = AgentRuntime(intervention_handlers=list(handlers))
    await Sink.register(runtime, "sink", Sink)
    runtime.start()
    return runtime


async def test_rewrite_send_publish_and_response() -> None:
    upper = Upper()
    runtime = await make(upper)
    sender = AgentId("caller", "c")
    reply = await runtime.send_message(Text("hi"), AgentId("sink", "default"), sender=sender)
    assert reply == "reply:HI!"
    await runtime.publish_message(Text("pub"), DefaultTopicId())
    await runtime.stop_when_idle()
    assert Sink.got == ["HI", "PUB"]
    assert upper.calls == [
        ("send", (True, AgentId("sink", "default"))),
        ("response", (AgentId("sink", "default"), sender)),
        ("publish", DefaultTopicId()),
    ]
    await runtime.close()


async def test_handlers_chain_in_order() -> None:
    class Tag(InterventionHandler):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        async def on_send(
            self, message: Any, *, message_context: MessageContext, recipient: AgentId
        ) -> Any:
            return Text(message.value + self.tag)

    runtime = await make(Tag("1"), Tag("2"))
    assert await runtime.send_message(Text("x"), AgentId("sink", "default")) == "reply:x12"
    await runtime.close()


async def test_dropped_send_raises_message_dropped() -> None:
    runtime = await make(DropAll())
    with pytest.raises(MessageDropped, match="DropAll dropped the message to sink/default"):
        await runtime.send_message(Text("x"), AgentId("sink", "default"))
    assert Sink.got == []
    await runtime.close()


async def test_dropped_publish_leaves_nothing_to_wait_for() -> None:
    runtime = await make(DropAll())
    for i in range(3):
        await runtime.publish_message(Text(str(i)), DefaultTopicId())
    await asyncio.wait_for(runtime.stop_when_idle(), 2)
    assert Sink.got == []
    await runtime.close()


async def test_dropped_response_raises_message_dropped() -> None:
    class DropReplies(InterventionHandler):
        async def on_response(
            self, message: Any, *, sender: AgentId, recipient: AgentId | None
        ) -> Any:
            return DropMessage

    runtime = await make(DropReplies())
    with pytest.raises(MessageDropped, match="reply of sink/default"):
        await runtime.send_message(Text("x"), AgentId("sink", "default"))
    assert Sink.got == ["x"]  # handled; only the reply was dropped
    await runtime.close()


async def test_selective_drop_on_publish() -> None:
    class NoSecrets(InterventionHandler):
        async def on_publish(self, message: Any, *, message_context: MessageContext) -> Any:
            return DropMessage if "secret" in message.value else message

    runtime = await make(NoSecrets())
    for value in ("a", "secret b", "c"):
        await runtime.publish_message(Text(value), DefaultTopicId())
    await runtime.stop_when_idle()
    assert Sink.got == ["a", "c"]
    await runtime.close()


async def test_intervention_errors_reach_the_caller() -> None:
    class Broken(InterventionHandler):
        async def on_publish(self, message: Any, *, message_context: MessageContext) -> Any:
            raise PermissionError("not allowed")

    runtime = await make(Broken())
    with pytest.raises(PermissionError, match="not allowed"):
        await runtime.publish_message(Text("x"), DefaultTopicId())
    await runtime.close()


async def test_returning_none_warns_and_changes_nothing() -> None:
    class Forgetful(InterventionHandler):
        async def on_send(
            self, message: Any, *, message_context: MessageContext, recipient: AgentId
        ) -> Any:
            return None

    runtime = await make(Forgetful())
    with pytest.warns(RuntimeWarning, match=r"Forgetful\.on_send returned None"):
        reply = await runtime.send_message(Text("x"), AgentId("sink", "default"))
    assert reply == "reply:x"
    await runtime.close()

"""publish_message and subscriptions: type, prefix, default, decorators, removal, the sender
left out, one delivery per agent, handler failures contained."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from axonbus.runtime import (
    AgentId,
    AgentRuntime,
    DefaultSubscription,
    DefaultTopicId,
    MessageContext,
    RoutedAgent,
    TopicId,
    TypePrefixSubscription,
    TypeSubscription,
    default_subscription,
    event,
    handler,
    type_subscription,
)


@dataclass
class Note:
    text: str


Seen = list[tuple[str, str, str | None]]


class Recorder(RoutedAgent):
    seen: Seen = []

    @event
    async def on_note(self, note: Note, ctx: MessageContext) -> None:
        assert ctx.topic_id is not None
        assert not ctx.is_rpc
        Recorder.seen.append((str(self.id), note.text, str(ctx.sender) if ctx.sender else None))


@default_subscription
class DefaultRecorder(Recorder):
    pass


@type_subscription("news")
class NewsRecorder(Recorder):
    pass


@pytest.fixture(autouse=True)
def _reset() -> None:
    Recorder.seen = []


async def test_type_subscription_maps_source_to_key(runtime: AgentRuntime) -> None:
    await Recorder.register(runtime, "rec", Recorder)
    await runtime.add_subscription(TypeSubscription("orders", "rec"))
    await runtime.publish_message(Note("a"), TopicId("orders", "customer1"))
    await runtime.publish_message(Note("b"), TopicId("orders", "customer2"))
    await runtime.publish_message(Note("c"), TopicId("orders", "customer1"))
    await runtime.publish_message(Note("ignored"), TopicId("orders.other", "customer1"))
    await runtime.stop_when_idle()
    assert sorted(Recorder.seen) == [
        ("rec/customer1", "a", None),
        ("rec/customer1", "c", None),
        ("rec/customer2", "b", None),
    ]


async def test_prefix_subscription(runtime: AgentRuntime) -> None:
    await Recorder.register(runtime, "rec", Recorder)
    await runtime.add_subscription(TypePrefixSubscription("orders.", "rec"))
    for topic in ("orders.created", "orders.paid", "ordersX", "billing"):
        await runtime.publish_message(Note(topic), TopicId(topic, "s"))
    await runtime.stop_when_idle()
    assert [text for _, text, _ in Recorder.seen] == ["orders.created", "orders.paid"]


async def test_default_subscription_decorator_and_default_topic(runtime: AgentRuntime) -> None:
    await DefaultRecorder.register(runtime, "rec", DefaultRecorder)
    await runtime.publish_message(Note("hello"), DefaultTopicId())
    await runtime.publish_message(Note("elsewhere"), TopicId("other", "default"))
    await runtime.stop_when_idle()
    assert Recorder.seen == [("rec/default", "hello", None)]


async def test_type_subscription_decorator(runtime: AgentRuntime) -> None:
    await NewsRecorder.register(runtime, "news_rec", NewsRecorder)
    await runtime.publish_message(Note("headline"), TopicId("news", "paper"))
    await runtime.stop_when_idle()
    assert Recorder.seen == [("news_rec/paper", "headline", None)]


async def test_class_subscriptions_are_not_inherited(runtime: AgentRuntime) -> None:
    class Child(DefaultRecorder):
        pass

    await Child.register(runtime, "child", Child)
    await runtime.publish_message(Note("x"), DefaultTopicId())
    await runtime.stop_when_idle()
    assert Recorder.seen == []


async def test_skip_class_subscriptions(runtime: AgentRuntime) -> None:
    await DefaultRecorder.register(runtime, "rec", DefaultRecorder, skip_class_subscriptions=True)
    await runtime.publish_message(Note("x"), DefaultTopicId())
    await runtime.stop_when_idle()
    assert Recorder.seen == []


async def test_direct_topic_of_a_type(runtime: AgentRuntime) -> None:
    await Recorder.register(runtime, "rec", Recorder)
    await runtime.publish_message(Note("direct"), TopicId("rec:", "k9"))
    await runtime.stop_when_idle()
    assert Recorder.seen == [("rec/k9", "direct", None)]


async def test_remove_subscription(runtime: AgentRuntime) -> None:
    await Recorder.register(runtime, "rec", Recorder)
    sub = TypeSubscription("orders", "rec")
    await runtime.add_subscription(sub)
    await runtime.publish_message(Note("before"), TopicId("orders", "s"))
    await runtime.remove_subscription(sub.id)
    await runtime.publish_message(Note("after"), TopicId("orders", "s"))
    await runtime.stop_when_idle()
    assert [text for _, text, _ in Recorder.seen] == ["before"]
    with pytest.raises(ValueError, match="no subscription"):
        await runtime.remove_subscription(sub.id)


async def test_equal_subscriptions_are_refused(runtime: AgentRuntime) -> None:
    await runtime.add_subscription(TypeSubscription("t", "rec"))
    with pytest.raises(ValueError, match="already exists"):
        await runtime.add_subscription(TypeSubscription("t", "rec"))
    with pytest.raises(ValueError, match="already"):
        await runtime.add_subscription(DefaultSubscription("t", "rec"))
    with pytest.raises(TypeError):
        await runtime.add_subscription("t")  # type: ignore[arg-type]


async def test_one_delivery_per_agent_when_subscriptions_overlap(runtime: AgentRuntime) -> None:
    await Recorder.register(runtime, "rec", Recorder)
    await runtime.add_subscription(TypeSubscription("orders.new", "rec"))
    await runtime.add_subscription(TypePrefixSubscription("orders.", "rec"))
    await runtime.publish_message(Note("once"), TopicId("orders.new", "s"))
    await runtime.stop_when_idle()
    assert Recorder.seen == [("rec/s", "once", None)]


async def test_the_sender_does_not_receive_its_own_publish(runtime: AgentRuntime) -> None:
    class Chatty(RoutedAgent):
        @handler
        async def on_note(self, note: Note, ctx: MessageContext) -> None:
            Recorder.seen.append((str(self.id), note.text, str(ctx.sender)))
            if note.text == "start":
                await self.publish_message(Note(f"from {self.id.key}"), TopicId("room", "a"))

    await Chatty.register(runtime, "chatty", Chatty)
    await runtime.add_subscription(TypePrefixSubscription("room", "chatty"))
    # chatty/a and chatty/b both subscribe; b is created by a publish to its source
    await runtime.publish_message(Note("hi b"), TopicId("room", "b"))
    await runtime.publish_message(Note("start"), TopicId("room", "a"))
    await runtime.stop_when_idle()
    # chatty/a published "from a" on its own topic: nobody else subscribes there, and a itself
    # is excluded as the sender
    assert ("chatty/a", "from a", "chatty/a") not in Recorder.seen
    assert Recorder.seen == [("chatty/b", "hi b", "None"), ("chatty/a", "start", "None")]


async def test_sender_excluded_but_others_receive(runtime: AgentRuntime) -> None:
    await DefaultRecorder.register(runtime, "rec", DefaultRecorder)
    await runtime.add_subscription(TypeSubscription("default", "rec2"))
    await DefaultRecorder.register(runtime, "rec2", DefaultRecorder, skip_class_subscriptions=True)
    sender = AgentId("rec", "default")
    await runtime.publish_message(Note("n"), DefaultTopicId(), sender=sender)
    await runtime.stop_when_idle()
    assert Recorder.seen == [("rec2/default", "n", "rec/default")]


async def test_default_topic_inside_a_handler_uses_the_agents_key(runtime: AgentRuntime) -> None:
    topics: list[TopicId] = []

    class Echo(RoutedAgent):
        @handler
        async def on_note(self, note: Note) -> None:
            topics.append(DefaultTopicId())

    await Echo.register(runtime, "echo", Echo)
    await runtime.send_message(Note("x"), AgentId("echo", "session-7"))
    assert topics == [TopicId("default", "session-7")]


async def test_publish_context_is_shared_by_recipients(runtime: AgentRuntime) -> None:
    contexts: list[MessageContext] = []

    class Keep(RoutedAgent):
        @handler
        async def on_note(self, note: Note, ctx: MessageContext) -> None:
            contexts.append(ctx)

    await Keep.register(runtime, "keep", Keep)
    await runtime.add_subscription(TypeSubscription("t", "keep"))
    await runtime.add_subscription(TypeSubscription("t", "keep2"))
    await Keep.register(runtime, "keep2", Keep)
    await runtime.publish_message(Note("x"), TopicId("t", "s"), message_id="m-1")
    await runtime.stop_when_idle()
    assert [c.message_id for c in contexts] == ["m-1", "m-1"]
    assert all(c.topic_id == TopicId("t", "s") and not c.is_rpc for c in contexts)


async def test_publish_order_is_kept_per_agent(runtime: AgentRuntime) -> None:
    await DefaultRecorder.register(runtime, "rec", DefaultRecorder)
    for i in range(100):
        await runtime.publish_message(Note(str(i)), DefaultTopicId())
    await runtime.stop_when_idle()
    assert [text for _, text, _ in Recorder.seen] == [str(i) for i in range(100)]


class Fragile(RoutedAgent):
    @event
    async def on_note(self, note: Note) -> None:
        if note.text == "bad":
            raise ValueError("cannot take it")
        Recorder.seen.append((str(self.id), note.text, None))


async def test_publish_handler_failure_is_logged_not_raised(
    runtime: AgentRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="axonbus.runtime")
    await Fragile.register(runtime, "fragile", Fragile)
    await runtime.add_subscription(TypeSubscription("t", "fragile"))
    await runtime.publish_message(Note("bad"), TopicId("t", "s"))
    await runtime.publish_message(Note("good"), TopicId("t", "s"))
    await runtime.stop_when_idle()
    assert Recorder.seen == [("fragile/s", "good", None)]
    failed = [r for r in caplog.records if "failed handling published Note" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].exc_info is not None


async def test_unhandled_publish_failures_can_be_raised_at_stop() -> None:
    runtime = AgentRuntime(ignore_unhandled_exceptions=False)
    await Fragile.register(runtime, "fragile", Fragile)
    await runtime.add_subscription(TypeSubscription("t", "fragile"))
    runtime.start()
    await runtime.publish_message(Note("bad"), TopicId("t", "s"))
    with pytest.raises(ValueError, match="cannot take it"):
        await runtime.stop_when_idle()
    await runtime.close()


async def test_subscription_to_an_unregistered_type_is_skipped(
    runtime: AgentRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="axonbus.runtime")
    await DefaultRecorder.register(runtime, "rec", DefaultRecorder)
    await runtime.add_subscription(TypeSubscription("default", "ghost"))
    await runtime.publish_message(Note("x"), DefaultTopicId())
    await runtime.stop_when_idle()
    assert Recorder.seen == [("rec/default", "x", None)]
    assert any("ghost/default" in r.getMessage() for r in caplog.records)


async def test_registering_later_reaches_the_new_type(runtime: AgentRuntime) -> None:
    await runtime.add_subscription(TypeSubscription("default", "late"))
    await runtime.publish_message(Note("nobody yet"), DefaultTopicId())
    await Recorder.register(runtime, "late", Recorder)
    await runtime.publish_message(Note("now"), DefaultTopicId())
    await runtime.stop_when_idle()
    assert Recorder.seen == [("late/default", "now", None)]

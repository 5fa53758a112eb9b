"""save_state / load_state for agents and for the whole runtime (with its subscriptions)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from axonbus.runtime import (
    AgentId,
    AgentRuntime,
    DefaultTopicId,
    MessageContext,
    RoutedAgent,
    TopicId,
    TypePrefixSubscription,
    TypeSubscription,
    default_subscription,
    handler,
)


@dataclass
class Add:
    n: int


@default_subscription
class Counter(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("counts")
        self.total = 0

    @handler
    async def add(self, m: Add, ctx: MessageContext) -> int:
        self.total += m.n
        return self.total

    async def save_state(self) -> Mapping[str, Any]:
        return {"total": self.total}

    async def load_state(self, state: Mapping[str, Any]) -> None:
        self.total = state["total"]


async def test_agent_save_and_load_state(runtime: AgentRuntime) -> None:
    await Counter.register(runtime, "counter", Counter)
    cid = AgentId("counter", "a")
    await runtime.send_message(Add(5), cid)
    assert await runtime.agent_save_state(cid) == {"total": 5}
    await runtime.agent_load_state(cid, {"total": 40})
    assert await runtime.send_message(Add(2), cid) == 42


async def test_agent_without_state_saves_an_empty_dict(runtime: AgentRuntime) -> None:
    class Stateless(RoutedAgent):
        pass

    await Stateless.register(runtime, "stateless", Stateless)
    assert await runtime.agent_save_state(AgentId("stateless", "x")) == {}


async def test_runtime_state_round_trips_through_json() -> None:
    first = AgentRuntime()
    await Counter.register(first, "counter", Counter)
    custom = TypeSubscription("scores", "counter")
    await first.add_subscription(custom)
    await first.add_subscription(TypePrefixSubscription("tally.", "counter"))
    first.start()
    await first.send_message(Add(3), AgentId("counter", "a"))
    await first.send_message(Add(4), AgentId("counter", "b"))
    await first.publish_message(Add(10), DefaultTopicId())  # creates counter/default
    await first.stop_when_idle()
    saved = json.loads(json.dumps(await first.save_state()))  # JSON-native
    await first.close()

    assert saved["agents"] == {
        "counter/a": {"total": 3},
        "counter/b": {"total": 4},
        "counter/default": {"total": 10},
    }
    kinds = sorted((s["kind"], s["topic"]) for s in saved["subscriptions"])
    assert kinds == [
        ("prefix", "counter:"),
        ("prefix", "tally."),
        ("type", "default"),
        ("type", "scores"),
    ]

    second = AgentRuntime()
    await Counter.register(second, "counter", Counter)  # re-adds default + direct subscriptions
    await second.load_state(saved)
    second.start()
    assert await second.send_message(Add(1), AgentId("counter", "b")) == 5
    # the subscription added by hand came back with the state
    await second.publish_message(Add(100), TopicId("scores", "a"))
    await second.publish_message(Add(1000), TopicId("tally.x", "a"))
    await second.stop_when_idle()
    assert await second.agent_save_state(AgentId("counter", "a")) == {"total": 1103}
    again = await second.save_state()
    assert len(again["subscriptions"]) == 4  # merged, not duplicated
    assert {s["id"] for s in again["subscriptions"]} >= {custom.id}
    await second.close()


async def test_load_state_accepts_autogens_flat_form(runtime: AgentRuntime) -> None:
    await Counter.register(runtime, "counter", Counter)
    await runtime.load_state({"counter/x": {"total": 7}, "unknown_type/y": {"total": 1}})
    assert await runtime.send_message(Add(1), AgentId("counter", "x")) == 8


async def test_save_state_before_start() -> None:
    runtime = AgentRuntime()
    await Counter.register(runtime, "counter", Counter)
    await runtime.agent_load_state(AgentId("counter", "k"), {"total": 2})
    state = await runtime.save_state()
    assert state["agents"] == {"counter/k": {"total": 2}}
    await runtime.close()

"""The public surface: one sorted __all__ per public module, every name importable."""

from __future__ import annotations

import importlib

import pytest

import axonbus

PUBLIC_MODULES = [
    "axonbus",
    "axonbus.agent",
    "axonbus.channels",
    "axonbus.gateway",
    "axonbus.integrations.langchain",
    "axonbus.observability",
    "axonbus.runtime",
    "axonbus.sync",
    "axonbus.testing",
    "axonbus.transports",
    "axonbus.transports.memory",
    "axonbus.transports.nats",
    "axonbus.transports.postgres",
    "axonbus.transports.redis",
    "axonbus.transports.sqlite",
]

PINNED = {  # names users' code is written against
    "Bus",
    "Context",
    "Event",
    "Retry",
    "Middleware",
    "BusClosed",
    "InvalidTopic",
    "MessageTooLarge",
    "NoResponders",
    "QueueFull",
    "RemoteError",
    "RequestTimeout",
    "ConnectionLost",
}


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} missing"


def test_pinned_names_are_exported() -> None:
    assert set(axonbus.__all__) >= PINNED


RUNTIME_PINNED = {  # the actor runtime's autogen-compatible names
    "AgentRuntime",
    "Agent",
    "RoutedAgent",
    "handler",
    "message_handler",
    "event",
    "rpc",
    "AgentId",
    "TopicId",
    "TypeSubscription",
    "TypePrefixSubscription",
    "DefaultTopicId",
    "MessageContext",
    "CancellationToken",
    "AgentNotFound",
    "Undeliverable",
    "RequestTimeout",
    "RemoteError",
}


def test_pinned_runtime_names_are_exported() -> None:
    runtime = importlib.import_module("axonbus.runtime")
    assert set(runtime.__all__) >= RUNTIME_PINNED


@pytest.mark.parametrize("name", ["axonbus", "axonbus.runtime"])
def test_every_exception_is_an_axonbus_error(name: str) -> None:
    module = importlib.import_module(name)
    for attr in module.__all__:
        obj = getattr(module, attr)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, axonbus.AxonbusError), attr
            # every runtime exception is also importable from the top level
            assert getattr(axonbus, attr) is obj, attr


AGENT_PINNED = {  # the agent toolkit's names
    "UserInput",
    "Thinking",
    "Token",
    "ToolCall",
    "ToolResult",
    "Interrupt",
    "Resume",
    "Cancel",
    "Error",
    "Done",
    "AgentStarted",
    "AgentCompleted",
    "AgentFailed",
    "reduce",
    "RunState",
    "StateManager",
    "AgentLoop",
    "ChatModel",
    "OpenAICompatibleModel",
    "ScriptedModel",
}


def test_pinned_agent_names_are_exported() -> None:
    agent = importlib.import_module("axonbus.agent")
    assert set(agent.__all__) >= AGENT_PINNED
    for attr in agent.__all__:
        obj = getattr(agent, attr)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, axonbus.AxonbusError), attr

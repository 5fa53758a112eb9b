"""Our own equivalents of the helpers autogen-core's tests import from its unpublished
``autogen_test_utils`` package, written from what those tests use (on ``axonbus.runtime``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from axonbus.runtime import (
    BaseAgent,
    DefaultTopicId,
    MessageContext,
    RoutedAgent,
    default_subscription,
    message_handler,
)

__all__ = [
    "CascadingAgent",
    "CascadingMessageType",
    "LoopbackAgent",
    "LoopbackAgentWithDefaultSubscription",
    "MessageType",
    "NoopAgent",
]


@dataclass
class MessageType:
    """An empty message."""


@dataclass
class CascadingMessageType:
    round: int


class LoopbackAgent(RoutedAgent):
    """Counts the ``MessageType`` messages it gets and answers a send with the message."""

    def __init__(self) -> None:
        super().__init__("A loop back agent.")
        self.num_calls = 0
        self.received_messages: list[Any] = []

    @message_handler
    async def on_new_message(self, message: MessageType, ctx: MessageContext) -> MessageType:
        self.num_calls += 1
        self.received_messages.append(message)
        return message


@default_subscription
class LoopbackAgentWithDefaultSubscription(LoopbackAgent):
    """A ``LoopbackAgent`` on the default topic."""


@default_subscription
class CascadingAgent(RoutedAgent):
    """Republishes each message with the next round number until ``max_rounds``."""

    def __init__(self, max_rounds: int) -> None:
        super().__init__("A cascading agent.")
        self.num_calls = 0
        self.max_rounds = max_rounds

    @message_handler
    async def on_new_message(self, message: CascadingMessageType, ctx: MessageContext) -> None:
        self.num_calls += 1
        if message.round == self.max_rounds:
            return
        await self.publish_message(CascadingMessageType(round=message.round + 1), DefaultTopicId())


class NoopAgent(BaseAgent):
    """An agent that ignores every message."""

    def __init__(self) -> None:
        super().__init__("A no op agent")

    async def on_message_impl(self, message: Any, ctx: MessageContext) -> Any:
        return None

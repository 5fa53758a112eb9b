"""autogen-core's quickstart on axonbus.runtime: a modifier and a checker pass a number back and
forth until the checker is satisfied.

The agents are autogen's, unchanged but for their imports (and a transcript list instead of
print): ``RoutedAgent``, ``@message_handler``, ``@default_subscription``, ``DefaultTopicId``.
``AgentRuntime`` takes the place of ``SingleThreadedAgentRuntime``; give it a bus on a broker
and the same agents run there.

Run: python examples/runtime_modifier_checker.py [bus URL, default memory://]
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass

from axonbus import Bus
from axonbus.runtime import (
    AgentId,
    AgentRuntime,
    DefaultTopicId,
    MessageContext,
    RoutedAgent,
    default_subscription,
    message_handler,
)


@dataclass
class Message:
    content: int


@default_subscription
class Modifier(RoutedAgent):
    def __init__(self, modify_val: Callable[[int], int], say: Callable[[str], None]) -> None:
        super().__init__("A modifier agent.")
        self._modify_val = modify_val
        self._say = say

    @message_handler
    async def handle_message(self, message: Message, ctx: MessageContext) -> None:
        val = self._modify_val(message.content)
        self._say(f"modifier: {message.content} -> {val}")
        await self.publish_message(Message(content=val), DefaultTopicId())


@default_subscription
class Checker(RoutedAgent):
    def __init__(self, run_until: Callable[[int], bool], say: Callable[[str], None]) -> None:
        super().__init__("A checker agent.")
        self._run_until = run_until
        self._say = say

    @message_handler
    async def handle_message(self, message: Message, ctx: MessageContext) -> None:
        if not self._run_until(message.content):
            self._say(f"checker: {message.content} passed the check, continue")
            await self.publish_message(Message(content=message.content), DefaultTopicId())
        else:
            self._say(f"checker: {message.content} failed the check, stopping")


async def main(url: str = "memory://", *, name: str | None = None, start: int = 10) -> list[str]:
    """Run the loop from ``start`` down to 1 on a bus at ``url``; the transcript."""
    lines: list[str] = []
    async with Bus(url, name=name) as bus, AgentRuntime(bus) as runtime:
        await Modifier.register(
            runtime, "modifier", lambda: Modifier(modify_val=lambda x: x - 1, say=lines.append)
        )
        await Checker.register(
            runtime, "checker", lambda: Checker(run_until=lambda x: x <= 1, say=lines.append)
        )
        # a direct message to the checker starts the loop; then they talk over the topic
        await runtime.send_message(Message(start), AgentId("checker", "default"))
        await runtime.stop_when_idle()
    return lines


if __name__ == "__main__":
    for line in asyncio.run(main(*sys.argv[1:2])):
        print(line)

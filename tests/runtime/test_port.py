"""The port check: autogen-core's quickstart on axonbus.runtime.

The code below is autogen_quickstart.py with exactly two changes: the imports come from
``axonbus.runtime`` instead of ``autogen_core``, and ``SingleThreadedAgentRuntime`` is
``AgentRuntime``. Both versions print the same transcript.
"""

# ruff: noqa: E402, UP035
from dataclasses import dataclass
from typing import Callable

import pytest

from axonbus.runtime import (
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
    def __init__(self, modify_val: Callable[[int], int]) -> None:
        super().__init__("A modifier agent.")
        self._modify_val = modify_val

    @message_handler
    async def handle_message(self, message: Message, ctx: MessageContext) -> None:
        val = self._modify_val(message.content)
        print(f"{'-' * 80}\nModifier:\nModified {message.content} to {val}")
        await self.publish_message(Message(content=val), DefaultTopicId())  # type: ignore


@default_subscription
class Checker(RoutedAgent):
    def __init__(self, run_until: Callable[[int], bool]) -> None:
        super().__init__("A checker agent.")
        self._run_until = run_until

    @message_handler
    async def handle_message(self, message: Message, ctx: MessageContext) -> None:
        if not self._run_until(message.content):
            print(f"{'-' * 80}\nChecker:\n{message.content} passed the check, continue.")
            await self.publish_message(Message(content=message.content), DefaultTopicId())
        else:
            print(f"{'-' * 80}\nChecker:\n{message.content} failed the check, stopping.")


from axonbus.runtime import AgentId, AgentRuntime


async def main() -> None:
    # Create a local embedded runtime.
    runtime = AgentRuntime()

    # Register the modifier and checker agents by providing
    # their agent types, the factory functions for creating instance and subscriptions.
    await Modifier.register(
        runtime,
        "modifier",
        # Modify the value by subtracting 1
        lambda: Modifier(modify_val=lambda x: x - 1),
    )

    await Checker.register(
        runtime,
        "checker",
        # Run until the value is less than or equal to 1
        lambda: Checker(run_until=lambda x: x <= 1),
    )

    # Start the runtime and send a direct message to the checker.
    runtime.start()
    await runtime.send_message(Message(10), AgentId("checker", "default"))
    await runtime.stop_when_idle()


def transcript(out: str) -> list[str]:
    return [line for line in out.splitlines() if line and not line.startswith("---")]


EXPECTED = ["Checker:", "10 passed the check, continue."]
for n in range(10, 1, -1):
    EXPECTED += ["Modifier:", f"Modified {n} to {n - 1}", "Checker:"]
    EXPECTED.append(
        f"{n - 1} passed the check, continue." if n - 1 > 1 else "1 failed the check, stopping."
    )


async def test_quickstart_runs_on_axonbus(capsys: pytest.CaptureFixture[str]) -> None:
    await main()
    assert transcript(capsys.readouterr().out) == EXPECTED


async def test_quickstart_prints_what_autogen_prints(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("autogen_core")
    from tests.runtime import autogen_quickstart

    await autogen_quickstart.main()
    autogen_out = transcript(capsys.readouterr().out)
    await main()
    assert transcript(capsys.readouterr().out) == autogen_out == EXPECTED

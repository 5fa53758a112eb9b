"""The scripted agent the AG-UI tests run: a server tool, a client tool, and a slow tool to
interrupt or cancel during."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from axonbus import Bus
from axonbus.agent import AgentLoop, Message, ScriptedModel, Turn

#: the prompts the script knows, and the tool call each starts with
CALLS = {
    "weather in Paris": ("get_weather", {"city": "Paris"}),
    "please confirm": ("confirm", {"question": "Proceed?"}),
    "slow task": ("wait_a_bit", {"seconds": 3.0}),
    "break": ("get_weather", {"city": "Atlantis"}),
}


def script(messages: Sequence[Message]) -> Turn:
    start = max(i for i, m in enumerate(messages) if m.role == "user" and m.content in CALLS)
    after = messages[start + 1 :]
    tool = next((m for m in after if m.role == "tool"), None)
    if tool is None:
        return Turn(thinking="Planning.", tool_calls=[CALLS[messages[start].content]])
    if tool.content.startswith("error: not run"):
        raise RuntimeError("the script was cut short")
    if "Atlantis" in tool.content:
        raise ValueError("no weather for Atlantis")
    notes = "".join(f"Noted: {m.content}. " for m in after if m.role == "user")
    return Turn(text=f"{notes}Done: {tool.content}.")


def interop_loop(bus: Bus, token_delay: float = 0.0) -> Callable[[str], AgentLoop]:
    """A factory ``session_id -> AgentLoop`` for :class:`AgUiAgent`."""

    async def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}" if city != "Atlantis" else "Atlantis: unknown city"

    async def wait_a_bit(seconds: float) -> str:
        """Wait, then say so."""
        await asyncio.sleep(seconds)
        return "waited"

    def make(session_id: str) -> AgentLoop:
        model = ScriptedModel(script, token_delay=token_delay)
        return AgentLoop(
            bus, model, [get_weather, wait_a_bit], session_id=session_id, name="interop"
        )

    return make

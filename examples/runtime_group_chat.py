"""A group chat with a manager (autogen-core's group chat pattern), scripted instead of an LLM.

Every participant and the manager subscribe to the shared ``group_chat`` topic, so each sees
every message; each participant also has a topic of its own. The manager picks the next speaker
after each message and publishes a ``RequestToSpeak`` on that speaker's topic; the speaker
answers on the group topic. The manager ends the chat when the editor approves.

Run: python examples/runtime_group_chat.py [bus URL, default memory://]
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from axonbus import Bus
from axonbus.runtime import (
    AgentRuntime,
    MessageContext,
    RoutedAgent,
    TopicId,
    TypeSubscription,
    handler,
)

GROUP = "group_chat"  # the topic type everyone shares; the source is the session


@dataclass
class GroupChatMessage:
    speaker: str
    text: str


@dataclass
class RequestToSpeak:
    pass


Script = Callable[[Sequence[GroupChatMessage]], str]  # the history so far -> what to say


class Participant(RoutedAgent):
    """Keeps the chat history; when asked to speak, says what its script says."""

    def __init__(self, description: str, script: Script) -> None:
        super().__init__(description)
        self._script = script
        self._history: list[GroupChatMessage] = []

    @handler
    async def handle_message(self, message: GroupChatMessage, ctx: MessageContext) -> None:
        self._history.append(message)

    @handler
    async def handle_request_to_speak(self, request: RequestToSpeak, ctx: MessageContext) -> None:
        said = GroupChatMessage(speaker=self.id.type, text=self._script(self._history))
        self._history.append(said)  # a publisher does not receive its own message
        await self.publish_message(said, TopicId(GROUP, source=self.id.key))


class GroupChatManager(RoutedAgent):
    """Picks who speaks next after every message, until a message says APPROVE."""

    def __init__(
        self, select: Callable[[Sequence[GroupChatMessage]], str], say: Callable[[str], None]
    ) -> None:
        super().__init__("Group chat manager")
        self._select = select
        self._say = say
        self._history: list[GroupChatMessage] = []

    @handler
    async def handle_message(self, message: GroupChatMessage, ctx: MessageContext) -> None:
        self._history.append(message)
        self._say(f"{message.speaker}: {message.text}")
        if "APPROVE" in message.text:
            self._say(f"manager: approved after {len(self._history) - 1} turns")
            return
        speaker = self._select(self._history)
        self._say(f"manager -> {speaker}")
        await self.publish_message(RequestToSpeak(), TopicId(speaker, source=self.id.key))


# -- the scripts: what an LLM would decide, made deterministic -----------------------------------


def select_speaker(history: Sequence[GroupChatMessage]) -> str:
    """The manager's choice: the writer starts, the editor reviews every contribution, and
    whatever the editor asks for decides who is next."""
    last = history[-1]
    if last.speaker == "user":
        return "writer"
    if last.speaker in ("writer", "illustrator"):
        return "editor"
    return "illustrator" if "illustration" in last.text else "writer"


def turns(history: Sequence[GroupChatMessage], speaker: str) -> int:
    return sum(m.speaker == speaker for m in history)


DRAFTS = [
    "The lighthouse stands upon the rock / and shines all night.",
    "The lighthouse keeps its silver light / for ships that pass it in the night.",
]
REVIEWS = ["Revise: make the lines rhyme.", "Good. Now it needs an illustration.", "APPROVE"]


def writer(history: Sequence[GroupChatMessage]) -> str:
    return DRAFTS[min(turns(history, "writer"), len(DRAFTS) - 1)]


def editor(history: Sequence[GroupChatMessage]) -> str:
    return REVIEWS[min(turns(history, "editor"), len(REVIEWS) - 1)]


def illustrator(history: Sequence[GroupChatMessage]) -> str:
    draft = next(m.text for m in reversed(history) if m.speaker == "writer")
    return f"[a white tower, one beam over dark water; caption: {draft.split(' / ')[0]!r}]"


PARTICIPANTS: dict[str, tuple[str, Script]] = {
    "writer": ("Writes and revises the poem.", writer),
    "editor": ("Reviews every contribution; approves the result.", editor),
    "illustrator": ("Describes an illustration of the latest draft.", illustrator),
}


async def main(url: str = "memory://", *, name: str | None = None) -> list[str]:
    """One chat session on a bus at ``url``; the transcript, as the manager saw it."""
    lines: list[str] = []
    async with Bus(url, name=name) as bus, AgentRuntime(bus) as runtime:
        for agent_type, (description, script) in PARTICIPANTS.items():
            await Participant.register(
                runtime, agent_type, partial(Participant, description, script)
            )
            await runtime.add_subscription(TypeSubscription(agent_type, agent_type))  # its own
            await runtime.add_subscription(TypeSubscription(GROUP, agent_type))
        await GroupChatManager.register(
            runtime, "manager", lambda: GroupChatManager(select_speaker, lines.append)
        )
        await runtime.add_subscription(TypeSubscription(GROUP, "manager"))

        task = "Write a two-line poem about a lighthouse, with an illustration."
        await runtime.publish_message(
            GroupChatMessage(speaker="user", text=task), TopicId(GROUP, source="session-1")
        )
        await runtime.stop_when_idle()
    return lines


if __name__ == "__main__":
    for line in asyncio.run(main(*sys.argv[1:2])):
        print(line)

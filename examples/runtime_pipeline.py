"""A sequential pipeline (autogen-core's sequential workflow pattern), scripted instead of an LLM:
concept extractor -> writer -> editor -> user.

Each stage is an agent type subscribed to a topic type of its own (``@type_subscription``); it
handles its input and publishes the result on the next stage's topic, with the same source, so
every product gets its own instance of each stage.

Run: python examples/runtime_pipeline.py [bus URL, default memory://]
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from axonbus import Bus
from axonbus.runtime import (
    AgentRuntime,
    MessageContext,
    RoutedAgent,
    TopicId,
    handler,
    type_subscription,
)

EXTRACTOR, WRITER, EDITOR, USER = "concept_extractor", "writer", "editor", "user"


@dataclass
class Description:
    text: str


@dataclass
class Concepts:
    product: str
    features: list[str]


@dataclass
class Draft:
    text: str


@dataclass
class Copy:
    title: str
    text: str


class Stage(RoutedAgent):
    """A pipeline stage: says what it did in the transcript, passes its result on."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(f"pipeline stage {type(self).__name__}")
        self._say = say

    async def pass_on(self, result: object, topic_type: str) -> None:
        await self.publish_message(result, TopicId(topic_type, source=self.id.key))


@type_subscription(EXTRACTOR)
class ConceptExtractor(Stage):
    @handler
    async def extract(self, description: Description, ctx: MessageContext) -> None:
        product, _, rest = description.text.partition(" that ")
        concepts = Concepts(product.removeprefix("An ").removeprefix("A "), rest.split(" and "))
        self._say(
            f"{EXTRACTOR}: product: {concepts.product}; features: {', '.join(concepts.features)}"
        )
        await self.pass_on(concepts, WRITER)


@type_subscription(WRITER)
class Writer(Stage):
    @handler
    async def write(self, concepts: Concepts, ctx: MessageContext) -> None:
        draft = Draft(f"Meet the {concepts.product}: it {' and '.join(concepts.features)}")
        self._say(f"{WRITER}: {draft.text}")
        await self.pass_on(draft, EDITOR)


# the editor's house rules: (wrong, right)
FIXES = [("stainless steel", "stainless-steel")]


@type_subscription(EDITOR)
class Editor(Stage):
    @handler
    async def edit(self, draft: Draft, ctx: MessageContext) -> None:
        text, changes = draft.text, []
        for wrong, right in FIXES:
            if wrong in text:
                text = text.replace(wrong, right)
                changes.append(f"{wrong!r} -> {right!r}")
        if not text.endswith("."):
            text += "."
            changes.append("full stop")
        title = text.partition(":")[0].removeprefix("Meet the ").title()
        self._say(f"{EDITOR}: {', '.join(changes)}, title {title!r}")
        await self.pass_on(Copy(title, text), USER)


@type_subscription(USER)
class User(Stage):
    @handler
    async def receive(self, copy: Copy, ctx: MessageContext) -> None:
        self._say(f"{USER}: {copy.title}")
        self._say(f"{USER}: {copy.text}")


async def main(url: str = "memory://", *, name: str | None = None) -> list[str]:
    """One product through the pipeline on a bus at ``url``; the transcript."""
    lines: list[str] = []
    async with Bus(url, name=name) as bus, AgentRuntime(bus) as runtime:
        for agent_type, stage in [
            (EXTRACTOR, ConceptExtractor),
            (WRITER, Writer),
            (EDITOR, Editor),
            (USER, User),
        ]:
            await stage.register(runtime, agent_type, partial(stage, lines.append))
        description = (
            "An eco-friendly stainless steel water bottle that keeps drinks cold for 24 hours"
            " and fits every cup holder"
        )
        await runtime.publish_message(Description(description), TopicId(EXTRACTOR, "bottle"))
        await runtime.stop_when_idle()
    return lines


if __name__ == "__main__":
    for line in asyncio.run(main(*sys.argv[1:2])):
        print(line)

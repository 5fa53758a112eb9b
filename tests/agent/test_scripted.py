"""ScriptedModel: deterministic, paced, cancellable; and Tool schemas."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Literal

import pytest

from axonbus.agent import (
    ChatModel,
    Message,
    ModelChunk,
    ScriptedModel,
    ScriptExhausted,
    TextDelta,
    ThinkingDelta,
    Tool,
    ToolRequest,
    Turn,
)
from axonbus.agent._scripted import split_tokens


async def collect(model: ScriptedModel, messages: Sequence[Message] = ()) -> list[ModelChunk]:
    return [c async for c in model.stream(messages, [])]


SCRIPT = [
    Turn(thinking="adding up", text="Let me add.", tool_calls=[("add", {"a": 2, "b": 3})]),
    Turn(tool_calls=[ToolRequest(id="mine", name="add", arguments={"a": 1, "b": 1})]),
    "It is 5.",
]


async def test_a_script_plays_the_same_way_every_time() -> None:
    runs = []
    for _ in range(2):
        model = ScriptedModel(SCRIPT)
        runs.append([await collect(model) for _ in range(3)])
    assert runs[0] == runs[1]
    first, second, third = runs[0]
    assert first == [
        ThinkingDelta("adding"),
        ThinkingDelta(" up"),
        TextDelta("Let"),
        TextDelta(" me"),
        TextDelta(" add."),
        ToolRequest(id="call_1", name="add", arguments={"a": 2, "b": 3}),
        Message(
            role="assistant",
            content="Let me add.",
            tool_calls=(ToolRequest(id="call_1", name="add", arguments={"a": 2, "b": 3}),),
        ),
    ]
    assert second[0] == ToolRequest(id="mine", name="add", arguments={"a": 1, "b": 1})
    assert third[-1] == Message(role="assistant", content="It is 5.")
    assert isinstance(ScriptedModel(SCRIPT), ChatModel)


async def test_a_list_script_runs_out() -> None:
    model = ScriptedModel(["only"])
    await collect(model)
    with pytest.raises(ScriptExhausted, match="1 turns; this is call 2"):
        await collect(model)


async def test_a_function_script_sees_the_conversation() -> None:
    def script(messages: Sequence[Message]) -> Turn | str:
        return f"you said {messages[-1].content}"

    model = ScriptedModel(script)
    chunks = await collect(model, [Message(role="user", content="hi")])
    assert chunks[-1] == Message(role="assistant", content="you said hi")
    assert model.calls == [(Message(role="user", content="hi"),)]
    assert "calls=1" in repr(model)


@pytest.mark.parametrize("text", ["", "a", "  lead", "trail  ", "a  b\nc\t d", "héllo wörld !"])
def test_split_tokens_keeps_every_character(text: str) -> None:
    assert "".join(split_tokens(text)) == text


async def test_tokens_are_paced_and_the_stream_can_be_cancelled() -> None:
    model = ScriptedModel(["one two three four"], token_delay=0.02)
    t0 = time.perf_counter()
    chunks = await collect(model)
    assert time.perf_counter() - t0 >= 4 * 0.02 * 0.9
    assert len(chunks) == 5
    slow = ScriptedModel(["one two three four"], token_delay=10)
    task = asyncio.create_task(collect(slow))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ValueError, match="token_delay"):
        ScriptedModel([], token_delay=-1)


def test_tool_schema_from_a_function() -> None:
    async def search(
        query: str,
        limit: int = 5,
        exact: bool | None = None,
        mode: Literal["a", "b"] = "a",
        weights: list[float] | None = None,
        extra: Any = None,
        *args: Any,
        **kw: Any,
    ) -> list[str]:
        """Search the web.

        More details that are not the description.
        """
        return []

    tool = Tool.from_function(search)
    assert tool.name == "search"
    assert tool.description == "Search the web."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer"},
            "exact": {"type": "boolean"},
            "mode": {"enum": ["a", "b"]},
            "weights": {"type": "array"},
            "extra": {},
        },
        "required": ["query"],
    }  # fmt: skip
    assert Tool.from_function(lambda: None, name="noop").parameters == {
        "type": "object",
        "properties": {},
    }

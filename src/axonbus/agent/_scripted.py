"""A deterministic chat model for demos and tests: scripted turns streamed token by token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ._errors import ScriptExhausted
from ._models import Message, ModelChunk, TextDelta, ThinkingDelta, Tool, ToolRequest

__all__ = ["ScriptedModel", "Turn", "split_tokens"]

_TOKEN = re.compile(r"\s*\S+|\s+")


def split_tokens(text: str) -> list[str]:
    """``text`` as streamed tokens: each word with the whitespace before it.
    ``"".join(split_tokens(t)) == t`` always holds."""
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class Turn:
    """One scripted model turn: reasoning, then the answer text, then tool calls.

    ``tool_calls`` items are :class:`ToolRequest` or ``(name, arguments)`` pairs; pairs get
    the ids ``call_1``, ``call_2``, ... in the order the model makes them.
    """

    text: str = ""
    tool_calls: Sequence[ToolRequest | tuple[str, dict[str, Any]]] = field(default=())
    thinking: str = ""


Script: TypeAlias = Sequence[Turn | str] | Callable[[Sequence[Message]], Turn | str]


class ScriptedModel:
    """A :class:`ChatModel` that plays a script, the same way every time.

    ``script`` is a list of turns, played one per model call (a plain string is a text-only
    turn; one call too many raises :class:`ScriptExhausted`), or a function of the
    conversation that returns the next turn. Every token waits ``token_delay`` seconds (at
    least one trip through the event loop, like a real stream, so it can be cancelled).

    >>> model = ScriptedModel([Turn(tool_calls=[("add", {"a": 2, "b": 3})]), "It is 5."])

    ``calls`` holds the conversation each call was given.
    """

    def __init__(self, script: Script, *, token_delay: float = 0.0) -> None:
        if token_delay < 0:
            raise ValueError(f"token_delay must be >= 0, got {token_delay!r}")
        self._script = script
        self.token_delay = token_delay
        self.calls: list[tuple[Message, ...]] = []
        self._next_call_id = 0

    def __repr__(self) -> str:
        return f"<ScriptedModel calls={len(self.calls)} token_delay={self.token_delay}>"

    def _turn(self, messages: Sequence[Message]) -> Turn:
        script = self._script
        if callable(script):
            turn = script(messages)
        else:
            index = len(self.calls) - 1
            if index >= len(script):
                raise ScriptExhausted(
                    f"the script has {len(script)} turns; this is call {index + 1}"
                )
            turn = script[index]
        return Turn(text=turn) if isinstance(turn, str) else turn

    def _request(self, item: ToolRequest | tuple[str, dict[str, Any]]) -> ToolRequest:
        if isinstance(item, ToolRequest):
            return item
        self._next_call_id += 1
        name, arguments = item
        return ToolRequest(id=f"call_{self._next_call_id}", name=name, arguments=dict(arguments))

    async def _pause(self) -> None:
        await asyncio.sleep(self.token_delay)

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[Tool] = ()
    ) -> AsyncIterator[ModelChunk]:
        self.calls.append(tuple(messages))
        turn = self._turn(messages)
        for piece in split_tokens(turn.thinking):
            await self._pause()
            yield ThinkingDelta(piece)
        for piece in split_tokens(turn.text):
            await self._pause()
            yield TextDelta(piece)
        requests = tuple(self._request(item) for item in turn.tool_calls)
        for request in requests:
            await self._pause()
            yield request
        yield Message(role="assistant", content=turn.text, tool_calls=requests)

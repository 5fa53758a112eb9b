"""What the agent loop talks to: the :class:`ChatModel` protocol, messages and tools.

A model streams :class:`TextDelta`, :class:`ThinkingDelta` and :class:`ToolRequest` items and
ends with one :class:`Message`, the whole assistant turn::

    async for chunk in model.stream(messages, tools):
        match chunk:
            case TextDelta(text=t): print(t, end="")
            case ToolRequest(name=n, arguments=a): ...
            case Message(): final = chunk
"""

from __future__ import annotations

import inspect
import types
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import (
    Any,
    Literal,
    Protocol,
    TypeAlias,
    Union,
    get_args,
    get_origin,
    runtime_checkable,
)

__all__ = [
    "ChatModel",
    "Message",
    "ModelChunk",
    "TextDelta",
    "ThinkingDelta",
    "Tool",
    "ToolRequest",
    "as_tools",
]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer, as the model streams it."""

    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """A piece of the model's reasoning, for models that stream it separately."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """The model asks for ``name(**arguments)``; ``id`` pairs it with the tool's answer."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    """One conversation message. ``tool_calls`` on assistant turns that call tools;
    ``tool_call_id`` on ``tool`` messages (the answer to that call)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolRequest, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


ModelChunk: TypeAlias = TextDelta | ThinkingDelta | ToolRequest | Message


@runtime_checkable
class ChatModel(Protocol):
    """A chat model that streams. Implementations: :class:`OpenAICompatibleModel`,
    :class:`ScriptedModel`.

    ``stream`` yields deltas and tool requests as they come, then one final assistant
    :class:`Message` with the whole content and every tool request. Cancelling the task that
    iterates must stop the work (close the connection); raise :class:`ModelError` on failure.
    """

    def stream(
        self, messages: Sequence[Message], tools: Sequence[Tool]
    ) -> AsyncIterator[ModelChunk]: ...


_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
}


def _json_type(annotation: Any) -> dict[str, Any]:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return _json_type(options[0]) if len(options) == 1 else {}
    if origin is Literal:
        return {"enum": list(get_args(annotation))}
    kind = _JSON_TYPES.get(origin or annotation)
    return {"type": kind} if kind else {}


@dataclass(frozen=True)
class Tool:
    """A function the model may call. ``parameters`` is its JSON schema (what
    OpenAI-compatible servers are sent); :meth:`from_function` derives it from the signature.

    >>> def add(a: int, b: int) -> int:
    ...     "Add two integers."
    ...     return a + b
    >>> Tool.from_function(add).parameters["required"]
    ['a', 'b']

    ``fn`` is called with the model's arguments as keywords; async functions are awaited.
    """

    name: str
    fn: Callable[..., Any]
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    @classmethod
    def from_function(
        cls, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> Tool:
        try:
            hints = inspect.get_annotations(fn, eval_str=True)
        except Exception:  # an annotation that cannot be evaluated just gives no type
            hints = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            properties[p.name] = _json_type(hints.get(p.name, Any))
            if p.default is p.empty:
                required.append(p.name)
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        doc = inspect.getdoc(fn) or ""
        return cls(
            name=name or fn.__name__,
            fn=fn,
            description=description if description is not None else doc.split("\n\n")[0],
            parameters=schema,
        )


def as_tools(
    tools: Iterable[Tool | Callable[..., Any]] | Mapping[str, Callable[..., Any]],
) -> dict[str, Tool]:
    """Tools by name, from Tool objects, plain functions, or a ``{name: function}`` mapping."""
    out: dict[str, Tool] = {}
    if isinstance(tools, Mapping):
        for name, fn in tools.items():
            out[name] = Tool.from_function(fn, name=name)
        return out
    for t in tools:
        tool = t if isinstance(t, Tool) else Tool.from_function(t)
        if tool.name in out:
            raise ValueError(f"two tools are named {tool.name!r}")
        out[tool.name] = tool
    return out

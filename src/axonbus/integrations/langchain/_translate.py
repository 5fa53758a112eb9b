"""LangChain runs to agent toolkit events: the mapping shared by the callback handlers and
:func:`pipe_events`.

A *top-level* LangChain run (no parent, or a parent this translator never saw) is one toolkit
run; every run nested in it belongs to it. Each chat model / LLM call nested in the run is a
step (counted from 1, like :class:`~axonbus.agent.AgentLoop`'s model calls); tokens carry the
step of the model call that streamed them, tool calls the step of the latest model call.

The translator is pure bookkeeping: each method takes what LangChain reported and returns the
events to publish, in order. Callers serialize the calls (a lock, or a single task).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from ...agent import (
    AgentCompleted,
    AgentEvent,
    AgentFailed,
    AgentStarted,
    Done,
    Error,
    Thinking,
    Token,
    ToolCall,
    ToolResult,
)
from ...agent._events import new_run_id
from ...agent._lifecycle import _plain

__all__ = ["STOPPED", "RunInfo", "Translator", "brief", "text_of"]

#: LangGraph's tags for a model whose tokens are not for the user (they stay out of Token events)
NOSTREAM_TAGS = frozenset({"nostream", "langsmith:nostream"})

#: ToolResult.error of a tool call that a stopped run never finished
STOPPED = "cancelled: the run was stopped"


@dataclass
class RunInfo:
    """One top-level LangChain run seen as one toolkit run."""

    run_id: str
    agent: str = ""
    on_loop: bool = False  # its first callback came on the bus's loop thread (sync handler)
    step: int = 0
    streamed: list[str] = field(default_factory=list)  # every token of the run
    last_text: str = ""  # the text of the latest model reply
    requested: list[dict[str, Any]] = field(default_factory=list)  # tool calls not yet started
    open_tools: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    finished: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        return "".join(self.streamed)

    @property
    def duration(self) -> float:
        return time.monotonic() - self.started


class Translator:
    """LangChain callbacks (keyed by LangChain run ids) in, toolkit events out."""

    def __init__(self, session_id: str, *, run_id: str | None = None, agent: str = "") -> None:
        self.session_id = session_id
        self.agent = agent
        self._fixed_run_id = run_id
        self.roots: dict[str, RunInfo] = {}  # LangChain root run id -> run
        self._root_of: dict[str, str] = {}  # every live LangChain run id -> its root's id
        self._models: dict[str, tuple[int, bool]] = {}  # model run id -> (step, hidden)
        self._streamed: set[str] = set()  # model runs that streamed at least one token

    # -- lookups -----------------------------------------------------------------------------

    def run_of(self, lc_id: str) -> RunInfo | None:
        root = self._root_of.get(lc_id)
        return self.roots.get(root) if root is not None else None

    def _event(self, cls: type[AgentEvent], run: RunInfo, step: int, **fields: Any) -> Any:
        return cls(session_id=self.session_id, run_id=run.run_id, step=step, **fields)

    # -- starts ------------------------------------------------------------------------------

    def start(
        self, lc_id: str, parent: str | None, *, name: str, input: Any, on_loop: bool = False
    ) -> list[AgentEvent]:
        """Any run starts (a chain, or the common part of a model or tool start)."""
        root = self._root_of.get(parent) if parent is not None else None
        if root is not None:
            self._root_of[lc_id] = root
            return []
        run = RunInfo(
            run_id=self._fixed_run_id or _toolkit_run_id(lc_id),
            agent=self.agent or name,
            on_loop=on_loop,
        )
        self.roots[lc_id] = run
        self._root_of[lc_id] = lc_id
        return [self._event(AgentStarted, run, 0, agent=run.agent, input=brief(input))]

    def model_start(
        self,
        lc_id: str,
        parent: str | None,
        *,
        name: str,
        input: Any,
        tags: Sequence[str] | None = None,
        on_loop: bool = False,
    ) -> list[AgentEvent]:
        events = self.start(lc_id, parent, name=name, input=input, on_loop=on_loop)
        run = self.run_of(lc_id)
        assert run is not None
        run.step += 1
        self._models[lc_id] = (run.step, bool(NOSTREAM_TAGS.intersection(tags or ())))
        events.append(self._event(Thinking, run, run.step))
        return events

    def tool_start(
        self,
        lc_id: str,
        parent: str | None,
        *,
        name: str,
        args: Any,
        call_id: str | None = None,
        on_loop: bool = False,
    ) -> list[AgentEvent]:
        arguments = dict(args) if isinstance(args, Mapping) else {"input": args}
        arguments = {str(k): _plain(v) for k, v in arguments.items()}
        events = self.start(lc_id, parent, name=name, input=arguments, on_loop=on_loop)
        run = self.run_of(lc_id)
        assert run is not None
        if call_id is not None:
            _claim_id(run.requested, call_id)
        else:
            call_id = _claim(run.requested, name, arguments) or lc_id
        run.open_tools[lc_id] = (call_id, name, run.step)
        events.append(
            self._event(ToolCall, run, run.step, call_id=call_id, tool=name, args=arguments)
        )
        return events

    # -- while running -----------------------------------------------------------------------

    def token(
        self, lc_id: str, content: Any, extra: Mapping[str, Any] | None = None
    ) -> list[AgentEvent]:
        """A streamed chunk of a model run: its text as a Token, its reasoning as Thinking."""
        run = self.run_of(lc_id)
        if run is None:
            return []
        step, hidden = self._models.get(lc_id, (run.step, False))
        if hidden:
            return []
        text, thinking = split_content(content, extra)
        events: list[AgentEvent] = []
        if thinking:
            events.append(self._event(Thinking, run, step, text=thinking))
        if text:
            self._streamed.add(lc_id)
            run.streamed.append(text)
            events.append(self._event(Token, run, step, text=text))
        return events

    # -- ends --------------------------------------------------------------------------------

    def model_end(self, lc_id: str, output: Any) -> list[AgentEvent]:
        run = self.run_of(lc_id)
        if run is None:
            return []
        step, hidden = self._models.pop(lc_id, (run.step, False))
        message = _reply(output)
        text = text_of(message.content) if isinstance(message, BaseMessage) else text_of(message)
        if not hidden:  # an internal model's reply (a router, a summarizer) is no answer
            run.last_text = text
        run.requested.extend(_tool_calls(message))
        events: list[AgentEvent] = []
        if lc_id not in self._streamed and text and not hidden:
            # a model that did not stream: its whole reply is one token, so readers of the
            # token stream see every answer
            run.streamed.append(text)
            events.append(self._event(Token, run, step, text=text))
        self._streamed.discard(lc_id)
        events += self._end(lc_id, run, message)
        return events

    def tool_end(self, lc_id: str, output: Any) -> list[AgentEvent]:
        run = self.run_of(lc_id)
        if run is None:
            return []
        events: list[AgentEvent] = []
        opened = run.open_tools.pop(lc_id, None)
        if opened is not None:
            call_id, tool, step = opened
            error: str | None = None
            if isinstance(output, ToolMessage):
                result: Any = text_of(output.content)
                if output.status == "error":
                    error, result = result, None
            else:
                result = _plain(output)
            events.append(
                self._event(
                    ToolResult, run, step, call_id=call_id, tool=tool, result=result, error=error
                )
            )
        events += self._end(lc_id, run, output)
        return events

    def tool_error(self, lc_id: str, error: BaseException) -> list[AgentEvent]:
        run = self.run_of(lc_id)
        if run is None:
            return []
        events: list[AgentEvent] = []
        opened = run.open_tools.pop(lc_id, None)
        if opened is not None:
            call_id, tool, step = opened
            message = f"{type(error).__name__}: {error}"
            events.append(
                self._event(ToolResult, run, step, call_id=call_id, tool=tool, error=message)
            )
        events += self.error(lc_id, error)
        return events

    def end(self, lc_id: str, output: Any) -> list[AgentEvent]:
        """A chain (or any other run but a model or a tool) returned."""
        run = self.run_of(lc_id)
        if run is None:
            return []
        return self._end(lc_id, run, output)

    def _end(self, lc_id: str, run: RunInfo, output: Any) -> list[AgentEvent]:
        self._root_of.pop(lc_id, None)
        if lc_id not in self.roots:
            return []
        del self.roots[lc_id]
        run.finished = True
        result = brief(output)
        if isinstance(result, str):
            text = result
        elif run.last_text or result is None:
            text = run.last_text
        else:  # e.g. a tool run on its own, returning a number
            text = json.dumps(result, default=str)
        return [
            self._event(Done, run, run.step, result=text),
            self._event(
                AgentCompleted, run, run.step, agent=run.agent, result=result, duration=run.duration
            ),
        ]

    def error(self, lc_id: str, error: BaseException) -> list[AgentEvent]:
        """A run raised. Only the top-level run's error is the run's failure: a nested error
        may be handled (a fallback, a retry, a graph catching it); if it is not, it reaches the
        top-level run and is reported there."""
        run = self.run_of(lc_id)
        self._root_of.pop(lc_id, None)
        self._models.pop(lc_id, None)
        self._streamed.discard(lc_id)
        if run is None or lc_id not in self.roots:
            return []
        return self.fail(lc_id, error)

    def fail(self, lc_id: str, error: BaseException) -> list[AgentEvent]:
        """The top-level run ``lc_id`` failed with ``error``: Error (for an exception; not for
        a cancellation, like the toolkit's loop) and AgentFailed."""
        run = self.roots.pop(lc_id, None)
        if run is None:
            return []
        run.finished = True
        events = self._close_tools(run, f"{type(error).__name__}: {error}")
        if isinstance(error, Exception):
            events.append(
                self._event(Error, run, run.step, message=str(error), type=type(error).__name__)
            )
        events.append(
            self._event(
                AgentFailed,
                run,
                run.step,
                agent=run.agent,
                error=str(error) or type(error).__name__,
                error_type=type(error).__name__,
                duration=run.duration,
            )
        )
        return events

    def stopped(self, lc_id: str) -> list[AgentEvent]:
        """The top-level run ``lc_id`` was stopped by an Interrupt or a Cancel: its open tool
        calls fail, then ``Done(cancelled=True)`` with the text streamed so far, and
        ``AgentCompleted(cancelled=True)`` (what AgentLoop publishes for a cancel)."""
        run = self.roots.pop(lc_id, None)
        if run is None:
            return []
        run.finished = True
        text = run.text
        events = self._close_tools(run, STOPPED)
        events.append(self._event(Done, run, run.step, result=text, cancelled=True))
        events.append(
            self._event(
                AgentCompleted,
                run,
                run.step,
                agent=run.agent,
                result=text,
                cancelled=True,
                duration=run.duration,
            )
        )
        return events

    def _close_tools(self, run: RunInfo, error: str) -> list[AgentEvent]:
        events: list[AgentEvent] = [
            self._event(ToolResult, run, step, call_id=call_id, tool=tool, error=error)
            for call_id, tool, step in run.open_tools.values()
        ]
        run.open_tools.clear()
        return events


def _toolkit_run_id(lc_id: str) -> str:
    """``run-<hex>`` of a LangChain run id (a UUID), so a toolkit run can be found in a
    LangChain trace and back."""
    try:
        return "run-" + uuid.UUID(lc_id).hex
    except ValueError:
        return new_run_id()


# -- LangChain values -----------------------------------------------------------------------


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text blocks of a list of blocks."""
    return split_content(content)[0]


def split_content(content: Any, extra: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """(text, reasoning) of message content: a string, or a list of strings and blocks
    (``{"type": "text", "text": ...}``, ``{"type": "reasoning", "reasoning": ...}``,
    ``{"type": "thinking", "thinking": ...}``); ``extra`` is the message's
    ``additional_kwargs`` (OpenAI-compatible servers put ``reasoning_content`` there)."""
    text: list[str] = []
    thinking: list[str] = []
    if isinstance(content, str):
        text.append(content)
    elif isinstance(content, Sequence):
        for block in content:
            if isinstance(block, str):
                text.append(block)
            elif isinstance(block, Mapping):
                kind = block.get("type")
                if kind == "text" and isinstance(block.get("text"), str):
                    text.append(block["text"])
                elif kind in ("reasoning", "thinking") and isinstance(block.get(kind), str):
                    thinking.append(block[kind])
    if extra is not None and isinstance(extra.get("reasoning_content"), str):
        thinking.append(extra["reasoning_content"])
    return "".join(text), "".join(thinking)


def brief(value: Any) -> Any:
    """What an event says about a run's input or output: the text of a message, of the last
    message of a ``{"messages": [...]}`` state (LangGraph's message graphs), else the value
    made JSON-native (events cross processes)."""
    if isinstance(value, BaseMessage):
        return text_of(value.content)
    if isinstance(value, Mapping):
        messages = value.get("messages")
        if isinstance(messages, Sequence) and not isinstance(messages, str) and messages:
            return _message_text(messages[-1])
    return _plain(value)


def _message_text(message: Any) -> Any:
    if isinstance(message, BaseMessage):
        return text_of(message.content)
    if isinstance(message, (tuple, list)) and len(message) == 2:  # ("user", "hi")
        return text_of(message[1])
    if isinstance(message, Mapping) and "content" in message:
        return text_of(message["content"])
    return _plain(message)


def _reply(output: Any) -> Any:
    """The message of a model run's output: an LLMResult (callbacks), a message (astream
    events), or text."""
    if isinstance(output, LLMResult):
        if not output.generations or not output.generations[0]:
            return ""
        first = output.generations[0][0]
        return first.message if isinstance(first, ChatGeneration) else first.text
    return output


def _tool_calls(message: Any) -> list[dict[str, Any]]:
    calls = getattr(message, "tool_calls", None)
    if not isinstance(calls, list):
        return []
    return [dict(c) for c in calls if isinstance(c, Mapping)]


def _claim_id(requested: list[dict[str, Any]], call_id: str) -> None:
    for i, call in enumerate(requested):
        if call.get("id") == call_id:
            del requested[i]
            return


def _claim(requested: list[dict[str, Any]], name: str, args: Mapping[str, Any]) -> str | None:
    """The id of the model's tool call that a tool run carries out (the same name and
    arguments, else the same name), taken off ``requested``; None when none matches."""
    for exact in (True, False):
        for i, call in enumerate(requested):
            if call.get("name") == name and (not exact or call.get("args") == args):
                del requested[i]
                found = call.get("id")
                return str(found) if found else None
    return None

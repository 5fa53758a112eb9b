"""The agent event vocabulary and the lifecycle events around a run.

Every event is an :class:`axonbus.Event` on ``agent.{session_id}.<kind>`` and carries
``session_id``, ``run_id`` (one per :meth:`AgentLoop.run`; empty on events a user publishes,
which then mean "whatever runs in this session") and ``step`` (the model call the event belongs
to, counted from 1; 0 before the first one)::

    bus.subscribe("agent.s1.>", show)           # everything about session s1
    bus.subscribe(Token, on_token)              # agent.*.token
    await bus.publish(UserInput(session_id="s1", text="what is 2 + 3?"))
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from pydantic import Field

from .._events import Event

__all__ = [
    "AGENT_EVENTS",
    "AgentCompleted",
    "AgentEvent",
    "AgentFailed",
    "AgentStarted",
    "Cancel",
    "Done",
    "Error",
    "Interrupt",
    "Resume",
    "Thinking",
    "Token",
    "ToolCall",
    "ToolResult",
    "UserInput",
    "new_run_id",
]


def new_run_id() -> str:
    return "run-" + uuid.uuid4().hex[:16]


class AgentEvent(Event):
    """Base class of the agent events; ``kind`` is the last token of the topic."""

    kind: ClassVar[str] = ""

    session_id: str
    run_id: str = ""
    step: int = 0


class UserInput(AgentEvent, topic="agent.{session_id}.user_input", name="axonbus.agent.UserInput"):
    """A user's message to the agent of a session (what starts a run)."""

    kind: ClassVar[str] = "user_input"
    text: str


class Thinking(AgentEvent, topic="agent.{session_id}.thinking", name="axonbus.agent.Thinking"):
    """The agent is thinking: published empty at the start of each step, and with the model's
    reasoning text when the model streams some."""

    kind: ClassVar[str] = "thinking"
    text: str = ""


class Token(AgentEvent, topic="agent.{session_id}.token", name="axonbus.agent.Token"):
    """A piece of streamed model output. ``tokens`` is how many streamed deltas ``text`` holds:
    1, or more once a lagging consumer had consecutive tokens merged (:func:`coalesce_tokens`)."""

    kind: ClassVar[str] = "token"
    text: str
    tokens: int = 1


class ToolCall(AgentEvent, topic="agent.{session_id}.tool_call", name="axonbus.agent.ToolCall"):
    """The agent calls ``tool`` with ``args``; the matching :class:`ToolResult` has the same
    ``call_id``."""

    kind: ClassVar[str] = "tool_call"
    call_id: str
    tool: str
    args: dict[str, Any] = Field(default_factory=dict)


class ToolResult(
    AgentEvent, topic="agent.{session_id}.tool_result", name="axonbus.agent.ToolResult"
):
    """A tool call finished: ``result`` on success, ``error`` (a message) when it raised."""

    kind: ClassVar[str] = "tool_result"
    call_id: str
    tool: str = ""
    result: Any = None
    error: str | None = None


class Interrupt(AgentEvent, topic="agent.{session_id}.interrupt", name="axonbus.agent.Interrupt"):
    """Pause the run at its next step boundary, until :class:`Resume` or :class:`Cancel`."""

    kind: ClassVar[str] = "interrupt"
    reason: str = ""


class Resume(AgentEvent, topic="agent.{session_id}.resume", name="axonbus.agent.Resume"):
    """Continue an interrupted run; a non-empty ``instruction`` joins the conversation as a user
    message before the next model call."""

    kind: ClassVar[str] = "resume"
    instruction: str = ""


class Cancel(AgentEvent, topic="agent.{session_id}.cancel", name="axonbus.agent.Cancel"):
    """Stop the run now: an in-flight model stream or tool call is cancelled."""

    kind: ClassVar[str] = "cancel"
    reason: str = ""


class Error(AgentEvent, topic="agent.{session_id}.error", name="axonbus.agent.Error"):
    """The run failed: ``type`` is the exception's class name, ``message`` its text."""

    kind: ClassVar[str] = "error"
    message: str
    type: str = ""


class Done(AgentEvent, topic="agent.{session_id}.done", name="axonbus.agent.Done"):
    """The run ended: ``result`` is the final answer (the text streamed so far when
    ``cancelled``)."""

    kind: ClassVar[str] = "done"
    result: str = ""
    cancelled: bool = False


class AgentStarted(
    AgentEvent, topic="agent.{session_id}.started", name="axonbus.agent.AgentStarted"
):
    """Lifecycle: a run began (published by :func:`lifecycle`, around any coroutine)."""

    kind: ClassVar[str] = "started"
    agent: str = ""
    input: Any = None


class AgentCompleted(
    AgentEvent, topic="agent.{session_id}.completed", name="axonbus.agent.AgentCompleted"
):
    """Lifecycle: a run returned. ``cancelled`` when it stopped because of a :class:`Cancel`."""

    kind: ClassVar[str] = "completed"
    agent: str = ""
    result: Any = None
    cancelled: bool = False
    duration: float = 0.0


class AgentFailed(AgentEvent, topic="agent.{session_id}.failed", name="axonbus.agent.AgentFailed"):
    """Lifecycle: a run raised (or its task was cancelled: ``error_type="CancelledError"``)."""

    kind: ClassVar[str] = "failed"
    agent: str = ""
    error: str = ""
    error_type: str = ""
    duration: float = 0.0


#: every agent event class by its ``kind`` (the last token of its topic), read-only
AGENT_EVENTS: Mapping[str, type[AgentEvent]] = MappingProxyType(
    {
        cls.kind: cls
        for cls in (
            UserInput,
            Thinking,
            Token,
            ToolCall,
            ToolResult,
            Interrupt,
            Resume,
            Cancel,
            Error,
            Done,
            AgentStarted,
            AgentCompleted,
            AgentFailed,
        )
    }
)

"""The agent toolkit: event vocabulary, run state, an interruptible loop, token
coalescing, and chat models.

>>> from axonbus.agent import AgentLoop, ScriptedModel, StateManager, Turn
>>> async with Bus() as bus:
...     states = StateManager(bus)                          # one RunState per session
...     model = ScriptedModel([Turn(tool_calls=[("add", {"a": 2, "b": 3})]), "It is 5."])
...     loop = AgentLoop(bus, model, [add], session_id="s1")
...     result = await loop.run("what is 2 + 3?")           # events on agent.s1.*
...     states.get("s1").status
'done'
"""

from ._coalesce import CoalesceStats, CoalescingStream, TokenCoalescer, coalesce_tokens
from ._demo import DemoAgent
from ._errors import (
    MaxStepsExceeded,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelResponseError,
    ScriptExhausted,
)
from ._events import (
    AGENT_EVENTS,
    AgentCompleted,
    AgentEvent,
    AgentFailed,
    AgentStarted,
    Cancel,
    Done,
    Error,
    Interrupt,
    Resume,
    Thinking,
    Token,
    ToolCall,
    ToolResult,
    UserInput,
)
from ._lifecycle import Lifecycle, lifecycle, published_run
from ._loop import AgentLoop, RunResult, cancel, interrupt, resume
from ._models import ChatModel, Message, ModelChunk, TextDelta, ThinkingDelta, Tool, ToolRequest
from ._openai import OpenAICompatibleModel
from ._scripted import ScriptedModel, Turn
from ._state import RunState, RunStatus, StateManager, StateUpdates, ToolCallState, reduce

__all__ = [
    "AGENT_EVENTS",
    "AgentCompleted",
    "AgentEvent",
    "AgentFailed",
    "AgentLoop",
    "AgentStarted",
    "Cancel",
    "ChatModel",
    "CoalesceStats",
    "CoalescingStream",
    "DemoAgent",
    "Done",
    "Error",
    "Interrupt",
    "Lifecycle",
    "MaxStepsExceeded",
    "Message",
    "ModelChunk",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelResponseError",
    "OpenAICompatibleModel",
    "Resume",
    "RunResult",
    "RunState",
    "RunStatus",
    "ScriptExhausted",
    "ScriptedModel",
    "StateManager",
    "StateUpdates",
    "TextDelta",
    "Thinking",
    "ThinkingDelta",
    "Token",
    "TokenCoalescer",
    "Tool",
    "ToolCall",
    "ToolCallState",
    "ToolRequest",
    "ToolResult",
    "Turn",
    "UserInput",
    "cancel",
    "coalesce_tokens",
    "interrupt",
    "lifecycle",
    "published_run",
    "reduce",
    "resume",
]

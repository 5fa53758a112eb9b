"""Agent events to AG-UI events: one :class:`AgUiTranslator` per AG-UI run.

Needs the ``agui`` extra (the official ``ag-ui-protocol`` package supplies every event type).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ag_ui.core import (
    PROTOCOL_VERSION,
    BaseEvent,
    CustomEvent,
    ReasoningEndEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    ReasoningStartEvent,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    StateDeltaEvent,
    StateSnapshotEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from ag_ui.core import (
    Interrupt as AgUiInterrupt,
)

from ._events import (
    AgentCompleted,
    AgentEvent,
    AgentFailed,
    Cancel,
    Done,
    Error,
    Interrupt,
    Resume,
    Thinking,
    Token,
    ToolCall,
    ToolResult,
)
from ._state import RunState, reduce

__all__ = ["STATE_KEY", "AgUiTranslator", "json_patch", "tool_call_id"]

#: the key of the agent's run state inside the AG-UI state object
STATE_KEY = "axonbus"
#: ``Interrupt.reason`` of the interrupts axonbus reports (an interrupted run, to resume)
INTERRUPT_REASON = "axonbus.interrupt"


def tool_call_id(run_id: str, call_id: str) -> str:
    """The AG-UI tool call id of a call: unique across runs (scripted models reuse
    ``call_1``)."""
    return f"{run_id}.{call_id}"


def json_patch(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """The RFC 6902 operations that turn ``old`` into ``new``: objects are compared key by
    key, anything else is replaced whole.

    >>> json_patch({"a": 1, "b": 2}, {"a": 1, "c": 3})
    [{'op': 'remove', 'path': '/b'}, {'op': 'add', 'path': '/c', 'value': 3}]
    """
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{_escape(key)}"})
        for key, value in new.items():
            where = f"{path}/{_escape(key)}"
            if key not in old:
                ops.append({"op": "add", "path": where, "value": value})
            elif old[key] != value or type(old[key]) is not type(value):
                ops.extend(json_patch(old[key], value, where))
        return ops
    if old == new and type(old) is type(new):
        return []
    return [{"op": "replace", "path": path, "value": new}]


def _escape(key: str) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def projection(state: RunState) -> dict[str, Any]:
    """What AG-UI state carries of a :class:`RunState`: everything but the streamed text and
    reasoning, which travel as messages."""
    return {
        "run_id": state.run_id,
        "agent": state.agent,
        "status": state.status,
        "step": state.step,
        "tool_calls": [
            {"call_id": t.call_id, "tool": t.tool, "status": t.status, "step": t.step}
            for t in state.tool_calls
        ],
        "interrupt_reason": state.interrupt_reason,
        "error": state.error,
    }


class AgUiTranslator:
    """Turns one session's agent events into the AG-UI events of one AG-UI run.

    >>> tr = AgUiTranslator("s1", "run-1")
    >>> tr.follow("run-1")
    >>> events = tr.begin() + tr.feed(Token(session_id="s1", run_id="run-1", text="Hi"))
    >>> [e.type.value for e in events]
    ['RUN_STARTED', 'STATE_SNAPSHOT', 'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT']

    ``client_tools``: the names of the tools the client offered; a call of one ends the AG-UI
    run (``RUN_FINISHED`` naming the pending call) while the agent's run waits for the answer.
    ``state``: the client's state, kept beside ``state["axonbus"]`` (the agent's run state);
    a state that is not an object is kept as ``state["value"]``. :attr:`finished` is true after
    ``RUN_FINISHED`` or ``RUN_ERROR``; :attr:`parked` says the agent's run goes on (an
    interrupt, a client tool call) so a later AG-UI run can continue it.
    """

    def __init__(
        self,
        thread_id: str,
        run_id: str,
        *,
        client_tools: Iterable[str] = (),
        state: Any = None,
        run_state: RunState | None = None,
    ) -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        self.client_tools = frozenset(client_tools)
        self.axon_run = ""
        self.base = dict(state) if isinstance(state, dict) else ({} if state is None else {
            "value": state})  # fmt: skip
        self.base.pop(STATE_KEY, None)
        self.run_state = run_state or RunState(session_id=thread_id)
        self.finished = False
        self.parked = False
        self.pending_client: list[str] = []
        self.client_calls: set[str] = set()
        self._text: str | None = None
        self._reasoning: str | None = None
        self._interrupts = 0

    # -- the AG-UI run -------------------------------------------------------------------------

    def follow(self, axon_run: str) -> None:
        """Translate the events of the agent's run ``axon_run`` (others are ignored)."""
        self.axon_run = axon_run

    def restart(self, run_id: str, *, state: Any = None) -> None:
        """Go on with the same agent run in a new AG-UI run (after an interrupt, a client
        tool call or a detach)."""
        self.run_id = run_id
        if state is not None:
            self.base = dict(state) if isinstance(state, dict) else {"value": state}
            self.base.pop(STATE_KEY, None)
        self.finished = self.parked = False
        self.pending_client = []
        self._text = self._reasoning = None

    def snapshot(self) -> dict[str, Any]:
        return {**self.base, STATE_KEY: projection(self.run_state)}

    def begin(self) -> list[BaseEvent]:
        """``RUN_STARTED`` and the ``STATE_SNAPSHOT`` the run starts from."""
        return [
            RunStartedEvent(
                thread_id=self.thread_id, run_id=self.run_id, protocol_version=PROTOCOL_VERSION
            ),
            StateSnapshotEvent(snapshot=self.snapshot()),
        ]

    def fail(self, message: str, code: str) -> list[BaseEvent]:
        """Close what is open and end the run with ``RUN_ERROR``."""
        if self.finished:
            return []
        self.finished = True
        return [*self._close(), RunErrorEvent(message=message, code=code)]

    def custom(self, name: str, value: Any) -> list[BaseEvent]:
        return [] if self.finished else [CustomEvent(name=name, value=value)]

    # -- one agent event -----------------------------------------------------------------------

    def _ours(self, event: AgentEvent) -> bool:
        if event.session_id != self.thread_id:
            return False
        if isinstance(event, (Interrupt, Resume, Cancel)):
            return not event.run_id or event.run_id == self.axon_run
        return bool(self.axon_run) and event.run_id == self.axon_run

    def feed(self, event: Any) -> list[BaseEvent]:
        """The AG-UI events for one agent event (none for another session's or run's)."""
        if self.finished or not isinstance(event, AgentEvent) or not self._ours(event):
            return []
        before = projection(self.run_state)
        self.run_state = reduce(self.run_state, event)
        body, end = self._map(event)
        delta = json_patch(before, projection(self.run_state), f"/{STATE_KEY}")
        out = body + ([StateDeltaEvent(delta=delta)] if delta else []) + end
        if end:
            self.finished = True
        return out

    def _map(self, event: AgentEvent) -> tuple[list[BaseEvent], list[BaseEvent]]:
        if isinstance(event, Thinking):
            if not event.text:
                return self._close(), []  # a new step
            return self._reason(event.text), []
        if isinstance(event, Token):
            return self._say(event.text), []
        if isinstance(event, ToolCall):
            return self._tool_call(event)
        if isinstance(event, ToolResult):
            tcid = tool_call_id(event.run_id, event.call_id)
            if tcid in self.client_calls:
                return [], []  # the client answered it: it already has the tool message
            content = f"error: {event.error}" if event.error is not None else _text(event.result)
            result = ToolCallResultEvent(
                message_id=f"{tcid}.result", tool_call_id=tcid, content=content, role="tool"
            )
            return [result], []
        if isinstance(event, Interrupt):
            return self._close(), [self._paused(event.reason)]
        if isinstance(event, Done):
            if event.cancelled:
                return self._close(), [
                    self._finished(outcome=RunFinishedCancelledOutcome(), result=event.result)
                ]
            return self._close(), [self._finished(result=event.result)]
        if isinstance(event, Error):
            return self._close(), [RunErrorEvent(message=event.message, code=event.type or None)]
        if isinstance(event, AgentFailed):
            return self._close(), [
                RunErrorEvent(message=event.error, code=event.error_type or None)
            ]
        if isinstance(event, AgentCompleted):  # an agent that publishes lifecycle events only
            stopped = RunFinishedCancelledOutcome() if event.cancelled else None
            return self._close(), [self._finished(outcome=stopped, result=event.result)]
        return [], []  # AgentStarted, Resume, Cancel: the state delta says it

    def pause(self) -> list[BaseEvent]:
        """End the AG-UI run with an ``interrupt`` outcome now: for a client that joins a run
        that is already interrupted (its state says so), so it can resume it."""
        if self.finished:
            return []
        self.finished = True
        return [*self._close(), self._paused(self.run_state.interrupt_reason or "")]

    def _paused(self, reason: str) -> RunFinishedEvent:
        self._interrupts += 1
        self.parked = True
        interrupt = AgUiInterrupt(
            id=f"{self.axon_run}.interrupt.{self._interrupts}",
            reason=INTERRUPT_REASON,
            message=reason or "the run was interrupted",
        )
        return self._finished(outcome=RunFinishedInterruptOutcome(interrupts=[interrupt]))

    def _finished(self, *, outcome: Any = None, result: Any = None) -> RunFinishedEvent:
        fields: dict[str, Any] = {"thread_id": self.thread_id, "run_id": self.run_id}
        if outcome is not None:
            fields["outcome"] = outcome
        if result is not None and result != "":
            fields["result"] = result
        return RunFinishedEvent(**fields)

    def _id(self, kind: str) -> str:
        # one text and one reasoning message per step: a run continued after an interrupt
        # appends to the message it had open, whichever translator reports it
        return f"{self.axon_run}.{kind}{self.run_state.step}"

    def _reason(self, text: str) -> list[BaseEvent]:
        out = self._close_text()
        if self._reasoning is None:
            self._reasoning = self._id("r")
            out += [
                ReasoningStartEvent(message_id=self._reasoning),
                ReasoningMessageStartEvent(message_id=self._reasoning, role="reasoning"),
            ]
        out.append(ReasoningMessageContentEvent(message_id=self._reasoning, delta=text))
        return out

    def _say(self, text: str) -> list[BaseEvent]:
        out = self._close_reasoning()
        if not text:
            return out
        if self._text is None:
            self._text = self._id("m")
            out.append(TextMessageStartEvent(message_id=self._text, role="assistant"))
        out.append(TextMessageContentEvent(message_id=self._text, delta=text))
        return out

    def _tool_call(self, event: ToolCall) -> tuple[list[BaseEvent], list[BaseEvent]]:
        parent = self._text
        out = self._close()
        tcid = tool_call_id(event.run_id, event.call_id)
        start = ToolCallStartEvent(tool_call_id=tcid, tool_call_name=event.tool)
        if parent is not None:
            start = ToolCallStartEvent(
                tool_call_id=tcid, tool_call_name=event.tool, parent_message_id=parent
            )
        out += [
            start,
            ToolCallArgsEvent(tool_call_id=tcid, delta=json.dumps(event.args, default=str)),
            ToolCallEndEvent(tool_call_id=tcid),
        ]
        if event.tool not in self.client_tools:
            return out, []
        # the client runs it: this AG-UI run ends here, the agent's run waits for the answer
        self.client_calls.add(tcid)
        self.pending_client.append(tcid)
        self.parked = True
        outcome = RunFinishedSuccessOutcome(pending_tool_call_ids=list(self.pending_client))
        return out, [self._finished(outcome=outcome)]

    def _close_text(self) -> list[BaseEvent]:
        if self._text is None:
            return []
        done, self._text = self._text, None
        return [TextMessageEndEvent(message_id=done)]

    def _close_reasoning(self) -> list[BaseEvent]:
        if self._reasoning is None:
            return []
        done, self._reasoning = self._reasoning, None
        return [ReasoningMessageEndEvent(message_id=done), ReasoningEndEvent(message_id=done)]

    def _close(self) -> list[BaseEvent]:
        return self._close_reasoning() + self._close_text()

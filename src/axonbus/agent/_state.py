"""Run state: an immutable :class:`RunState`, the pure reducer, and :class:`StateManager`.

The reducer is the single source of truth of the :class:`StateManager`: every state is computed
from the previous one and an event, nothing else, so any subscriber (a dashboard, a test, another
process replaying the log) that sees the same events computes the same states.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ._events import (
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

if TYPE_CHECKING:
    from .._engine.bus import Bus
    from .._engine.subscription import Subscription

__all__ = ["RunState", "RunStatus", "StateManager", "StateUpdates", "ToolCallState", "reduce"]

logger = logging.getLogger("axonbus.agent")

RunStatus = Literal["idle", "thinking", "acting", "interrupted", "done", "error", "cancelled"]
ACTIVE: frozenset[str] = frozenset({"thinking", "acting", "interrupted"})
TERMINAL: frozenset[str] = frozenset({"done", "error", "cancelled"})


class ToolCallState(BaseModel):
    """One tool call of a run: ``pending`` until its :class:`ToolResult` arrives."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    tool: str
    args: dict[str, Any] = {}
    status: Literal["pending", "done", "error"] = "pending"
    result: Any = None
    error: str | None = None
    step: int = 0


class RunState(BaseModel):
    """What is known about the latest run of one session. Immutable: :func:`reduce` returns a
    new one.

    ``status``: ``idle`` (nothing yet), ``thinking`` (calling the model, streaming),
    ``acting`` (tool calls), ``interrupted`` (an interrupt was asked for; the loop pauses at
    its next step boundary), and the terminal ``done``, ``error``, ``cancelled``. ``text`` is
    every token streamed in the run, ``thinking`` every reasoning text, ``result`` the final
    answer, ``last_result`` the latest successful tool result.
    """

    model_config = ConfigDict(frozen=True)

    session_id: str = ""
    run_id: str = ""
    agent: str = ""
    status: RunStatus = "idle"
    step: int = 0
    input: Any = None
    thinking: str = ""
    text: str = ""
    tool_calls: tuple[ToolCallState, ...] = ()
    last_result: Any = None
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    interrupt_reason: str | None = None
    instructions: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """True while the run is thinking, acting or interrupted."""
        return self.status in ACTIVE

    @property
    def pending_tools(self) -> tuple[ToolCallState, ...]:
        return tuple(t for t in self.tool_calls if t.status == "pending")


def reduce(state: RunState, event: object) -> RunState:
    """The state after ``event``. Pure and total: anything it does not know (another kind of
    payload, another session's event, an event that makes no sense in this status) returns
    ``state`` itself, so ``reduce(s, e) is s`` means "no change".

    >>> s = reduce(RunState(), UserInput(session_id="s1", text="hi"))
    >>> s.status
    'thinking'
    """
    if not isinstance(event, AgentEvent):
        return state
    step = _STEPS.get(type(event))
    if step is None:
        return state
    if state.session_id != event.session_id:
        if state.session_id:
            return state
        state = state.model_copy(update={"session_id": event.session_id})
    if event.run_id and event.run_id != state.run_id:
        if isinstance(event, (Interrupt, Resume, Cancel)):
            if state.run_id:
                return state  # aimed at another run
        elif state.run_id:
            state = RunState(session_id=state.session_id, run_id=event.run_id)  # a new run
        else:
            state = state.model_copy(update={"run_id": event.run_id})
    return step(state, event)


# -- one function per kind: (state, event) -> state ---------------------------------------------


def _fresh(state: RunState, event: AgentEvent, **fields: Any) -> RunState:
    return RunState(session_id=state.session_id, run_id=event.run_id, status="thinking", **fields)


def _user_input(s: RunState, e: Any) -> RunState:
    if s.active:
        return s  # a message while the run is busy does not restart it
    return _fresh(s, e, input=e.text, step=e.step)


def _started(s: RunState, e: Any) -> RunState:
    if s.active:
        update: dict[str, Any] = {"run_id": e.run_id or s.run_id, "agent": e.agent}
        if e.input is not None:
            update["input"] = e.input
        return s.model_copy(update=update)
    return _fresh(s, e, agent=e.agent, input=e.input)


def _progress_status(s: RunState, busy: RunStatus) -> RunStatus:
    # a pending interrupt stays visible while the loop runs on to its next step boundary
    return "interrupted" if s.status == "interrupted" else busy


def _thinking(s: RunState, e: Any) -> RunState:
    if s.status in TERMINAL:
        return s
    return s.model_copy(
        update={
            "status": _progress_status(s, "thinking"),
            "step": max(s.step, e.step),
            "thinking": s.thinking + e.text,
        }
    )


def _token(s: RunState, e: Any) -> RunState:
    if s.status in TERMINAL:
        return s
    status = "thinking" if s.status == "idle" else s.status
    return s.model_copy(
        update={"status": status, "step": max(s.step, e.step), "text": s.text + e.text}
    )


def _tool_call(s: RunState, e: Any) -> RunState:
    if s.status in TERMINAL:
        return s
    call = ToolCallState(call_id=e.call_id, tool=e.tool, args=e.args, step=e.step)
    return s.model_copy(
        update={
            "status": _progress_status(s, "acting"),
            "step": max(s.step, e.step),
            "tool_calls": (*s.tool_calls, call),
        }
    )


def _tool_result(s: RunState, e: Any) -> RunState:
    if s.status in TERMINAL:
        return s
    status: Literal["done", "error"] = "error" if e.error is not None else "done"
    calls = list(s.tool_calls)
    for i in range(len(calls) - 1, -1, -1):
        if calls[i].call_id == e.call_id:
            calls[i] = calls[i].model_copy(
                update={"status": status, "result": e.result, "error": e.error}
            )
            break
    else:  # a result whose call we did not see (e.g. subscribed mid-run)
        calls.append(
            ToolCallState(
                call_id=e.call_id, tool=e.tool, status=status, result=e.result, error=e.error,
                step=e.step,
            )
        )  # fmt: skip
    update: dict[str, Any] = {
        "status": "acting" if s.status == "idle" else s.status,
        "step": max(s.step, e.step),
        "tool_calls": tuple(calls),
    }
    if e.error is None:
        update["last_result"] = e.result
    return s.model_copy(update=update)


def _interrupt(s: RunState, e: Any) -> RunState:
    if s.status not in ("thinking", "acting"):
        return s
    return s.model_copy(update={"status": "interrupted", "interrupt_reason": e.reason})


def _resume(s: RunState, e: Any) -> RunState:
    if s.status != "interrupted":
        return s
    instructions = (*s.instructions, e.instruction) if e.instruction else s.instructions
    return s.model_copy(
        update={"status": "thinking", "interrupt_reason": None, "instructions": instructions}
    )


def _cancel(s: RunState, e: Any) -> RunState:
    if not s.active:
        return s
    calls = tuple(
        c.model_copy(update={"status": "error", "error": "cancelled"})
        if c.status == "pending"
        else c
        for c in s.tool_calls
    )
    return s.model_copy(
        update={"status": "cancelled", "interrupt_reason": None, "tool_calls": calls}
    )


def _error(s: RunState, e: Any) -> RunState:
    if s.status in TERMINAL:
        return s
    return s.model_copy(update={"status": "error", "error": e.message, "error_type": e.type})


def _done(s: RunState, e: Any) -> RunState:
    if s.status in ("done", "error"):
        return s
    if s.status == "cancelled":  # the loop acknowledging a Cancel, with the partial text
        return s.model_copy(update={"result": e.result})
    status = "cancelled" if e.cancelled else "done"
    return s.model_copy(update={"status": status, "result": e.result, "interrupt_reason": None})


def _completed(s: RunState, e: Any) -> RunState:
    if s.status in TERMINAL:
        return s
    status = "cancelled" if e.cancelled else "done"
    return s.model_copy(update={"status": status, "result": e.result, "interrupt_reason": None})


def _failed(s: RunState, e: Any) -> RunState:
    if s.status == "error":
        return s  # the loop's Error event came first and says more
    return s.model_copy(update={"status": "error", "error": e.error, "error_type": e.error_type})


_STEPS: dict[type[AgentEvent], Callable[[RunState, Any], RunState]] = {
    UserInput: _user_input,
    AgentStarted: _started,
    Thinking: _thinking,
    Token: _token,
    ToolCall: _tool_call,
    ToolResult: _tool_result,
    Interrupt: _interrupt,
    Resume: _resume,
    Cancel: _cancel,
    Error: _error,
    Done: _done,
    AgentCompleted: _completed,
    AgentFailed: _failed,
}


# -- the manager --------------------------------------------------------------------------------


class StateManager:
    """Keeps one :class:`RunState` per session, reduced from the events on ``target``.

    Subscribes when created; :meth:`close` unsubscribes and ends every :meth:`updates`
    iterator.

    >>> states = StateManager(bus)                    # agent.>
    >>> await bus.publish(UserInput(session_id="s1", text="hi"))
    >>> await bus.drain()
    >>> states.get("s1").status
    'thinking'
    >>> async for state in states.updates("s1"): ...  # every change, as it happens
    """

    def __init__(self, bus: Bus, target: str = "agent.>", *, maxsize: int = 10_000) -> None:
        self._states: dict[str, RunState] = {}
        self._callbacks: list[Callable[[RunState], Any]] = []
        self._listeners: set[StateUpdates] = set()
        self._bus = bus
        self._closed = False
        self._sub: Subscription = bus.subscribe(
            target, self.apply, name="agent-state-manager", maxsize=maxsize
        )

    async def __aenter__(self) -> StateManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus.unsubscribe(self._sub)
        for listener in list(self._listeners):
            listener.close()

    def apply(self, event: Any) -> RunState | None:
        """Reduce ``event`` into its session's state; returns the new state, or None when
        nothing changed. The subscription calls it; call it yourself to feed events by hand."""
        if not isinstance(event, AgentEvent):
            return None
        sid = event.session_id
        old = self._states.get(sid) or RunState(session_id=sid)
        new = reduce(old, event)
        if new is old:
            return None
        self._states[sid] = new
        for callback in list(self._callbacks):
            try:
                callback(new)
            except Exception:
                logger.exception("state change callback %r failed", callback)
        for listener in self._listeners:
            listener.push(new)
        return new

    def get(self, session_id: str) -> RunState:
        """The session's current state (an idle one for a session never seen)."""
        return self._states.get(session_id) or RunState(session_id=session_id)

    def sessions(self) -> list[str]:
        """Every session seen, in the order first seen."""
        return list(self._states)

    def snapshot(self) -> dict[str, RunState]:
        return dict(self._states)

    def forget(self, session_id: str) -> None:
        self._states.pop(session_id, None)

    def on_change(self, callback: Callable[[RunState], Any]) -> Callable[[], None]:
        """Call ``callback(state)`` after every change; returns a function that removes it."""
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def updates(self, session_id: str | None = None) -> StateUpdates:
        """An async iterator of new states (one session's, or every session's).

        It never holds more than the latest state per session: a slow reader skips
        intermediate states but always gets the newest one.
        """
        listener = StateUpdates(self, session_id)
        if self._closed:
            listener.close()
        else:
            self._listeners.add(listener)
        return listener


class StateUpdates:
    """Returned by :meth:`StateManager.updates`; ``close()`` or leaving ``async with`` ends it."""

    def __init__(self, manager: StateManager, session_id: str | None) -> None:
        self._manager = manager
        self._session = session_id
        self._pending: dict[str, RunState] = {}  # newest per session, oldest change first
        self._wakeup: asyncio.Event | None = None
        self._closed = False

    def push(self, state: RunState) -> None:
        if self._session is not None and state.session_id != self._session:
            return
        self._pending.pop(state.session_id, None)
        self._pending[state.session_id] = state
        if self._wakeup is not None:
            self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        self._manager._listeners.discard(self)
        if self._wakeup is not None:
            self._wakeup.set()

    async def __aenter__(self) -> StateUpdates:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[RunState]:
        return self

    async def __anext__(self) -> RunState:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            self._wakeup.clear()
            await self._wakeup.wait()
        sid = next(iter(self._pending))
        return self._pending.pop(sid)

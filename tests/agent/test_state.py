"""The reducer (every status x every event kind) and the StateManager."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from axonbus import Bus
from axonbus.agent import (
    AGENT_EVENTS,
    AgentCompleted,
    AgentStarted,
    Cancel,
    Done,
    Error,
    Interrupt,
    Resume,
    RunState,
    StateManager,
    Thinking,
    Token,
    ToolCall,
    ToolCallState,
    ToolResult,
    UserInput,
    reduce,
)

S, R = "s1", "r1"


def event(kind: str, **fields: Any) -> Any:
    defaults: dict[str, dict[str, Any]] = {
        "user_input": {"text": "hi"},
        "thinking": {"text": "hmm"},
        "token": {"text": "tok"},
        "tool_call": {"call_id": "c1", "tool": "add", "args": {"a": 1}},
        "tool_result": {"call_id": "c1", "tool": "add", "result": 2},
        "interrupt": {"reason": "wait"},
        "resume": {"instruction": "shorter"},
        "cancel": {"reason": "stop"},
        "error": {"message": "boom", "type": "ValueError"},
        "done": {"result": "answer"},
        "started": {"agent": "a", "input": "hi"},
        "completed": {"result": "answer"},
        "failed": {"error": "boom", "error_type": "ValueError"},
    }
    merged = {"session_id": S, "run_id": R, "step": 1, **defaults[kind], **fields}
    return AGENT_EVENTS[kind](**merged)


def state(status: str) -> RunState:
    calls = (ToolCallState(call_id="c1", tool="add"),) if status == "acting" else ()
    return RunState(session_id=S, run_id=R, status=status, step=1, tool_calls=calls)  # type: ignore[arg-type]


KINDS = [
    "user_input", "started", "thinking", "token", "tool_call", "tool_result", "interrupt",
    "resume", "cancel", "error", "done", "completed", "failed",
]  # fmt: skip

# the status after each event; "=" means the very same state object comes back
# (T thinking, A acting, I interrupted, D done, E error, C cancelled)
STATUS = {"T": "thinking", "A": "acting", "I": "interrupted", "D": "done", "E": "error",
          "C": "cancelled", "=": "="}  # fmt: skip
TABLE: dict[str, str] = {
    #              input started thinking token tool_call tool_result interrupt resume cancel
    #              error done completed failed
    "idle":        "T T T T A A = = =  E D D E",
    "thinking":    "= T T T A T I = C  E D D E",
    "acting":      "= A T A A A I = C  E D D E",
    "interrupted": "= I I I I I = T C  E D D E",
    "done":        "T T = = = = = = =  = = = E",
    "error":       "T T = = = = = = =  = = = =",
    "cancelled":   "T T = = = = = = =  = C = E",
}  # fmt: skip

CASES = [
    (status, kind, expected)
    for status, row in TABLE.items()
    for kind, expected in zip(KINDS, [STATUS[c] for c in row.split()], strict=True)
]


def test_the_table_covers_every_status_and_kind() -> None:
    assert set(TABLE) == {"idle", "thinking", "acting", "interrupted", "done", "error", "cancelled"}
    assert set(KINDS) == set(AGENT_EVENTS)


@pytest.mark.parametrize(("status", "kind", "expected"), CASES)
def test_transition(status: str, kind: str, expected: str) -> None:
    before = state(status)
    after = reduce(before, event(kind))
    if expected == "=":
        assert after is before
    else:
        assert after.status == expected
        assert after.session_id == S
    assert before.status == status  # immutable: the old state is untouched


def test_run_state_is_frozen() -> None:
    s = RunState()
    with pytest.raises(Exception, match="frozen"):
        s.status = "done"  # type: ignore[misc]


@pytest.mark.parametrize(
    "thing",
    [None, "text", {"session_id": S}, 42, object()],
)
def test_anything_else_leaves_the_state_alone(thing: object) -> None:
    s = state("thinking")
    assert reduce(s, thing) is s


def test_events_of_another_session_are_ignored() -> None:
    s = state("thinking")
    assert reduce(s, event("token", session_id="other")) is s


def test_an_empty_state_adopts_the_session_and_run() -> None:
    s = reduce(RunState(), event("token", text="a"))
    assert (s.session_id, s.run_id, s.status, s.text) == (S, R, "thinking", "a")


def test_a_new_run_id_starts_over() -> None:
    s = reduce(state("done").model_copy(update={"text": "old"}), event("token", run_id="r2"))
    assert (s.run_id, s.text, s.status) == ("r2", "tok", "thinking")


def test_control_events_for_another_run_are_ignored() -> None:
    s = state("thinking")
    for kind in ("interrupt", "resume", "cancel"):
        assert reduce(s, event(kind, run_id="r0")) is s
    # an empty run_id means "whatever runs in this session"
    assert reduce(s, event("interrupt", run_id="")).status == "interrupted"


def test_a_run_accumulates_what_it_streams_and_calls() -> None:
    events = [
        UserInput(session_id=S, text="2+3?"),
        AgentStarted(session_id=S, run_id=R, agent="calc", input="2+3?"),
        Thinking(session_id=S, run_id=R, step=1),
        Thinking(session_id=S, run_id=R, step=1, text="let me "),
        Thinking(session_id=S, run_id=R, step=1, text="add"),
        ToolCall(session_id=S, run_id=R, step=1, call_id="c1", tool="add", args={"a": 2}),
        ToolCall(session_id=S, run_id=R, step=1, call_id="c2", tool="div", args={"a": 1}),
        ToolResult(session_id=S, run_id=R, step=1, call_id="c1", tool="add", result=5),
        ToolResult(session_id=S, run_id=R, step=1, call_id="c2", tool="div", error="ZeroDiv"),
        Thinking(session_id=S, run_id=R, step=2),
        Token(session_id=S, run_id=R, step=2, text="It is"),
        Token(session_id=S, run_id=R, step=2, text=" 5."),
        Done(session_id=S, run_id=R, step=2, result="It is 5."),
        AgentCompleted(session_id=S, run_id=R, result="It is 5."),
    ]
    s = RunState()
    statuses = []
    for e in events:
        s = reduce(s, e)
        statuses.append(s.status)
    assert statuses == [
        "thinking", "thinking", "thinking", "thinking", "thinking", "acting", "acting", "acting",
        "acting", "thinking", "thinking", "thinking", "done", "done",
    ]  # fmt: skip
    assert s.run_id == R
    assert s.agent == "calc"
    assert s.input == "2+3?"
    assert s.thinking == "let me add"
    assert s.text == "It is 5."
    assert s.result == "It is 5."
    assert s.step == 2
    assert [(c.call_id, c.status, c.result, c.error) for c in s.tool_calls] == [
        ("c1", "done", 5, None),
        ("c2", "error", None, "ZeroDiv"),
    ]
    assert s.last_result == 5
    assert not s.active
    assert s.pending_tools == ()


def test_interrupt_resume_records_reason_and_instruction() -> None:
    s = reduce(state("acting"), event("interrupt", reason="hold on"))
    assert (s.status, s.interrupt_reason) == ("interrupted", "hold on")
    s = reduce(s, event("resume", instruction="use metric units"))
    assert (s.status, s.interrupt_reason, s.instructions) == (
        "thinking",
        None,
        ("use metric units",),
    )


def test_cancel_marks_pending_tool_calls() -> None:
    s = reduce(state("acting"), event("cancel"))
    assert s.status == "cancelled"
    assert [(c.status, c.error) for c in s.tool_calls] == [("error", "cancelled")]
    s = reduce(s, event("done", result="partial", cancelled=True))
    assert (s.status, s.result) == ("cancelled", "partial")


def test_error_and_failure_fields() -> None:
    s = reduce(state("thinking"), Error(session_id=S, run_id=R, message="bad", type="ModelError"))
    assert (s.status, s.error, s.error_type) == ("error", "bad", "ModelError")
    # the lifecycle failure that follows does not overwrite the more specific error
    assert reduce(s, event("failed", error="other")) is s
    s = reduce(state("done"), event("failed", error="late", error_type="RuntimeError"))
    assert (s.status, s.error, s.error_type) == ("error", "late", "RuntimeError")


def test_done_cancelled_and_completed_cancelled() -> None:
    assert reduce(state("thinking"), event("done", cancelled=True)).status == "cancelled"
    assert reduce(state("acting"), event("completed", cancelled=True)).status == "cancelled"


# -- StateManager --------------------------------------------------------------------------------


async def test_state_manager_keeps_one_state_per_session(bus: Bus) -> None:
    states = StateManager(bus)
    for sid in ("a", "b", "c"):
        await bus.publish(UserInput(session_id=sid, text=f"hi {sid}"))
    await bus.publish(ToolCall(session_id="b", run_id="rb", call_id="x", tool="t"))
    await bus.publish(Token(session_id="c", run_id="rc", text="hello"))
    await bus.publish(Done(session_id="c", run_id="rc", result="hello"))
    await bus.publish("agent.a.custom", {"not": "an agent event"})
    await bus.drain()
    assert states.sessions() == ["a", "b", "c"]
    assert states.get("a").status == "thinking"
    assert states.get("a").input == "hi a"
    assert states.get("b").status == "acting"
    assert states.get("b").run_id == "rb"
    assert states.get("c").status == "done"
    assert states.get("c").result == "hello"
    assert states.get("never").status == "idle"
    assert set(states.snapshot()) == {"a", "b", "c"}
    states.forget("a")
    assert states.sessions() == ["b", "c"]
    states.close()
    states.close()  # idempotent
    await bus.publish(UserInput(session_id="d", text="late"))
    await bus.drain()
    assert "d" not in states.sessions()


async def test_state_manager_notifies_changes(bus: Bus) -> None:
    async with StateManager(bus) as states:
        seen: list[tuple[str, str]] = []
        remove = states.on_change(lambda s: seen.append((s.session_id, s.status)))
        states.on_change(lambda s: 1 / 0)  # a failing callback is logged, not fatal
        await bus.publish(UserInput(session_id="a", text="x"))
        await bus.publish(Resume(session_id="a"))  # no change: no notification
        await bus.publish(Cancel(session_id="a"))
        await bus.drain()
        assert seen == [("a", "thinking"), ("a", "cancelled")]
        remove()
        remove()
        await bus.publish(UserInput(session_id="a", text="y"))
        await bus.drain()
        assert len(seen) == 2


async def test_state_updates_iterator_per_session_and_all(bus: Bus) -> None:
    states = StateManager(bus)
    only_b = states.updates("b")
    everything = states.updates()

    async def collect(it: Any, n: int) -> list[RunState]:
        out = []
        async for s in it:
            out.append(s)
            if len(out) == n:
                break
        return out

    task_b = asyncio.create_task(collect(only_b, 2))
    await bus.publish(UserInput(session_id="a", text="1"))
    await bus.publish(UserInput(session_id="b", text="2"))
    await bus.drain()
    await bus.publish(Interrupt(session_id="b"))
    await bus.drain()
    got_b = await asyncio.wait_for(task_b, 2)
    assert [s.status for s in got_b] == ["thinking", "interrupted"]
    # a slow reader gets the newest state of each session, oldest change first
    got = await asyncio.wait_for(collect(everything, 2), 2)
    assert [(s.session_id, s.status) for s in got] == [("a", "thinking"), ("b", "interrupted")]
    # closing the manager ends the iterators
    states.close()
    assert [s async for s in everything] == []
    async with states.updates() as late:
        assert [s async for s in late] == []


async def test_state_manager_over_several_concurrent_agent_runs(bus: Bus) -> None:
    from axonbus.agent import AgentLoop, ScriptedModel, Turn

    states = StateManager(bus)

    def add(a: int, b: int) -> int:
        return a + b

    async def one(sid: str, n: int) -> None:
        model = ScriptedModel([Turn(tool_calls=[("add", {"a": n, "b": n})]), f"{2 * n}"])
        await AgentLoop(bus, model, [add], session_id=sid).run(f"double {n}")

    await asyncio.gather(*(one(f"s{i}", i) for i in range(5)))
    await bus.drain()
    assert sorted(states.sessions()) == [f"s{i}" for i in range(5)]
    for i in range(5):
        s = states.get(f"s{i}")
        assert (s.status, s.result, s.text, s.last_result, s.step) == (
            "done",
            f"{2 * i}",
            f"{2 * i}",
            2 * i,
            2,
        )

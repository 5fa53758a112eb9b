"""The AG-UI translator and adapter on their own, without a gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("ag_ui")

from axonbus import RemoteError
from axonbus.agent import (
    AgentCompleted,
    AgentFailed,
    AgentLoop,
    AgentStarted,
    Cancel,
    Done,
    Interrupt,
    ScriptedModel,
    Token,
    ToolCall,
    Turn,
)
from axonbus.agent.agui import (
    AgUiAgent,
    AgUiTranslator,
    NothingToRun,
    RunInProgress,
    json_patch,
)


def types(events: list[Any]) -> list[str]:
    return [e.type.value for e in events]


def test_json_patch() -> None:
    assert json_patch({"a": 1}, {"a": 1}) == []
    assert json_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": 2}}) == [
        {"op": "remove", "path": "/a/c"},
        {"op": "replace", "path": "/a/b", "value": 2},
    ]
    assert json_patch({"x/y": [1]}, {"x/y": [1, 2], "n~": None}) == [
        {"op": "replace", "path": "/x~1y", "value": [1, 2]},
        {"op": "add", "path": "/n~0", "value": None},
    ]
    assert json_patch({"a": 1}, {"a": 1.0}) == [{"op": "replace", "path": "/a", "value": 1.0}]


def test_lifecycle_only_agent_finishes_and_fails() -> None:
    tr = AgUiTranslator("s1", "r1")
    tr.follow("run-a")
    tr.begin()
    assert types(tr.feed(AgentStarted(session_id="s1", run_id="run-a", agent="x"))) == [
        "STATE_DELTA"
    ]
    done = tr.feed(AgentCompleted(session_id="s1", run_id="run-a", result={"ok": True}))
    assert types(done) == ["STATE_DELTA", "RUN_FINISHED"]
    assert done[-1].result == {"ok": True}
    assert tr.finished
    assert tr.feed(Token(session_id="s1", run_id="run-a", text="late")) == []

    tr = AgUiTranslator("s1", "r2")
    tr.follow("run-b")
    failed = tr.feed(AgentFailed(session_id="s1", run_id="run-b", error="boom", error_type="E"))
    assert types(failed)[-1] == "RUN_ERROR"
    assert (failed[-1].message, failed[-1].code) == ("boom", "E")


def test_other_sessions_and_runs_are_ignored_and_messages_close() -> None:
    tr = AgUiTranslator("s1", "r1")
    tr.follow("run-a")
    assert tr.feed(Token(session_id="s2", run_id="run-a", text="x")) == []
    assert tr.feed(Token(session_id="s1", run_id="run-b", text="x")) == []
    assert types(tr.feed(Token(session_id="s1", run_id="run-a", text="Hi"))) == [
        "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "STATE_DELTA",
    ]  # fmt: skip
    # an interrupt aimed at no run in particular is this run's: the AG-UI run ends paused
    paused = tr.feed(Interrupt(session_id="s1", reason="wait"))
    assert types(paused) == ["TEXT_MESSAGE_END", "STATE_DELTA", "RUN_FINISHED"]
    assert paused[-1].outcome.type == "interrupt"
    assert paused[-1].outcome.interrupts[0].message == "wait"
    assert tr.parked
    tr.restart("r2")
    assert types(tr.begin()) == ["RUN_STARTED", "STATE_SNAPSHOT"]
    tr.feed(Cancel(session_id="s1", run_id="run-a"))
    end = tr.feed(Done(session_id="s1", run_id="run-a", result="Hi", cancelled=True))
    assert end[-1].outcome.type == "cancelled"
    assert end[-1].run_id == "r2"


def test_client_tool_call_ends_the_run_with_the_pending_call() -> None:
    tr = AgUiTranslator("s1", "r1", client_tools=["confirm"])
    tr.follow("run-a")
    out = tr.feed(ToolCall(session_id="s1", run_id="run-a", call_id="c1", tool="confirm"))
    assert types(out) == [
        "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "STATE_DELTA", "RUN_FINISHED",
    ]  # fmt: skip
    assert out[-1].outcome.pending_tool_call_ids == ["run-a.c1"]
    assert tr.parked


async def test_agent_takes_history_context_and_client_tools(bus: Any) -> None:
    model = ScriptedModel([Turn(text="Bonjour.")])
    loops: list[AgentLoop] = []

    def make(session_id: str) -> AgentLoop:
        loops.append(AgentLoop(bus, model, [], session_id=session_id))
        return loops[-1]

    done = bus.wait_for("agent.s1.done", timeout=10)
    async with AgUiAgent(bus, "x", make):
        body = {
            "threadId": "s1",
            "runId": "r1",
            "messages": [
                {"id": "1", "role": "user", "content": "earlier"},
                {"id": "2", "role": "assistant", "content": "an answer"},
                {"id": "3", "role": "user", "content": [{"type": "text", "text": "hello"}]},
            ],
            "context": [{"description": "locale", "value": "fr"}],
            "tools": [{"name": "confirm", "description": "Ask the person"}],
        }
        reply = await bus.request("agui.x.run", body)
        assert reply == {"action": "started", "run_id": "r1", "agent": "x"}
        with pytest.raises(RemoteError) as info:
            await bus.request("agui.x.run", {**body, "runId": "r2", "messages": [
                {"id": "9", "role": "user", "content": "again"}]})  # fmt: skip
        assert info.value.remote_type == RunInProgress.__name__
        await done
        await asyncio.sleep(0)
        with pytest.raises(RemoteError, match="no user message") as info:
            await bus.request("agui.x.run", {"threadId": "s1", "runId": "r3", "messages": []})
        assert info.value.remote_type == NothingToRun.__name__
    (sent,) = model.calls
    assert [(m.role, m.content) for m in sent] == [
        ("user", "earlier"),
        ("assistant", "an answer"),
        ("system", "Context:\n- locale: fr"),
        ("user", "hello"),
    ]
    assert len(loops) == 1
    assert "confirm" not in loops[0].tools  # the client's tools join for the run only

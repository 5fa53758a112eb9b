"""The interruptible loop: runs, tools, and interrupt / resume / cancel at every step kind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from axonbus import Bus, InvalidTopic
from axonbus.agent import (
    AgentLoop,
    Done,
    Error,
    MaxStepsExceeded,
    Message,
    ModelChunk,
    ModelError,
    ScriptedModel,
    StateManager,
    TextDelta,
    Thinking,
    Token,
    Tool,
    ToolCall,
    ToolResult,
    Turn,
    cancel,
    interrupt,
    resume,
)
from tests.agent.agent_helpers import Eventually, Recorder

SID = "s1"


def two_step_model(**kw: Any) -> ScriptedModel:
    return ScriptedModel(
        [
            Turn(text="Let me add.", tool_calls=[("add", {"a": 2, "b": 3})]),
            "It is 5.",
        ],
        **kw,
    )


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def test_a_run_publishes_every_step(bus: Bus, recorder: Recorder) -> None:
    model = two_step_model()
    loop = AgentLoop(bus, model, [add], session_id=SID, system="be brief")
    result = await loop.run("what is 2 + 3?")
    await bus.drain()
    assert (result.text, result.cancelled, result.steps) == ("It is 5.", False, 2)
    assert result.run_id.startswith("run-")
    assert recorder.kinds == [
        "started", "thinking", "token", "token", "token", "tool_call", "tool_result",
        "thinking", "token", "token", "token", "done", "completed",
    ]  # fmt: skip
    ids = {getattr(e, "run_id", None) for _, e in recorder.items}
    assert ids == {result.run_id}
    call = recorder.of(ToolCall)[0]
    res = recorder.of(ToolResult)[0]
    assert (call.call_id, call.tool, call.args, call.step) == ("call_1", "add", {"a": 2, "b": 3}, 1)
    assert (res.call_id, res.result, res.error) == ("call_1", 5, None)
    assert [t.step for t in recorder.of(Token)] == [1, 1, 1, 2, 2, 2]
    assert "".join(t.text for t in recorder.of(Token)) == "Let me add.It is 5."
    assert [m.role for m in loop.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert loop.messages[3].content == "5"
    assert loop.messages[3].tool_call_id == "call_1"
    assert not loop.running
    assert loop.run_id is None
    # the model saw the tools
    assert model.calls[0][0] == Message(role="system", content="be brief")


async def test_conversation_carries_over_between_runs(bus: Bus) -> None:
    model = ScriptedModel(["first", "second"])
    loop = AgentLoop(bus, model, session_id=SID)
    await loop.run("one")
    await loop.run("two")
    assert [m.content for m in model.calls[1]] == ["one", "first", "two"]


async def test_tool_errors_and_unknown_tools_reach_the_model(bus: Bus, recorder: Recorder) -> None:
    def boom() -> None:
        raise ValueError("no way")

    async def slow_ok(x: str) -> dict[str, str]:
        await asyncio.sleep(0)
        return {"echo": x}

    model = ScriptedModel(
        [
            Turn(tool_calls=[("boom", {}), ("nope", {}), ("slow_ok", {"x": "hi"})]),
            "recovered",
        ]
    )
    loop = AgentLoop(bus, model, {"boom": boom, "slow_ok": slow_ok}, session_id=SID)
    assert (await loop.run("go")).text == "recovered"
    await bus.drain()
    results = recorder.of(ToolResult)
    assert results[0].error == "ValueError: no way"
    assert results[1].error is not None
    assert "unknown tool 'nope'" in results[1].error
    assert results[2].result == {"echo": "hi"}
    tool_messages = [m.content for m in model.calls[1] if m.role == "tool"]
    assert tool_messages[0] == "error: ValueError: no way"
    assert tool_messages[2] == '{"echo": "hi"}'


async def test_model_errors_publish_error_then_fail(bus: Bus, recorder: Recorder) -> None:
    states = StateManager(bus)
    loop = AgentLoop(bus, ScriptedModel([]), session_id=SID)  # exhausted at once
    with pytest.raises(ModelError):
        await loop.run("hi")
    await bus.drain()
    assert recorder.kinds[-2:] == ["error", "failed"]
    err = recorder.of(Error)[0]
    assert err.type == "ScriptExhausted"
    assert states.get(SID).status == "error"
    assert states.get(SID).error_type == "ScriptExhausted"
    assert not loop.running


async def test_max_steps(bus: Bus, recorder: Recorder) -> None:
    model = ScriptedModel(lambda messages: Turn(tool_calls=[("add", {"a": 1, "b": 1})]))
    loop = AgentLoop(bus, model, [add], session_id=SID, max_steps=3)
    with pytest.raises(MaxStepsExceeded):
        await loop.run("loop forever")
    assert len(model.calls) == 3
    await bus.drain()
    assert recorder.of(Error)[0].type == "MaxStepsExceeded"


async def test_one_run_at_a_time_and_bad_arguments(bus: Bus) -> None:
    gate = asyncio.Event()

    async def wait() -> str:
        await gate.wait()
        return "ok"

    loop = AgentLoop(
        bus, ScriptedModel([Turn(tool_calls=[("wait", {})]), "done"]), [wait], session_id=SID
    )
    task = asyncio.create_task(loop.run("x"))
    await asyncio.sleep(0.01)
    assert loop.running
    assert "running" in repr(loop)
    with pytest.raises(RuntimeError, match="already running"):
        await loop.run("y")
    gate.set()
    await task
    with pytest.raises(InvalidTopic):
        AgentLoop(bus, ScriptedModel([]), session_id="a.b")
    with pytest.raises(ValueError, match="max_steps"):
        AgentLoop(bus, ScriptedModel([]), session_id=SID, max_steps=0)
    with pytest.raises(ValueError, match="two tools"):
        AgentLoop(bus, ScriptedModel([]), [add, Tool.from_function(add)], session_id=SID)


# -- interrupt / resume ----------------------------------------------------------------------------


def publisher_tool(bus: Bus, name: str, *actions: Any) -> Tool:
    """A tool that publishes ``actions`` (control events) while it runs."""

    async def fn() -> str:
        for action in actions:
            await bus.publish(action)
        return name

    return Tool(name=name, fn=fn)


async def test_interrupt_before_a_model_call_then_resume_with_instruction(
    bus: Bus, recorder: Recorder, eventually: Eventually
) -> None:
    from axonbus.agent import Interrupt

    model = ScriptedModel([Turn(tool_calls=[("t1", {})]), "final"])
    tools = [publisher_tool(bus, "t1", Interrupt(session_id=SID, reason="wait"))]
    loop = AgentLoop(bus, model, tools, session_id=SID)
    task = asyncio.create_task(loop.run("go"))
    await eventually(lambda: "tool_result" in recorder.kinds)
    await asyncio.sleep(0.05)
    assert len(model.calls) == 1  # paused before the second model call
    assert [t.step for t in recorder.of(Thinking)] == [1]
    await resume(bus, SID, "answer in French")
    result = await asyncio.wait_for(task, 2)
    assert result.text == "final"
    assert model.calls[1][-1] == Message(role="user", content="answer in French")
    assert [m.role for m in model.calls[1]] == ["user", "assistant", "tool", "user"]


async def test_interrupt_during_streaming_pauses_before_the_tool_call(
    bus: Bus, recorder: Recorder, eventually: Eventually
) -> None:
    model = ScriptedModel(
        [Turn(text="one two three four five six", tool_calls=[("add", {"a": 1, "b": 2})]), "3"],
        token_delay=0.005,
    )
    loop = AgentLoop(bus, model, [add], session_id=SID)
    first_token = bus.wait_for(Token, timeout=2)
    task = asyncio.create_task(loop.run("go"))
    await first_token
    await interrupt(bus, SID, "let me think")
    await eventually(lambda: len(recorder.of(Token)) == 6)  # the stream finishes its turn
    await asyncio.sleep(0.05)
    assert "tool_call" not in recorder.kinds
    await resume(bus, SID)
    result = await asyncio.wait_for(task, 2)
    assert result.text == "3"
    assert recorder.kinds.count("tool_call") == 1
    assert [m.role for m in model.calls[1]] == ["user", "assistant", "tool"]  # no instruction


async def test_interrupt_between_tool_calls(
    bus: Bus, recorder: Recorder, eventually: Eventually
) -> None:
    from axonbus.agent import Interrupt

    model = ScriptedModel([Turn(tool_calls=[("t1", {}), ("add", {"a": 1, "b": 1})]), "ok"])
    tools = [publisher_tool(bus, "t1", Interrupt(session_id=SID)), Tool.from_function(add)]
    loop = AgentLoop(bus, model, tools, session_id=SID)
    task = asyncio.create_task(loop.run("go"))
    await eventually(lambda: "tool_result" in recorder.kinds)
    await asyncio.sleep(0.05)
    assert [c.tool for c in recorder.of(ToolCall)] == ["t1"]
    await resume(bus, SID, "carry on")
    assert (await asyncio.wait_for(task, 2)).text == "ok"
    assert [c.tool for c in recorder.of(ToolCall)] == ["t1", "add"]
    # the instruction waits until every tool call of the turn has its answer
    assert [m.role for m in model.calls[1]] == ["user", "assistant", "tool", "tool", "user"]


async def test_interrupt_during_a_tool_call_pauses_after_it(
    bus: Bus, recorder: Recorder, eventually: Eventually
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "slow done"

    model = ScriptedModel([Turn(tool_calls=[("slow", {}), ("add", {"a": 1, "b": 1})]), "ok"])
    loop = AgentLoop(bus, model, [slow, add], session_id=SID)
    task = asyncio.create_task(loop.run("go"))
    await started.wait()
    await interrupt(bus, SID)
    await asyncio.sleep(0.02)
    release.set()  # the tool call is not cut short by an interrupt
    await eventually(lambda: "tool_result" in recorder.kinds)
    await asyncio.sleep(0.05)
    assert recorder.of(ToolResult)[0].result == "slow done"
    assert len(recorder.of(ToolCall)) == 1
    await resume(bus, SID)
    assert (await asyncio.wait_for(task, 2)).text == "ok"


async def test_resume_without_interrupt_and_other_runs_are_ignored(bus: Bus) -> None:
    from axonbus.agent import Interrupt

    model = ScriptedModel([Turn(tool_calls=[("t1", {})]), "ok"])
    tools = [
        publisher_tool(
            bus,
            "t1",
            Interrupt(session_id=SID, run_id="some-other-run"),
            Interrupt(session_id="other-session"),
            Resume_(instruction="ignored"),
        )
    ]
    loop = AgentLoop(bus, model, tools, session_id=SID)
    result = await asyncio.wait_for(loop.run("go"), 2)
    assert result.text == "ok"
    assert all(m.content != "ignored" for m in model.calls[1])


def Resume_(**kw: Any) -> Any:
    from axonbus.agent import Resume

    return Resume(session_id=SID, **kw)


async def test_interrupt_aimed_at_the_run_id(bus: Bus, eventually: Eventually) -> None:
    from axonbus.agent import Interrupt

    model = ScriptedModel([Turn(tool_calls=[("t1", {})]), "ok"])
    loop = AgentLoop(bus, model, [], session_id=SID)
    loop.tools["t1"] = Tool(
        name="t1",
        fn=lambda: bus.publish(Interrupt(session_id=SID, run_id=loop.run_id or "")),
    )
    task = asyncio.create_task(loop.run("go", run_id="run-fixed"))
    await asyncio.sleep(0.05)
    assert len(model.calls) == 1
    assert not task.done()
    await resume(bus, SID, run_id="run-fixed")
    assert (await asyncio.wait_for(task, 2)).run_id == "run-fixed"


# -- cancel ----------------------------------------------------------------------------------------


async def test_cancel_before_a_model_call(bus: Bus, recorder: Recorder) -> None:
    from axonbus.agent import Cancel

    model = ScriptedModel([Turn(text="partial ", tool_calls=[("t1", {})]), "never"])
    loop = AgentLoop(
        bus, model, [publisher_tool(bus, "t1", Cancel(session_id=SID))], session_id=SID
    )
    result = await asyncio.wait_for(loop.run("go"), 2)
    assert (result.cancelled, result.text) == (True, "partial ")
    assert len(model.calls) == 1
    await bus.drain()
    done = recorder.of(Done)[-1]
    assert (done.cancelled, done.result) == (True, "partial ")
    assert recorder.kinds[-2:] == ["done", "completed"]


async def test_cancel_between_tool_calls_closes_the_open_calls(
    bus: Bus, recorder: Recorder
) -> None:
    from axonbus.agent import Cancel

    model = ScriptedModel([Turn(tool_calls=[("t1", {}), ("add", {"a": 1, "b": 1})]), "never"])
    tools = [publisher_tool(bus, "t1", Cancel(session_id=SID)), Tool.from_function(add)]
    loop = AgentLoop(bus, model, tools, session_id=SID)
    result = await asyncio.wait_for(loop.run("go"), 2)
    assert result.cancelled
    await bus.drain()
    assert [c.tool for c in recorder.of(ToolCall)] == ["t1"]
    # the conversation stays valid for the next run: every tool call has an answer
    assert [m.role for m in loop.messages] == ["user", "assistant", "tool", "tool"]
    assert loop.messages[-1].content.startswith("error: not run")
    loop.model = ScriptedModel(["fresh start"])
    assert (await loop.run("again")).text == "fresh start"


async def test_cancel_during_a_tool_call_cancels_the_tool(bus: Bus, recorder: Recorder) -> None:
    started = asyncio.Event()
    outcome: list[str] = []

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    states = StateManager(bus)
    model = ScriptedModel([Turn(tool_calls=[("forever", {})])])
    loop = AgentLoop(bus, model, [forever], session_id=SID)
    task = asyncio.create_task(loop.run("go"))
    await started.wait()
    await cancel(bus, SID, "too slow")
    result = await asyncio.wait_for(task, 1)
    assert result.cancelled
    assert outcome == ["cancelled"]
    await bus.drain()
    assert "tool_result" not in recorder.kinds
    s = states.get(SID)
    assert s.status == "cancelled"
    assert [(c.status, c.error) for c in s.tool_calls] == [("error", "cancelled")]


async def test_cancel_while_interrupted(
    bus: Bus, recorder: Recorder, eventually: Eventually
) -> None:
    from axonbus.agent import Interrupt

    model = ScriptedModel([Turn(tool_calls=[("t1", {})]), "never"])
    loop = AgentLoop(
        bus, model, [publisher_tool(bus, "t1", Interrupt(session_id=SID))], session_id=SID
    )
    task = asyncio.create_task(loop.run("go"))
    await eventually(lambda: "tool_result" in recorder.kinds)
    await loop.interrupt()  # a second interrupt changes nothing
    await loop.cancel()
    result = await asyncio.wait_for(task, 1)
    assert result.cancelled
    assert len(model.calls) == 1


class SlowStream:
    """Streams one token, then waits a minute for the next; notes when it was stopped."""

    def __init__(self) -> None:
        self.stopped_at: float | None = None

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[Tool] = ()
    ) -> AsyncIterator[ModelChunk]:
        try:
            yield TextDelta("first")
            await asyncio.sleep(60)
            yield TextDelta("never")
        finally:
            self.stopped_at = time.perf_counter()


async def test_cancel_stops_the_model_stream_within_50ms(bus: Bus, recorder: Recorder) -> None:
    model = SlowStream()
    loop = AgentLoop(bus, model, session_id=SID)
    first = bus.wait_for(Token, timeout=2)
    task = asyncio.create_task(loop.run("go"))
    await first
    await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    await loop.cancel()
    result = await asyncio.wait_for(task, 1)
    returned = time.perf_counter() - t0
    assert model.stopped_at is not None
    latency = model.stopped_at - t0
    assert latency < 0.05, f"the stream stopped {latency * 1000:.1f} ms after the cancel"
    assert returned < 0.05
    assert (result.cancelled, result.text) == (True, "first")
    await bus.drain()
    assert [t.text for t in recorder.of(Token)] == ["first"]
    # what was streamed stays in the conversation
    assert loop.messages[-1] == Message(role="assistant", content="first")


async def test_cancelling_the_run_task_is_not_a_cancel_event(bus: Bus, recorder: Recorder) -> None:
    model = SlowStream()
    loop = AgentLoop(bus, model, session_id=SID)
    first = bus.wait_for(Token, timeout=2)
    task = asyncio.create_task(loop.run("go"))
    await first
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await bus.drain()
    assert model.stopped_at is not None
    assert recorder.kinds[-1] == "failed"  # the lifecycle reports the task's cancellation
    assert not loop.running
    assert bus.handler_count(f"agent.{SID}.cancel") == 0  # the control subscriptions are gone

"""The event vocabulary, and lifecycle events around any run (seed 004)."""

from __future__ import annotations

import asyncio

import pytest

from axonbus import Bus, InvalidTopic
from axonbus._codec import get_codec
from axonbus._events import Envelope
from axonbus.agent import (
    AGENT_EVENTS,
    AgentCompleted,
    AgentEvent,
    AgentFailed,
    AgentStarted,
    Error,
    Token,
    ToolCall,
    UserInput,
    lifecycle,
    published_run,
)
from tests.agent.agent_helpers import Recorder

NAMES = {
    "user_input": "UserInput", "thinking": "Thinking", "token": "Token", "tool_call": "ToolCall",
    "tool_result": "ToolResult", "interrupt": "Interrupt", "resume": "Resume", "cancel": "Cancel",
    "error": "Error", "done": "Done", "started": "AgentStarted", "completed": "AgentCompleted",
    "failed": "AgentFailed",
}  # fmt: skip


@pytest.mark.parametrize(("kind", "name"), sorted(NAMES.items()))
def test_every_kind_has_its_topic(kind: str, name: str) -> None:
    cls = AGENT_EVENTS[kind]
    assert cls.__name__ == name
    assert cls.kind == kind
    assert cls.topic_pattern() == f"agent.*.{kind}"
    assert cls.__event_name__ == f"axonbus.agent.{name}"
    assert issubclass(cls, AgentEvent)


def test_fields_and_defaults() -> None:
    e = ToolCall(session_id="s1", run_id="r", step=2, call_id="c", tool="add", args={"a": 1})
    assert e.topic == "agent.s1.tool_call"
    assert ToolCall(session_id="s", call_id="c", tool="t").args == {}
    assert Token(session_id="s", text="x").tokens == 1
    assert Error(session_id="s", message="m", type="ValueError").type == "ValueError"
    with pytest.raises(InvalidTopic):
        _ = UserInput(session_id="bad.id", text="x").topic


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_events_survive_the_wire(codec: str) -> None:
    pytest.importorskip(codec if codec != "json" else "orjson")
    c = get_codec(codec)
    for event in [
        ToolCall(session_id="s1", run_id="r", step=1, call_id="c", tool="t", args={"x": [1]}),
        AgentCompleted(session_id="s1", run_id="r", result={"answer": 5}, duration=0.5),
        Token(session_id="s1", run_id="r", text="hé", tokens=3),
    ]:
        env = Envelope(event.topic, event)
        back = c.decode(c.encode(env))
        assert back.event == event
        assert type(back.event) is type(event)


async def test_lifecycle_around_a_succeeding_run(bus: Bus, recorder: Recorder) -> None:
    async with lifecycle(bus, "s1", agent="summarizer", input="text") as run:
        await asyncio.sleep(0.01)
        run.result = "summary"
    await bus.drain()
    started, completed = (e for _, e in recorder.items)
    assert isinstance(started, AgentStarted)
    assert (started.agent, started.input, started.run_id) == ("summarizer", "text", run.run_id)
    assert isinstance(completed, AgentCompleted)
    assert (completed.result, completed.run_id, completed.cancelled) == (
        "summary",
        run.run_id,
        False,
    )
    assert completed.duration >= 0.01
    with pytest.raises(RuntimeError, match="entered once"):
        async with run:
            pass


async def test_lifecycle_around_a_failing_run(bus: Bus, recorder: Recorder) -> None:
    with pytest.raises(KeyError):
        async with lifecycle(bus, "s1", run_id="run-7"):
            raise KeyError("missing")
    await bus.drain()
    assert recorder.kinds == ["started", "failed"]
    failed = recorder.of(AgentFailed)[0]
    assert (failed.run_id, failed.error_type, failed.error) == ("run-7", "KeyError", "'missing'")


async def test_lifecycle_when_the_task_is_cancelled(bus: Bus, recorder: Recorder) -> None:
    async def body() -> None:
        async with lifecycle(bus, "s1"):
            await asyncio.sleep(60)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await bus.drain()
    assert recorder.of(AgentFailed)[0].error_type == "CancelledError"


async def test_published_run_decorator(bus: Bus, recorder: Recorder) -> None:
    @published_run(bus, "s2")
    async def double(x: int) -> int:
        return 2 * x

    @published_run(bus, "s2", agent="divider")
    async def divide(a: int, b: int) -> float:
        return a / b

    assert await double(21) == 42
    with pytest.raises(ZeroDivisionError):
        await divide(1, 0)
    await bus.drain()
    assert recorder.kinds == ["started", "completed", "started", "failed"]
    started = recorder.of(AgentStarted)
    assert (started[0].agent, started[0].input) == (double.__qualname__, 21)
    assert (started[1].agent, started[1].input) == ("divider", [1, 0])
    assert recorder.of(AgentCompleted)[0].result == 42
    assert recorder.of(AgentFailed)[0].error_type == "ZeroDivisionError"
    assert double.__name__ == "double"

"""The demo agent, end to end on memory://."""

from __future__ import annotations

import asyncio

import pytest

from axonbus import Bus
from axonbus.agent import (
    AgentCompleted,
    DemoAgent,
    Done,
    StateManager,
    Thinking,
    Token,
    ToolCall,
    ToolResult,
    UserInput,
    cancel,
    interrupt,
    resume,
)
from axonbus.agent._demo import calculate, find_expression
from tests.agent.agent_helpers import Recorder, eventually

FAST = {"token_delay": 0.0, "tool_delay": 0.0}


async def ask(bus: Bus, session: str, text: str) -> Done:
    done = bus.wait_for(Done, where=lambda d: d.session_id == session, timeout=5)
    await bus.publish(UserInput(session_id=session, text=text))
    return await done


async def test_a_question_with_arithmetic(bus: Bus, recorder: Recorder) -> None:
    states = StateManager(bus)
    async with DemoAgent(bus, **FAST):
        completed_waiter = bus.wait_for(AgentCompleted, timeout=5)
        done = await ask(bus, "s1", "what is 12 * (3 + 4)?")
        completed = await completed_waiter
    reply = "12 * (3 + 4) = 84. I worked that out with the calculator tool, one step at a time."
    assert done.result == reply
    assert completed.result == reply
    await bus.drain()
    kinds = recorder.kinds
    assert kinds[:3] == ["user_input", "started", "thinking"]
    assert kinds[-2:] == ["done", "completed"]
    thinking = "".join(t.text for t in recorder.of(Thinking))
    assert thinking == "Let me work out what you are asking."
    call = recorder.of(ToolCall)[0]
    assert (call.tool, call.args) == ("calculator", {"expression": "12 * (3 + 4)"})
    assert recorder.of(ToolResult)[0].result == 84
    assert "".join(t.text for t in recorder.of(Token)) == reply
    assert len(recorder.of(Token)) == len(reply.split())
    state = states.get("s1")
    assert (state.status, state.result, state.step, state.agent) == ("done", reply, 2, "demo")


async def test_a_question_without_arithmetic_and_a_second_turn(
    bus: Bus, recorder: Recorder
) -> None:
    async with DemoAgent(bus, **FAST) as agent:
        first = await ask(bus, "s1", "hello there, agent")
        second = await ask(bus, "s1", "and 10 / 4 please")
        third = await ask(bus, "s1", "what about 1/0")
    assert first.result.startswith("Your message has 3 words.")
    assert second.result.startswith("10 / 4 = 2.5.")
    assert third.result == "I could not calculate 1/0: division by zero."
    assert [c.tool for c in recorder.of(ToolCall)] == ["word_count", "calculator", "calculator"]
    assert len(agent.loops["s1"].messages) == 12  # the conversation is kept per session


async def test_runs_are_paced_and_sessions_run_in_parallel(bus: Bus) -> None:
    async with DemoAgent(bus, token_delay=0.005, tool_delay=0.05):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await ask(bus, "warmup", "1 + 1")
        one = loop.time() - t0
        t0 = loop.time()
        dones = await asyncio.gather(*(ask(bus, f"s{i}", f"{i} + {i}") for i in range(4)))
        four = loop.time() - t0
    assert [d.result.split(" ")[4] for d in dones] == ["0.", "2.", "4.", "6."]
    # 24 tokens x 5 ms + a 50 ms tool call: visibly paced
    assert one > 0.15
    assert four < 2.5 * one  # in parallel, not one after another


async def test_interrupt_and_resume_with_an_instruction(bus: Bus, recorder: Recorder) -> None:
    async with DemoAgent(bus, token_delay=0.0, tool_delay=0.1):
        in_tool = bus.wait_for(ToolCall, timeout=5)
        done = bus.wait_for(Done, timeout=5)
        await bus.publish(UserInput(session_id="s1", text="2 + 2"))
        await in_tool
        await interrupt(bus, "s1", "wait")
        await asyncio.sleep(0.2)  # the tool finished; the run is paused
        assert "done" not in recorder.kinds
        await resume(bus, "s1", "be brief")
        assert (await done).result == (
            "Noted: be brief. 2 + 2 = 4. I worked that out with the calculator tool, one step "
            "at a time."
        )


async def test_cancel_while_streaming(bus: Bus, recorder: Recorder) -> None:
    states = StateManager(bus)
    async with DemoAgent(bus, token_delay=0.02, tool_delay=0.0):
        third_token = asyncio.Event()
        bus.subscribe(Token, lambda t: third_token.set() if len(recorder.of(Token)) >= 3 else None)
        done = bus.wait_for(Done, timeout=5)
        await bus.publish(UserInput(session_id="s1", text="3 * 3"))
        await asyncio.wait_for(third_token.wait(), 5)
        await cancel(bus, "s1")
        result = await done
    assert result.cancelled
    await bus.drain()
    assert states.get("s1").status == "cancelled"
    assert 3 <= len(recorder.of(Token)) < 10  # the reply has 16


async def test_stop_cancels_runs_in_progress(bus: Bus, recorder: Recorder) -> None:
    agent = DemoAgent(bus, token_delay=1.0).start()
    assert agent.start() is agent
    await bus.publish(UserInput(session_id="s1", text="slow"))
    await eventually(lambda: "thinking" in recorder.kinds)
    await agent.stop()
    await bus.drain()
    assert recorder.kinds[-1] == "failed"
    await bus.publish(UserInput(session_id="s1", text="nobody listens"))
    await asyncio.sleep(0.02)
    assert recorder.kinds[-1] == "user_input"


@pytest.mark.parametrize(
    ("text", "expression"),
    [
        ("what is 12 * (3 + 4)?", "12 * (3 + 4)"),
        ("2+2", "2+2"),
        ("compute 1.5 * 4 and 2 - 1 - 0", "2 - 1 - 0"),  # the longest
        ("10 / 4.", "10 / 4"),
        ("no math here", None),
        ("just 42", None),
        ("dates like 2024-01-02", None),
    ],
)
def test_find_expression(text: str, expression: str | None) -> None:
    assert find_expression(text) == expression


def test_calculate() -> None:
    assert calculate("12 * (3 + 4)") == 84
    assert calculate("10 / 4") == 2.5
    assert calculate("-3 + +1") == -2
    assert calculate("6 / 2") == 3
    for bad in ("__import__('os')", "2 ** 100", "x + 1", "1 +", "9" * 300):
        with pytest.raises(ValueError, match=r"arithmetic|too long"):
            calculate(bad)
    with pytest.raises(ZeroDivisionError):
        calculate("1 / 0")

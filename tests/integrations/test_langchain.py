"""axonbus.integrations.langchain with the real langchain-core and langgraph, offline: their
fake chat models, real @tool tools, real chains and StateGraphs."""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langgraph")

from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from axonbus import Bus, Context
from axonbus.agent import (
    AgentCompleted,
    AgentFailed,
    AgentStarted,
    Cancel,
    Done,
    Error,
    Interrupt,
    StateManager,
    Thinking,
    Token,
    ToolCall,
    ToolResult,
    cancel,
    interrupt,
)
from axonbus.integrations.langchain import (
    AxonbusCallbackHandler,
    AxonbusSyncCallbackHandler,
    pipe_events,
)
from axonbus.sync import Bus as SyncBus
from tests.agent.agent_helpers import Recorder
from tests.integrations.lc_helpers import (
    ToolCallingFakeModel,
    add,
    broken,
    calls,
    mul,
    react_graph,
)

QUESTION = {"messages": [("user", "what is 2 + 3?")]}


@pytest.fixture
async def states(bus: Bus) -> AsyncIterator[StateManager]:
    async with StateManager(bus) as manager:
        yield manager


@pytest.fixture
async def recorder(bus: Bus) -> Recorder:
    return Recorder(bus)


def adding_model() -> ToolCallingFakeModel:
    """Asks for add(2, 3) (saying "Let me add."), then answers "It is 5."."""
    return ToolCallingFakeModel(
        messages=iter([calls(("add", {"a": 2, "b": 3}, "call_1"), text="Let me add."), "It is 5."])
    )


def parallel_model() -> ToolCallingFakeModel:
    """Asks for add(2, 3) and mul(2, 3) in one reply (LangGraph runs them in parallel)."""
    first = calls(("add", {"a": 2, "b": 3}, "call_1"), ("mul", {"a": 2, "b": 3}, "call_2"))
    return ToolCallingFakeModel(messages=iter([first, "5 and 6."]))


def texts(recorder: Recorder) -> str:
    return "".join(t.text for t in recorder.of(Token))


# -- the callback handler ------------------------------------------------------------------------


async def test_astream_chain_publishes_tokens_and_lifecycle(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    model = GenericFakeChatModel(messages=iter(["hello big world"]))
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | model | StrOutputParser()
    handler = AxonbusCallbackHandler(bus, "s1", agent="greeter")

    chunks = [c async for c in chain.astream({"q": "hi"}, config={"callbacks": [handler]})]
    await bus.drain()

    assert "".join(chunks) == "hello big world"
    assert recorder.kinds == ["started", "thinking"] + ["token"] * 5 + ["done", "completed"]
    assert texts(recorder) == "hello big world"
    started = recorder.of(AgentStarted)[0]
    assert started.agent == "greeter"
    assert started.input is None  # LangChain does not know a streamed run's input at its start
    run_ids = {e.run_id for _, e in recorder.items}  # type: ignore[attr-defined]
    assert len(run_ids) == 1
    assert {t.step for t in recorder.of(Token)} == {1}
    assert recorder.of(Done)[0].result == "hello big world"
    state = states.get("s1")
    assert (state.status, state.text, state.result, state.step) == (
        "done",
        "hello big world",
        "hello big world",
        1,
    )


async def test_a_reply_that_did_not_stream_is_one_token(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    model = GenericFakeChatModel(messages=iter(["hello big world"]))
    handler = AxonbusCallbackHandler(bus, "s1")

    reply = await model.ainvoke("hi", config={"callbacks": [handler]})
    await bus.drain()

    assert reply.content == "hello big world"
    assert recorder.kinds == ["started", "thinking", "token", "done", "completed"]
    assert recorder.of(Token)[0].text == "hello big world"
    assert states.get("s1").status == "done"


async def test_graph_ainvoke_publishes_tool_calls_and_steps(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    graph = react_graph(adding_model(), [add])
    handler = AxonbusCallbackHandler(bus, "s1", run_id="run-fixed")

    out = await graph.ainvoke(QUESTION, config={"callbacks": [handler]})
    await bus.drain()

    assert out["messages"][-1].content == "It is 5."
    assert recorder.kinds == [
        "started",
        "thinking",
        "token",  # "Let me add.", in one piece: ainvoke does not stream
        "tool_call",
        "tool_result",
        "thinking",
        "token",
        "done",
        "completed",
    ]
    assert {e.run_id for _, e in recorder.items} == {"run-fixed"}  # type: ignore[attr-defined]
    call = recorder.of(ToolCall)[0]
    result = recorder.of(ToolResult)[0]
    assert (call.call_id, call.tool, call.args, call.step) == ("call_1", "add", {"a": 2, "b": 3}, 1)
    assert (result.call_id, result.result, result.error, result.step) == ("call_1", "5", None, 1)
    assert [t.step for t in recorder.of(Token)] == [1, 2]
    state = states.get("s1")
    assert state.status == "done"
    assert state.run_id == "run-fixed"
    assert state.result == "It is 5."
    assert state.input == "what is 2 + 3?"
    assert [(c.call_id, c.status, c.result) for c in state.tool_calls] == [("call_1", "done", "5")]


async def test_a_failing_tool_is_an_error_result_and_a_failed_run(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    model = ToolCallingFakeModel(messages=iter([calls(("broken", {"a": 1}, "call_1"))]))
    handler = AxonbusCallbackHandler(bus, "s1")

    with pytest.raises(ValueError, match="cannot handle 1"):
        await react_graph(model, [broken]).ainvoke(QUESTION, config={"callbacks": [handler]})
    await bus.drain()

    assert recorder.kinds[-4:] == ["tool_call", "tool_result", "error", "failed"]
    assert recorder.of(ToolResult)[0].error == "ValueError: cannot handle 1"
    assert recorder.of(Error)[0].type == "ValueError"
    state = states.get("s1")
    assert (state.status, state.error_type) == ("error", "ValueError")
    assert state.tool_calls[0].status == "error"


async def test_a_tool_error_the_graph_handles_does_not_fail_the_run(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    model = ToolCallingFakeModel(
        messages=iter([calls(("broken", {"a": 1}, "call_1")), "That failed."])
    )
    graph = StateGraph(MessagesState)
    bound = model.bind_tools([broken])

    async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([broken], handle_tool_errors=True))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", lambda s: "tools" if s["messages"][-1].tool_calls else END)
    graph.add_edge("tools", "agent")
    handler = AxonbusCallbackHandler(bus, "s1")

    await graph.compile().ainvoke(QUESTION, config={"callbacks": [handler]})
    await bus.drain()

    assert "error" not in recorder.kinds
    assert recorder.of(ToolResult)[0].error is not None
    assert states.get("s1").status == "done"
    assert states.get("s1").result == "That failed."


async def test_an_error_caught_by_a_fallback_is_not_reported(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    failing = FakeListChatModel(responses=["never"], error_on_chunk_number=0)
    model = failing.with_fallbacks([GenericFakeChatModel(messages=iter(["fallback works"]))])
    handler = AxonbusCallbackHandler(bus, "s1")

    chunks = [c async for c in model.astream("hi", config={"callbacks": [handler]})]
    await bus.drain()

    assert "".join(str(c.content) for c in chunks) == "fallback works"
    assert "error" not in recorder.kinds
    assert texts(recorder) == "fallback works"
    assert [e.step for e in recorder.of(Token)] == [2, 2, 2]  # the second model call
    assert states.get("s1").status == "done"


async def test_a_failing_chain_publishes_error_and_failed(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    def explode(_: Any) -> str:
        raise RuntimeError("boom")

    chain = GenericFakeChatModel(messages=iter(["x"])) | RunnableLambda(explode)
    handler = AxonbusCallbackHandler(bus, "s1")

    with pytest.raises(RuntimeError, match="boom"):
        await chain.ainvoke("hi", config={"callbacks": [handler]})
    await bus.drain()

    assert recorder.kinds[-2:] == ["error", "failed"]
    assert len(recorder.of(Error)) == 1  # the nested lambda's error is reported once, at the top
    failed = recorder.of(AgentFailed)[0]
    assert (failed.error, failed.error_type) == ("boom", "RuntimeError")
    assert failed.duration > 0
    assert states.get("s1").status == "error"


async def test_each_top_level_run_is_its_own_toolkit_run(bus: Bus, recorder: Recorder) -> None:
    model = GenericFakeChatModel(messages=iter(["one", "two"]))
    handler = AxonbusCallbackHandler(bus, "s1")

    await model.ainvoke("a", config={"callbacks": [handler]})
    await model.ainvoke("b", config={"callbacks": [handler]})
    await bus.drain()

    first, second = recorder.of(AgentStarted)
    assert first.run_id != second.run_id
    assert first.run_id.startswith("run-")
    assert [d.result for d in recorder.of(Done)] == ["one", "two"]


async def test_a_tool_on_its_own_is_a_run(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    handler = AxonbusCallbackHandler(bus, "s1")

    assert await add.ainvoke({"a": 2, "b": 3}, config={"callbacks": [handler]}) == 5
    await bus.drain()

    assert recorder.kinds == ["started", "tool_call", "tool_result", "done", "completed"]
    call, result = recorder.of(ToolCall)[0], recorder.of(ToolResult)[0]
    assert call.call_id == result.call_id  # no tool call id: LangChain's run id pairs them
    assert (call.tool, call.args, result.result) == ("add", {"a": 2, "b": 3}, 5)
    assert recorder.of(Done)[0].result == "5"
    assert states.get("s1").status == "done"


# -- sync runs: threads and the bus's loop --------------------------------------------------------


def assert_parallel_run(recorder: Recorder, session: str = "s1") -> None:
    """The events of parallel_model's graph: in order where order is defined."""
    kinds = recorder.kinds
    assert kinds[:2] == ["started", "thinking"]
    assert kinds[-2:] == ["done", "completed"]
    assert sorted(kinds[2:6]) == ["tool_call", "tool_call", "tool_result", "tool_result"]
    for call_id, value in (("call_1", "5"), ("call_2", "6")):
        at_call = next(
            i for i, (_, e) in enumerate(recorder.items)
            if isinstance(e, ToolCall) and e.call_id == call_id
        )  # fmt: skip
        at_result = next(
            i for i, (_, e) in enumerate(recorder.items)
            if isinstance(e, ToolResult) and e.call_id == call_id
        )  # fmt: skip
        assert at_call < at_result
        assert recorder.items[at_result][1].result == value  # type: ignore[attr-defined]
    assert recorder.of(Done)[0].result == "5 and 6."
    assert all(e.session_id == session for _, e in recorder.items)  # type: ignore[attr-defined]


async def test_sync_handler_in_a_worker_thread_waits_for_the_bus(
    bus: Bus, recorder: Recorder
) -> None:
    handler = AxonbusSyncCallbackHandler(bus, "s1")
    graph = react_graph(parallel_model(), [add, mul])
    accepted: list[int] = []

    def run() -> None:
        graph.invoke(QUESTION, config={"callbacks": [handler]})
        accepted.append(len(bus.history("agent.>")))  # everything was published by now

    await asyncio.to_thread(run)
    await bus.drain()

    assert accepted == [len(recorder.items)]
    assert_parallel_run(recorder)


def test_sync_handler_with_the_blocking_bus() -> None:
    # a sync program: axonbus.sync.Bus runs the bus on its own loop thread
    with SyncBus(history=100) as bus:
        got: list[object] = []
        bus.subscribe("agent.>", got.append)
        handler = AxonbusSyncCallbackHandler(bus, "s1")

        out = react_graph(parallel_model(), [add, mul]).invoke(
            QUESTION, config={"callbacks": [handler]}
        )
        published = len(bus.history("agent.>"))
        bus.drain()

    assert out["messages"][-1].content == "5 and 6."
    assert published == len(got) == 10
    assert isinstance(got[0], AgentStarted)
    assert isinstance(got[-1], AgentCompleted)


async def test_sync_handler_on_the_loop_thread_does_not_deadlock(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    # graph.invoke blocks the loop while LangGraph runs the two tools in worker threads:
    # those must queue their events, not wait for the blocked loop
    handler = AxonbusSyncCallbackHandler(bus, "s1")
    graph = react_graph(parallel_model(), [add, mul])

    out = graph.invoke(QUESTION, config={"callbacks": [handler]})
    await handler.flush()
    await bus.drain()

    assert out["messages"][-1].content == "5 and 6."
    assert_parallel_run(recorder)
    assert states.get("s1").status == "done"


async def test_async_handler_in_a_sync_invoke_on_the_loop_thread(
    bus: Bus, recorder: Recorder
) -> None:
    # LangChain runs the async handler's coroutines on a private loop in a worker thread
    # while graph.invoke blocks the bus's loop
    handler = AxonbusCallbackHandler(bus, "s1")
    graph = react_graph(parallel_model(), [add, mul])

    graph.invoke(QUESTION, config={"callbacks": [handler]})
    await handler.flush()
    await bus.drain()

    assert_parallel_run(recorder)


async def test_sync_handler_in_an_async_run_publishes_on_the_loop(
    bus: Bus, recorder: Recorder
) -> None:
    handler = AxonbusSyncCallbackHandler(bus, "s1")
    threads: set[str] = set()
    bus.subscribe("agent.>", lambda _: threads.add(threading.current_thread().name))

    await react_graph(adding_model(), [add]).ainvoke(QUESTION, config={"callbacks": [handler]})
    await bus.drain()

    assert recorder.kinds[0] == "started"
    assert recorder.kinds[-2:] == ["done", "completed"]
    assert threads == {threading.current_thread().name}


async def test_backpressure_keeps_order_from_every_thread(bus: Bus) -> None:
    got: list[object] = []

    async def slow(event: object) -> None:
        await asyncio.sleep(0.001)
        got.append(event)

    bus.subscribe("agent.>", slow, maxsize=2)  # "block": full almost all the time
    words = " ".join(f"w{i}" for i in range(30))

    # on the loop thread: publish_nowait finds the mailbox full and queues the rest, in order
    handler = AxonbusSyncCallbackHandler(bus, "loop")
    model = GenericFakeChatModel(messages=iter([words]))
    for _ in model.stream("hi", config={"callbacks": [handler]}):
        pass
    await handler.flush()
    # from a worker thread: each callback waits until the bus took its events
    handler = AxonbusSyncCallbackHandler(bus, "thread")
    model = GenericFakeChatModel(messages=iter([words]))
    await asyncio.to_thread(lambda: list(model.stream("hi", config={"callbacks": [handler]})))
    await bus.drain()

    for session in ("loop", "thread"):
        mine = [e for e in got if getattr(e, "session_id", None) == session]
        assert [type(e).__name__ for e in mine[:2]] == ["AgentStarted", "Thinking"]
        assert "".join(e.text for e in mine if isinstance(e, Token)) == words
        assert [type(e).__name__ for e in mine[-2:]] == ["Done", "AgentCompleted"]


# -- pipe_events -------------------------------------------------------------------------------


async def test_pipe_events_maps_a_graph_run(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    graph = react_graph(adding_model(), [add])

    result = await pipe_events(graph.astream_events(QUESTION, version="v2"), bus, session_id="s1")
    await bus.drain()

    assert recorder.kinds == (
        ["started", "thinking"]
        + ["token"] * 5  # "Let", " ", "me", " ", "add."
        + ["tool_call", "tool_result", "thinking"]
        + ["token"] * 5  # "It", " ", "is", " ", "5."
        + ["done", "completed"]
    )
    assert texts(recorder) == "Let me add.It is 5."
    assert [t.step for t in recorder.of(Token)] == [1] * 5 + [2] * 5
    call, tool_result = recorder.of(ToolCall)[0], recorder.of(ToolResult)[0]
    assert (call.call_id, call.tool, call.args) == ("call_1", "add", {"a": 2, "b": 3})
    assert (tool_result.call_id, tool_result.result) == ("call_1", "5")
    started = recorder.of(AgentStarted)[0]
    assert (started.agent, started.input) == ("LangGraph", "what is 2 + 3?")

    assert result.output["messages"][-1].content == "It is 5."
    assert (result.text, result.cancelled, result.steps) == ("It is 5.", False, 2)
    assert {e.run_id for _, e in recorder.items} == {result.run_id}  # type: ignore[attr-defined]
    state = states.get("s1")
    assert (state.status, state.result, state.text, state.step) == (
        "done",
        "It is 5.",
        "Let me add.It is 5.",
        2,
    )
    assert [(c.call_id, c.status) for c in state.tool_calls] == [("call_1", "done")]


def slow_graph(reached: list[str], *, chars: int = 200, sleep: float = 0.01) -> Any:
    """One node: a model that streams ``chars`` characters, one every ``sleep`` seconds."""
    model = FakeListChatModel(responses=["x" * chars], sleep=sleep)

    async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        reply = await model.ainvoke(state["messages"])
        reached.append("after the model")
        return {"messages": [reply]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_edge(START, "agent")
    return graph.compile()


@pytest.mark.parametrize("stop", [Interrupt, Cancel])
async def test_an_interrupt_or_cancel_stops_the_graph_mid_stream(
    bus: Bus, recorder: Recorder, states: StateManager, stop: type[Interrupt | Cancel]
) -> None:
    reached: list[str] = []

    async def stop_after_three(token: Token, ctx: Context) -> None:
        if len(recorder.of(Token)) == 3:
            await ctx.publish(stop(session_id="s1", reason="user pressed stop"))

    bus.subscribe(Token, stop_after_three)
    graph = slow_graph(reached)

    async with asyncio.timeout(5):
        result = await pipe_events(
            graph.astream_events(QUESTION, version="v2"), bus, session_id="s1"
        )
    await bus.drain()
    tokens = len(recorder.of(Token))
    await asyncio.sleep(0.1)  # a graph still running would stream ~10 more tokens by now
    await bus.drain()

    assert len(recorder.of(Token)) == tokens
    assert 3 <= tokens < 100  # of 200
    assert result.cancelled
    assert result.output is None
    assert result.text == "x" * tokens
    assert reached == []  # the node never got past the model call
    assert recorder.kinds[-2:] == ["done", "completed"]
    done, completed = recorder.of(Done)[0], recorder.of(AgentCompleted)[0]
    assert (done.cancelled, done.result) == (True, "x" * tokens)
    assert completed.cancelled
    state = states.get("s1")
    assert (state.status, state.result) == ("cancelled", "x" * tokens)
    # the graph's task was cancelled and awaited: only the bus's subscription workers are left
    others = {t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert all(name.startswith("axonbus:") for name in others), others


async def test_a_cancel_stops_a_tool_call_in_flight(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    tool_state: list[str] = []

    @tool
    async def slow(seconds: float) -> str:
        """Wait for a while."""
        tool_state.append("started")
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            tool_state.append("cancelled")
            raise
        return "done"

    async def cancel_on_call(call: ToolCall) -> None:
        await asyncio.sleep(0.05)
        await cancel(bus, "s1", "too slow")

    bus.subscribe(ToolCall, cancel_on_call)
    model = ToolCallingFakeModel(messages=iter([calls(("slow", {"seconds": 30}, "call_1"))]))
    graph = react_graph(model, [slow])

    async with asyncio.timeout(5):
        result = await pipe_events(
            graph.astream_events(QUESTION, version="v2"), bus, session_id="s1"
        )
    await bus.drain()

    assert result.cancelled
    assert tool_state == ["started", "cancelled"]
    tool_result = recorder.of(ToolResult)[0]
    assert (tool_result.call_id, tool_result.result) == ("call_1", None)
    assert tool_result.error is not None
    assert "stopped" in tool_result.error
    assert recorder.kinds[-3:] == ["tool_result", "done", "completed"]
    state = states.get("s1")
    assert state.status == "cancelled"
    assert [(c.call_id, c.status) for c in state.tool_calls] == [("call_1", "error")]


async def test_an_interrupt_for_another_run_is_ignored(bus: Bus, recorder: Recorder) -> None:
    async def interrupt_other(token: Token, ctx: Context) -> None:
        if len(recorder.of(Token)) == 1:
            await interrupt(bus, "s1", run_id="run-someone-else")

    bus.subscribe(Token, interrupt_other)
    reached: list[str] = []

    result = await pipe_events(
        slow_graph(reached, chars=10, sleep=0.005).astream_events(QUESTION, version="v2"),
        bus,
        session_id="s1",
        run_id="run-mine",
    )
    await bus.drain()

    assert not result.cancelled
    assert result.run_id == "run-mine"
    assert reached == ["after the model"]
    assert result.text == "x" * 10


async def test_an_interrupt_for_this_run_id_stops_it(bus: Bus, recorder: Recorder) -> None:
    async def interrupt_mine(token: Token, ctx: Context) -> None:
        if len(recorder.of(Token)) == 1:
            await interrupt(bus, "s1", run_id=token.run_id)

    bus.subscribe(Token, interrupt_mine)
    result = await pipe_events(
        slow_graph([]).astream_events(QUESTION, version="v2"), bus, session_id="s1"
    )

    assert result.cancelled
    assert result.run_id.startswith("run-")


async def test_pipe_events_reports_a_failing_graph(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        raise KeyError("no such thing")

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_edge(START, "agent")

    with pytest.raises(KeyError):
        await pipe_events(
            graph.compile().astream_events(QUESTION, version="v2"), bus, session_id="s1"
        )
    await bus.drain()

    assert recorder.kinds == ["started", "error", "failed"]
    assert recorder.of(Error)[0].type == "KeyError"
    assert states.get("s1").status == "error"


async def test_cancelling_the_piping_task_fails_the_run(
    bus: Bus, recorder: Recorder, states: StateManager
) -> None:
    stream = slow_graph([]).astream_events(QUESTION, version="v2")
    task = asyncio.create_task(pipe_events(stream, bus, session_id="s1"))
    await bus.wait_for(Token, timeout=5)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await bus.drain()

    failed = recorder.of(AgentFailed)[0]
    assert failed.error_type == "CancelledError"
    assert "done" not in recorder.kinds
    assert states.get("s1").status == "error"


async def test_a_stream_that_stops_before_its_first_event_is_still_one_run(
    bus: Bus, recorder: Recorder
) -> None:
    async def never() -> AsyncIterator[dict[str, Any]]:
        await asyncio.sleep(30)
        yield {}

    async def cancel_soon() -> None:
        await asyncio.sleep(0.05)
        await cancel(bus, "s1")

    canceller = asyncio.create_task(cancel_soon())
    result = await pipe_events(never(), bus, session_id="s1", agent="idle")
    await canceller
    await bus.drain()

    assert result.cancelled
    assert recorder.kinds == ["cancel", "started", "done", "completed"]
    assert recorder.of(AgentStarted)[0].agent == "idle"


async def test_pipe_events_takes_any_v2_shaped_stream(bus: Bus, recorder: Recorder) -> None:
    # reasoning blocks become Thinking text, text blocks Tokens; a model tagged "nostream"
    # (LangGraph's convention) streams no Tokens
    async def stream() -> AsyncIterator[dict[str, Any]]:
        chunk = AIMessageChunk(
            content=[{"type": "reasoning", "reasoning": "hmm"}, {"type": "text", "text": "Hi"}]
        )
        yield {"event": "on_chain_start", "run_id": "r", "name": "app", "data": {"input": "x"}}
        yield {"event": "on_chat_model_start", "run_id": "m1", "name": "llm", "data": {}}
        yield {"event": "on_chat_model_stream", "run_id": "m1", "data": {"chunk": chunk}}
        yield {"event": "on_chat_model_end", "run_id": "m1", "data": {"output": chunk}}
        yield {"event": "on_chat_model_start", "run_id": "m2", "tags": ["nostream"], "data": {}}
        hidden = AIMessageChunk(content="internal")
        yield {"event": "on_chat_model_stream", "run_id": "m2", "data": {"chunk": hidden}}
        yield {"event": "on_chat_model_end", "run_id": "m2", "data": {"output": hidden}}
        yield {"event": "on_chain_end", "run_id": "r", "data": {"output": {"answer": 42}}}

    result = await pipe_events(stream(), bus, session_id="s1")
    await bus.drain()

    assert recorder.kinds == [
        "started", "thinking", "thinking", "token", "thinking", "done", "completed",
    ]  # fmt: skip
    assert [t.text for t in recorder.of(Thinking)] == ["", "hmm", ""]
    assert [t.text for t in recorder.of(Token)] == ["Hi"]
    assert result.output == {"answer": 42}
    assert recorder.of(AgentCompleted)[0].result == {"answer": 42}
    assert recorder.of(Done)[0].result == "Hi"  # the latest reply meant for the user
    assert result.steps == 2


# -- packaging ---------------------------------------------------------------------------------


def test_missing_langchain_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("axonbus.integrations.langchain")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "langchain_core", None)  # makes `import` fail

    with pytest.raises(ImportError, match=r"axonbus\[langchain\]"):
        importlib.import_module("axonbus.integrations.langchain")


def test_exports() -> None:
    module = importlib.import_module("axonbus.integrations.langchain")
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name)

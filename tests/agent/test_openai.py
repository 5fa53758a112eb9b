"""OpenAICompatibleModel against a local server speaking the streaming protocol."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from axonbus import Bus
from axonbus.agent import (
    AgentLoop,
    Message,
    ModelConnectionError,
    ModelHTTPError,
    ModelResponseError,
    OpenAICompatibleModel,
    TextDelta,
    ThinkingDelta,
    Token,
    Tool,
    ToolRequest,
)
from tests.agent.agent_helpers import Recorder
from tests.agent.sse_server import DONE, Reply, SSEServer, chunk

pytest.importorskip("httpx")

KEY = "sk-test-secret-key-123"


@pytest.fixture
async def server() -> AsyncIterator[SSEServer]:
    async with SSEServer() as s:
        yield s


@pytest.fixture
async def model(server: SSEServer) -> AsyncIterator[OpenAICompatibleModel]:
    async with OpenAICompatibleModel("test-model", base_url=server.base_url, api_key=KEY) as m:
        yield m


async def collect(model: OpenAICompatibleModel, messages: Any = None, tools: Any = ()) -> list[Any]:
    messages = messages or [Message(role="user", content="hi")]
    return [c async for c in model.stream(messages, tools)]


async def test_streams_text(server: SSEServer, model: OpenAICompatibleModel) -> None:
    server.reply(
        chunk({"role": "assistant", "content": ""}),
        ": keep-alive comment\n\n",
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({"reasoning_content": "hmm"}),
        chunk(finish="stop"),
        'data: {"id": "x", "choices": [], "usage": {"total_tokens": 3}}\n\n',
        DONE,
    )

    def add(a: int, b: int) -> int:
        return a + b

    messages = [
        Message(role="system", content="be brief"),
        Message(role="user", content="hi"),
        Message(role="assistant", tool_calls=(ToolRequest("c1", "add", {"a": 1, "b": 2}),)),
        Message(role="tool", content="3", tool_call_id="c1", name="add"),
    ]
    chunks = await collect(model, messages, [Tool.from_function(add)])
    assert chunks == [
        TextDelta("Hel"),
        TextDelta("lo"),
        ThinkingDelta("hmm"),
        Message(role="assistant", content="Hello"),
    ]
    request = server.requests[0]
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = request.json
    assert body["model"] == "test-model"
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                }
            ],
        },
        {"role": "tool", "content": "3", "tool_call_id": "c1", "name": "add"},
    ]
    assert body["tools"][0]["function"]["name"] == "add"
    assert body["tools"][0]["function"]["parameters"]["required"] == ["a", "b"]


async def test_assembles_tool_calls_split_across_chunks(
    server: SSEServer, model: OpenAICompatibleModel
) -> None:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return {"tool_calls": [{"index": index, **fields}]}

    server.reply(
        chunk({"content": "Checking."}),
        chunk(call(0, id="call_a", type="function", function={"name": "search", "arguments": ""})),
        chunk(call(0, function={"arguments": '{"que'})),
        chunk(call(1, id="call_b", function={"name": "add", "arguments": '{"a": 1,'})),
        chunk(call(0, function={"arguments": 'ry": "cats"'})),
        chunk(call(1, function={"arguments": ' "b": 2}'})),
        chunk(call(0, function={"arguments": "}"})),
        chunk(finish="tool_calls"),
        DONE,
    )
    chunks = await collect(model)
    search = ToolRequest("call_a", "search", {"query": "cats"})
    add = ToolRequest("call_b", "add", {"a": 1, "b": 2})
    assert chunks == [
        TextDelta("Checking."),
        search,
        add,
        Message(role="assistant", content="Checking.", tool_calls=(search, add)),
    ]


async def test_multi_line_data_and_a_stream_without_done(
    server: SSEServer, model: OpenAICompatibleModel
) -> None:
    obj = {"choices": [{"index": 0, "delta": {"content": "two lines"}}]}
    text = json.dumps(obj, indent=1).replace("\n", "\ndata: ")
    server.reply(f"data: {text}\n\n", f"data:{json.dumps(obj)}")  # no [DONE], no last blank line
    chunks = await collect(model)
    assert chunks[-1] == Message(role="assistant", content="two linestwo lines")


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
async def test_http_errors(server: SSEServer, model: OpenAICompatibleModel, status: int) -> None:
    server.replies.append(Reply(status=status, body='{"error": {"message": "nope"}}'))
    with pytest.raises(ModelHTTPError) as info:
        await collect(model)
    assert info.value.status_code == status
    assert "nope" in info.value.body
    assert KEY not in str(info.value)


def fn_call(**function: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": 0, "function": function}]}


@pytest.mark.parametrize(
    ("event", "match"),
    [
        ("data: {not json\n\n", "not JSON"),
        ("data: [1, 2]\n\n", "not a JSON object"),
        ('data: {"error": {"message": "overloaded"}}\n\n', "overloaded"),
        ('data: {"id": "x"}\n\n', "no choices"),
        ('data: {"choices": [{"delta": "x"}]}\n\n', "delta is not an object"),
        (
            chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{"}}]}),
            "JSON",
        ),
        (
            chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "[]"}}]}),
            "object",
        ),
        (
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
            "no function name",
        ),
        (chunk({"tool_calls": "x"}), "not a list"),
    ],
)
async def test_malformed_chunks(
    server: SSEServer, model: OpenAICompatibleModel, event: str, match: str
) -> None:
    server.reply(event, DONE)
    with pytest.raises(ModelResponseError, match=match):
        await collect(model)


async def test_connection_errors() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with OpenAICompatibleModel("m", base_url=f"http://127.0.0.1:{port}/v1") as model:
        with pytest.raises(ModelConnectionError, match="ConnectError"):
            await collect(model)


async def test_settings_come_from_the_environment(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url + "/")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.reply(chunk({"content": "ok"}), DONE)
    async with OpenAICompatibleModel("m", extra_body={"temperature": 0}) as model:
        assert model.base_url == server.base_url
        assert KEY not in repr(model)
        await collect(model)
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert server.requests[0].json["temperature"] == 0
    monkeypatch.delenv("OPENAI_API_KEY")
    server.reply(chunk({"content": "ok"}), DONE)
    async with OpenAICompatibleModel("m") as model:
        await collect(model)
    assert "authorization" not in server.requests[1].headers  # local servers need no key


async def test_an_agent_loop_on_the_openai_model(
    bus: Bus, server: SSEServer, model: OpenAICompatibleModel, recorder: Recorder
) -> None:
    def add(a: int, b: int) -> int:
        return a + b

    args = {"index": 0, "id": "c1", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}
    server.reply(chunk({"tool_calls": [args]}), DONE)
    server.reply(chunk({"content": "It is"}), chunk({"content": " 5."}), DONE)
    result = await AgentLoop(bus, model, [add], session_id="s1").run("2 + 3?")
    assert result.text == "It is 5."
    await bus.drain()
    assert recorder.kinds.count("token") == 2
    second = server.requests[1].json["messages"]
    assert second[-1] == {"role": "tool", "content": "5", "tool_call_id": "c1", "name": "add"}


async def test_cancel_closes_the_connection_mid_stream(
    bus: Bus, server: SSEServer, model: OpenAICompatibleModel, recorder: Recorder
) -> None:
    server.reply(chunk({"content": "Once"}), chunk({"content": " upon"}), stall=True)
    loop = AgentLoop(bus, model, session_id="s1")
    two_tokens = asyncio.Event()
    bus.subscribe(Token, lambda t: two_tokens.set() if t.text == " upon" else None)
    task = asyncio.create_task(loop.run("tell me a story"))
    await asyncio.wait_for(two_tokens.wait(), 5)
    t0 = time.perf_counter()
    await loop.cancel()
    result = await asyncio.wait_for(task, 2)
    await asyncio.wait_for(server.disconnected.wait(), 2)
    assert server.disconnected_at is not None
    latency = server.disconnected_at - t0
    assert latency < 0.05, f"the server saw the disconnect {latency * 1000:.1f} ms after cancel"
    assert (result.cancelled, result.text) == (True, "Once upon")

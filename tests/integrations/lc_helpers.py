"""Offline LangChain / LangGraph pieces for the integration tests: fake chat models from
``langchain_core`` and small graphs built with the real ``langgraph``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import BaseTool, tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition


class ToolCallingFakeModel(GenericFakeChatModel):
    """GenericFakeChatModel that can be bound to tools and keeps a reply's tool calls when it
    streams (the stock one streams the text only)."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, BaseMessage]:
        return self

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = next(self.messages)
        message = AIMessage(content=reply) if isinstance(reply, str) else reply
        assert isinstance(message.content, str)
        for piece in re.split(r"(\s)", message.content):
            if piece:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece, id=message.id))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
        if message.tool_calls:
            calls = [
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(message.tool_calls)
            ]
            chunk = ChatGenerationChunk(
                message=AIMessageChunk(content="", id=message.id, tool_call_chunks=calls)
            )
            if run_manager:
                run_manager.on_llm_new_token("", chunk=chunk)
            yield chunk


def calls(*requests: tuple[str, dict[str, Any], str], text: str = "") -> AIMessage:
    """An assistant reply asking for tool calls: (name, args, id) each."""
    return AIMessage(
        content=text, tool_calls=[{"name": n, "args": a, "id": i} for n, a, i in requests]
    )


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def mul(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@tool
def broken(a: int) -> int:
    """Always fails."""
    raise ValueError(f"cannot handle {a}")


def react_graph(model: Any, tools: Sequence[BaseTool | Callable[..., Any]]) -> Any:
    """agent -> tools -> agent ... until the model answers without tool calls (the agent node
    works under both ``invoke`` and ``ainvoke``)."""
    bound = model.bind_tools(tools)

    async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    def agent_sync(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [bound.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", RunnableLambda(agent_sync, afunc=agent))
    graph.add_node("tools", ToolNode(list(tools)))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile()

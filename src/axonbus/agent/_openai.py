"""A streaming client for OpenAI-compatible chat completion servers (OpenAI, vLLM, llama.cpp,
Ollama, DeepSeek, ...), on httpx. httpx comes with the ``agent`` extra:
``pip install 'axonbus[agent]'``."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import ModelConnectionError, ModelHTTPError, ModelResponseError
from ._models import Message, ModelChunk, TextDelta, ThinkingDelta, Tool, ToolRequest

if TYPE_CHECKING:
    import httpx

__all__ = ["OpenAICompatibleModel"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "OpenAICompatibleModel needs httpx: pip install 'axonbus[agent]'"
        ) from exc
    return httpx


def _message_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.name is not None:
        out["name"] = m.name
    return out


def _tool_json(t: Tool) -> dict[str, Any]:
    function = {"name": t.name, "description": t.description, "parameters": dict(t.parameters)}
    return {"type": "function", "function": function}


class _ToolCallParts:
    """One tool call as its fragments arrive: the id and name once, the arguments in pieces."""

    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments = ""

    def request(self, index: int) -> ToolRequest:
        try:
            arguments = json.loads(self.arguments) if self.arguments.strip() else {}
        except ValueError:
            raise ModelResponseError(
                f"tool call {self.name!r}: arguments are not valid JSON: {self.arguments[:200]!r}"
            ) from None
        if not isinstance(arguments, dict):
            raise ModelResponseError(f"tool call {self.name!r}: arguments are not a JSON object")
        if not self.name:
            raise ModelResponseError(f"tool call #{index} has no function name")
        return ToolRequest(id=self.id or f"call_{index}", name=self.name, arguments=arguments)


class OpenAICompatibleModel:
    """A :class:`ChatModel` speaking ``POST {base_url}/chat/completions`` with ``stream: true``.

    ``base_url`` and ``api_key`` default to ``$OPENAI_BASE_URL`` (else OpenAI's) and
    ``$OPENAI_API_KEY`` (else none, for local servers). The key is sent as a bearer token and
    appears in no repr, log or error. ``extra_body`` is merged into every request
    (``temperature``, ``max_tokens``, ...). Errors: :class:`ModelHTTPError` (4xx / 5xx),
    :class:`ModelResponseError` (a chunk that breaks the protocol),
    :class:`ModelConnectionError` (unreachable, timed out, connection broken).

    >>> model = OpenAICompatibleModel("gpt-4o-mini")
    >>> loop = AgentLoop(bus, model, [add], session_id="s1")

    Cancelling the task that streams closes the HTTP connection.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        extra_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        httpx_module = _import_httpx()
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._headers = {"Accept": "text/event-stream", **(headers or {})}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self.extra_body = dict(extra_body or {})
        self._owns_client = client is None
        self._client: httpx.AsyncClient = client or httpx_module.AsyncClient(
            timeout=httpx_module.Timeout(timeout, connect=min(timeout, 10.0))
        )

    def __repr__(self) -> str:
        return f"<OpenAICompatibleModel {self.model!r} at {self.base_url}>"

    async def aclose(self) -> None:
        """Close the HTTP client (unless it was passed in)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> OpenAICompatibleModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def request_body(self, messages: Sequence[Message], tools: Sequence[Tool]) -> dict[str, Any]:
        """The JSON body sent for one call."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_message_json(m) for m in messages],
            "stream": True,
            **self.extra_body,
        }
        if tools:
            body["tools"] = [_tool_json(t) for t in tools]
        return body

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[Tool] = ()
    ) -> AsyncIterator[ModelChunk]:
        httpx_module = _import_httpx()
        url = f"{self.base_url}/chat/completions"
        body = self.request_body(messages, tools)
        content: list[str] = []
        calls: dict[int, _ToolCallParts] = {}
        try:
            async with self._client.stream("POST", url, json=body, headers=self._headers) as resp:
                if resp.status_code >= 400:
                    raw = await resp.aread()
                    raise ModelHTTPError(
                        resp.status_code, raw[:2000].decode("utf-8", "replace"), url
                    )
                async for data in _sse_data(resp.aiter_lines()):
                    if data.strip() == "[DONE]":
                        break
                    for chunk in _parse_chunk(data, calls):
                        if isinstance(chunk, TextDelta):
                            content.append(chunk.text)
                        yield chunk
        except httpx_module.HTTPError as exc:
            # never str(request): headers stay out of messages
            raise ModelConnectionError(f"{type(exc).__name__} talking to {url}: {exc}") from exc
        requests = tuple(calls[i].request(i) for i in sorted(calls))
        for request in requests:
            yield request
        yield Message(role="assistant", content="".join(content), tool_calls=requests)


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined by newlines)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _parse_chunk(data: str, calls: dict[int, _ToolCallParts]) -> list[ModelChunk]:
    try:
        obj = json.loads(data)
    except ValueError:
        raise ModelResponseError(f"a stream chunk is not JSON: {data[:200]!r}") from None
    if not isinstance(obj, dict):
        raise ModelResponseError(f"a stream chunk is not a JSON object: {data[:200]!r}")
    if obj.get("error"):
        raise ModelResponseError(f"the server reported an error mid-stream: {obj['error']}")
    choices = obj.get("choices")
    if not isinstance(choices, list):
        raise ModelResponseError(f"a stream chunk has no choices list: {data[:200]!r}")
    if not choices:
        return []  # e.g. the usage chunk at the end
    choice = choices[0]
    delta = choice.get("delta") if isinstance(choice, dict) else None
    if delta is None:
        return []
    if not isinstance(delta, dict):
        raise ModelResponseError(f"choices[0].delta is not an object: {data[:200]!r}")
    out: list[ModelChunk] = []
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        out.append(ThinkingDelta(reasoning))
    text = delta.get("content")
    if isinstance(text, str) and text:
        out.append(TextDelta(text))
    fragments = delta.get("tool_calls") or []
    if not isinstance(fragments, list):
        raise ModelResponseError(f"delta.tool_calls is not a list: {data[:200]!r}")
    for position, fragment in enumerate(fragments):
        if not isinstance(fragment, dict):
            raise ModelResponseError(f"a tool call fragment is not an object: {data[:200]!r}")
        index = fragment.get("index", position)
        if not isinstance(index, int):
            raise ModelResponseError(f"a tool call fragment has a bad index: {data[:200]!r}")
        parts = calls.setdefault(index, _ToolCallParts())
        if fragment.get("id"):
            parts.id = str(fragment["id"])
        function = fragment.get("function") or {}
        if not isinstance(function, dict):
            raise ModelResponseError(
                f"a tool call fragment's function is not an object: {data[:200]!r}"
            )
        if function.get("name"):
            parts.name += str(function["name"])
        if function.get("arguments"):
            parts.arguments += str(function["arguments"])
    return out

"""A tiny local HTTP server that speaks OpenAI's streaming chat completions (SSE over chunked
HTTP/1.1), on a real socket, so streaming and disconnects behave as with a real server."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """What the server answers to the next request."""

    status: int = 200
    events: list[str] = field(default_factory=list)  # SSE payloads, sent as they are
    body: str = ""  # for error statuses
    delay: float = 0.0  # between events
    stall: bool = False  # after the events, keep the connection open until the client leaves


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    json: Any


def chunk(delta: dict[str, Any] | None = None, *, finish: str | None = None, **extra: Any) -> str:
    """One ``data:`` event holding a chat.completion.chunk with ``delta``."""
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    obj = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [choice], **extra}
    return f"data: {json.dumps(obj)}\n\n"


DONE = "data: [DONE]\n\n"


class SSEServer:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[Request] = []
        self.disconnected = asyncio.Event()
        self.disconnected_at: float | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.base_url = ""

    def reply(self, *events: str, **options: Any) -> SSEServer:
        self.replies.append(Reply(events=list(events), **options))
        return self

    async def __aenter__(self) -> SSEServer:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(Request(method, path, headers, json.loads(body) if body else None))
        reply = self.replies.pop(0) if self.replies else Reply(status=500, body="no reply left")
        if reply.status != 200:
            payload = reply.body.encode()
            writer.write(
                f"HTTP/1.1 {reply.status} Error\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        for event in reply.events:
            data = event.encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
            if reply.delay:
                await asyncio.sleep(reply.delay)
        if reply.stall:
            await reader.read()  # b"" once the client has closed the connection
            self.disconnected_at = time.perf_counter()
            self.disconnected.set()
            return
        writer.write(b"0\r\n\r\n")
        await writer.drain()

"""Shared helpers of the gateway tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import uvicorn

from tests.support.asgi import serving

# Starlette's TestClient always sends "Host: testserver" on a WebSocket; an open gateway
# answers loopback names only unless told otherwise
TEST_HOSTS = ("testserver",)
SECRET_UI = "ui-secret-0123456789-AbCdEfGhIjKlMn"
SECRET_ADMIN = "admin-secret-0123456789-OpQrStUvWxYz"
SECRET_SLOW = "slow-secret-0123456789-aBcDeFgHiJkL"

TOKENS_CONFIG: dict[str, Any] = {
    "tokens": [
        {
            "name": "ui",
            "token": SECRET_UI,
            "publish": ["agent.*.user_input", "agent.*.interrupt", "math.>", "channel.web.in"],
            "subscribe": ["agent.>"],
            "deny": ["agent.secret.>"],
        },
        {
            "name": "admin",
            "token": SECRET_ADMIN,
            "publish": [">"],
            "subscribe": [">", "$bus.>"],
            "metrics": True,
        },
        {"name": "slow", "token": SECRET_SLOW, "publish": [">"], "subscribe": [">"], "rate": 2},
    ]
}


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@contextlib.asynccontextmanager
async def asgi_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


@contextlib.asynccontextmanager
async def running_server(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port inside this event loop; yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    config.ws = "websockets-sansio" if _has("websockets") else "none"
    async with serving(config) as url:
        yield url


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


class SSEReader:
    """Reads Server-Sent Events blocks from a streaming httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def block(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next block: ``{"comments": [...], "id", "event", "data"}`` (data parsed)."""
        found: dict[str, Any] = {"comments": []}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if not line:
                    if len(found) > 1 or found["comments"]:
                        return found
                    continue
                if line.startswith(":"):
                    found["comments"].append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                found[name] = json.loads(value) if name == "data" else value
        raise EOFError("the stream ended")

    async def event(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next block that carries data (comments are skipped)."""
        while True:
            found = await self.block(timeout)
            if "data" in found:
                return found


async def open_sse(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> tuple[Any, SSEReader, dict[str, Any]]:
    """Open a stream and read its greeting (the feed is registered once it arrived)."""
    stream = client.stream("GET", url, headers=headers)
    response = await stream.__aenter__()
    assert response.status_code == 200, await response.aread()
    reader = SSEReader(response)
    hello = await reader.block()
    return stream, reader, hello

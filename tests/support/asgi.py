"""Serve an ASGI app with uvicorn on a free loopback port inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn

from axonbus.gateway import GatewayServer


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[str]:
    """Run ``config`` (host 127.0.0.1, port 0) until the block ends; yields the base URL."""
    server = GatewayServer(config, handle_signals=False)
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        async with asyncio.timeout(5):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task

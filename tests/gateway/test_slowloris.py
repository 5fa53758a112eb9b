"""A real server against clients that trickle headers or open too many connections."""

from __future__ import annotations

import asyncio

from tests.support.asgi import serving

from axonbus import Bus
from axonbus.gateway import create_app
from axonbus.gateway._server import server_config


async def _connect(base: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def test_trickled_headers_are_cut_off_and_extra_connections_refused(bus: Bus) -> None:
    config = server_config(
        create_app(bus), "127.0.0.1", 0, log_level="warning", max_connections=4,
        header_timeout=0.5,
    )  # fmt: skip
    async with serving(config) as base:
        # a slowloris client: part of a request head, then nothing
        reader, writer = await _connect(base)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ")
        await writer.drain()
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # closed by the server, well before 10 s
        writer.close()
        # 4 connections held open: the 5th is refused at once, with a clear answer
        held = [await _connect(base) for _ in range(4)]
        reader, writer = await _connect(base)
        async with asyncio.timeout(10):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"too_many_connections" in answer
        assert b"retry-after: 1" in answer
        for _, w in held:
            w.close()

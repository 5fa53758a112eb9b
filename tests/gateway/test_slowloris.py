"""A real server against clients that trickle headers or open too many connections."""

from __future__ import annotations

import asyncio

from axonbus import Bus
from axonbus.gateway import create_app
from axonbus.gateway._server import server_config
from tests.support.asgi import serving


async def _connect(base: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def test_trickled_headers_are_cut_off_and_extra_connections_refused(bus: Bus) -> None:
    config = server_config(
        create_app(bus), "127.0.0.1", 0, log_level="warning", max_connections=4,
        header_timeout=2.0,
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


async def test_shutdown_is_prompt_with_clients_that_stopped_reading(bus: Bus) -> None:
    import socket
    import time

    from axonbus.gateway import GatewayServer

    config = server_config(create_app(bus), "127.0.0.1", 0, log_level="warning")
    server = GatewayServer(config, handle_signals=False)
    task = asyncio.get_running_loop().create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    stalled = []
    for _ in range(3):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port or 0))
        sock.sendall(b"GET /v1/events?pattern=s.%3E HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        stalled.append(sock)
    gw = config.app.state.gateway  # type: ignore[attr-defined]
    async with asyncio.timeout(10):
        while len(gw.feeds) < 3:
            await asyncio.sleep(0.01)
    for i in range(3000):  # 6 MB each: far more than the socket buffers hold
        await bus.publish("s.x", {"i": i, "pad": "x" * 2000})
        if i % 100 == 0:
            await asyncio.sleep(0)
    began = time.monotonic()
    server.should_exit = True
    async with asyncio.timeout(10):
        await task
    took = time.monotonic() - began
    for sock in stalled:
        sock.close()
    assert took < 4.0  # uvicorn's graceful timeout (5 s) was not what ended it

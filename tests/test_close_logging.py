"""``Bus.close()`` waiting on slow handlers says so at INFO: which ones and for how long."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from axonbus import Bus


async def test_close_says_what_it_waits_for(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="axonbus")
    bus = Bus(name="sleepy")
    await bus.start()
    started = asyncio.Event()

    async def slow(question: str) -> str:
        started.set()
        await asyncio.sleep(3600)  # a responder asleep: only close()'s timeout ends it
        return "never"

    bus.respond("rpc.slow", slow)
    asked = asyncio.create_task(bus.request("rpc.slow", "?", timeout=None))
    await asyncio.wait_for(started.wait(), 10)
    began = time.monotonic()
    await bus.close(timeout=1.5)
    waited = time.monotonic() - began
    asked.cancel()
    await asyncio.gather(asked, return_exceptions=True)

    assert waited < 10
    info = [r for r in caplog.records if r.levelno == logging.INFO and "close()" in r.message]
    assert len(info) == 1, caplog.text
    message = info[0].getMessage()
    assert message.startswith("bus 'sleepy': close() is waiting up to 1.5s for 1 delivery: ")
    assert "'rpc.slow' (1 running)" in message
    assert "close(timeout=...)" in message
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("still unfinished after 1.5s" in r.getMessage() for r in warned), caplog.text
    assert any("'rpc.slow'" in r.getMessage() for r in warned)


async def test_a_quick_close_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="axonbus")
    async with Bus() as bus:
        bus.subscribe("a.b", lambda e: None)
        await bus.publish("a.b", 1)
    assert not [r for r in caplog.records if "close()" in r.getMessage()]

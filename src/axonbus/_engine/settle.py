"""Small waiting helpers shared by the conformance kit and users' tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bus import Bus

__all__ = ["settle"]


async def settle(bus: Bus, condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Drain ``bus`` and poll until ``condition()`` holds; ``AssertionError`` after ``timeout``.

    Local handlers are covered by ``drain``; events that cross a broker arrive a little later,
    so the condition is polled as well.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await bus.drain(timeout=max(0.0, deadline - loop.time()))
        if condition():
            return
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.005)

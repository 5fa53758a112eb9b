from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from axonbus import Bus


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with Bus() as b:
        yield b


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until ``predicate()`` holds; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)

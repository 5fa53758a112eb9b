from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

# the `bus` fixture comes from tests/conftest.py

Eventually = Callable[[Callable[[], bool]], Awaitable[None]]


async def _eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)


@pytest.fixture
def eventually() -> Eventually:
    """``await eventually(predicate)``: poll until it holds; TimeoutError after 5 s."""
    return _eventually

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from axonbus.runtime import AgentRuntime


@pytest.fixture
async def runtime() -> AsyncIterator[AgentRuntime]:
    """A started in-process runtime, closed after the test (within 5 s, so nothing hangs)."""
    rt = AgentRuntime()
    await rt.start()
    try:
        yield rt
    finally:
        await rt.close(timeout=5.0)

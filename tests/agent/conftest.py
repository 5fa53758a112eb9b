from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from axonbus import Bus
from tests.agent.agent_helpers import Eventually, Recorder, eventually

# `bus` comes from tests/conftest.py (memory://, history=100)


@pytest.fixture(name="eventually")
def eventually_fixture() -> Eventually:
    """``await eventually(predicate)``: poll until it holds; TimeoutError after 5 s."""
    return eventually


@pytest.fixture
async def recorder(bus: Bus) -> AsyncIterator[Recorder]:
    return Recorder(bus)

"""The conformance kit on memory://, redis:// and nats:// runs on both event loops: asyncio's
own and uvloop's (``pip install axonbus[uvloop]``). The other transports' kits run on asyncio.

pytest-asyncio asks this hook which loops a test runs on and parametrizes it by their names
(``test_memory_conformance[asyncio-...]`` / ``[uvloop-...]``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the dev extra
    uvloop = None

ON_BOTH_LOOPS = ("test_memory.py", "test_redis.py", "test_nats.py")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], Any]]:
    loops: dict[str, Callable[[], Any]] = {"asyncio": asyncio.new_event_loop}
    if item.path.name in ON_BOTH_LOOPS:
        if uvloop is not None:
            loops["uvloop"] = uvloop.new_event_loop
        elif os.environ.get("CI"):
            raise pytest.UsageError("CI runs the conformance kit on uvloop: pip install uvloop")
    return loops

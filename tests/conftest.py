from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from axonbus import Bus
from tests.support.fixtures import (  # noqa: F401  (registers the fixtures)
    amqp_bus_name,
    amqp_service,
    nats_bus_name,
    nats_service,
    postgres_bus_name,
    postgres_service,
    private_nats,
    private_rabbit,
    private_redis,
    redis_bus_name,
    redis_raw,
    redis_service,
)


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with Bus(history=100) as b:
        yield b


@pytest.fixture(autouse=True)
def _quiet_axonbus_logs(caplog: pytest.LogCaptureFixture) -> None:
    # handler failures are logged with tracebacks on purpose; keep test output readable
    caplog.set_level(logging.CRITICAL, logger="axonbus")

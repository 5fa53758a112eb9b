"""The conformance kit on the NATS transport (a shared nats-server with JetStream)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import nats
import pytest

from axonbus import Bus
from axonbus.testing import CHECKS, CheckSkipped


@pytest.fixture
async def bus_name(nats_service: str) -> AsyncIterator[str]:
    """A bus name of its own (so its subjects and JetStream stream are private to the test)."""
    name = f"conf{uuid.uuid4().hex[:10]}"
    yield name
    nc = await nats.connect(nats_service)
    try:
        await nc.jetstream().delete_stream(f"AXONBUS_{name}")
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_nats_conformance(check: str, nats_service: str, bus_name: str) -> None:
    try:
        await CHECKS[check](lambda: Bus(nats_service, name=bus_name))
    except CheckSkipped as skip:
        pytest.skip(str(skip))

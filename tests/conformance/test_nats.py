"""The conformance kit on the NATS transport (a shared nats-server with JetStream), in both wire
formats (compact, and ``wire=cloudevents``)."""

from __future__ import annotations

import pytest

from axonbus import Bus
from axonbus.testing import CHECKS, CheckSkipped
from tests.support.services import with_option


@pytest.fixture
def bus_name(nats_bus_name: str) -> str:
    """A bus name of its own (so its subjects and JetStream stream are private to the test)."""
    return nats_bus_name


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_nats_conformance(check: str, nats_service: str, bus_name: str) -> None:
    try:
        await CHECKS[check](lambda: Bus(nats_service, name=bus_name))
    except CheckSkipped as skip:
        pytest.skip(str(skip))


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_nats_conformance_cloudevents(check: str, nats_service: str, bus_name: str) -> None:
    url = with_option(nats_service, "wire", "cloudevents")
    try:
        await CHECKS[check](lambda: Bus(url, name=bus_name))
    except CheckSkipped as skip:
        pytest.skip(str(skip))

"""The conformance kit on ``redis://`` (the shared Redis; see tests/support/services.py), in
both wire formats (compact, and ``wire=cloudevents``)."""

from __future__ import annotations

import uuid

import pytest

from axonbus import Bus
from axonbus.testing import CHECKS
from tests.support.services import with_option


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_redis_conformance(name: str, redis_service: str) -> None:
    bus_name = f"conf{uuid.uuid4().hex[:8]}"  # both buses of a two-bus check share the name
    await CHECKS[name](lambda: Bus(redis_service, name=bus_name))


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_redis_conformance_cloudevents(name: str, redis_service: str) -> None:
    bus_name = f"conf{uuid.uuid4().hex[:8]}"
    url = with_option(redis_service, "wire", "cloudevents")
    await CHECKS[name](lambda: Bus(url, name=bus_name))

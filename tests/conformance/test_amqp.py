"""The conformance kit on the AMQP transport (the shared RabbitMQ, a virtual host of the run's),
in both wire formats (compact, and ``wire=cloudevents``)."""

from __future__ import annotations

import pytest

from axonbus import Bus
from axonbus.testing import CHECKS, CheckSkipped
from tests.support.services import with_option


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_amqp_conformance(check: str, amqp_service: str, amqp_bus_name: str) -> None:
    try:
        await CHECKS[check](lambda: Bus(amqp_service, name=amqp_bus_name))
    except CheckSkipped as skip:
        pytest.skip(str(skip))


@pytest.mark.parametrize("check", sorted(CHECKS))
async def test_amqp_conformance_cloudevents(
    check: str, amqp_service: str, amqp_bus_name: str
) -> None:
    url = with_option(amqp_service, "wire", "cloudevents")
    try:
        await CHECKS[check](lambda: Bus(url, name=amqp_bus_name))
    except CheckSkipped as skip:
        pytest.skip(str(skip))

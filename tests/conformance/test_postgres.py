"""The conformance kit on ``postgresql://`` (the shared Postgres; see tests/support/services.py)."""

from __future__ import annotations

import pytest

from axonbus import Bus
from axonbus.testing import CHECKS


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_postgres_conformance(
    name: str,
    postgres_service: str,
    postgres_bus_name: str,
) -> None:
    # both buses of a two-bus check share the name (and so the tables)
    await CHECKS[name](lambda: Bus(postgres_service, name=postgres_bus_name))

"""The conformance kit on ``sqlite://`` (a fresh file per check)."""

from __future__ import annotations

from pathlib import Path

import pytest

from axonbus import Bus
from axonbus.testing import CHECKS


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_sqlite_conformance(name: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"  # both buses of a two-bus check share the file
    await CHECKS[name](lambda: Bus(url, name="conformance"))

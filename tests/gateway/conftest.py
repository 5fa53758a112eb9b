from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from axonbus import Bus
from axonbus.gateway import TokenSet, create_app
from tests.gateway.helpers import TOKENS_CONFIG

# the `bus` fixture (memory://, started, history=100) comes from tests/conftest.py


@pytest.fixture
def tokens() -> TokenSet:
    return TokenSet.from_config(TOKENS_CONFIG)


@pytest.fixture
def make_app(bus: Bus) -> Callable[..., Any]:
    def make(**options: Any) -> Any:
        return create_app(bus, **options)

    return make

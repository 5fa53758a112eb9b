"""Every example runs, and says what it claims."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the events' annotations through it
    spec.loader.exec_module(module)
    return module


async def test_quickstart() -> None:
    lines = await _load("quickstart").main()
    assert "add -> 5" in lines
    assert any(line.startswith("contained: audit store is down") for line in lines)


async def test_backpressure() -> None:
    stats = await _load("backpressure").main()
    assert stats["archive"] == (500, 0)  # block: nothing lost
    delivered, dropped = stats["dashboard"]
    assert delivered + dropped == 500
    assert dropped > 0


MODIFIER_CHECKER = [
    line
    for n in range(10, 1, -1)
    for line in [f"checker: {n} passed the check, continue", f"modifier: {n} -> {n - 1}"]
] + ["checker: 1 failed the check, stopping"]

GROUP_CHAT = [
    "user: Write a two-line poem about a lighthouse, with an illustration.",
    "manager -> writer",
    "writer: The lighthouse stands upon the rock / and shines all night.",
    "manager -> editor",
    "editor: Revise: make the lines rhyme.",
    "manager -> writer",
    "writer: The lighthouse keeps its silver light / for ships that pass it in the night.",
    "manager -> editor",
    "editor: Good. Now it needs an illustration.",
    "manager -> illustrator",
    "illustrator: [a white tower, one beam over dark water; "
    "caption: 'The lighthouse keeps its silver light']",
    "manager -> editor",
    "editor: APPROVE",
    "manager: approved after 6 turns",
]

PIPELINE = [
    "concept_extractor: product: eco-friendly stainless steel water bottle; "
    "features: keeps drinks cold for 24 hours, fits every cup holder",
    "writer: Meet the eco-friendly stainless steel water bottle: "
    "it keeps drinks cold for 24 hours and fits every cup holder",
    "editor: 'stainless steel' -> 'stainless-steel', full stop, "
    "title 'Eco-Friendly Stainless-Steel Water Bottle'",
    "user: Eco-Friendly Stainless-Steel Water Bottle",
    "user: Meet the eco-friendly stainless-steel water bottle: "
    "it keeps drinks cold for 24 hours and fits every cup holder.",
]


async def test_runtime_modifier_checker() -> None:
    assert await _load("runtime_modifier_checker").main() == MODIFIER_CHECKER


async def test_runtime_group_chat() -> None:
    assert await _load("runtime_group_chat").main() == GROUP_CHAT


async def test_runtime_pipeline() -> None:
    assert await _load("runtime_pipeline").main() == PIPELINE


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(URL, bus name) on the shared broker named by the test's parameter (``"redis"`` or
    ``"nats"``); the bus's keys / JetStream stream are removed afterwards."""
    if request.param == "redis":
        request.getfixturevalue("redis_raw")  # deletes the bus's keys after the test
        return request.getfixturevalue("redis_service"), request.getfixturevalue("redis_bus_name")
    return request.getfixturevalue("nats_service"), request.getfixturevalue("nats_bus_name")


@pytest.mark.parametrize("broker", ["redis", "nats"], indirect=True)
async def test_runtime_modifier_checker_on_a_broker(broker: tuple[str, str]) -> None:
    url, name = broker
    assert await _load("runtime_modifier_checker").main(url, name=name) == MODIFIER_CHECKER


@pytest.mark.parametrize("broker", ["redis", "nats"], indirect=True)
async def test_runtime_group_chat_on_a_broker(broker: tuple[str, str]) -> None:
    url, name = broker
    assert await _load("runtime_group_chat").main(url, name=name) == GROUP_CHAT


@pytest.mark.parametrize("broker", ["redis", "nats"], indirect=True)
async def test_runtime_pipeline_on_a_broker(broker: tuple[str, str]) -> None:
    url, name = broker
    assert await _load("runtime_pipeline").main(url, name=name) == PIPELINE


def test_examples_run_as_scripts() -> None:
    for path in sorted(EXAMPLES.glob("*.py")):
        proc = subprocess.run(
            [sys.executable, str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, f"{path.name}: {proc.stderr}"
        assert proc.stdout.strip(), f"{path.name} printed nothing"

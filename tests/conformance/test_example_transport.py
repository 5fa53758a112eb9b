"""The example transport of the documentation passes the conformance kit.

``examples/hub_transport.py`` is written on the public contract only (``axonbus.transports``):
this is the proof that a transport can be written outside the package.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from axonbus import Bus
from axonbus.testing import CHECKS, CheckSkipped, check_transport

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "hub_transport.py"


def _load() -> ModuleType:
    module = sys.modules.get("hub_transport")
    if module is None:
        spec = importlib.util.spec_from_file_location("hub_transport", EXAMPLE)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["hub_transport"] = module
        spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_example_transport_conformance(name: str) -> None:
    _load()
    hub = f"hub://{uuid.uuid4().hex[:8]}"  # one broker per check, shared by its buses
    try:
        await CHECKS[name](lambda: Bus(hub))
    except CheckSkipped as skip:
        pytest.fail(f"the example connects buses, yet {name} was skipped: {skip}")


async def test_check_transport_passes_every_check() -> None:
    _load()
    hub = f"hub://{uuid.uuid4().hex[:8]}"
    report = await check_transport(lambda: Bus(hub))
    assert report == dict.fromkeys(CHECKS, "passed"), report


async def test_example_runs() -> None:
    lines = await _load().main()
    assert lines == ["second got hello from first", "2 + 3 = 5"], lines


def test_example_uses_only_public_names() -> None:
    tree = ast.parse(EXAMPLE.read_text())
    private = [
        f"line {node.lineno}: {node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
    imports = [
        f"line {node.lineno}: {node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module != "__future__"
        and any(part.startswith("_") for part in node.module.split("."))
    ]
    assert not private, private
    assert not imports, imports
    # short enough to read in one sitting: about 200 lines besides the blank ones
    assert len([line for line in EXAMPLE.read_text().splitlines() if line.strip()]) <= 200

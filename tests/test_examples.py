"""Every example runs, and says what it claims."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

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


def test_examples_run_as_scripts() -> None:
    for path in sorted(EXAMPLES.glob("*.py")):
        proc = subprocess.run(
            [sys.executable, str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, f"{path.name}: {proc.stderr}"
        assert proc.stdout.strip(), f"{path.name} printed nothing"

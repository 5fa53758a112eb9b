"""Generate the rewritten test directory and run it with pytest in a subprocess.

A subprocess keeps autogen's tests apart from this suite (their module names, their pytest
configuration) and gives one outcome per test, read from a JUnit XML report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .expected import FILES
from .rewrite import rewrite_imports
from .sdist import extract_tests

__all__ = ["Outcome", "generate", "run"]

HERE = Path(__file__).parent
RUN_TIMEOUT = 240.0

# autogen's tests mark their coroutines with @pytest.mark.asyncio themselves (strict mode);
# warnings are errors here as in the rest of the suite
PYTEST_INI = """\
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
timeout = 30
filterwarnings = error
"""


@dataclass(frozen=True)
class Outcome:
    """How one test ended: ``passed``, ``failed`` (errors included) or ``skipped``."""

    status: str
    message: str = ""
    details: str = ""


def generate(sdist: Path, into: Path) -> Path:
    """Extract autogen's test files into ``into`` with their imports rewritten."""
    for path in extract_tests(sdist, list(FILES), into):
        path.write_text(rewrite_imports(path.read_text(), path.name))
    (into / "pytest.ini").write_text(PYTEST_INI)
    return into


def run(directory: Path) -> tuple[dict[str, Outcome], str]:
    """Run the generated tests; each test's outcome by ``file::name``, and pytest's output."""
    report = directory / "report.xml"
    env = dict(os.environ)
    # autogen_test_utils (ours) must be importable; PYTHONPATH already points at src/ here
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    command = [
        sys.executable, "-m", "pytest", str(directory), "-c", str(directory / "pytest.ini"),
        "--rootdir", str(directory), "-p", "no:cacheprovider", "-q", "-rfEs",
        "--continue-on-collection-errors",
        f"--junitxml={report}", "-o", "junit_family=xunit2",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, check=False
    )
    output = done.stdout + done.stderr
    if not report.is_file():
        raise RuntimeError(f"pytest wrote no report (exit {done.returncode}):\n{output}")
    return _outcomes(report), output


def _outcomes(report: Path) -> dict[str, Outcome]:
    found: dict[str, Outcome] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").rpartition(".")[2]
        # a file that failed to import shows up as one case with an empty class name
        test_id = f"{module}.py::{case.get('name')}" if module else f"{case.get('name')}.py"
        outcome = Outcome("passed")
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = Outcome("failed", child.get("message", ""), child.text or "")
                break
            if child.tag == "skipped":
                outcome = Outcome("skipped", child.get("message", ""))
        found[test_id] = outcome
    return found

"""autogen-core 0.7.5's own runtime tests, run against ``axonbus.runtime``.

The source distribution is fetched from the package index at test time (pinned version and
sha256, cached outside the repository), its test files are extracted, only their
``autogen_core`` imports are rewritten (``autogen_suite/mapping.py``), and pytest runs them in
a subprocess with our own ``autogen_test_utils``. Every test listed in
``autogen_suite/expected.py`` must pass, except the deliberate differences, which must fail for
the stated reason (docs/actors.md lists them with the reasons). Without network
the suite is skipped, and fails under ``CI``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.runtime.autogen_suite.expected import DIFFERENCES, TESTS
from tests.runtime.autogen_suite.rewrite import UnmappedImport, rewrite_imports
from tests.runtime.autogen_suite.runner import Outcome, generate, run
from tests.runtime.autogen_suite.sdist import FetchError, fetch
from tests.support.services import skip_or_fail

Results = tuple[dict[str, Outcome], str]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    try:
        sdist = fetch()
    except FetchError as exc:
        skip_or_fail(f"cannot fetch autogen-core's source distribution: {exc}")
    return run(generate(sdist, tmp_path_factory.mktemp("autogen_core_tests")))


@pytest.mark.slow
@pytest.mark.timeout(300)  # the first test pays for the download and the subprocess run
def test_the_expected_tests_ran(results: Results) -> None:
    outcomes, output = results
    if sorted(outcomes) != sorted(TESTS):
        missing, extra = set(TESTS) - set(outcomes), set(outcomes) - set(TESTS)
        pytest.fail(f"missing {sorted(missing)}, unexpected {sorted(extra)}:\n{output}")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("test_id", TESTS)
def test_autogen(test_id: str, results: Results) -> None:
    outcomes, output = results
    outcome = outcomes.get(test_id)
    if outcome is None:
        pytest.fail(f"{test_id} did not run:\n{output}", pytrace=False)
    if test_id in DIFFERENCES:
        expected_text, why = DIFFERENCES[test_id]
        if outcome.status == "passed":
            pytest.fail(f"a deliberate difference now passes ({why})", pytrace=False)
        if expected_text not in outcome.message + outcome.details:
            pytest.fail(
                f"{test_id} fails for another reason than the deliberate one ({why}):\n"
                f"{outcome.details}",
                pytrace=False,
            )
    elif outcome.status != "passed":
        pytest.fail(f"{test_id} {outcome.status}:\n{outcome.details}", pytrace=False)


def test_only_autogen_imports_are_rewritten() -> None:
    source = (
        "import asyncio\n"
        "from autogen_core import (\n"
        "    AgentId,\n"
        "    SingleThreadedAgentRuntime,\n"
        ")\n"
        "from autogen_core.exceptions import CantHandleException as CHE\n"
        "import autogen_core as ac\n"
        "x = 'from autogen_core import AgentId'\n"
    )
    assert rewrite_imports(source) == (
        "import asyncio\n"
        "from axonbus.runtime import AgentId, AgentRuntime as SingleThreadedAgentRuntime\n"
        "\n\n\n"
        "from axonbus.runtime import CantHandle as CHE\n"
        "import axonbus.runtime as ac\n"
        "x = 'from autogen_core import AgentId'\n"
    )


def test_an_unmapped_autogen_module_fails_the_rewrite() -> None:
    with pytest.raises(UnmappedImport, match=r"autogen_core\._agent_proxy"):
        rewrite_imports("from autogen_core._agent_proxy import AgentProxy\n", "t.py")


def test_the_test_helpers_are_not_collected_here() -> None:
    # the helpers package must not look like tests to this suite's collection
    helpers = Path(__file__).parent / "autogen_suite" / "autogen_test_utils"
    assert not [p for p in helpers.iterdir() if p.name.startswith("test_")]


def test_no_index_is_a_fetch_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # what the module fixture turns into a skip (or a failure under CI)
    monkeypatch.setenv("AXONBUS_TEST_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    with pytest.raises(FetchError, match=r"pip download autogen-core==0\.7\.5 failed"):
        fetch()
    assert list(tmp_path.iterdir()) == []  # nothing half-fetched left in the cache

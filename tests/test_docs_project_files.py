"""The files a project is expected to have: a license that ships in the wheel, a changelog per
version, a contributing guide that names what the tests need, and README links that resolve."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_the_mit_text_pyproject_declares_and_ships_in_the_wheel() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} the axonbus authors$", text, re.M)
    assert "Permission is hereby granted, free of charge" in text
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    # hatchling puts license-files into the wheel's .dist-info/licenses/
    assert "LICENSE" in project["license-files"]


def test_changelog_has_the_current_version_and_unreleased_changes() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    version = _pyproject()["project"]["version"]
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "Unreleased"
    assert version in headings


def test_contributing_names_every_service_variable_the_tests_read() -> None:
    services = (ROOT / "tests" / "support" / "services.py").read_text(encoding="utf-8")
    variables = set(re.findall(r'environ\.get\("(AXONBUS_TEST_\w+)"', services))
    assert variables >= {"AXONBUS_TEST_REDIS_URL", "AXONBUS_TEST_NATS_URL"}
    guide = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    missing = [name for name in sorted(variables) if name not in guide]
    assert not missing, f"CONTRIBUTING.md does not say how to point tests at {missing}"


def test_readme_links_point_at_files_that_exist() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert targets, "the README links into the docs"
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, f"README.md links to missing files: {missing}"

"""Every Python block in README.md and docs/ runs as written, and the pages say what things are.

A ```` ```python ```` block is run as a program of its own (a fresh interpreter, a temporary
working directory, so a ``sqlite:///agent.db`` lands there) and must exit with status 0. The
line just above a block may hold one marker:

- ``<!-- docs-test: needs redis -->`` (or ``nats``, ``postgres``): the block runs against that
  service, skipped when it is down on a developer's machine and failed in CI, like every other
  test that needs it. The service's default URL in the block is replaced by the one the tests
  use (``AXONBUS_TEST_REDIS_URL`` and the like).
- ``<!-- docs-test: skip: why -->``: the block is not run. Keep these few, and say why.

A block made only of ``--8<-- "examples/..."`` lines is included from a file in ``examples/``,
which tests/test_examples.py runs; here it is only checked to name such a file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.services import nats_url, postgres_url, redis_url, require

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```\s*$", re.M | re.S)
_MARKER = re.compile(r"<!-- docs-test: (needs (redis|nats|postgres)|skip: .+?) -->")
_SNIPPET = re.compile(r'^--8<-- "([^"]+)"$')

# the URL each service has in the pages -> where the tests find it
_SERVICES = {
    "redis": ("redis://127.0.0.1:6379/0", redis_url),
    "nats": ("nats://127.0.0.1:4222", nats_url),
    "postgres": ("postgresql://postgres@127.0.0.1:5432/test", postgres_url),
}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    code: str
    marker: str | None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _blocks() -> list[Block]:
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = _MARKER.fullmatch(before.strip())
            blocks.append(Block(page, line, match.group(1), marker.group(1) if marker else None))
    return blocks


BLOCKS = _blocks()


def test_the_pages_have_python_blocks() -> None:
    # the collection itself is tested: a changed fence syntax must not make every test vanish
    assert len(BLOCKS) >= 10
    assert any(block.page.name == "README.md" for block in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    lines = [line for line in block.code.splitlines() if line.strip()]
    included = [_SNIPPET.match(line) for line in lines]
    if all(included):
        for match in included:
            assert match is not None
            path = ROOT / match.group(1)
            assert path.parent == ROOT / "examples", f"{block.id}: include from examples/ only"
            assert path.is_file(), f"{block.id}: {path} does not exist"
        return
    assert not any(included), f"{block.id}: mixes included files and code"
    code = block.code
    if block.marker is not None and block.marker.startswith("skip: "):
        pytest.skip(block.marker)
    if block.marker is not None:
        service = block.marker.removeprefix("needs ")
        written, url_of = _SERVICES[service]
        url = url_of()
        require(service, url)
        assert written in code, f"{block.id}: the block does not use {written}"
        code = code.replace(written, url)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=25,
        check=False,
    )
    assert proc.returncode == 0, f"{block.id} failed:\n{proc.stderr[-3000:]}"


def test_readme_stays_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < 250, f"README.md has {lines} lines: move the detail into docs/"


_PLANNING = re.compile(r"\bseed \d|\bLena v\d|\bissue #\d", re.I)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_pages_say_what_things_are(page: Path) -> None:
    found = _PLANNING.findall(page.read_text(encoding="utf-8"))
    assert not found, f"{page.relative_to(ROOT)} uses internal planning words: {found}"


_CONFIG_FENCE = re.compile(r"^```(toml|yaml)\n(.*?)^```\s*$", re.M | re.S)
CONFIG_PAGE = ROOT / "docs" / "configuration.md"
CONFIG_BLOCKS = _CONFIG_FENCE.findall(CONFIG_PAGE.read_text(encoding="utf-8"))


def test_the_configuration_page_has_both_formats() -> None:
    assert {kind for kind, _ in CONFIG_BLOCKS} == {"toml", "yaml"}


@pytest.mark.parametrize(("kind", "text"), CONFIG_BLOCKS, ids=[k for k, _ in CONFIG_BLOCKS])
def test_configuration_block_is_a_valid_file(
    kind: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from axonbus import load_config

    # the variables the examples read their secrets from
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:documentation-example")
    monkeypatch.setenv("REDIS_PASSWORD", "documentation-example")
    path = tmp_path / f"axonbus.{kind}"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)  # ConfigError names every problem
    assert config.bus.url

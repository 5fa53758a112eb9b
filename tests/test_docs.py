"""Every Python block in README.md and docs/ runs as written, and the pages say what things are.

A ```` ```python ```` block is run as a program of its own (a fresh interpreter, a temporary
working directory, so a ``sqlite:///agent.db`` lands there) and must exit with status 0. The
line just above a block may hold one marker:

- ``<!-- docs-test: needs redis -->`` (or ``nats``, ``postgres``, ``amqp``): the block runs
  against that service, skipped when it is down on a developer's machine and failed in CI, like
  every other test that needs it. The block must open
  ``Bus("<the service's default URL>", name="...")``: the URL is replaced by the one the tests
  use (``AXONBUS_TEST_REDIS_URL`` and the like) and the name by a fresh one whose keys, stream
  or tables are removed afterwards, so runs sharing the service never meet.
- ``<!-- docs-test: skip: why -->``: the block is not run. Keep these few, and say why.

A block made only of ``--8<-- "examples/..."`` lines is included from a file in ``examples/``,
which tests/test_examples.py runs; here it is only checked to name such a file.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import amqp_url, nats_url, postgres_url, redis_url, require

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```\s*$", re.M | re.S)
_MARKER = re.compile(r"<!-- docs-test: (needs (redis|nats|postgres|amqp)|skip: .+?) -->")
_SNIPPET = re.compile(r'^--8<-- "([^"]+)"$')

# the URL of a service as a fixture gave it (RabbitMQ: the run's own virtual host)
_IN_USE: dict[str, str] = {}

# the URL each service has in the pages -> where the tests find it, and the fixtures that
# give a bus name of its own and remove what it left on the service
_SERVICES = {
    "redis": ("redis://127.0.0.1:6379/0", redis_url, ["redis_raw", "redis_bus_name"]),
    "nats": ("nats://127.0.0.1:4222", nats_url, ["nats_bus_name"]),
    "postgres": (
        "postgresql://postgres@127.0.0.1:5432/test",
        postgres_url,
        ["postgres_bus_name"],
    ),
    "amqp": (
        "amqp://guest:guest@127.0.0.1:5672/",
        lambda: _IN_USE.get("amqp", amqp_url()),
        ["amqp_service", "amqp_bus_name"],
    ),
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


def _service(block: Block) -> str | None:
    if block.marker is None or not block.marker.startswith("needs "):
        return None
    return block.marker.removeprefix("needs ")


@pytest.fixture
def bus_name(request: pytest.FixtureRequest) -> str | None:
    """For a block that needs a service: a bus name of its own there, whose keys, stream or
    tables are removed after the test (the service fixtures do it); else None."""
    service = _service(request.node.callspec.params["block"])
    if service is None:
        return None
    _, url_of, fixtures = _SERVICES[service]
    require(service, url_of())
    names = [request.getfixturevalue(fixture) for fixture in fixtures]
    if fixtures[0] == "amqp_service":
        _IN_USE["amqp"] = str(names[0])
    return str(names[-1])


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
async def test_python_block_runs(block: Block, bus_name: str | None, tmp_path: Path) -> None:
    lines = [line for line in block.code.splitlines() if line.strip()]
    included = [_SNIPPET.match(line) for line in lines]
    if all(included):
        for match in included:
            assert match is not None
            path = ROOT / match.group(1)
            assert ROOT / "examples" in path.parents, f"{block.id}: include from examples/ only"
            assert path.is_file(), f"{block.id}: {path} does not exist"
        return
    assert not any(included), f"{block.id}: mixes included files and code"
    code = block.code
    if block.marker is not None and block.marker.startswith("skip: "):
        pytest.skip(block.marker)
    service = _service(block)
    if service is not None:
        assert bus_name is not None
        written, url_of, _ = _SERVICES[service]
        bus = re.compile(r'(Bus\("' + re.escape(written) + r'",\s*name=")[^"]+(")')
        assert bus.search(code), f'{block.id}: open Bus("{written}", name="...") in the block'
        code = bus.sub(lambda m: m.group(1) + bus_name + m.group(2), code)
        code = code.replace(written, url_of())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=25)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"{block.id} failed:\n{stderr.decode()[-3000:]}"


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

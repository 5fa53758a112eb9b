"""AsyncAPI 3.0 documents (axonbus.asyncapi, ``axonbus asyncapi``), validated by the official
parser: @asyncapi/parser, pinned in tests/interop/asyncapi/package-lock.json and installed
with ``npm ci`` (skipped without node and npm, a failure under CI)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from axonbus import Bus, Event
from axonbus.asyncapi import asyncapi_document, bus_server, system_events
from axonbus.cli import main
from tests.support.services import skip_or_fail

PARSER_DIR = Path(__file__).parent / "interop" / "asyncapi"
#: the first test using the parser runs `npm ci` (minutes on a cold cache, a loaded machine)
PARSER_TIMEOUT = pytest.mark.timeout(600)


class Order(Event, topic="shop.{region}.order", name="tests.asyncapi.Order"):
    """An order placed in a region."""

    region: str
    sku: str
    qty: int = 1


@pytest.fixture(scope="session")
def asyncapi_parser() -> Path:
    """The validator script, its pinned @asyncapi/parser installed by ``npm ci``."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        skip_or_fail("node and npm are needed to run the official AsyncAPI parser")
    if not (PARSER_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=PARSER_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            skip_or_fail(f"npm ci failed: {done.stderr[-2000:]}")
    return PARSER_DIR / "validate.mjs"


def validate(script: Path, docs: dict[str, dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    """The parser's verdict on each document, by name (one node run for all)."""
    files = []
    for name, doc in docs.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        files.append(str(path))
    done = subprocess.run(
        ["node", str(script), *files],
        cwd=PARSER_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    verdicts = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(verdicts) == len(files), done.stderr
    return {Path(v["file"]).stem: v for v in verdicts}


@PARSER_TIMEOUT
async def test_the_official_parser_accepts_every_kind_of_document(
    asyncapi_parser: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with Bus("memory://") as bus:
        bus.subscribe("shop.>", lambda e: None)
        bus.subscribe("agent.*.token", lambda e: None)
        live = asyncapi_document(bus, event_types=[*system_events(), Order])
    docs = {
        "catalogue": asyncapi_document(event_types=system_events()),
        "live": live,
        "cloudevents": asyncapi_document(
            event_types=[Order], url="nats://u:p@n1:4222", cloudevents=True
        ),
        "empty": asyncapi_document(event_types=[], url="sqlite:///events.db"),
    }
    assert main(["asyncapi", "--app", f"{__name__}:make_bus"]) == 0
    docs["cli"] = json.loads(capsys.readouterr().out)
    verdicts = validate(asyncapi_parser, docs, tmp_path)
    for name, verdict in verdicts.items():
        assert verdict["errors"] == [], name
    assert verdicts["live"]["channels"] == len(live["channels"])


@PARSER_TIMEOUT
def test_the_parser_run_fails_on_an_invalid_document(asyncapi_parser: Path, tmp_path: Path) -> None:
    bad = asyncapi_document(event_types=[Order])
    del bad["info"]["version"]
    verdict = validate(asyncapi_parser, {"bad": bad}, tmp_path)["bad"]
    assert any("version" in e for e in verdict["errors"])


def make_bus() -> Bus:
    bus = Bus("redis://app:s3cret@db.internal:6379/2?password=x")
    bus.subscribe("shop.>", lambda e: None)
    return bus


def test_channels_messages_and_server() -> None:
    doc = asyncapi_document(make_bus(), event_types=[Order])
    channel = doc["channels"]["tests_asyncapi_Order"]
    assert channel["address"] == "shop.{region}.order"
    assert set(channel["parameters"]) == {"region"}
    message = doc["components"]["messages"]["tests_asyncapi_Order"]
    assert message["name"] == "tests.asyncapi.Order"
    assert message["summary"] == "An order placed in a region."
    schema = doc["components"]["schemas"]["Order"]
    assert set(schema["required"]) == {"region", "sku"}
    assert schema["properties"]["qty"]["type"] == "integer"
    subscription = doc["channels"]["subscription_shop__"]
    assert subscription["address"] == "shop.>"
    assert doc["operations"]["send_tests_asyncapi_Order"]["action"] == "send"
    assert doc["servers"]["bus"] == {
        "host": "db.internal:6379",
        "protocol": "redis",
        "pathname": "/2",
    }
    assert "s3cret" not in json.dumps(doc)


def test_cloudevents_trait_only_when_that_mode_is_on() -> None:
    plain = asyncapi_document(event_types=[Order])
    assert "messageTraits" not in plain["components"]
    ce = asyncapi_document(event_types=[Order], cloudevents=True)
    trait = ce["components"]["messageTraits"]["cloudevents"]
    assert trait["contentType"] == "application/cloudevents+json"
    assert "ce-type" in trait["headers"]["properties"]
    assert ce["components"]["messages"]["tests_asyncapi_Order"]["traits"]


def test_same_class_name_in_two_modules_keeps_both_schemas() -> None:
    from axonbus.agent import Error as AgentError

    class Error(Event, topic="tests.asyncapi.error", name="tests.asyncapi.Error"):
        reason: str

    doc = asyncapi_document(event_types=[AgentError, Error])
    refs = {m["payload"]["$ref"] for m in doc["components"]["messages"].values()}
    assert len(refs) == 2
    names = {r.rsplit("/", 1)[1] for r in refs}
    assert names <= set(doc["components"]["schemas"])


def test_server_of_urls_without_host() -> None:
    assert bus_server("memory://")["host"] == "localhost"
    assert bus_server("sqlite:///var/events.db") == {
        "host": "localhost",
        "protocol": "sqlite",
        "pathname": "/var/events.db",
        "description": "in-process or file-backed: no network host",
    }


def test_cli_reads_a_configuration_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "axonbus.toml"
    config.write_text('[bus]\nurl = "redis://u:secret-pw@cache:6380/0"\nname = "shop"\n')
    out = tmp_path / "asyncapi.json"
    assert main(["asyncapi", "--app", str(config), "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["info"]["title"] == "shop events"
    assert doc["servers"]["bus"]["host"] == "cache:6380"
    assert "secret-pw" not in out.read_text()


def test_cli_starts_a_runtime_for_its_subscriptions(capsys: pytest.CaptureFixture[str]) -> None:
    module = type(sys)("asyncapi_app_for_test")
    from axonbus.runtime import AgentRuntime

    bus = Bus()
    runtime = AgentRuntime(bus)
    bus.subscribe("jobs.*.done", lambda e: None)
    module.runtime = runtime  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        assert main(["asyncapi", "--app", f"{module.__name__}:runtime", "--start"]) == 0
    finally:
        del sys.modules[module.__name__]
    doc = json.loads(capsys.readouterr().out)
    assert "jobs.*.done" in {c["address"] for c in doc["channels"].values()}
    assert bus.state == "closed"


def test_cli_refuses_what_is_not_an_app(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asyncapi", "--app", "json:decoder"]) == 2
    assert "expected a Bus or an AgentRuntime" in capsys.readouterr().err
    assert main(["asyncapi", "--app", "no_such_module_here:bus"]) == 2
    assert "no module named" in capsys.readouterr().err

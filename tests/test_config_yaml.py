"""``axonbus.yaml``: the settings of ``axonbus.toml`` as YAML, read with ``yaml.safe_load``;
and, for both formats, every problem of a file reported at once with its dotted key."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from axonbus import Bus, ConfigError, load_config
from tests.test_config import ENV, EXAMPLE, _write, env  # noqa: F401  (env: a fixture)

pytest.importorskip("yaml")

EXAMPLE_YAML = """\
bus:
  url: sqlite:///${DATA_DIR:-.}/events.db
  name: lena
  history: 100
  max_message_bytes: 262144
  on_unavailable: log

retention:
  max_age: 7d
  max_events: 1_000_000
  policy: keep

channels:
  - type: telegram
    token: ${TELEGRAM_BOT_TOKEN}
    offset_file: state/telegram.offset
    poll_timeout: 25s
  - type: slack
    bot_token: ${SLACK_BOT_TOKEN}
    signing_secret: ${SLACK_SIGNING_SECRET}
  - type: console
    user_id: operator
  - type: webhook
    url: https://crm.example.com/hook
    channel_type: crm
    secret: ${CRM_SECRET}
  - type: websocket
    channel_type: web

gateway:
  host: 127.0.0.1
  port: 8765
  max_body: 65536
  tokens:
    - name: ui
      token: ${UI_TOKEN}
      publish: [agent.*.user_input]
      subscribe: [agent.>]
      rate: 20

observability:
  json_logs: true
  log_level: warning
"""


def _dump(config: Any) -> Any:
    dump = config.model_dump()
    for channel in dump["channels"]:  # SecretStr compares by value only through the getter
        for key, value in channel.items():
            if hasattr(value, "get_secret_value"):
                channel[key] = value.get_secret_value()
    for token in dump["gateway"]["tokens"] or ():
        token["token"] = token["token"].get_secret_value()
    return dump


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_the_yaml_example_is_the_toml_example(tmp_path: Path, suffix: str) -> None:
    from_toml = load_config(_write(tmp_path / "axonbus.toml", EXAMPLE))
    from_yaml = load_config(_write(tmp_path / f"axonbus{suffix}", EXAMPLE_YAML))
    assert _dump(from_yaml) == _dump(from_toml)
    assert from_yaml.source == (tmp_path / f"axonbus{suffix}").resolve()
    assert from_yaml.bus_url() == from_toml.bus_url()
    tokens = from_yaml.make_tokens()
    assert tokens is not None
    assert tokens.authenticate(ENV["UI_TOKEN"]) is not None


@pytest.mark.parametrize("name", ["axonbus.yaml", "axonbus.yml"])
async def test_found_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    db = tmp_path / "events.db"
    _write(tmp_path / name, f"bus:\n  url: sqlite:///{db}\n  name: from-yaml\n")
    monkeypatch.chdir(tmp_path)
    assert load_config().bus.name == "from-yaml"
    bus = Bus.from_config()
    assert bus.name == "from-yaml"
    async with bus:
        await bus.publish("a.b", 1)
    assert db.exists()


def test_two_configuration_files_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "axonbus.toml", '[bus]\nname = "toml"\n')
    _write(tmp_path / "axonbus.yaml", "bus:\n  name: yaml\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"both axonbus\.toml and axonbus\.yaml exist"):
        load_config()


def test_an_empty_yaml_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path / "axonbus.yaml", "# nothing yet\n")).bus.url == "memory://"


# -- every problem, with its dotted key, in both formats ----------------------------------------

MANY_TOML = """\
[bus]
url = "kafka://broker"
history = -1
codec = "xml"
name = "${UNSET_NAME}"

[retention]
max_age = "soon"

[[channels]]
type = "telegram"

[[channels]]
type = "slack"
bot_token = "${UNSET_SLACK}"
signing_secret = "x"
colour = "blue"

[gateway]
port = 70000
"""

MANY_YAML = """\
bus:
  url: kafka://broker
  history: -1
  codec: xml
  name: ${UNSET_NAME}
retention:
  max_age: soon
channels:
  - type: telegram
  - type: slack
    bot_token: ${UNSET_SLACK}
    signing_secret: x
    colour: blue
gateway:
  port: 70000
"""

MANY_KEYS = {
    "bus.url",  # a check that spans keys, reported with the rest
    "bus.history",
    "bus.codec",
    "bus.name",  # unset variable
    "retention.max_age",
    "channels[0].token",
    "channels[1].bot_token",  # unset variable
    "channels[1].colour",
    "gateway.port",
}


@pytest.mark.parametrize(
    ("name", "text"),
    [("axonbus.toml", MANY_TOML), ("axonbus.yaml", MANY_YAML)],
    ids=["toml", "yaml"],
)
def test_every_problem_is_reported_with_its_dotted_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str
) -> None:
    monkeypatch.delenv("UNSET_NAME", raising=False)
    monkeypatch.delenv("UNSET_SLACK", raising=False)
    path = _write(tmp_path / name, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert {p[0] for p in error.problems} == MANY_KEYS
    lines = str(error).splitlines()
    assert lines[0] == f"{path}: {len(MANY_KEYS)} problems:"
    for key in MANY_KEYS:
        assert any(line.strip().startswith(f"{key}: ") for line in lines[1:]), key
    assert "environment variable UNSET_NAME is not set" in str(error)
    assert "environment variable UNSET_SLACK is not set" in str(error)
    assert "'kafka://broker' is not a bus URL" in str(error)


def test_a_cross_key_problem_is_reported_beside_a_value_problem(tmp_path: Path) -> None:
    text = "bus:\n  url: memory://\n  codec: xml\nretention:\n  max_events: 5\n"
    error = _error(tmp_path, "axonbus.yaml", text)
    assert {p[0] for p in error.problems} == {"bus.codec", "retention.max_events"}


def _error(tmp_path: Path, name: str, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path / name, text))
    return info.value


# -- YAML's own mistakes -------------------------------------------------------------------------


def test_invalid_yaml_names_the_line_without_quoting_it(tmp_path: Path) -> None:
    error = _error(tmp_path, "axonbus.yaml", "bus:\n  url: redis://:hunter2@db\n   name: [x\n")
    message = str(error)
    assert "not valid YAML at line 3" in message
    assert "hunter2" not in message


def test_yaml_python_tags_are_never_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f'bus:\n  name: !!python/object/apply:os.system ["touch {marker}"]\n'
    error = _error(tmp_path, "axonbus.yaml", text)
    assert "not valid YAML at line 2" in str(error)
    assert "python/object/apply" in str(error)
    assert not marker.exists()


def test_a_key_yaml_reads_as_a_boolean_is_named(tmp_path: Path) -> None:
    error = _error(tmp_path, "axonbus.yaml", "observability:\n  on: true\n  yes: 1\n")
    assert {p[0] for p in error.problems} == {"observability.True"}
    assert "a bool key" in str(error)


def test_a_yaml_list_at_the_top_is_refused(tmp_path: Path) -> None:
    error = _error(tmp_path, "axonbus.yaml", "- bus\n- url\n")
    assert "a YAML list" in str(error)
    assert "a mapping of settings" in str(error)


def test_without_pyyaml_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    error = _error(tmp_path, "axonbus.yaml", "bus:\n  name: x\n")
    assert "reading YAML needs PyYAML" in str(error)
    assert "pip install 'axonbus[yaml]'" in str(error)


def test_a_yaml_password_never_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "s3cretPW")
    text = "bus:\n  url: kafka://app:${REDIS_PASSWORD}@db:6379/0?password=${REDIS_PASSWORD}\n"
    error = _error(tmp_path, "axonbus.yaml", text)
    assert "is not a bus URL" in str(error)
    assert "s3cretPW" not in str(error)
    _write(tmp_path / "ok.yaml", text.replace("kafka", "redis"))
    config = load_config(tmp_path / "ok.yaml")
    assert "s3cretPW" not in repr(config)
    assert "s3cretPW" in config.bus.url


def test_serve_reads_a_yaml_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("starlette")
    from axonbus.cli import main

    path = _write(tmp_path / "axonbus.yaml", "bus:\n  codec: xml\ngateway:\n  port: -1\n")
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bus.codec: got 'xml'" in err
    assert "gateway.port: " in err

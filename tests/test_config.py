"""Configuration files: axonbus.toml and [tool.axonbus], Bus.from_config, axonbus serve --config."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from axonbus import AxonbusError, Bus, Config, ConfigError, load_config
from axonbus.channels import (
    Channel,
    ChannelReply,
    ConsoleChannel,
    FileOffsetStore,
    MemoryChannel,
    SlackChannel,
    TelegramChannel,
)
from axonbus.cli import main
from axonbus.gateway import WebhookChannel, WebSocketChannel
from tests.channels.fake_telegram import FakeTelegram
from tests.support.brokers import free_port

EXAMPLE = """\
[bus]
url = "sqlite:///${DATA_DIR:-.}/events.db"
name = "lena"
history = 100
max_message_bytes = 262144
on_unavailable = "log"

[retention]
max_age = "7d"
max_events = 1_000_000
policy = "keep"

[[channels]]
type = "telegram"
token = "${TELEGRAM_BOT_TOKEN}"
offset_file = "state/telegram.offset"
poll_timeout = "25s"

[[channels]]
type = "slack"
bot_token = "${SLACK_BOT_TOKEN}"
signing_secret = "${SLACK_SIGNING_SECRET}"

[[channels]]
type = "console"
user_id = "operator"

[[channels]]
type = "webhook"
url = "https://crm.example.com/hook"
channel_type = "crm"
secret = "${CRM_SECRET}"

[[channels]]
type = "websocket"
channel_type = "web"

[gateway]
host = "127.0.0.1"
port = 8765
max_body = 65536

[[gateway.tokens]]
name = "ui"
token = "${UI_TOKEN}"
publish = ["agent.*.user_input"]
subscribe = ["agent.>"]
rate = 20

[observability]
json_logs = true
log_level = "warning"
"""

ENV = {
    "TELEGRAM_BOT_TOKEN": "123:telegram-secret",
    "SLACK_BOT_TOKEN": "xoxb-slack-secret",
    "SLACK_SIGNING_SECRET": "slack-signing-secret",
    "CRM_SECRET": "crm-secret",
    "UI_TOKEN": "ui-token-secret-7Hq2Lp9Zx4Wm",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATA_DIR", raising=False)
    return ENV


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _error(tmp_path: Path, text: str) -> ConfigError:
    path = _write(tmp_path / "axonbus.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


# -- valid files -------------------------------------------------------------------------------


async def test_the_example_file(tmp_path: Path, env: dict[str, str]) -> None:
    path = _write(tmp_path / "axonbus.toml", EXAMPLE)
    here = path.resolve().parent
    config = load_config(path)
    assert config.source == path.resolve()
    assert config.bus.name == "lena"
    assert config.retention.max_age == 7 * 86400
    assert config.bus_url() == (
        "sqlite:///./events.db?max_age=604800&max_events=1000000&retention=keep"
    )
    assert [c.type for c in config.channels] == [
        "telegram", "slack", "console", "webhook", "websocket",
    ]  # fmt: skip
    for secret in env.values():  # secrets are SecretStr: never in a repr
        assert secret not in repr(config)
        assert secret not in str(config.model_dump())

    bus = config.make_bus()
    assert (bus.name, bus.max_message_bytes) == ("lena", 262144)
    assert bus._history is not None
    assert bus._history.maxlen == 100
    assert bus.on_unavailable == "log"
    channels = config.make_channels(bus)
    telegram, slack, console, webhook, web = channels
    assert isinstance(telegram, TelegramChannel)
    assert telegram.poll_timeout == 25
    assert isinstance(telegram.offset_store, FileOffsetStore)
    assert telegram.offset_store.path == here / "state" / "telegram.offset"
    assert isinstance(slack, SlackChannel)
    assert isinstance(console, ConsoleChannel)
    assert console.user_id == "operator"
    assert isinstance(webhook, WebhookChannel)
    assert (webhook.channel_type, webhook.signed) == ("crm", True)
    assert isinstance(web, WebSocketChannel)
    assert web.channel_type == "web"
    tokens = config.make_tokens()
    assert tokens is not None
    ui = tokens.authenticate("ui-token-secret-7Hq2Lp9Zx4Wm")
    assert ui is not None
    assert ui.can_publish("agent.s1.user_input")
    assert ui.rate == 20


def test_pyproject_tool_axonbus(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "pyproject.toml",
        """\
        [project]
        name = "my-agent"

        [tool.axonbus.bus]
        url = "redis://localhost:6379/0"

        [tool.axonbus.retention]
        max_age = 3600
        max_events = 5000
        """,
    )
    config = load_config(path)
    assert config.bus_url() == "redis://localhost:6379/0?max_age=3600&maxlen=5000"
    assert config.where == f"{path} [tool.axonbus]"


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config() == Config()  # nothing found: the defaults
    assert load_config().bus.url == "memory://"
    _write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    assert load_config() == Config()  # a pyproject without [tool.axonbus] is not a config
    _write(tmp_path / "pyproject.toml", '[tool.axonbus.bus]\nname = "from-pyproject"\n')
    assert load_config().bus.name == "from-pyproject"
    _write(tmp_path / "axonbus.toml", '[bus]\nname = "from-axonbus-toml"\n')
    assert load_config().bus.name == "from-axonbus-toml"


def test_a_pyproject_without_the_table_given_explicitly(tmp_path: Path) -> None:
    path = _write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"tool\.axonbus: no such table"):
        load_config(path)


def test_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUS_NAME", "from-env")
    monkeypatch.setenv("HISTORY", "7")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    path = _write(
        tmp_path / "axonbus.toml",
        """\
        [bus]
        name = "${BUS_NAME}"
        history = "${HISTORY}"
        url = "${UNSET_ONE:-memory://}"

        [[channels]]
        type = "console"
        user_id = "$${NOT_A_VAR} and ${BUS_NAME}-2"
        """,
    )
    config = load_config(path)
    assert config.bus.name == "from-env"
    assert config.bus.history == 7
    assert config.bus.url == "memory://"
    assert config.channels[0].user_id == "${NOT_A_VAR} and from-env-2"  # type: ignore[union-attr]


def test_an_unset_variable_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    error = _error(
        tmp_path,
        """\
        [[channels]]
        type = "console"

        [[channels]]
        type = "telegram"
        token = "${TELEGRAM_BOT_TOKEN}"
        """,
    )
    assert error.key == "channels[1].token"
    assert "environment variable TELEGRAM_BOT_TOKEN is not set" in str(error)
    assert "${TELEGRAM_BOT_TOKEN:-default}" in error.expected


# -- invalid files -----------------------------------------------------------------------------

INVALID = [
    # (file, dotted key, words of the expected form)
    ('[bus]\nurl = "kafka://x"\n', "bus.url", "a URL whose scheme is one of memory://"),
    ('[bus]\nurl = 42\n', "bus.url", "a bus URL like 'memory://'"),
    ("[bus]\nhistory = -1\n", "bus.history", "an int >= 0"),
    ('[bus]\nhistory = "many"\n', "bus.history", "an int >= 0"),
    ('[bus]\ncodec = "xml"\n', "bus.codec", "'json' or 'msgpack'"),
    ("[bus]\nmax_message_bytes = 0\n", "bus.max_message_bytes", "a positive number of bytes"),
    ('[bus]\non_unavailable = "ignore"\n', "bus.on_unavailable", "'raise' or 'log'"),
    ("[bus]\nurll = 1\n", "bus.urll", "one of: url, name, codec"),
    ("bus = 3\n", "bus", "a [bus] table"),
    ("[buss]\n", "buss", "one of: bus, retention, channels, gateway, observability"),
    ('[retention]\nmax_age = "a week"\n', "retention.max_age", "a duration like '30s'"),
    ("[retention]\nmax_age = -5\n", "retention.max_age", "seconds (a number >= 0)"),
    ("[retention]\nmax_events = 0\n", "retention.max_events", "a positive number of events"),
    ('[retention]\npolicy = "forget"\n', "retention.policy", "'keep' (never drop"),
    ("[retention]\nmax_age = 60\n", "retention.max_age", "no [retention] on memory://"),
    ('[bus]\nurl = "redis://h"\n[retention]\npolicy = "drop"\n', "retention.policy",
     "only max_age, max_events for redis://"),
    ('[bus]\nurl = "nats://h"\n[retention]\nmax_events = 5\n', "retention.max_events",
     "only max_age for nats://"),
    ("[[channels]]\n", "channels[0].type", "one of 'telegram', 'slack', 'console'"),
    ('[[channels]]\ntype = "telegrm"\n', "channels[0].type", "one of 'telegram', 'slack'"),
    ('[[channels]]\ntype = "telegram"\n', "channels[0].token", "the bot token from @BotFather"),
    ('[[channels]]\ntype = "telegram"\ntoken = "t"\npoll_timeout = "soon"\n',
     "channels[0].poll_timeout", "a duration like '30s'"),
    ('[[channels]]\ntype = "telegram"\ntoken = "t"\nbase_url = "api.telegram.org"\n',
     "channels[0].base_url", "an http:// or https:// URL"),
    ('[[channels]]\ntype = "slack"\nbot_token = "x"\n', "channels[0].signing_secret",
     "the app's signing secret"),
    ('[[channels]]\ntype = "slack"\nbot_token = "x"\nsigning_secret = "y"\ntoken = "z"\n',
     "channels[0].token", "one of: type, bot_token, signing_secret"),
    ('[[channels]]\ntype = "console"\nchannel_type = "a.b"\n', "channels[0].channel_type",
     "a word without '.'"),
    ('[[channels]]\ntype = "console"\n[[channels]]\ntype = "console"\n',
     "channels[1].channel_type", "a channel_type unique among [[channels]]"),
    ('[[channels]]\ntype = "custom"\nfactory = "no colon"\n', "channels[0].factory",
     "'package.module:name'"),
    ("channels = [3]\n", "channels[0]", "[[channels]] tables, each with a type"),
    ("[gateway]\nport = 70000\n", "gateway.port", "a TCP port, 0..65535"),
    ('[gateway]\nport = "http"\n', "gateway.port", "a TCP port"),
    ("[gateway]\ndemo = 3\n", "gateway.demo", "true or false"),
    ("[gateway]\nmax_body = -1\n", "gateway.max_body", "a positive number of bytes"),
    ("[gateway]\ntokens = 5\n", "gateway.tokens", "a tokens file path, or a list"),
    ('[[gateway.tokens]]\ntoken = "long-enough-secret"\n', "gateway.tokens[0].name",
     "a unique token name"),
    ('[[gateway.tokens]]\nname = "ui"\ntoken = "short"\n', "gateway.tokens[0]",
     "token: a random secret of at least 128 bits"),
    ('[[gateway.tokens]]\nname = "ui"\ntoken = "long-enough-secret"\npublish = ["a..b"]\n',
     "gateway.tokens[0]", "tables with name, token"),
    ('[[gateway.tokens]]\nname = "ui"\ntoken = "long-enough-secret"\npublish = "a.>"\n',
     "gateway.tokens[0].publish", "a list of topic patterns"),
    ('[[gateway.tokens]]\nname = "ui"\ntoken = "long-enough-secret"\nrate = 0\n',
     "gateway.tokens[0].rate", "requests per second"),
    ('[[gateway.tokens]]\nname = "a"\ntoken = "long-enough-1-7Hq2Lp9Zx4WmQ"\n'
     '[[gateway.tokens]]\nname = "a"\ntoken = "long-enough-2-7Hq2Lp9Zx4WmQ"\n',
     "gateway.tokens[1].name", "a unique token name"),
    ('[[gateway.tokens]]\nname = "ui"\ntoken = "long-enough-1-7Hq2Lp9Zx4WmQ"\nmetrics = 1\n',
     "gateway.tokens[0].metrics", "true (the token may read /metrics) or false"),
    ('[gateway]\nallowed_origins = ["https://ui.example/app"]\n',
     "gateway.allowed_origins[0]", "scheme://host[:port]"),
    ('[gateway]\nallowed_origins = ["ui.example"]\n', "gateway.allowed_origins[0]",
     "scheme://host[:port]"),
    ('[gateway]\nallowed_origins = "https://ui.example"\n', "gateway.allowed_origins",
     "a list of browser origins"),
    ('[gateway]\nallowed_hosts = ["gw.example:8765"]\n', "gateway.allowed_hosts[0]",
     "(no port)"),
    ('[gateway]\nallowed_hosts = ["http://gw.example"]\n', "gateway.allowed_hosts[0]",
     "a host name like"),
    ("[gateway]\nmax_connections = 0\n", "gateway.max_connections",
     "a positive number of connections"),
    ('[observability]\ntracing = "maybe"\n', "observability.tracing", "true or false"),
    ('[observability]\nlog_level = "loud"\n', "observability.log_level", "'critical', 'error'"),
    ("[observability]\nmetrics_port = -1\n", "observability.metrics_port", "a TCP port"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "key", "expected"), INVALID)
def test_invalid_values_name_the_key_and_the_expected_form(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    error = _error(tmp_path, text)
    assert isinstance(error, ValueError)
    assert isinstance(error, AxonbusError)
    message = str(error)
    assert message.startswith(str(tmp_path / "axonbus.toml") + ": ")
    assert f"{key}: " in message
    assert "expected " in message
    assert expected in message
    assert key in [p[0] for p in error.problems]


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    error = _error(tmp_path, '[bus]\nhistory = -1\ncodec = "xml"\n[gateway]\nport = -2\n')
    assert str(error).splitlines()[0].endswith("3 problems:")
    assert {p[0] for p in error.problems} == {"bus.history", "bus.codec", "gateway.port"}


def test_a_wrongly_typed_secret_is_not_echoed(tmp_path: Path) -> None:
    error = _error(tmp_path, '[[channels]]\ntype = "telegram"\ntoken = 918273645\n')
    assert error.key == "channels[0].token"
    assert "918273645" not in str(error)
    assert "got an integer" in str(error)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config(tmp_path / "missing.toml")
    error = _error(tmp_path, "[bus\nurl = 1\n")
    assert "not valid TOML" in str(error)
    assert "line 1" in str(error)


# -- gateway tokens and hardening ---------------------------------------------------------------

FULL_TOKEN = """\
name = "ops"
token = "ops-secret-123-7Hq2Lp9Zx4WmQ"
publish = ["agent.>"]
subscribe = ["agent.>"]
deny = ["agent.x.>"]
rate = 5.0
burst = 10
metrics = true
"""


def _token_view(token: Any) -> tuple[Any, ...]:
    return (token.name, token.publish, token.subscribe, token.deny, token.rate, token.burst,
            token.metrics)  # fmt: skip


def test_inline_tokens_take_every_key_a_tokens_file_takes(tmp_path: Path) -> None:
    from axonbus._config_schema import TokenConfig
    from axonbus.gateway import load_tokens

    # the example sets every field of an inline table
    assert {line.split(" =")[0] for line in FULL_TOKEN.splitlines()} == set(
        TokenConfig.model_fields
    )
    from_file = load_tokens(_write(tmp_path / "tokens.toml", "[[tokens]]\n" + FULL_TOKEN))
    config = load_config(_write(tmp_path / "axonbus.toml", "[[gateway.tokens]]\n" + FULL_TOKEN))
    inline = config.make_tokens()
    assert inline is not None
    assert [_token_view(t) for t in inline.tokens] == [_token_view(t) for t in from_file.tokens]
    assert inline.tokens[0].metrics is True
    # a key neither knows is refused by both
    extra = "[[tokens]]\n" + FULL_TOKEN + 'color = "red"\n'
    with pytest.raises(ValueError, match="unknown key"):
        load_tokens(_write(tmp_path / "tokens.toml", extra))
    error = _error(tmp_path, "[[gateway.tokens]]\n" + FULL_TOKEN + 'color = "red"\n')
    assert error.key == "gateway.tokens[0].color"


def test_the_token_hint_states_the_strength_rule(tmp_path: Path) -> None:
    from axonbus._compose import TOKENS_FORM
    from axonbus.gateway._auth import MIN_SECRET_BITS

    assert f"at least {MIN_SECRET_BITS} bits" in TOKENS_FORM
    assert "axonbus token new" in TOKENS_FORM
    # a 16-character secret of one kind of character is long but weak
    error = _error(tmp_path, '[[gateway.tokens]]\nname = "ui"\ntoken = "abcdefghijklmnop"\n')
    assert error.key == "gateway.tokens[0]"
    assert f"{MIN_SECRET_BITS} bits" in str(error)


def test_gateway_hardening_keys(tmp_path: Path) -> None:
    text = """\
    [gateway]
    allowed_origins = ["https://ui.example", "http://localhost:3000", "*"]
    allowed_hosts = ["gw.example", "*.example.org", "10.0.0.5", "::1", "*"]
    max_connections = 200
    """
    gw = load_config(_write(tmp_path / "axonbus.toml", text)).gateway
    assert gw.allowed_origins == ["https://ui.example", "http://localhost:3000", "*"]
    assert gw.allowed_hosts == ["gw.example", "*.example.org", "10.0.0.5", "::1", "*"]
    assert gw.max_connections == 200
    default = Config().gateway
    assert (default.allowed_origins, default.allowed_hosts, default.max_connections) == (
        [],
        None,
        None,
    )


@pytest.mark.parametrize(
    "origin",
    ["https://ui.example/app", "https://ui.example?x=1", "ui.example", "https://", "", "https:ui",
     "https://user:pw@ui.example", "https://ui.example:99999"],
)  # fmt: skip
def test_an_origin_is_scheme_host_and_port(origin: str) -> None:
    from axonbus._config_schema import check_origin

    with pytest.raises(ValueError, match=r"scheme://host|no path|no user name|port must be"):
        check_origin(origin)
    for good in ("https://ui.example", "http://localhost:3000", "https://ui.example/", "*"):
        assert check_origin(good) == good


def test_the_security_pages_gateway_table_loads(tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text("utf-8")
    (tokens,) = re.findall(r"```json\n(.*?)```", page, re.S)
    (table,) = re.findall(r"```toml\n(.*?)```", page, re.S)
    _write(tmp_path / "tokens.json", tokens)
    config = load_config(_write(tmp_path / "axonbus.toml", table))
    assert config.gateway.allowed_origins == ["https://app.example.com"]
    assert config.gateway.allowed_hosts == ["gateway.example.com"]
    assert config.gateway.max_connections == 500
    made = config.make_tokens()
    assert made is not None
    assert [t.name for t in made.tokens] == ["ui", "ops"]


def test_tokens_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    _write(
        tmp_path / "conf" / "tokens.toml",
        '[[tokens]]\nname = "ops"\ntoken = "ops-secret-123-7Hq2Lp9Zx4WmQ"\npublish = [">"]\n',
    )
    path = _write(tmp_path / "conf" / "axonbus.toml", '[gateway]\ntokens = "tokens.toml"\n')
    config = load_config(path)
    tokens = config.make_tokens()
    assert tokens is not None
    assert [t.name for t in tokens.tokens] == ["ops"]
    config = load_config(_write(tmp_path / "axonbus.toml", '[gateway]\ntokens = "nope.toml"\n'))
    with pytest.raises(ConfigError, match=r"gateway\.tokens: .*nope\.toml"):
        config.make_tokens()


def make_channel(bus: Bus, name: str = "custom", **options: Any) -> Channel:
    """The factory of the custom channel test."""
    return MemoryChannel(bus, name)


def test_custom_channel_factories(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "axonbus.toml",
        """\
        [[channels]]
        type = "custom"
        factory = "tests.test_config:make_channel"
        options = { name = "mine" }

        [[channels]]
        type = "custom"
        factory = "tests.test_config:no_such_thing"
        """,
    )
    config = load_config(path)
    bus = Bus()
    with pytest.raises(ConfigError, match=r"channels\[1\]\.factory: cannot import"):
        config.make_channels(bus)
    first = config._channel(bus, 0, config.channels[0])
    assert isinstance(first, MemoryChannel)
    assert first.channel_type == "mine"


def test_a_channel_constructor_error_names_the_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMPTY_TOKEN", " ")
    path = _write(
        tmp_path / "axonbus.toml",
        '[[channels]]\ntype = "telegram"\ntoken = "${EMPTY_TOKEN}"\n',
    )
    with pytest.raises(ConfigError, match=r"channels\[0\]: ValueError: token must be"):
        load_config(path).make_channels(Bus())


# -- Bus.from_config ---------------------------------------------------------------------------


async def test_bus_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "events.db"
    _write(
        tmp_path / "axonbus.toml",
        f"""\
        [bus]
        url = "sqlite:///{db}?compact_every=5"
        name = "cfg"
        history = 10

        [retention]
        max_age = "1h"
        """,
    )
    monkeypatch.chdir(tmp_path)
    bus = Bus.from_config()
    assert bus.url == f"sqlite:///{db}?compact_every=5&max_age=3600"
    assert bus.name == "cfg"
    assert bus._history is not None
    assert bus._history.maxlen == 10
    async with bus:
        await bus.publish("a.b", {"n": 1})
        await bus.flush()
    assert db.exists()
    other = Bus.from_config(tmp_path / "axonbus.toml", name="override", url="memory://")
    assert (other.name, other.url) == ("override", "memory://")


def test_bus_from_config_fails_clearly(tmp_path: Path) -> None:
    _write(tmp_path / "axonbus.toml", "[bus]\nhistory = -3\n")
    with pytest.raises(ConfigError, match=r"bus\.history: .* expected .*>= 0"):
        Bus.from_config(tmp_path / "axonbus.toml")
    _write(tmp_path / "axonbus.toml", '[bus]\nurl = "sqlite:///x.db?max_age=soon"\n')
    with pytest.raises(ConfigError, match=r"bus\.url: URL option max_age='soon'"):
        Bus.from_config(tmp_path / "axonbus.toml")


@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry") is None
    or importlib.util.find_spec("axonbus.observability") is None,
    reason="needs axonbus.observability and opentelemetry",
)
def test_observability_switches_add_middleware(tmp_path: Path) -> None:
    _write(tmp_path / "axonbus.toml", "[observability]\ntracing = true\n")
    config = load_config(tmp_path / "axonbus.toml")
    names = [type(m).__name__ for m in config.middleware()]
    assert names == ["OpenTelemetryMiddleware"]
    bus = Bus.from_config(tmp_path / "axonbus.toml")
    assert [type(m).__name__ for m in bus._middleware] == names


# -- axonbus serve --config --------------------------------------------------------------------


async def _wait_healthy(proc: asyncio.subprocess.Process, base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        async with asyncio.timeout(20):
            while True:
                if proc.returncode is not None:
                    assert proc.stderr is not None
                    raise AssertionError((await proc.stderr.read()).decode())
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)


async def test_serve_with_a_config_file(tmp_path: Path) -> None:
    tg_token = "777:serve-config-telegram-token"
    fake = FakeTelegram(tg_token)
    config_port, port, metrics_port = free_port(), free_port(), free_port()
    async with fake.serve() as telegram_url:
        path = _write(
            tmp_path / "axonbus.toml",
            f"""\
            [bus]
            url = "sqlite:///{tmp_path / "events.db"}"
            name = "served"

            [retention]
            max_events = 1000

            [[channels]]
            type = "telegram"
            token = "${{TG_TOKEN}}"
            base_url = "{telegram_url}"
            poll_timeout = 1

            [gateway]
            port = {config_port}

            [observability]
            json_logs = true
            metrics_port = {metrics_port}

            [[gateway.tokens]]
            name = "ops"
            token = "${{OPS_TOKEN}}"
            publish = [">"]
            subscribe = [">"]
            """,
        )
        env = {**os.environ, "TG_TOKEN": tg_token, "OPS_TOKEN": "ops-token-0123-7Hq2Lp9Zx4WmQ",
               "PYTHONIOENCODING": "utf-8"}  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "axonbus.cli", "serve", "--config", str(path),
            "--port", str(port),  # the command line wins over [gateway] port
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            await _wait_healthy(proc, base)
            auth = {"Authorization": "Bearer ops-token-0123-7Hq2Lp9Zx4WmQ"}
            async with httpx.AsyncClient(base_url=base) as client:
                health = (await client.get("/healthz")).json()
                assert (health["transport"], health["log"], health["auth"]) == (
                    "sqlite", True, True,
                )  # fmt: skip
                assert (await client.get("/v1/stats")).status_code == 401
                stats = (await client.get("/v1/stats", headers=auth)).json()
                assert stats["bus"]["name"] == "served"
                assert "max_events=1000" in stats["bus"]["url"]
                listed = (await client.get("/v1/channels", headers=auth)).json()["channels"]
                assert [(c["channel_type"], c["state"]) for c in listed] == [
                    ("telegram", "running"),
                ]
                # a reply published over HTTP goes out through the configured channel
                reply = ChannelReply(channel_type="telegram", user_id="42", content="hi")
                r = await client.post(
                    "/v1/publish/channel.telegram.out",
                    json=reply.model_dump(mode="json"),
                    headers=auth,
                )
                assert r.status_code == 200
                async with asyncio.timeout(10):
                    while not fake.sent:
                        await asyncio.sleep(0.02)
                # [observability] metrics_port: a Prometheus exporter besides /metrics
                metrics = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
                assert "axonbus_bus_started" in metrics.text
            assert fake.sent[0]["text"] == "hi"
            assert fake.calls_of("getUpdates")  # the poll loop runs in the served process
            proc.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(proc.wait(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
    assert code == 130, err
    assert "Traceback" not in err
    assert f"http://127.0.0.1:{port}/" in err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert {"logger": "axonbus.channels", "message": "channel 'telegram' attached"} in [
        {"logger": r.get("logger"), "message": r.get("message")} for r in records
    ]  # [observability] json_logs
    assert tg_token not in err
    assert "ops-token-0123-7Hq2Lp9Zx4WmQ" not in err


def test_serve_refuses_an_invalid_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "axonbus.toml", '[[channels]]\ntype = "telegram"\n')
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("axonbus serve: ")
    assert "channels[0].token: required key missing; expected the bot token" in err
    assert main(["serve", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_the_wire_key_is_merged_into_the_url(tmp_path: Path) -> None:
    path = _write(tmp_path / "axonbus.toml", '[bus]\nurl = "nats://h:4222"\nwire = "cloudevents"\n')
    config = load_config(path)
    assert config.bus_url() == "nats://h:4222?wire=cloudevents"
    assert config.bus_url("redis://h/0?wire=compact") == "redis://h/0?wire=compact"  # URL wins
    bus = config.make_bus()
    assert bus.transport.wire == "cloudevents"  # type: ignore[attr-defined]
    bad = _write(tmp_path / "bad.toml", '[bus]\nwire = "xml"\n')
    with pytest.raises(ConfigError, match=r"bus\.wire"):
        load_config(bad)

"""A password or token in a configured URL never shows: not in errors, reprs, logs or CLI output.

Every check runs for each way a secret can sit in a URL: ``user:pass@``, a lone token before
``@``, ``?password=`` / ``?token=`` query options, and percent-encoded.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from axonbus import Bus, Config, ConfigError, load_config
from axonbus.cli import main
from axonbus.transports.base import redact_url

SECRET = "s3cretPW"
#: (URL template with {s} for the secret's spelling, the spelling)
SPELLINGS = [
    ("{scheme}://app:{s}@db.example:6379/0", SECRET),
    ("{scheme}://{s}@db.example:4222", SECRET),
    ("{scheme}://db.example:6379/0?password={s}&x=1", SECRET),
    ("{scheme}://db.example:6379/0?TOKEN={s}", SECRET),
    ("{scheme}://db.example:6379/0?pass%77ord={s}", SECRET),
    ("{scheme}://app:{s}@db.example:6379/0", "s3cr%40t%2FPW"),  # s3cr@t/PW
    ("{scheme}://app:{s}@db.example:6379/0", "s3cr@t/PW"),  # not encoded at all
]
IDS = ["userinfo", "token", "query", "query-case", "query-encoded-key", "encoded", "raw"]


def _forms(secret: str) -> set[str]:
    """Every way the secret could leak: as written, percent-decoded, and its decoded halves."""
    from urllib.parse import unquote

    decoded = unquote(secret)
    return {secret, decoded, *(p for p in decoded.split("/") if len(p) > 3)}


def _assert_hidden(text: str, secret: str) -> None:
    for form in _forms(secret):
        assert form not in text, f"{form!r} leaked in {text!r}"


class Spelling(NamedTuple):
    """One way a secret sits in a URL; ``$REDIS_PASSWORD`` holds the secret."""

    template: str
    secret: str

    def url(self, scheme: str) -> str:
        """The URL with the secret in it."""
        return self.template.format(scheme=scheme, s=self.secret)

    def configured(self, scheme: str) -> str:
        """The URL as a configuration file writes it: ``${REDIS_PASSWORD}`` for the secret."""
        return self.template.format(scheme=scheme, s="${REDIS_PASSWORD}")


@pytest.fixture(params=SPELLINGS, ids=IDS)
def spelling(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Spelling:
    template, secret = request.param
    monkeypatch.setenv("REDIS_PASSWORD", secret)
    return Spelling(template, secret)


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    return SECRET


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "axonbus.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _bus_url(tmp_path: Path, url: str) -> Path:
    """A configuration file with ``[bus] url``."""
    return _config(tmp_path, f'[bus]\nurl = "{url}"\n')


def test_redact_url_hides_every_spelling(spelling: Spelling) -> None:
    shown = redact_url(spelling.url("redis"))
    _assert_hidden(shown, spelling.secret)
    assert "***" in shown
    assert shown.startswith("redis://")
    assert "db.example" in shown


def test_a_bad_scheme_error_hides_the_interpolated_password(
    tmp_path: Path, spelling: Spelling
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_bus_url(tmp_path, spelling.configured("kafka")))
    assert "is not a bus URL" in str(info.value)
    assert "kafka://" in str(info.value)
    _assert_hidden(str(info.value), spelling.secret)
    _assert_hidden(repr(info.value.problems), spelling.secret)


def test_the_loaded_config_repr_hides_the_password(tmp_path: Path, spelling: Spelling) -> None:
    config = load_config(_bus_url(tmp_path, spelling.configured("redis")))
    assert config.bus.url == spelling.url("redis")  # the value is intact
    for text in (repr(config), str(config), repr(config.bus), f"{config.bus!s}"):
        _assert_hidden(text, spelling.secret)
        assert "***" in text


def test_a_bus_error_quoting_the_url_is_hidden(tmp_path: Path, spelling: Spelling) -> None:
    """An error from making the bus may quote its URL, whole or its password decoded."""
    from urllib.parse import unquote

    secret = spelling.secret
    config = load_config(_bus_url(tmp_path, spelling.configured("redis")))

    class Refusing(Bus):
        def __init__(self, url: str, **options: Any) -> None:
            raise ValueError(f"cannot use {url} (password {unquote(secret)!r})")

    with pytest.raises(ConfigError) as info:
        config.make_bus(bus_class=Refusing)
    assert info.value.key == "bus.url"
    assert "cannot use redis://" in str(info.value)
    _assert_hidden(str(info.value), secret)
    assert info.value.__cause__ is None  # a traceback would print the cause's message


def test_a_value_shown_in_a_type_error_hides_its_password(tmp_path: Path, password: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, '[bus]\ncodec = "redis://app:${REDIS_PASSWORD}@h/0"\n'))
    error_text = str(info.value)
    assert "bus.codec: got 'redis://app:***@h/0'" in error_text
    _assert_hidden(error_text, SECRET)


def test_channel_urls_are_hidden_in_errors_and_reprs(tmp_path: Path, spelling: Spelling) -> None:
    def webhook(url: str) -> Path:
        return _config(tmp_path, f'[[channels]]\ntype = "webhook"\nurl = "{url}"\n')

    with pytest.raises(ConfigError) as info:
        load_config(webhook(spelling.configured("ftp")))
    assert info.value.key == "channels[0].url"
    _assert_hidden(str(info.value), spelling.secret)
    config = load_config(webhook(spelling.configured("https")))
    _assert_hidden(repr(config), spelling.secret)
    _assert_hidden(repr(config.channels[0]), spelling.secret)


def test_bus_repr_hides_every_spelling(spelling: Spelling) -> None:
    bus = Bus(spelling.url("redis").replace("&x=1", ""))
    _assert_hidden(repr(bus), spelling.secret)


def test_from_mapping_hides_it_too() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_mapping({"bus": {"url": "mqtt://u:${P}@h"}}, env={"P": SECRET})
    _assert_hidden(str(info.value), SECRET)


# -- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["tail", "replay"])
def test_cli_errors_hide_the_password(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    command: str,
    spelling: Spelling,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert main([command, ">", "--url", spelling.url("kafka")]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"axonbus {command}: ")
    _assert_hidden(out + err + caplog.text, spelling.secret)


def test_serve_config_errors_hide_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spelling: Spelling
) -> None:
    pytest.importorskip("starlette")
    path = _bus_url(tmp_path, spelling.configured("kafka"))
    assert main(["serve", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "bus.url" in err
    _assert_hidden(out + err, spelling.secret)


async def test_a_webhook_channel_from_the_config_hides_its_token(
    tmp_path: Path, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The webhook endpoint's own credentials: repr, delivery errors and retry logs."""
    pytest.importorskip("httpx")
    from axonbus.channels import ChannelReply
    from axonbus.gateway import WebhookDeliveryFailed

    url = "https://hooks:${REDIS_PASSWORD}@127.0.0.1:1/in?token=${REDIS_PASSWORD}"
    config = load_config(_config(tmp_path, f'[[channels]]\ntype = "webhook"\nurl = "{url}"\n'))
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="axonbus.gateway")
    async with Bus() as bus:
        (channel,) = config.make_channels(bus)
        _assert_hidden(repr(channel), SECRET)
        reply = ChannelReply(channel_type="webhook", user_id="u1", content="hi")
        with pytest.raises(WebhookDeliveryFailed) as info:
            await channel.send(reply)  # not started
        _assert_hidden(str(info.value), SECRET)
        channel.retry = channel.retry.__class__(attempts=2, backoff=0.01, max_backoff=0.01)
        async with channel:
            with pytest.raises(WebhookDeliveryFailed) as info:
                await channel.send(reply)  # nothing listens on port 1
        _assert_hidden(str(info.value), SECRET)
    assert "retrying" in caplog.text
    _assert_hidden(caplog.text, SECRET)

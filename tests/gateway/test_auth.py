"""Tokens, topic permissions and rate limits, without HTTP."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from axonbus import InvalidTopic, match
from axonbus.gateway import AccessToken, RateLimiter, TokenSet, load_tokens
from axonbus.gateway._auth import OPEN_ACCESS, covers, new_secret, overlaps, secret_bits
from tests.gateway.helpers import SECRET_UI, TOKENS_CONFIG

STRONG = new_secret()

TOPICS = [
    "agent.s1.token",
    "agent.s1.user_input",
    "agent.s2.tool.call",
    "agent",
    "$bus.dead_letter",
    "$bus.handler_failed",
    "channel.web.in",
    "x",
]
PATTERNS = [
    ">",
    "*",
    "agent.>",
    "agent.*",
    "agent.*.token",
    "agent.s1.>",
    "agent.s1.*",
    "agent.s1.token",
    "*.s1.token",
    "$bus.>",
    "$bus.*",
    "*.>",
    "channel.*.in",
]


@pytest.mark.parametrize("allowed", PATTERNS)
@pytest.mark.parametrize("requested", PATTERNS)
def test_covers_agrees_with_match(allowed: str, requested: str) -> None:
    # if `allowed` covers `requested`, every sample topic matching `requested` matches `allowed`
    if covers(allowed, requested):
        for topic in TOPICS:
            if match(requested, topic):
                assert match(allowed, topic), (allowed, requested, topic)


@pytest.mark.parametrize("a", PATTERNS)
@pytest.mark.parametrize("b", PATTERNS)
def test_overlaps_agrees_with_match(a: str, b: str) -> None:
    both = [t for t in TOPICS if match(a, t) and match(b, t)]
    if both:
        assert overlaps(a, b), (a, b, both)
    assert overlaps(a, b) == overlaps(b, a)


def test_covers_examples() -> None:
    assert covers(">", "agent.s1.token")
    assert covers("agent.>", "agent.*.token")
    assert covers("agent.*.token", "agent.s1.token")
    assert not covers("agent.*.token", "agent.>")
    assert not covers("agent.s1.>", "agent.*.token")
    assert not covers(">", "$bus.>")  # a leading wildcard never reaches system topics
    assert covers("$bus.>", "$bus.dead_letter")
    assert not covers("agent.*", "agent.s1.token")


def test_token_permissions_and_deny_wins() -> None:
    ui = TokenSet.from_config(TOKENS_CONFIG).tokens[0]
    assert ui.can_publish("agent.s1.user_input")
    assert not ui.can_publish("agent.s1.token")
    assert ui.can_subscribe("agent.s1.>")
    assert ui.can_subscribe("agent.>")  # wider than a deny: allowed, denied topics filtered
    assert not ui.can_subscribe("agent.secret.>")  # wholly denied
    assert not ui.can_subscribe("channel.>")
    assert not ui.can_subscribe("$bus.>")
    assert ui.sees("agent.s1.token")
    assert not ui.sees("agent.secret.token")
    denied = AccessToken("d", "x" * 8, publish=(">",), deny=("agent.*.cancel",))
    assert denied.can_publish("agent.s1.token")
    assert not denied.can_publish("agent.s1.cancel")


def test_open_access_allows_everything() -> None:
    assert OPEN_ACCESS.can_publish("$bus.anything")
    assert OPEN_ACCESS.can_subscribe("$bus.>")
    assert OPEN_ACCESS.sees("agent.secret.x")


def test_authenticate_compares_every_token() -> None:
    tokens = TokenSet.from_config(TOKENS_CONFIG)
    found = tokens.authenticate(SECRET_UI)
    assert found is not None
    assert found.name == "ui"
    assert tokens.authenticate("nope") is None
    assert tokens.authenticate("") is None


def test_secrets_never_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    tokens = TokenSet.from_config(TOKENS_CONFIG)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").info("tokens %r %s %r", tokens, tokens.tokens[0], tokens.tokens)
    assert SECRET_UI not in repr(tokens.tokens)
    assert SECRET_UI not in str(tokens.tokens[0])
    assert SECRET_UI not in caplog.text
    assert "***" in repr(tokens.tokens[0])


def test_load_tokens_json_and_toml(tmp_path: Path) -> None:
    as_json = tmp_path / "tokens.json"
    as_json.write_text(json.dumps(TOKENS_CONFIG))
    assert [t.name for t in load_tokens(as_json).tokens] == ["ui", "admin", "slow"]
    as_toml = tmp_path / "tokens.toml"
    as_toml.write_text(
        '[[tokens]]\nname = "ui"\ntoken = "0123456789abc-XYZ-defghijklmnop"\n'
        'publish = ["agent.*.user_input"]\n'
        'subscribe = ["agent.>"]\ndeny = ["$bus.>"]\nrate = 50\n'
    )
    (ui,) = load_tokens(as_toml).tokens
    assert ui.publish == ("agent.*.user_input",)
    assert ui.rate == 50.0


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({}, "tokens"),
        ({"tokens": []}, "at least one"),
        ({"tokens": [{"token": STRONG}]}, "name"),
        ({"tokens": [{"name": "a", "token": "short"}]}, "128 bits"),
        ({"tokens": [{"name": "a", "token": "ui-secret-0123456789"}]}, "128 bits"),
        ({"tokens": [{"name": "a", "token": "a" * 64}]}, "128 bits"),
        ({"tokens": [{"name": "a", "token": STRONG, "metrics": "yes"}]}, "metrics"),
        ({"tokens": [{"name": "a", "token": STRONG, "publish": "x.>"}]}, "list"),
        ({"tokens": [{"name": "a", "token": STRONG, "rate": 0}]}, "rate"),
        ({"tokens": [{"name": "a", "token": STRONG, "color": "red"}]}, "unknown"),
        ({"tokens": [{"name": "a", "token": STRONG}] * 2}, "unique"),
    ],
)
def test_bad_token_configs(config: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TokenSet.from_config(config)


def test_bad_pattern_is_named() -> None:
    config = {"tokens": [{"name": "a", "token": STRONG, "subscribe": ["agent.>.x"]}]}
    with pytest.raises(InvalidTopic, match="agent"):
        TokenSet.from_config(config)


def test_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tokens(path)


def test_rate_limiter_token_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("axonbus.gateway._auth.time.monotonic", lambda: now[0])
    limiter = RateLimiter()
    token = AccessToken("t", STRONG, rate=2.0)
    assert limiter.take(token) == 0.0
    assert limiter.take(token) == 0.0  # the burst is `rate` requests
    wait = limiter.take(token)
    assert wait == pytest.approx(0.5)
    assert RateLimiter.retry_after(wait) == "1"
    now[0] += 0.5
    assert limiter.take(token) == 0.0
    unlimited = AccessToken("u", STRONG)
    assert all(limiter.take(unlimited) == 0.0 for _ in range(1000))


def test_new_secrets_are_strong_and_weak_ones_are_refused() -> None:
    assert secret_bits(new_secret()) >= 128
    assert len({new_secret() for _ in range(100)}) == 100
    assert secret_bits("ui-secret-0123456789") < 128  # 20 characters: guessable
    with pytest.raises(ValueError, match="128 bits"):
        TokenSet([AccessToken("a", "0123456789")])

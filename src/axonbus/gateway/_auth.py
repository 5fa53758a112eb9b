"""Bearer tokens: who may publish and subscribe where, and how fast.

A tokens file (JSON or TOML) lists named tokens, each with topic patterns::

    {"tokens": [{"name": "ui", "token": "<axonbus token new>", "publish": ["agent.*.user_input"],
                 "subscribe": ["agent.>"], "deny": ["$bus.>"], "rate": 50}]}

``deny`` wins over ``publish`` and ``subscribe``. ``rate`` is publishes and requests per second
(a token bucket holding ``burst`` of them, ``rate`` by default); absent means unlimited; reads
(streams, stats) are not counted. ``metrics: true`` lets the token read ``/metrics``. A secret
must carry at least 128 bits (``axonbus token new`` makes one); secrets are compared with
:func:`hmac.compare_digest` and never appear in a repr or a log line.
"""

from __future__ import annotations

import hmac
import json
import math
import secrets
import string
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._config_schema import TokenConfig
from .._topics import match, split_pattern

__all__ = [
    "MIN_SECRET_BITS",
    "OPEN_ACCESS",
    "AccessToken",
    "RateLimiter",
    "TokenSet",
    "covers",
    "load_tokens",
    "new_secret",
    "overlaps",
    "secret_bits",
]

#: the least strength a token secret may have (estimated by :func:`secret_bits`)
MIN_SECRET_BITS = 128


def secret_bits(secret: str) -> float:
    """An estimate of a secret's strength in bits: its length times log2 of the size of the
    character classes it uses (digits, lower case, upper case, other), that size capped at four
    times its distinct characters so that a repeated pattern counts for little.

    >>> round(secret_bits("0123456789abcdef" * 2))  # 32 hex characters
    165
    """
    size = 0
    for chars, count in (
        (string.digits, 10),
        (string.ascii_lowercase, 26),
        (string.ascii_uppercase, 26),
    ):
        if any(c in chars for c in secret):
            size += count
    if any(not (c.isascii() and c.isalnum()) for c in secret):
        size += 33
    distinct = len(set(secret))
    if size == 0 or distinct < 2:
        return 0.0
    return len(secret) * math.log2(min(size, max(distinct, 2) * 4))


def new_secret() -> str:
    """A fresh token secret: 32 random bytes, URL-safe base64 (256 bits)."""
    return secrets.token_urlsafe(32)


def covers(allowed: str, requested: str) -> bool:
    """True when every topic ``requested`` can match is also matched by ``allowed``.

    >>> covers("agent.>", "agent.s1.*")
    True
    >>> covers("agent.*.token", "agent.>")
    False
    """
    a = allowed.split(".")
    p = requested.split(".")
    for i, at in enumerate(a):
        if at == ">":
            rest = p[i:]
            # a leading wildcard never matches a system ($) topic
            return bool(rest) and not (i == 0 and rest[0].startswith("$"))
        if i >= len(p):
            return False
        pt = p[i]
        if pt == ">":
            return False
        if at == "*":
            if i == 0 and pt.startswith("$"):
                return False
            continue
        if pt != at:
            return False
    return len(p) == len(a)


def overlaps(a: str, b: str) -> bool:
    """True when some topic matches both patterns.

    >>> overlaps("agent.*.token", "agent.s1.>")
    True
    >>> overlaps("agent.>", "$bus.>")
    False
    """
    x = a.split(".")
    y = b.split(".")
    for i in range(min(len(x), len(y))):
        s, t = x[i], y[i]
        wild_s, wild_t = s in ("*", ">"), t in ("*", ">")
        if i == 0 and wild_s != wild_t and (t if wild_s else s).startswith("$"):
            return False
        if s == ">" or t == ">":
            return True
        if wild_s or wild_t:
            continue
        if s != t:
            return False
    return len(x) == len(y)


def _patterns(value: Any, what: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"token {name!r}: {what} must be a list of topic patterns")
    for pattern in value:
        if not isinstance(pattern, str):
            raise ValueError(f"token {name!r}: {what} must be a list of topic patterns")
        split_pattern(pattern)  # InvalidTopic (a ValueError) names the bad token
    return tuple(value)


@dataclass(frozen=True, eq=False)
class AccessToken:
    """One named bearer token and what it may do; the secret never shows in its repr.

    >>> ui = AccessToken("ui", "<secret>", publish=("agent.*.user_input",), subscribe=("agent.>",))
    >>> ui.can_publish("agent.s1.user_input"), ui.can_subscribe("agent.s1.>")
    (True, True)
    """

    name: str
    secret: str = field(repr=False)
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    rate: float | None = None
    burst: int | None = None
    #: may read ``/metrics`` (the whole bus's counters)
    metrics: bool = False
    #: open access (no tokens file): everything is allowed, system topics included
    allow_all: bool = False

    def __repr__(self) -> str:
        return (
            f"AccessToken(name={self.name!r}, token='***', publish={list(self.publish)!r}, "
            f"subscribe={list(self.subscribe)!r}, deny={list(self.deny)!r}, rate={self.rate!r})"
        )

    def denied(self, topic: str) -> bool:
        """True when ``topic`` matches one of the ``deny`` patterns."""
        return any(match(d, topic) for d in self.deny)

    def can_publish(self, topic: str) -> bool:
        """May this token publish (or send a request) on the concrete ``topic``?"""
        if self.allow_all:
            return True
        return any(match(p, topic) for p in self.publish) and not self.denied(topic)

    def can_subscribe(self, pattern: str) -> bool:
        """May this token subscribe to ``pattern``? It must lie inside one ``subscribe`` pattern
        and not wholly inside a ``deny`` one; events on denied topics are filtered out anyway
        (:meth:`sees`)."""
        if self.allow_all:
            return True
        if any(covers(d, pattern) for d in self.deny):
            return False
        return any(covers(s, pattern) for s in self.subscribe)

    def sees(self, topic: str) -> bool:
        """Is an event on ``topic`` delivered to this token's subscriptions (deny wins)?"""
        return self.allow_all or not self.denied(topic)


#: the principal of every request when the gateway runs without a tokens file
OPEN_ACCESS = AccessToken("open", "", publish=(">",), subscribe=(">",), allow_all=True)


def _token_from(entry: Any, index: int) -> AccessToken:
    if not isinstance(entry, Mapping):
        raise ValueError(f"tokens[{index}] must be a table / object")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"tokens[{index}] needs a non-empty 'name'")
    secret = entry.get("token")
    if not isinstance(secret, str) or secret_bits(secret) < MIN_SECRET_BITS:
        raise ValueError(
            f"token {name!r}: 'token' must be a random string of at least {MIN_SECRET_BITS} bits "
            "(e.g. 22+ mixed letters and digits; `axonbus token new` makes one)"
        )
    metrics = entry.get("metrics", False)
    if not isinstance(metrics, bool):
        raise ValueError(f"token {name!r}: 'metrics' must be true or false")
    unknown = set(entry) - set(TokenConfig.model_fields)
    if unknown:
        raise ValueError(f"token {name!r}: unknown key(s) {sorted(unknown)}")
    rate = entry.get("rate")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0
    ):
        raise ValueError(f"token {name!r}: 'rate' must be a positive number (per second)")
    burst = entry.get("burst")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise ValueError(f"token {name!r}: 'burst' must be a positive int")
    return AccessToken(
        name,
        secret,
        publish=_patterns(entry.get("publish"), "publish", name),
        subscribe=_patterns(entry.get("subscribe"), "subscribe", name),
        deny=_patterns(entry.get("deny"), "deny", name),
        rate=float(rate) if rate is not None else None,
        burst=burst,
        metrics=metrics,
    )


class TokenSet:
    """The tokens a gateway accepts. Build it from a file with :func:`load_tokens`, or directly::

    tokens = TokenSet([AccessToken("ui", new_secret(), publish=("agent.*.user_input",))])
    """

    def __init__(self, tokens: Iterable[AccessToken]) -> None:
        self.tokens: tuple[AccessToken, ...] = tuple(tokens)
        names = [t.name for t in self.tokens]
        if len(set(names)) != len(names):
            raise ValueError("token names must be unique")
        if not self.tokens:
            raise ValueError("a tokens file must list at least one token")
        for token in self.tokens:
            if not token.allow_all and secret_bits(token.secret) < MIN_SECRET_BITS:
                raise ValueError(
                    f"token {token.name!r}: the secret must carry at least {MIN_SECRET_BITS} bits "
                    "(`axonbus token new` makes one)"
                )

    @classmethod
    def from_config(cls, config: Any) -> TokenSet:
        """From the parsed file content: ``{"tokens": [{...}, ...]}``."""
        if not isinstance(config, Mapping) or not isinstance(config.get("tokens"), list):
            raise ValueError("a tokens file holds {'tokens': [ {name, token, ...}, ... ]}")
        return cls(_token_from(entry, i) for i, entry in enumerate(config["tokens"]))

    def __repr__(self) -> str:
        return f"<TokenSet {[t.name for t in self.tokens]}>"

    def __len__(self) -> int:
        return len(self.tokens)

    def authenticate(self, secret: str) -> AccessToken | None:
        """The token whose secret this is, or None. Compares against every token in constant
        time, so the timing tells nothing about which (or whether one) matched."""
        given = secret.encode()
        found: AccessToken | None = None
        for token in self.tokens:
            if hmac.compare_digest(given, token.secret.encode()):
                found = token
        return found


def load_tokens(path: str | Path) -> TokenSet:
    """Read a tokens file: TOML when it ends in ``.toml``, JSON otherwise.

    TOML form::

        [[tokens]]
        name = "ui"
        token = "Zb3…"   # from `axonbus token new`
        publish = ["agent.*.user_input", "agent.*.interrupt"]
        subscribe = ["agent.>"]
        rate = 50
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    try:
        config = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if p.suffix == ".toml" else "JSON"
        raise ValueError(f"{p}: not valid {kind}: {exc}") from exc
    return TokenSet.from_config(config)


class RateLimiter:
    """Token buckets by key (a token's name, a connection, a client address): ``rate`` per
    second, ``burst`` at once. Idle buckets are forgotten, so the table stays small."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self._buckets: dict[object, tuple[float, float]] = {}  # key -> (level, last refill)
        self.max_keys = max_keys
        self.clock = time.monotonic

    def take(self, token: AccessToken) -> float:
        """Spend one of the token's publishes; 0.0 if allowed, else the seconds to wait."""
        if token.rate is None:
            return 0.0
        burst = float(token.burst if token.burst is not None else max(1.0, token.rate))
        return self.take_key(("token", token.name), token.rate, burst)

    def take_key(self, key: object, rate: float, burst: float, cost: float = 1.0) -> float:
        """Spend ``cost`` from ``key``'s bucket; 0.0 if allowed, else the seconds to wait."""
        now = self.clock()
        level, last = self._buckets.get(key, (burst, now))
        level = min(burst, level + (now - last) * rate)
        if level >= cost:
            self._store(key, (level - cost, now))
            return 0.0
        self._store(key, (level, now))
        return (cost - level) / rate

    def peek_key(self, key: object, rate: float, burst: float) -> float:
        """The seconds until ``key`` could spend one, without spending (0.0: now)."""
        found = self._buckets.get(key)
        if found is None:
            return 0.0
        level, last = found
        level = min(burst, level + (self.clock() - last) * rate)
        return 0.0 if level >= 1.0 else (1.0 - level) / rate

    def forget(self, key: object) -> None:
        self._buckets.pop(key, None)

    def _store(self, key: object, value: tuple[float, float]) -> None:
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            # forget the oldest entry (dicts keep insertion order): a full bucket is the
            # default, so forgetting one only ever gives a client its burst back
            self._buckets.pop(next(iter(self._buckets)))
        self._buckets[key] = value

    @staticmethod
    def retry_after(wait: float) -> str:
        """The ``Retry-After`` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait)))

"""Configuration files: ``axonbus.toml`` (or ``axonbus.yaml``), or ``[tool.axonbus]`` in
``pyproject.toml``.

::

    [bus]
    url = "sqlite:///events.db"        # memory:// sqlite:// postgresql:// redis:// nats://
    name = "lena"
    history = 100

    [retention]                         # merged into the bus URL's options (URL values win)
    max_age = "7d"                      # seconds, or 30s / 10m / 2h / 7d
    max_events = 1_000_000
    policy = "keep"                     # keep | drop (sqlite, postgresql)

    [[channels]]
    type = "telegram"
    token = "${TELEGRAM_BOT_TOKEN}"     # secrets from the environment
    offset_file = "telegram.offset"     # relative to this file

    [[channels]]
    type = "slack"
    bot_token = "${SLACK_BOT_TOKEN}"
    signing_secret = "${SLACK_SIGNING_SECRET}"

    [gateway]
    host = "0.0.0.0"
    port = 8765
    tokens = "tokens.toml"              # a tokens file, or inline [[gateway.tokens]] tables
    allowed_origins = ["https://app.example.com"]   # browser pages that may use the gateway
    allowed_hosts = ["gateway.example.com"]         # Host names answered (DNS rebinding)
    max_connections = 500

    [observability]
    tracing = true                      # OpenTelemetry middleware on the bus
    metrics_port = 9464                 # a Prometheus exporter besides the gateway's /metrics
    json_logs = true

The same settings as YAML (``axonbus.yaml``; ``pip install 'axonbus[yaml]'``)::

    bus:
      url: "redis://:${REDIS_PASSWORD}@localhost:6379/0"
    channels:
      - type: telegram
        token: ${TELEGRAM_BOT_TOKEN}

Every string may use ``${VAR}`` or ``${VAR:-default}`` (``$${`` for a literal ``${``);
secrets never need to be written in the file. Mistakes raise one :class:`ConfigError` naming
the file and, for each, the dotted key (``channels[1].token``) and the form expected there.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, unquote, unquote_plus, urlencode, urlsplit

from pydantic import PrivateAttr, ValidationError

from ._config_errors import ConfigProblem, problems_from
from ._config_schema import (
    CHANNEL_TYPE,
    CLUSTER_SCHEMES,
    RETENTION_OPTIONS,
    SCHEMES,
    BusConfig,
    ChannelConfig,
    GatewayConfig,
    ObservabilityConfig,
    RetentionConfig,
    Table,
    check_channel_type,
    field,
    retention_problems,
)
from ._config_vars import interpolate
from ._config_yaml import YAML_SUFFIXES, parse_yaml
from ._exceptions import ConfigError
from ._redact import redact_url

C = TypeVar("C", bound="ConfigData")

__all__ = ["ConfigData", "find_config", "read_config", "without_secrets"]


class ConfigData(Table):
    """The settings of a configuration file, validated; nothing is built from them here.

    This is the data half of :class:`axonbus.Config` (which adds ``make_bus`` and the other
    builders): it imports no part of the bus, so every layer may read settings.

    >>> data = ConfigData.from_mapping({"bus": {"url": "memory://"}})
    >>> data.bus.url
    'memory://'
    """

    bus: BusConfig = field(BusConfig(), "a [bus] table")
    retention: RetentionConfig = field(RetentionConfig(), "a [retention] table")
    channels: list[ChannelConfig] = field([], "[[channels]] tables, each with a type")
    gateway: GatewayConfig = field(GatewayConfig(), "a [gateway] table")
    observability: ObservabilityConfig = field(ObservabilityConfig(), "an [observability] table")
    _source: Path | None = PrivateAttr(None)
    _where: str = PrivateAttr("configuration")

    @property
    def source(self) -> Path | None:
        """The file this came from (``None``: defaults or a mapping); relative paths in it are
        resolved against its directory."""
        return self._source

    @property
    def where(self) -> str:
        """Where this came from, for error messages: a path, ``... [tool.axonbus]``."""
        return self._where

    @classmethod
    def from_mapping(
        cls, data: Any, *, source: Path | None = None, where: str = "", env: Any = None
    ) -> Self:
        """Validate a parsed file (TOML or YAML), expanding ``${VAR}`` from ``env`` (default
        ``os.environ``); :class:`ConfigError` naming every bad key, not only the first."""
        where = where or (str(source) if source else "configuration")
        if not isinstance(data, dict):
            raise ConfigError([ConfigProblem("", "not a table", "a table of settings")], where)
        problems: list[ConfigProblem] = []
        data = _move_tokens_file(interpolate(data, os.environ if env is None else env, problems))
        unset = {p.key for p in problems}  # their value is wrong because a variable is unset
        config: Self | None
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            problems += [p for p in problems_from(exc, cls) if p.key not in unset]
            config = _valid_part(cls, data, exc)
        if config is not None:
            config._source = source
            config._where = where
            try:
                config.check()
            except ConfigError as exc:
                problems += [ConfigProblem(*p) for p in exc.problems if p[0] not in unset]
        if problems:
            raise ConfigError(list(dict.fromkeys(problems)), where)
        assert config is not None
        return config

    # -- checks that span keys -----------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`ConfigError` for values that are valid alone but not together."""
        problems = self._problems()
        if problems:
            raise ConfigError(problems, self.where)

    def _problems(self) -> list[ConfigProblem]:
        """What :meth:`check` reports; a subclass that knows more appends to it."""
        problems: list[ConfigProblem] = []
        url = self.bus.url
        scheme = urlsplit(url).scheme if "://" in url else ""
        if scheme not in SCHEMES:
            forms = ", ".join(f"{s}://" for s in SCHEMES)
            problems.append(
                ConfigProblem(
                    "bus.url",
                    f"{redact_url(url)!r} is not a bus URL",
                    f"a URL whose scheme is one of {forms}",
                )
            )
        else:
            problems += retention_problems(scheme, self.retention)
            if self.bus.servers and scheme not in CLUSTER_SCHEMES:
                problems.append(
                    ConfigProblem(
                        "bus.servers",
                        f"not supported by {scheme}://",
                        "servers only with " + ", ".join(f"{s}://" for s in CLUSTER_SCHEMES),
                    )
                )
        seen: dict[str, int] = {}
        for i, channel in enumerate(self.channels):
            key = f"channels[{i}]"
            ct = getattr(channel, "channel_type", None)
            if ct is not None:
                try:
                    check_channel_type(ct)
                except ValueError:
                    problems.append(
                        ConfigProblem(f"{key}.channel_type", f"got {ct!r}", CHANNEL_TYPE)
                    )
                if ct in seen:
                    problems.append(
                        ConfigProblem(
                            f"{key}.channel_type",
                            f"{ct!r} is already channels[{seen[ct]}]'s",
                            "a channel_type unique among [[channels]]",
                        )
                    )
                seen.setdefault(ct, i)
            for name in ("base_url", "url"):
                value = getattr(channel, name, None)
                if isinstance(value, str) and not value.startswith(("http://", "https://")):
                    problems.append(
                        ConfigProblem(
                            f"{key}.{name}",
                            f"got {redact_url(value)!r}",
                            "an http:// or https:// URL",
                        )
                    )
        gw = self.gateway
        if gw.tokens is not None and gw.tokens_file is not None:
            problems.append(
                ConfigProblem("gateway.tokens", "given both inline and as a file", "one of them")
            )
        return problems

    # -- building ------------------------------------------------------------------------------

    def path(self, value: str) -> Path:
        """``value`` as a path, relative to the config file's directory."""
        p = Path(value).expanduser()
        if not p.is_absolute() and self.source is not None:
            p = self.source.parent / p
        return p

    def bus_url(self, url: str | None = None) -> str:
        """``bus.url`` (or ``url``) with ``bus.servers`` added to its hosts, the ``[retention]``
        options its scheme has added, and ``bus.wire``; options already in the URL win."""
        url = with_servers(self.bus.url if url is None else url, self.bus.servers or [])
        scheme = urlsplit(url).scheme
        names = RETENTION_OPTIONS.get(scheme, {})
        r = self.retention
        values: dict[str, object] = {
            "max_age": r.max_age,
            "max_events": r.max_events,
            "policy": r.policy,
        }
        names = {**names, "wire": "wire"}  # the bus's wire format, on any scheme that has one
        values["wire"] = self.bus.wire
        # not urlunsplit: it turns sqlite:///x.db into sqlite:/x.db
        rest, hash_, fragment = url.partition("#")
        base, _, query = rest.partition("?")
        present = {k for k, _ in parse_qsl(query, keep_blank_values=True)}
        added = []
        for key, value in values.items():
            option = names.get(key)
            if value is None or option is None or option in present:
                continue
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            added.append((option, str(value)))
        if not added:
            return url
        query = "&".join(filter(None, [query, urlencode(added)]))
        return f"{base}?{query}{hash_}{fragment}"


def with_servers(url: str, servers: list[str]) -> str:
    """``url`` whose host list also names ``servers`` (a cluster's seeds), in order.

    >>> with_servers("nats://u:p@n1:4222?replicas=3", ["n2:4222", "n1:4222"])
    'nats://u:p@n1:4222,n2:4222?replicas=3'
    """
    if not servers:
        return url
    scheme, _, rest = url.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hosts = authority.rpartition("@")
    seeds = [h for h in hosts.split(",") if h]
    seeds += [s for s in servers if s not in seeds]
    return f"{scheme}://{userinfo}{at}{','.join(seeds)}{tail}"


def without_secrets(text: str, url: str) -> str:
    """``text`` (a message that may quote ``url``) with ``url``'s credentials hidden, however
    it was quoted: whole, or its password alone, raw or percent-decoded."""
    shown = redact_url(url)
    text = text.replace(url, shown)
    # what redact_url hid: the pieces of url that differ from its redacted form
    for secret in _hidden_parts(url, shown):
        for form in {secret, unquote(secret), unquote_plus(secret)}:
            if len(form) >= 3:  # shorter pieces would mask ordinary words
                text = text.replace(form, "***")
    return text


def _hidden_parts(url: str, shown: str) -> list[str]:
    parts = []
    pattern = re.escape(shown).replace(re.escape("***"), "(.+?)")
    found = re.fullmatch(pattern, url, re.DOTALL)
    if found is not None:
        parts = [g for g in found.groups() if g]
    return parts


def _move_tokens_file(data: dict[str, Any]) -> dict[str, Any]:
    """``[gateway] tokens = "file"`` is ``tokens_file``: one key, two forms."""
    gateway = data.get("gateway")
    if isinstance(gateway, dict) and isinstance(gateway.get("tokens"), str):
        gateway = dict(gateway)
        gateway.setdefault("tokens_file", gateway.pop("tokens"))
        return {**data, "gateway": gateway}
    return data


def _valid_part(cls: type[C], data: dict[str, Any], exc: ValidationError) -> C | None:
    """``data`` without the values ``exc`` rejected, validated: so the checks that span keys
    can still report on the rest. A rejected value inside a list drops its whole table."""
    pruned = copy.deepcopy(data)
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if not loc:
            return None
        if error["type"] == "missing" or any(isinstance(part, int) for part in loc):
            pruned.pop(str(loc[0]), None)
            continue
        parent: Any = pruned
        for part in loc[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(loc[-1], None)
    try:
        return cls.model_validate(pruned)
    except ValidationError:
        return None


# -- finding and reading files -----------------------------------------------------------------


def read_config(cls: type[C], path: str | os.PathLike[str] | None = None) -> C:
    """Read and validate a configuration as a ``cls``; :class:`ConfigError` naming every wrong
    key. :func:`axonbus.load_config` is this with :class:`axonbus.Config`.

    ``path``: an ``axonbus.toml``-style file, the same settings as YAML (``.yaml`` / ``.yml``,
    needs PyYAML: ``pip install 'axonbus[yaml]'``), or a ``pyproject.toml`` (its
    ``[tool.axonbus]`` table). Without one: ``./axonbus.toml``, ``./axonbus.yaml`` or
    ``./axonbus.yml`` (only one may exist), else ``./pyproject.toml`` if it has a
    ``[tool.axonbus]`` table, else the defaults (an in-process bus, nothing attached).

    >>> config = read_config(ConfigData, "deploy/axonbus.toml")
    >>> config.bus.url, [c.type for c in config.channels]
    ('sqlite:///events.db', ['telegram', 'slack'])
    """
    if path is None:
        found = find_config(Path.cwd())
        if found is None:
            return cls()
        p = found
    else:
        p = Path(path)
    yaml = p.suffix.lower() in YAML_SUFFIXES
    kind = "YAML" if yaml else "TOML"
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        unreadable = f"cannot read it: {exc.strerror or exc}"
        problem = ConfigProblem("", unreadable, f"a readable {kind} file")
        raise ConfigError([problem], str(p)) from exc
    where = str(p)
    if yaml:
        data = parse_yaml(text, where)
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                [ConfigProblem("", f"not valid TOML: {exc}", "TOML")], where
            ) from None
    if p.name == "pyproject.toml":
        tool = data.get("tool", {})
        section = tool.get("axonbus") if isinstance(tool, dict) else None
        if section is None:
            table = ConfigProblem("tool.axonbus", "no such table", "a [tool.axonbus] table")
            raise ConfigError([table], where)
        data, where = section, f"{p} [tool.axonbus]"
    return cls.from_mapping(data, source=p.resolve(), where=where)


_NAMES = ("axonbus.toml", "axonbus.yaml", "axonbus.yml")


def find_config(directory: Path) -> Path | None:
    """The configuration file :func:`read_config` reads in ``directory`` without a path:
    ``axonbus.toml``/``.yaml``/``.yml``, else a ``pyproject.toml`` with ``[tool.axonbus]``."""
    candidates = [directory / name for name in _NAMES if (directory / name).is_file()]
    if len(candidates) > 1:
        names = " and ".join(c.name for c in candidates)
        problem = ConfigProblem("", f"both {names} exist", "one configuration file")
        raise ConfigError([problem], str(directory))
    if candidates:
        return candidates[0]
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            return pyproject  # reading it again reports the problem
        tool = data.get("tool")
        if isinstance(tool, dict) and "axonbus" in tool:
            return pyproject
    return None

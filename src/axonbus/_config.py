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
import importlib
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, unquote_plus, urlencode, urlsplit

from pydantic import PrivateAttr, ValidationError

from ._config_errors import ConfigProblem, problems_from
from ._config_schema import (
    CHANNEL_TYPE,
    RETENTION_OPTIONS,
    SCHEMES,
    BusConfig,
    ChannelConfig,
    ConsoleConfig,
    CustomConfig,
    GatewayConfig,
    ObservabilityConfig,
    RetentionConfig,
    SlackConfig,
    Table,
    TelegramConfig,
    TokenConfig,
    WebhookConfig,
    WebSocketConfig,
    field,
    retention_problems,
)
from ._config_vars import interpolate
from ._config_yaml import YAML_SUFFIXES, parse_yaml
from ._exceptions import ConfigError
from .transports.base import redact_url

if TYPE_CHECKING:
    from ._bus import Bus
    from ._middleware import Middleware
    from .channels import Channel
    from .gateway import TokenSet

__all__ = ["Config", "load_config", "observability_name", "without_secrets"]


class Config(Table):
    """A validated configuration; see :mod:`axonbus._config` for the file format.

    >>> config = load_config()                 # ./axonbus.toml, else pyproject's [tool.axonbus]
    >>> bus = config.make_bus()                # Bus.from_config() does this
    >>> channels = config.make_channels(bus)   # attach them to a ChannelManager
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
    ) -> Config:
        """Validate a parsed file (TOML or YAML), expanding ``${VAR}`` from ``env`` (default
        ``os.environ``); :class:`ConfigError` naming every bad key, not only the first."""
        where = where or (str(source) if source else "configuration")
        if not isinstance(data, dict):
            raise ConfigError([ConfigProblem("", "not a table", "a table of settings")], where)
        problems: list[ConfigProblem] = []
        data = _move_tokens_file(interpolate(data, os.environ if env is None else env, problems))
        unset = {p.key for p in problems}  # their value is wrong because a variable is unset
        config: Config | None
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
        seen: dict[str, int] = {}
        for i, channel in enumerate(self.channels):
            key = f"channels[{i}]"
            ct = getattr(channel, "channel_type", None)
            if ct is not None:
                from .channels._base import check_channel_type

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
        if gw.tokens is not None:
            try:
                self.make_tokens()
            except ConfigError as exc:
                problems.extend(ConfigProblem(*p) for p in exc.problems)
        if problems:
            raise ConfigError(problems, self.where)

    # -- building ------------------------------------------------------------------------------

    def path(self, value: str) -> Path:
        """``value`` as a path, relative to the config file's directory."""
        p = Path(value).expanduser()
        if not p.is_absolute() and self.source is not None:
            p = self.source.parent / p
        return p

    def bus_url(self, url: str | None = None) -> str:
        """``bus.url`` (or ``url``) with the ``[retention]`` options its scheme has added;
        options already in the URL win."""
        url = self.bus.url if url is None else url
        scheme = urlsplit(url).scheme
        names = RETENTION_OPTIONS.get(scheme, {})
        r = self.retention
        values = {"max_age": r.max_age, "max_events": r.max_events, "policy": r.policy}
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

    def middleware(self) -> list[Middleware]:
        """The bus middleware the ``[observability]`` switches ask for."""
        found: list[Middleware] = []
        obs = self.observability
        wanted = [
            ("OpenTelemetryMiddleware", "tracing", obs.tracing),
            ("MetricsMiddleware", "metrics", obs.metrics),
        ]
        try:
            for name, key, on in wanted:
                if on:
                    found.append(observability_name(name, f"observability.{key}")())
        except ConfigError as exc:
            raise exc.located(self.where) from exc.__cause__
        return found

    def make_bus(self, *, bus_class: type[Bus] | None = None, **overrides: Any) -> Bus:
        """A new (not started) :class:`Bus` from ``[bus]``, ``[retention]`` and the
        ``[observability]`` middleware; keyword arguments override the file."""
        from ._bus import Bus

        if bus_class is None:
            bus_class = Bus

        b = self.bus
        options: dict[str, Any] = {
            "name": b.name,
            "codec": b.codec,
            "history": b.history,
            "max_message_bytes": b.max_message_bytes,
            "on_unavailable": b.on_unavailable,
        }
        options.update(overrides)
        if "middleware" not in overrides:
            options["middleware"] = self.middleware()
        url = self.bus_url(options.pop("url", None))
        try:
            return bus_class(url, **options)
        except (ValueError, ImportError) as exc:
            problem = ConfigProblem("bus.url", without_secrets(str(exc), url), _URL_FORM)
            raise ConfigError([problem], self.where) from None  # the cause may quote the URL

    def make_channels(self, bus: Bus) -> list[Channel]:
        """One channel per ``[[channels]]`` table, in order, not started."""
        made = []
        for i, c in enumerate(self.channels):
            try:
                made.append(self._channel(bus, i, c))
            except (ValueError, TypeError, ImportError) as exc:
                if isinstance(exc, ConfigError):
                    raise
                expected = f"valid options for a {c.type!r} channel"
                problem = ConfigProblem(f"channels[{i}]", f"{type(exc).__name__}: {exc}", expected)
                raise ConfigError([problem], self.where) from exc
        return made

    def _channel(self, bus: Bus, i: int, c: Any) -> Channel:
        from . import channels as ch

        if isinstance(c, TelegramConfig):
            return ch.TelegramChannel(
                bus,
                c.token.get_secret_value(),
                base_url=c.base_url,
                channel_type=c.channel_type,
                poll_timeout=c.poll_timeout,
                timeout=c.timeout,
                offset_store=self.path(c.offset_file) if c.offset_file else None,
            )
        if isinstance(c, SlackConfig):
            return ch.SlackChannel(
                bus,
                c.bot_token.get_secret_value(),
                c.signing_secret.get_secret_value(),
                base_url=c.base_url,
                channel_type=c.channel_type,
                timeout=c.timeout,
            )
        if isinstance(c, ConsoleConfig):
            return ch.ConsoleChannel(
                bus, user_id=c.user_id, channel_type=c.channel_type, reply_prefix=c.reply_prefix
            )
        if isinstance(c, WebhookConfig | WebSocketConfig):
            from . import gateway

            if isinstance(c, WebSocketConfig):
                return gateway.WebSocketChannel(bus, c.channel_type)
            secret = c.secret.get_secret_value() if c.secret is not None else None
            return gateway.WebhookChannel(
                bus, c.url, channel_type=c.channel_type, secret=secret, timeout=c.timeout
            )
        assert isinstance(c, CustomConfig)
        return self._custom(bus, i, c)

    def _custom(self, bus: Bus, i: int, c: CustomConfig) -> Channel:
        from .channels import Channel

        key = f"channels[{i}].factory"
        module_name, _, attr = c.factory.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                [ConfigProblem(key, f"cannot import {c.factory!r}: {exc}", _FACTORY)], self.where
            ) from exc
        channel = target(bus, **c.options)
        if not isinstance(channel, Channel):
            problem = f"{c.factory} returned {type(channel).__name__}, not a Channel"
            raise ConfigError([ConfigProblem(key, problem, _FACTORY)], self.where)
        return channel

    def make_tokens(self) -> TokenSet | None:
        """The gateway's tokens (``None``: open access), from the inline tables or the file."""
        gw = self.gateway
        if gw.tokens_file is not None:
            from .gateway import load_tokens

            try:
                return load_tokens(self.path(gw.tokens_file))
            except (OSError, ValueError) as exc:
                problem = ConfigProblem("gateway.tokens", str(exc), "a readable tokens file")
                raise ConfigError([problem], self.where) from exc
        if gw.tokens is None:
            return None
        from .gateway import AccessToken, TokenSet

        built: list[AccessToken] = []
        problems: list[ConfigProblem] = []
        for i, t in enumerate(gw.tokens):
            key = f"gateway.tokens[{i}]"
            entry = t.model_dump(exclude_none=True)
            entry["token"] = t.token.get_secret_value()
            try:
                built.append(TokenSet.from_config({"tokens": [entry]}).tokens[0])
            except ValueError as exc:
                problems.append(ConfigProblem(key, str(exc), TOKENS_FORM))
        names = [t.name for t in built]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append(
                    ConfigProblem(
                        f"gateway.tokens[{i}].name", f"{name!r} repeats", "a unique token name"
                    )
                )
        if problems:
            raise ConfigError(problems, self.where)
        if not built:
            raise ConfigError([ConfigProblem("gateway.tokens", "empty", TOKENS_FORM)], self.where)
        return TokenSet(built)


_URL_FORM = "a URL of an available transport (its driver installed) with valid options"
_FACTORY = "'package.module:name', a callable (bus, **options) returning a Channel"
TOKENS_FORM = (
    f"tables with {', '.join(TokenConfig.model_fields)}; token: a random secret of at least "
    "128 bits (`axonbus token new` makes one)"
)


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


def observability_name(name: str, key: str) -> Any:
    """``axonbus.observability.<name>``, or a :class:`ConfigError` on ``key`` saying why not
    (the package or the extra it needs is missing)."""
    try:
        from . import observability
    except ImportError as exc:
        raise ConfigError(
            [
                ConfigProblem(
                    key,
                    f"axonbus.observability is not available ({exc})",
                    "false, or an axonbus with the observability package",
                )
            ],
            "",
        ) from exc
    try:
        return getattr(observability, name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            [ConfigProblem(key, str(exc), "false, or the extra it needs installed")], ""
        ) from exc


def _valid_part(cls: type[Config], data: dict[str, Any], exc: ValidationError) -> Config | None:
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


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate a configuration; :class:`ConfigError` naming every wrong key.

    ``path``: an ``axonbus.toml``-style file, the same settings as YAML (``.yaml`` / ``.yml``,
    needs PyYAML: ``pip install 'axonbus[yaml]'``), or a ``pyproject.toml`` (its
    ``[tool.axonbus]`` table). Without one: ``./axonbus.toml``, ``./axonbus.yaml`` or
    ``./axonbus.yml`` (only one may exist), else ``./pyproject.toml`` if it has a
    ``[tool.axonbus]`` table, else the defaults (an in-process bus, nothing attached).

    >>> config = load_config("deploy/axonbus.toml")
    >>> config.bus.url, [c.type for c in config.channels]
    ('sqlite:///events.db', ['telegram', 'slack'])
    """
    if path is None:
        found = _search(Path.cwd())
        if found is None:
            return Config()
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
    return Config.from_mapping(data, source=p.resolve(), where=where)


_NAMES = ("axonbus.toml", "axonbus.yaml", "axonbus.yml")


def _search(directory: Path) -> Path | None:
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

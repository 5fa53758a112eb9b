"""Building a bus, its channels, the gateway's tokens and middleware from a configuration.

The configuration's *data* (the file format, parsing, validation) is :mod:`axonbus._config`,
which imports nothing of the bus; this module is where settings become objects, so it sits
above the engine and the plugins it builds: the composition layer.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from ._config import ConfigData, read_config, without_secrets
from ._config_errors import ConfigProblem
from ._config_schema import (
    ConsoleConfig,
    CustomConfig,
    SlackConfig,
    TelegramConfig,
    TokenConfig,
    WebhookConfig,
    WebSocketConfig,
)
from ._engine.bus import Bus, install_config_builder
from ._exceptions import ConfigError

if TYPE_CHECKING:
    from ._engine.middleware import Middleware
    from .channels import Channel
    from .gateway import TokenSet

__all__ = ["TOKENS_FORM", "Config", "bus_from_config", "load_config", "observability_name"]


class Config(ConfigData):
    """A validated configuration that builds what it describes; the file format is
    :mod:`axonbus._config`'s.

    >>> config = load_config()                 # ./axonbus.toml, else pyproject's [tool.axonbus]
    >>> bus = config.make_bus()                # Bus.from_config() does this
    >>> channels = config.make_channels(bus)   # attach them to a ChannelManager
    """

    def _problems(self) -> list[ConfigProblem]:
        # inline gateway tokens are checked by building them: the gateway owns their rules
        problems = super()._problems()
        if self.gateway.tokens is not None:
            try:
                self.make_tokens()
            except ConfigError as exc:
                problems.extend(ConfigProblem(*p) for p in exc.problems)
        return problems

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
    return read_config(Config, path)


def bus_from_config(
    path: str | os.PathLike[str] | None = None, *, bus_class: type[Bus] = Bus, **kwargs: Any
) -> Bus:
    """What :meth:`Bus.from_config` does: ``load_config(path).make_bus(...)``."""
    return load_config(path).make_bus(bus_class=bus_class, **kwargs)


install_config_builder(bus_from_config)

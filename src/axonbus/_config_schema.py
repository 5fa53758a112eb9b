"""The tables of a configuration file, as pydantic models (``extra="forbid"``).

Each field's ``description`` is the form expected there: error messages quote it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from ._config_errors import ConfigProblem
from ._redact import redact_url

__all__ = [
    "CHANNEL_TYPE",
    "CLUSTER_SCHEMES",
    "RETENTION_OPTIONS",
    "SCHEMES",
    "BusConfig",
    "ChannelConfig",
    "ConsoleConfig",
    "CustomConfig",
    "GatewayConfig",
    "ObservabilityConfig",
    "RetentionConfig",
    "SlackConfig",
    "Table",
    "TelegramConfig",
    "TokenConfig",
    "WebSocketConfig",
    "WebhookConfig",
    "check_channel_type",
    "check_host",
    "check_origin",
    "field",
    "retention_problems",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SCHEMES = (
    "memory", "sqlite", "postgresql", "postgres", "redis", "rediss", "redis+cluster",
    "rediss+cluster", "nats", "tls",
)  # fmt: skip
#: the schemes whose URL may name several servers (``bus.servers``)
CLUSTER_SCHEMES = ("nats", "tls", "redis+cluster", "rediss+cluster")


def _seconds(value: Any) -> Any:
    if isinstance(value, str):
        found = _DURATION.match(value)
        if found is None:
            raise ValueError("not a duration")
        return float(found[1]) * _UNITS[found[2]]
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]
Port = Annotated[int, Field(ge=0, le=65535)]


class Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=False)

    def __repr_args__(self) -> Any:
        # repr() and str() show URLs without their credentials (secrets are SecretStr already)
        for name, value in super().__repr_args__():
            if isinstance(value, str) and "://" in value:
                value = redact_url(value)
            yield name, value


def field(default: Any, expected: str, **kwargs: Any) -> Any:
    """A field whose description is the form expected there (error messages quote it)."""
    return Field(default, description=expected, **kwargs)


DURATION = "seconds (a number >= 0) or a duration like '30s', '10m', '2h', '7d'"


class BusConfig(Table):
    """``[bus]``: the arguments of :class:`Bus`."""

    url: str = field(
        "memory://",
        "a bus URL like 'memory://', 'sqlite:///events.db', "
        "'redis://localhost:6379/0', 'nats://localhost:4222'",
    )
    name: str | None = field(None, "a bus name (a string)", min_length=1)
    codec: Literal["json", "msgpack"] = field("json", "'json' or 'msgpack'")
    wire: Literal["compact", "cloudevents"] | None = field(
        None, "'compact' or 'cloudevents' (redis://, nats://, amqp://; merged into the URL)"
    )
    max_message_bytes: int = field(1_048_576, "a positive number of bytes", gt=0)
    history: int = field(0, "the number of events kept for bus.history(), an int >= 0", ge=0)
    on_unavailable: Literal["raise", "log"] = field("raise", "'raise' or 'log'")
    servers: list[Annotated[str, Field(min_length=1)]] | None = field(
        None, "a list of 'host:port' seeds of a cluster, added to the URL's hosts"
    )


class RetentionConfig(Table):
    """``[retention]``: how long a log transport keeps events (merged into the URL)."""

    max_age: Seconds | None = field(None, DURATION)
    max_events: int | None = field(None, "a positive number of events", gt=0)
    policy: Literal["keep", "drop"] | None = field(
        None, "'keep' (never drop what a durable subscription has not acknowledged) or 'drop'"
    )


# -- channels ----------------------------------------------------------------------------------

CHANNEL_TYPE = "a channel type: a word without '.', '*', '>', '$' or spaces"
SECRET = "a string, best from the environment: '${VARIABLE}'"


class TelegramConfig(Table):
    type: Literal["telegram"]
    token: SecretStr = field(..., f"the bot token from @BotFather; {SECRET}")
    channel_type: str = field("telegram", CHANNEL_TYPE)
    base_url: str = field("https://api.telegram.org", "an http(s) URL of the Bot API")
    poll_timeout: Seconds = field(30.0, DURATION)
    offset_file: str | None = field(None, "a file path (relative to the config file)")
    timeout: Seconds = field(10.0, DURATION)


class SlackConfig(Table):
    type: Literal["slack"]
    bot_token: SecretStr = field(..., f"the app's bot token (xoxb-...); {SECRET}")
    signing_secret: SecretStr = field(..., f"the app's signing secret; {SECRET}")
    channel_type: str = field("slack", CHANNEL_TYPE)
    base_url: str = field("https://slack.com/api", "an http(s) URL of the Slack Web API")
    timeout: Seconds = field(10.0, DURATION)


class ConsoleConfig(Table):
    type: Literal["console"]
    channel_type: str = field("console", CHANNEL_TYPE)
    user_id: str = field("console", "a string")
    reply_prefix: str = field("> ", "a string")


class WebhookConfig(Table):
    type: Literal["webhook"]
    url: str = field(..., "the http(s) URL replies are POSTed to")
    channel_type: str = field("webhook", CHANNEL_TYPE)
    secret: SecretStr | None = field(None, f"the HMAC signing secret; {SECRET}")
    timeout: Seconds = field(10.0, DURATION)


class WebSocketConfig(Table):
    type: Literal["websocket"]
    channel_type: str = field("websocket", CHANNEL_TYPE)


class CustomConfig(Table):
    type: Literal["custom"]
    factory: str = field(
        ...,
        "'package.module:name', a callable (bus, **options) -> Channel",
        pattern=r"^[\w.]+:[\w.]+$",
    )
    options: dict[str, Any] = field({}, "a table of keyword arguments for the factory")


ChannelConfig = Annotated[
    TelegramConfig | SlackConfig | ConsoleConfig | WebhookConfig | WebSocketConfig | CustomConfig,
    Field(discriminator="type"),
]

# -- gateway and observability -----------------------------------------------------------------

ORIGIN = "a browser origin, scheme://host[:port] like 'https://app.example.com', or '*'"
HOST = "a host name like 'gateway.example.com' or '10.0.0.5' (no port), '*.example.com', or '*'"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")


_CHANNEL_TYPE_FORBIDDEN = frozenset(".*>$")


def check_channel_type(channel_type: object) -> str:
    """Return ``channel_type`` if it can fill one topic token, else raise ``ValueError``.

    >>> check_channel_type("telegram")
    'telegram'
    """
    if (
        not isinstance(channel_type, str)
        or not channel_type
        or _CHANNEL_TYPE_FORBIDDEN.intersection(channel_type)
        or any(c.isspace() for c in channel_type)
    ):
        raise ValueError(
            f"invalid channel_type {channel_type!r}: it must be a non-empty str without "
            "'.', '*', '>', '$' or whitespace (it becomes one token of channel.{type}.in)"
        )
    return channel_type


def check_origin(value: str) -> str:
    """``value`` if it is an origin as browsers send it (``scheme://host[:port]``) or ``"*"``;
    else :class:`ValueError` saying what is wrong.

    >>> check_origin("https://app.example.com:8443")
    'https://app.example.com:8443'
    """
    if value == "*":
        return value
    parts = urlsplit(value)
    if not _SCHEME.match(parts.scheme) or "://" not in value or not parts.hostname:
        raise ValueError("not scheme://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in value:
        raise ValueError("an origin has no path, query or fragment")
    if "@" in parts.netloc:
        raise ValueError("an origin has no user name or password")
    try:
        parts.port  # noqa: B018 - parsing it checks it
    except ValueError:
        raise ValueError("the port must be a number in 0..65535") from None
    return value


def check_host(value: str) -> str:
    """``value`` if it is a ``Host`` name the gateway can be told to answer (``"*"``,
    ``"*.example.com"``, a name or an IP address, no port); else :class:`ValueError`.

    >>> check_host("*.example.com")
    '*.example.com'
    """
    if value == "*":
        return value
    name = value.removeprefix("*.")
    if not name or any(c.isspace() or c in "/@?#*" for c in name):
        raise ValueError("not a host name")
    if ":" in name:
        try:
            ipaddress.IPv6Address(name.strip("[]"))
        except ValueError:
            raise ValueError("a host name without a port (the gateway ignores the port)") from None
    return value


Origin = Annotated[str, AfterValidator(check_origin)]
HostName = Annotated[str, AfterValidator(check_host)]


class TokenConfig(Table):
    """One ``[[gateway.tokens]]`` table, and one entry of a tokens file: its fields are the
    keys a tokens file accepts (:func:`axonbus.gateway.load_tokens` checks against them)."""

    name: str = field(..., "a unique token name", min_length=1)
    token: SecretStr = field(
        ...,
        "the bearer secret, a random string of at least 128 bits (22+ mixed letters and "
        f"digits; `axonbus token new` makes one); {SECRET}",
    )
    publish: list[str] = field([], "a list of topic patterns like ['agent.*.user_input']")
    subscribe: list[str] = field([], "a list of topic patterns like ['agent.>']")
    deny: list[str] = field([], "a list of topic patterns like ['$bus.>']")
    rate: float | None = field(None, "requests per second, a number > 0", gt=0)
    burst: int | None = field(None, "a positive int", gt=0)
    # strict, as a tokens file is: 1 or "yes" is not a grant
    metrics: bool = field(False, "true (the token may read /metrics) or false", strict=True)


class GatewayConfig(Table):
    host: str = field("127.0.0.1", "an interface to listen on, like '127.0.0.1' or '0.0.0.0'")
    port: Port = field(8765, "a TCP port, 0..65535")
    tokens: list[TokenConfig] | None = field(
        None, "a tokens file path, or a list of [[gateway.tokens]] tables"
    )
    tokens_file: str | None = field(None, "a tokens file path (JSON or TOML)")
    max_body: int | None = field(None, "a positive number of bytes", gt=0)
    demo: bool = field(False, "true or false")
    insecure: bool = field(False, "true or false")
    allowed_origins: list[Origin] = field(
        [], f"a list of browser origins allowed besides the gateway's own; each {ORIGIN}"
    )
    allowed_hosts: list[HostName] | None = field(
        None, f"a list of the Host names answered; each {HOST}"
    )
    max_connections: int | None = field(
        None, "a positive number of connections served at once", gt=0
    )
    loop: Literal["asyncio", "uvloop", "auto"] = field(
        "asyncio", "'asyncio', 'uvloop' (needs the uvloop extra) or 'auto' (uvloop when installed)"
    )


class ObservabilityConfig(Table):
    tracing: bool = field(False, "true or false")
    metrics: bool = field(False, "true or false")
    metrics_port: Port | None = field(None, "a TCP port, 0..65535")
    metrics_host: str = field("127.0.0.1", "an interface for the metrics exporter")
    json_logs: bool = field(False, "true or false")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = field(
        "info", "'critical', 'error', 'warning', 'info' or 'debug'"
    )


#: [retention] key -> the URL option of each scheme that has one
_LOG = {"max_age": "max_age", "max_events": "max_events", "policy": "retention"}
_REDIS = {"max_age": "max_age", "max_events": "maxlen"}
_NATS = {"max_age": "stream_max_age"}
RETENTION_OPTIONS: dict[str, dict[str, str]] = {
    "sqlite": _LOG,
    "postgresql": _LOG,
    "postgres": _LOG,
    "redis": _REDIS,
    "rediss": _REDIS,
    "redis+cluster": _REDIS,
    "rediss+cluster": _REDIS,
    "nats": _NATS,
    "tls": _NATS,
}


def retention_problems(scheme: str, retention: RetentionConfig) -> list[ConfigProblem]:
    supported = RETENTION_OPTIONS.get(scheme, {})
    problems = []
    for key in ("max_age", "max_events", "policy"):
        if getattr(retention, key) is None or key in supported:
            continue
        if not supported:
            expected = (
                "no [retention] on memory:// (it keeps no events); use sqlite://, "
                "postgresql://, redis:// or nats://"
            )
        else:
            expected = f"only {', '.join(sorted(supported))} for {scheme}:// buses"
        problems.append(
            ConfigProblem(f"retention.{key}", f"not supported by {scheme}://", expected)
        )
    return problems

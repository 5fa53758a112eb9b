"""Structured logging: render the bus's log lines with their fields, secrets removed.

Every log line the bus writes about an event carries, as stdlib ``extra`` fields,
``event_id``, ``topic``, ``subscription`` and ``correlation_id`` where they apply (and
``attempt`` for handler failures): handler failures and retries, dead letters, mailbox drops,
publishes lost while a broker is down, transports' delivery errors. Loggers: ``axonbus``,
``axonbus.runtime``, ``axonbus.gateway.access``.

>>> handler = logging.StreamHandler()
>>> handler.setFormatter(JsonFormatter())
>>> logging.getLogger("axonbus").addHandler(handler)
{"time": "2024-06-01T12:00:00.123Z", "level": "ERROR", "logger": "axonbus",
 "message": "handler on_order failed ...", "event_id": "…", "topic": "orders.new",
 "subscription": "on_order", "correlation_id": "…", "attempt": 3, "exception": "Traceback …"}

Lines your own code logs while a handler runs get the same fields, ``event_id``, ``topic``,
``subscription`` and ``correlation_id`` of the event being handled, whatever the logger (they
are read from context variables the bus's workers keep; tasks a handler starts, and
``offload=True`` threads, inherit them). A record's own fields win: the bus's lines about
another event keep theirs.

>>> async def on_order(order):
...     log.info("charging")   # {"message": "charging", "event_id": "…", "topic": …}

With structlog, add :func:`add_bus_fields` to your processors (for structlog's own loggers)
and to ``ProcessorFormatter(foreign_pre_chain=[...])`` (for stdlib records). For plain text
formats, :class:`BusLogFilter` gives every record the fields (``"-"`` where they do not apply),
e.g. ``"%(levelname)s %(topic)s %(event_id)s %(message)s"``. The fields are read where the
record is formatted or filtered: with a ``QueueHandler``, put :class:`BusLogFilter` on it so
they are attached before the record changes thread.

Secrets: the bus never logs a broker password (URLs are shown through ``redact_url``) nor a
gateway token (its access log masks ``?token=``). As a second line of defence these helpers
mask credentials in URLs, ``token=`` / ``password=``-style query values and bearer
tokens in every message, and the values of fields with secret-looking names.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from .._events import current_envelope, current_subscription, log_fields

__all__ = [
    "BUS_FIELDS",
    "BusLogFilter",
    "JsonFormatter",
    "add_bus_fields",
    "handler_fields",
    "redact",
]

#: the structured fields of the bus's log lines, in the order JSON output shows them
BUS_FIELDS = ("event_id", "topic", "subscription", "correlation_id", "attempt")

_SECRET_KEYS = frozenset(
    {"password", "passwd", "secret", "token", "access_token", "api_key", "apikey",
     "authorization", "auth", "credentials", "private_key"}
)  # fmt: skip
_MASK = "***"

# scheme://user:password@host -> scheme://user:***@host ; scheme://token@host -> scheme://***@host
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s/@'\"]+)@")
_QUERY_SECRET = re.compile(
    r"(?P<key>\b(?:access_token|token|password|passwd|secret|api_key|apikey)=)[^&\s'\"]+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<scheme>\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)

# attributes every LogRecord has: anything else on a record came from ``extra``
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _mask_userinfo(m: re.Match[str]) -> str:
    user, colon, _ = m.group("userinfo").partition(":")
    return f"{m.group('scheme')}{user}:{_MASK}@" if colon else f"{m.group('scheme')}{_MASK}@"


def redact(text: str) -> str:
    """``text`` with URL credentials, secret query values and bearer tokens masked.

    >>> redact("cannot reach redis://:hunter2@db:6379/0?token=abc")
    'cannot reach redis://:***@db:6379/0?token=***'
    """
    if "@" in text:
        text = _URL_CREDENTIALS.sub(_mask_userinfo, text)
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: m.group("key") + _MASK, text)
    if "earer" in text:
        text = _BEARER.sub(lambda m: m.group("scheme") + _MASK, text)
    return text


def _clean(key: str, value: Any) -> Any:
    if key.lower() in _SECRET_KEYS:
        return _MASK
    if isinstance(value, str):
        return redact(value)
    return value


def handler_fields() -> dict[str, Any] | None:
    """The bus fields of the event whose handler is running here, or None outside handlers.

    >>> handler_fields()
    {'event_id': '…', 'topic': 'orders.new', 'correlation_id': '…', 'subscription': 'on_order'}
    """
    env = current_envelope.get()
    if env is None:
        return None
    return log_fields(env, current_subscription.get())


def _has_bus_fields(get: Callable[[str], Any]) -> bool:
    return any(get(name) is not None for name in BUS_FIELDS)


def _field_of(record: logging.LogRecord) -> Callable[[str], Any]:
    return lambda name: getattr(record, name, None)


def _fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The bus fields of ``record``: its own if it has any, else the running handler's."""
    if _has_bus_fields(_field_of(record)):
        return {n: v for n in BUS_FIELDS if (v := getattr(record, n, None)) is not None}
    return handler_fields() or {}


def _extra_of(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and k[:1] != "_"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    the bus fields present on the record, every other ``extra`` field (unless
    ``extra=False``), and ``exception`` / ``stack`` text. Secrets are masked (module docstring).

    ``static``: fields added to every line (service name, host...).
    """

    def __init__(
        self,
        *,
        extra: bool = True,
        static: dict[str, Any] | None = None,
        fields: Sequence[str] = BUS_FIELDS,
    ) -> None:
        super().__init__()
        self.extra = extra
        self.static = dict(static or {})
        self.fields = tuple(fields)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in self.static.items():
            out.setdefault(key, value)
        fields = _fields_of(record)
        for name in self.fields:
            value = fields.get(name) if name in BUS_FIELDS else getattr(record, name, None)
            if value is not None:
                out[name] = _clean(name, value)
        if self.extra:
            for key, value in _extra_of(record).items():
                if key not in out:
                    out[key] = _clean(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = redact(record.exc_text)
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(out, default=str).decode()


class BusLogFilter(logging.Filter):
    """Give every record the bus fields (``"-"`` where they do not apply) so text formats can
    name them, and mask secrets in its message. Attach it to a handler.

    >>> handler.addFilter(BusLogFilter())
    >>> handler.setFormatter(logging.Formatter("%(levelname)s %(topic)s %(event_id)s %(message)s"))
    """

    def __init__(self, name: str = "", *, missing: str = "-") -> None:
        super().__init__(name)
        self.missing = missing

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):
            return False
        if not _has_bus_fields(_field_of(record)):
            for name, value in (handler_fields() or {}).items():
                setattr(record, name, value)
        for name in BUS_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, self.missing)
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def add_bus_fields(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: adds the bus fields to the event dict, and masks secrets in the
    event text and every other string field, and in fields with secret-looking names.

    The fields are those of a stdlib record (``_record``, set by
    ``structlog.stdlib.ProcessorFormatter`` for foreign records) if it has any, else those of
    the event whose handler is logging; fields already in the event dict win. Put it after
    ``format_exc_info`` so a traceback is masked too. structlog itself is not needed to import
    this.

    >>> formatter = structlog.stdlib.ProcessorFormatter(
    ...     foreign_pre_chain=[structlog.stdlib.add_log_level,
    ...                        structlog.processors.format_exc_info, add_bus_fields],
    ...     processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
    ...                 structlog.processors.JSONRenderer()],
    ... )
    """
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        fields = _fields_of(record)
    elif _has_bus_fields(event_dict.get):
        fields = {}  # the caller said which event this line is about
    else:
        fields = handler_fields() or {}
    for name, value in fields.items():
        event_dict.setdefault(name, value)
    for key, value in list(event_dict.items()):
        if key[:1] != "_":
            event_dict[key] = _clean(key, value)
    return event_dict

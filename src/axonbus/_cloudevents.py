"""The open wire: envelopes as CNCF CloudEvents 1.0, for ``wire="cloudevents"``.

>>> wire = CloudEvents("axonbus://shop/host/42/a1b2")
>>> data = wire.structured(Envelope("chat.in", {"text": "hi"}, id="e1", timestamp=0.0))
>>> wire.from_structured(data).event
{'text': 'hi'}

Attributes, the same in both content modes (binary: each as a ``ce-`` header, the data as the
body; structured: one JSON object)::

    specversion  "1.0"
    id           the event id
    source       the bus name and the process: axonbus://{bus}/{host}/{pid}/{instance}
    type         the registered event name (Event.__event_name__); "axonbus.value" for plain
                 JSON values, "axonbus.bytes" for bytes
    subject      the topic
    time         the event's timestamp, RFC 3339 in UTC
    datacontenttype  "application/json" ("application/octet-stream" for bytes)
    correlationid, causationid   the envelope's correlation and causation ids
    any header whose name is a valid extension name (lowercase a-z0-9, e.g. traceparent,
                 tracestate, priority) as an extension of that name; every other header
                 (idempotency_key...) in the one extension "axonbusheaders", a JSON object

Receiving, any CloudEvent 1.0 (from any client): ``type`` decodes to the class registered under
that name; an unregistered type gives a dict, ``{"__event__": type, **data}`` (data that is not
a JSON object under ``"data"``); JSON data (no datacontenttype, or a JSON one) is parsed, other
data stays bytes (text/* as str). Extensions come back as headers. :class:`DecodeError` says
why a message is not a CloudEvent.
"""

from __future__ import annotations

import binascii
import os
import re
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import orjson
from pydantic import ValidationError

from ._codec import _b64_encode, _event_json, _json_default
from ._events import Envelope, Event, event_class
from ._exceptions import DecodeError, EncodeError

__all__ = [
    "BYTES_TYPE",
    "ERROR_TYPE",
    "HEADERS_EXTENSION",
    "STRUCTURED",
    "VALUE_TYPE",
    "WIRES",
    "CloudEvents",
    "is_binary",
    "is_structured",
    "make_source",
    "wire_option",
    "with_wire",
]

SPECVERSION = "1.0"
#: the media type of a structured CloudEvent in JSON
STRUCTURED = "application/cloudevents+json"
JSON = "application/json"
OCTETS = "application/octet-stream"
#: the type of a plain JSON value (not an Event) and of a bytes payload
VALUE_TYPE = "axonbus.value"
BYTES_TYPE = "axonbus.bytes"
#: the type of an error reply to a request (data: {"error": type name, "message": text})
ERROR_TYPE = "axonbus.error"
#: the extension carrying headers whose names are not valid extension names (JSON object)
HEADERS_EXTENSION = "axonbusheaders"
CORRELATION = "correlationid"
CAUSATION = "causationid"
#: the wire formats a broker transport speaks (URL option / config key ``wire``)
WIRES = ("compact", "cloudevents")

_CONTEXT = frozenset(
    ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema")
)
_RESERVED = _CONTEXT | {"data", "data_base64", CORRELATION, CAUSATION, HEADERS_EXTENSION}
_EXT_NAME = re.compile(r"[a-z0-9]{1,20}")
_HEADER_NAMES = {
    **{f"ce-{name}": name for name in (*_CONTEXT, CORRELATION, CAUSATION, HEADERS_EXTENSION)},
    "ce-traceparent": "traceparent",
    "ce-tracestate": "tracestate",
    "content-type": "datacontenttype",
    "Content-Type": "datacontenttype",
}
_JSON_TYPE = re.compile(r"^(application|text)/([a-z0-9.+-]*\+)?json(;.*)?$", re.IGNORECASE)


def wire_option(options: dict[str, str], default: str = "compact") -> str:
    """Pop the ``wire`` URL option (``compact`` or ``cloudevents``); ValueError otherwise."""
    wire = options.pop("wire", default)
    if wire not in WIRES:
        raise ValueError(f"URL option wire must be one of {', '.join(WIRES)}, got {wire!r}")
    return wire


def with_wire(url: str, wire: str | None) -> str:
    """``url`` with the ``wire`` option (``Bus(url, wire=...)``); ValueError for an unknown
    wire or one that contradicts the URL's.

    >>> with_wire("nats://localhost:4222", "cloudevents")
    'nats://localhost:4222?wire=cloudevents'
    """
    if wire is None:
        return url
    if wire not in WIRES:
        raise ValueError(f"wire must be one of {', '.join(WIRES)}, got {wire!r}")
    rest, hash_, fragment = url.partition("#")
    base, _, query = rest.partition("?")
    present = dict(parse_qsl(query, keep_blank_values=True)).get("wire")
    if present is not None:
        if present != wire:
            raise ValueError(f"wire={wire!r} contradicts the URL's wire={present!r}")
        return url
    query = "&".join(filter(None, [query, f"wire={wire}"]))
    return f"{base}?{query}{hash_}{fragment}"


def make_source(bus: str, instance: str) -> str:
    """The ``source`` of a bus's events: its name and the process that sent them."""
    host = quote(socket.gethostname() or "localhost", safe="")
    return f"axonbus://{quote(bus, safe='')}/{host}/{os.getpid()}/{instance}"


def is_structured(data: bytes) -> bool:
    """Whether ``data`` looks like a structured CloudEvent rather than a compact envelope.

    A JSON object is one, unless it starts like a compact JSON envelope (``{"v":``, the
    first key the json codec writes); a msgpack envelope starts with a map byte, never ``{``.
    Checked in full when decoded.
    """
    if data[:1] != b"{":
        data = data.lstrip()
        if data[:1] != b"{":
            return False
    return not data.startswith(b'{"v":')


_second: list[Any] = [None, ""]  # the last second formatted, and its text (one per second)


def _rfc3339(timestamp: float) -> str:
    seconds = int(timestamp // 1)
    micros = round((timestamp - seconds) * 1_000_000)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    cached = _second
    if cached[0] != seconds:
        # formatting a date costs ~4 us; events of one second share it
        cached[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        cached[0] = seconds
    return f"{cached[1]}.{micros:06d}Z"


_parsed: list[Any] = ["", 0]  # the last second parsed ("YYYY-MM-DDTHH:MM:SS") and its epoch


def _timestamp(value: Any) -> float:
    if value is None:
        return time.time()
    # the form _rfc3339 writes, in a second parsed just before: no datetime needed
    if type(value) is str and len(value) == 27 and value[:19] == _parsed[0]:
        micros = value[20:26]
        if value[19] == "." and value[26] == "Z" and micros.isdigit():
            seconds: int = _parsed[1]
            return (seconds * 1_000_000 + int(micros)) / 1_000_000
    if not isinstance(value, str):
        raise DecodeError(f"CloudEvent time must be a string, got {type(value).__name__}")
    try:
        # RFC 3339 allows a lowercase t and z; nanoseconds (Go's SDK) are cut to microseconds
        moment = datetime.fromisoformat(value.upper())
    except ValueError:
        raise DecodeError(f"CloudEvent time {value[:40]!r} is not RFC 3339") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if len(value) == 27 and value[19] == "." and value[26] in "Zz":
        _parsed[0], _parsed[1] = value[:19].upper(), int(moment.replace(microsecond=0).timestamp())
    return moment.timestamp()


def _text(attrs: Mapping[str, Any], key: str) -> str:
    value = attrs.get(key)
    if not isinstance(value, str) or not value:
        raise DecodeError(f"not a CloudEvent: attribute {key!r} missing or empty")
    return value


class CloudEvents:
    """Encodes envelopes as CloudEvents from one ``source``, and decodes anyone's.

    Shared by every broker transport: binary mode for brokers with headers (NATS, AMQP),
    structured mode for those without (Redis).
    """

    __slots__ = ("_prefix", "_source_header", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._source_header = _header(source)
        # what every structured event of this source starts with (see is_own)
        self._prefix = b'{"specversion":"1.0","source":' + orjson.dumps(source) + b","

    # -- encoding --------------------------------------------------------------------------------

    def _context(self, env: Envelope) -> dict[str, Any]:
        # the key order of structured events: specversion and source first (is_own reads them)
        attrs: dict[str, Any] = {
            "specversion": SPECVERSION,
            "source": self.source,
            "id": env.id,
            "type": "",
            "subject": env.topic,
            "time": _rfc3339(env.timestamp),
            "datacontenttype": JSON,
        }
        if env.correlation_id is not None or env.causation_id is not None or env._headers:
            attrs.update(_extensions(env))
        return attrs

    def structured(self, env: Envelope) -> bytes:
        """One JSON object: the attributes, and ``data`` (``data_base64`` for bytes)."""
        attrs = self._context(env)
        event = env.event
        if isinstance(event, Event):
            attrs["type"] = event.__event_name__
            attrs["data"] = _event_json(event)
        elif isinstance(event, bytes | bytearray | memoryview):
            attrs["type"] = BYTES_TYPE
            attrs["datacontenttype"] = OCTETS
            attrs["data_base64"] = _b64_encode(event)
        else:
            attrs["type"] = VALUE_TYPE
            attrs["data"] = event
        return _dumps(attrs, env)

    def binary(self, env: Envelope) -> tuple[dict[str, str], bytes]:
        """The ``ce-`` headers (and ``content-type``) and the body: binary content mode."""
        event = env.event
        content = JSON
        if isinstance(event, Event):
            kind = event.__event_name__
            body = event.__pydantic_serializer__.to_json(event, by_alias=True)
        elif isinstance(event, bytes | bytearray | memoryview):
            kind = BYTES_TYPE
            content = OCTETS
            body = bytes(event)
        else:
            kind = VALUE_TYPE
            body = _dumps(event, env)
        headers = {
            "ce-specversion": SPECVERSION,
            "ce-source": self._source_header,
            "ce-id": _header(env.id),
            "ce-type": _header(kind),
            "ce-subject": _header(env.topic),
            "ce-time": _rfc3339(env.timestamp),
        }
        if env.correlation_id is not None or env.causation_id is not None or env._headers:
            for key, value in _extensions(env).items():
                headers["ce-" + key] = _header(value)
        headers["content-type"] = content
        return headers, body

    def is_own(self, data: bytes) -> bool:
        """Whether a structured event was sent by this source (a bus skips its own echoes)."""
        return data.startswith(self._prefix)

    # -- decoding --------------------------------------------------------------------------------

    def from_structured(self, data: bytes, topic: str | None = None) -> Envelope:
        """The envelope of a structured CloudEvent; ``topic`` (the channel's) overrides subject."""
        try:
            attrs = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"not a CloudEvent: not JSON ({exc})") from None
        if type(attrs) is not dict:
            raise DecodeError(f"not a CloudEvent: a JSON {type(attrs).__name__}, not an object")
        if "data_base64" in attrs:
            raw = attrs["data_base64"]
            if not isinstance(raw, str):
                raise DecodeError("CloudEvent data_base64 must be a string")
            try:
                payload: Any = binascii.a2b_base64(raw)
            except (binascii.Error, ValueError) as exc:
                raise DecodeError(f"CloudEvent data_base64 is not base64: {exc}") from None
            return _envelope(attrs, payload, False, topic)
        return _envelope(attrs, attrs.get("data"), True, topic)

    def from_binary(
        self, headers: Mapping[str, str], body: bytes, topic: str | None = None
    ) -> Envelope:
        """The envelope of a binary-mode CloudEvent (header names in any case)."""
        attrs: dict[str, Any] = {}
        for key, value in headers.items():
            name = _HEADER_NAMES.get(key)  # the usual spelling: no string to build
            if name is None:
                if key[:3].lower() == "ce-":
                    name = key[3:].lower()
                elif key.lower() == "content-type":
                    name = "datacontenttype"
                else:
                    continue
            attrs[name] = unquote(value) if "%" in value else value
        content = attrs.get("datacontenttype")
        if content is None or content == JSON or _JSON_TYPE.match(content):
            if not body:
                return _envelope(attrs, None, True, topic)
            try:
                return _envelope(attrs, orjson.loads(body), True, topic)
            except orjson.JSONDecodeError as exc:
                raise DecodeError(f"CloudEvent data is not the JSON it says: {exc}") from None
        return _envelope(attrs, body, False, topic)


def _extensions(env: Envelope) -> dict[str, str]:
    """The extension attributes of ``env``: its ids and its headers (see the module doc)."""
    attrs: dict[str, str] = {}
    if env.correlation_id is not None:
        attrs[CORRELATION] = env.correlation_id
    if env.causation_id is not None:
        attrs[CAUSATION] = env.causation_id
    headers = env._headers
    if headers:
        other: dict[str, str] = {}
        for key, value in headers.items():
            # a value with control characters (CR/LF) could break a header line
            if key not in _RESERVED and _EXT_NAME.fullmatch(key) and value.isprintable():
                attrs[key] = value
            else:
                other[key] = value
        if other:
            attrs[HEADERS_EXTENSION] = orjson.dumps(other).decode()
    return attrs


def is_binary(headers: Mapping[str, str] | None) -> bool:
    """Whether message headers carry a binary-mode CloudEvent."""
    return bool(headers) and ("ce-specversion" in headers or "Ce-Specversion" in headers)  # type: ignore[operator]


_PLAIN_HEADER = re.compile(r"[!#-$&-~]*")  # printable ASCII but space, '"' and '%'


def _header(value: str) -> str:
    """A header value as the HTTP binding writes it (which NATS and AMQP follow): space, '"',
    '%' and anything outside printable ASCII percent-encoded (UTF-8)."""
    if _PLAIN_HEADER.fullmatch(value):
        return value
    return quote(value, safe="!#$&'()*+,/:;<=>?@[\\]^_`{|}~-.")


def _dumps(value: Any, env: Envelope) -> bytes:
    try:
        return orjson.dumps(value, default=_json_default)
    except orjson.JSONEncodeError as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, EncodeError):
            raise cause from exc
        raise EncodeError(f"cannot encode payload on {env.topic!r}: {cause}") from exc


def _envelope(attrs: dict[str, Any], data: Any, parsed: bool, topic: str | None) -> Envelope:
    version = attrs.get("specversion")
    if version is None:
        raise DecodeError("not a CloudEvent: no specversion (and not an axonbus envelope)")
    if version != SPECVERSION:
        raise DecodeError(f"not a CloudEvent 1.0: specversion {str(version)[:20]!r}")
    id_ = _text(attrs, "id")
    _text(attrs, "source")
    kind = _text(attrs, "type")
    subject = attrs.get("subject")
    if topic is None:
        if not isinstance(subject, str) or not subject:
            raise DecodeError("CloudEvent has no subject, so no topic")
        topic = subject
    if not parsed and isinstance(data, bytes) and _is_text(attrs.get("datacontenttype")):
        try:
            data = data.decode()
        except UnicodeDecodeError:
            raise DecodeError("CloudEvent text data is not UTF-8") from None
    event: Any
    if kind == VALUE_TYPE:
        event = data
    elif kind == BYTES_TYPE:
        event = data if isinstance(data, bytes) else orjson.dumps(data)
    else:
        cls = event_class(kind)
        if cls is not None and isinstance(data, dict):
            try:
                event = cls.model_validate(data, strict=False)
            except ValidationError as exc:
                raise DecodeError(f"invalid data for event {kind!r}: {exc}") from exc
        elif isinstance(data, dict):
            event = {"__event__": kind, **data}
        else:
            event = {"__event__": kind, "data": data}
    others = attrs.keys() - _RESERVED  # extensions (none, usually)
    headers = None
    if others or HEADERS_EXTENSION in attrs:
        headers = _extension_headers(attrs, others)
    correlation = attrs.get(CORRELATION)
    causation = attrs.get(CAUSATION)
    return Envelope(
        topic,
        event,
        id_,
        headers,
        _timestamp(attrs.get("time")),
        correlation if isinstance(correlation, str) else None,
        causation if isinstance(causation, str) else None,
    )


def _is_text(content: Any) -> bool:
    return isinstance(content, str) and content.lower().startswith("text/")


def _extension_headers(attrs: dict[str, Any], others: set[str]) -> dict[str, str] | None:
    """The headers an event's extension attributes (``others``) stand for (see the module
    doc)."""
    headers: dict[str, str] = {}
    for key in others:
        value = attrs[key]
        if isinstance(value, str):
            headers[key] = value
        elif isinstance(value, bool | int | float):
            headers[key] = orjson.dumps(value).decode()
    extra = attrs.get(HEADERS_EXTENSION)
    if isinstance(extra, str):
        try:
            more = orjson.loads(extra)
        except orjson.JSONDecodeError:
            more = None
        if isinstance(more, dict):
            headers.update((k, v) for k, v in more.items() if isinstance(v, str))
    return headers or None

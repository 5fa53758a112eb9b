"""The wire format of envelopes that leave the process: a JSON codec (default) and msgpack.

>>> codec = get_codec("json")
>>> data = encode_checked(codec, Envelope("chat.in", {"text": "hi"}), limit=1_048_576)
>>> codec.decode(data).event
{'text': 'hi'}

Both codecs carry the same map (version 1); JSON shown, optional keys in brackets::

    {"v": 1, "id": "…", "topic": "…", "timestamp": 1717171717.5,
     ["headers": {"k": "v"},] ["correlation_id": "…",] ["causation_id": "…",]
     "kind": "event" | "bytes" | "value", ["type": "<event name>",] "data": …}

- ``"event"``: an :class:`Event`; ``type`` is its ``__event_name__``, ``data`` its
  ``model_dump(mode="json", by_alias=True)``. It decodes to the class registered under that name
  (never imported by name); an unregistered name decodes to ``{"__event__": name, **data}``.
- ``"bytes"``: a bytes-like payload; base64 text in JSON, a native bin in msgpack. Decodes as bytes.
- ``"value"``: anything else. str/int/float/bool/None/list/dict come back as themselves (tuples as
  lists); other pydantic models, dataclasses, datetime/date/time, UUID and Enum travel in their
  JSON form and come back as dicts / strings / values. Other types raise :class:`EncodeError`
  (a ``TypeError``).

Limits, the same in both codecs: dict keys must be str (both refuse others when encoding; the
msgpack decoder also accepts only str keys, a guard against hash flooding); integers fit in
64 bits. Bytes nested inside a value travel in msgpack only. JSON writes NaN and infinities as null.
Every str (payload, keys, topic, headers, ids) travels as UTF-8: any text round-trips, NUL
included, but a lone surrogate (``"\\udc80"``, from ``os.fsdecode`` or ``surrogateescape``) has
no UTF-8 form and raises :class:`EncodeError` at publish; send such data as bytes.
Unknown keys are ignored, so version 1 can grow optional fields. Pickle is never used.
"""

from __future__ import annotations

import binascii
import dataclasses
from collections.abc import Callable
from datetime import date, datetime, time
from enum import Enum
from typing import Any, Protocol
from uuid import UUID

import orjson
from pydantic import BaseModel, ValidationError

from ._events import Envelope, Event, event_class
from ._exceptions import DecodeError, EncodeError, MessageTooLarge, MissingDependency

__all__ = ["Codec", "JsonCodec", "MsgpackCodec", "encode_checked", "get_codec"]

WIRE_VERSION = 1
_BYTES_LIKE = (bytes, bytearray, memoryview)


class Codec(Protocol):
    """Turns an :class:`Envelope` into bytes and back. Instances may be shared across threads."""

    name: str

    def encode(self, envelope: Envelope) -> bytes: ...

    def decode(self, data: bytes) -> Envelope: ...


def _to_wire(
    envelope: Envelope, dump_event: Callable[[Event], Any], dump_bytes: Callable[[Any], Any]
) -> dict[str, Any]:
    # Reading .id gives a lazy id its value now, so the sender's envelope and the wire agree.
    wire: dict[str, Any] = {
        "v": WIRE_VERSION,
        "id": envelope.id,
        "topic": envelope.topic,
        "timestamp": envelope.timestamp,
    }
    # the slot, not the property: reading .headers would allocate a dict on every envelope
    if envelope._headers:
        wire["headers"] = envelope._headers
    if envelope.correlation_id is not None:
        wire["correlation_id"] = envelope.correlation_id
    if envelope.causation_id is not None:
        wire["causation_id"] = envelope.causation_id
    event = envelope.event
    if isinstance(event, Event):
        wire["kind"] = "event"
        wire["type"] = event.__event_name__
        wire["data"] = dump_event(event)
    elif isinstance(event, _BYTES_LIKE):
        wire["kind"] = "bytes"
        wire["data"] = dump_bytes(event)
    else:
        wire["kind"] = "value"
        wire["data"] = event
    return wire


def _model_dict(obj: BaseModel) -> Any:
    # model_dump(mode="json", by_alias=True) without its Python wrapper (~40% faster); by_alias
    # because model_validate reads aliases, so this is the form that validates back
    return obj.__pydantic_serializer__.to_python(obj, mode="json", by_alias=True)


def _unsupported(obj: Any, codec: str) -> TypeError:
    return TypeError(
        f"the {codec} codec cannot encode {type(obj).__module__}.{type(obj).__qualname__}; "
        "send JSON-like data, bytes, an Event, another pydantic model or a dataclass"
    )


def _json_default(obj: Any) -> Any:
    # orjson calls this only for types it does not serialize natively
    if isinstance(obj, BaseModel):
        return _model_dict(obj)
    if isinstance(obj, _BYTES_LIKE):
        raise TypeError(
            "the json codec carries bytes only as the whole payload, not nested in a value; "
            "use codec='msgpack' or encode them (e.g. base64) yourself"
        )
    raise _unsupported(obj, "json")


def _msgpack_default(obj: Any) -> Any:
    # Mirrors what orjson serializes natively, so a payload encodes the same way in both codecs.
    if isinstance(obj, BaseModel):
        return _model_dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, datetime | date | time):
        return obj.isoformat()
    if isinstance(obj, UUID):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, int):  # msgpack asks only for ints it cannot pack
        raise TypeError(f"integer {obj} exceeds the 64-bit range of the wire format")
    raise _unsupported(obj, "msgpack")


def _field(wire: dict[str, Any], key: str, types: type | tuple[type, ...]) -> Any:
    try:
        value = wire[key]
    except KeyError:
        raise DecodeError(f"envelope has no {key!r} field") from None
    # bool is an int subclass: never a valid id, timestamp or version
    if not isinstance(value, types) or isinstance(value, bool):
        raise DecodeError(f"envelope field {key!r} has type {type(value).__name__}")
    return value


def _optional_str(wire: dict[str, Any], key: str) -> str | None:
    value = wire.get(key)
    if value is not None and not isinstance(value, str):
        raise DecodeError(f"envelope field {key!r} has type {type(value).__name__}, not str")
    return value


def _from_wire(wire: Any, decode_bytes: Any) -> Envelope:
    # The common case first: a plain value without headers, every field of the right type
    # (the checks below, in one expression). Anything else takes the full validation.
    if type(wire) is dict and wire.get("kind") == "value" and "headers" not in wire:
        version = wire.get("v")
        id_ = wire.get("id")
        topic = wire.get("topic")
        timestamp = wire.get("timestamp")
        correlation = wire.get("correlation_id")
        causation = wire.get("causation_id")
        if (
            type(version) is int
            and version == WIRE_VERSION
            and type(id_) is str
            and type(topic) is str
            and (type(timestamp) is float or type(timestamp) is int)
            and "data" in wire
            and (correlation is None or type(correlation) is str)
            and (causation is None or type(causation) is str)
        ):
            return Envelope(
                topic, wire["data"], id_, None, float(timestamp), correlation, causation
            )
    return _from_wire_checked(wire, decode_bytes)


def _from_wire_checked(wire: Any, decode_bytes: Any) -> Envelope:
    if not isinstance(wire, dict):
        raise DecodeError(f"expected an envelope map, got {type(wire).__name__}")
    version = wire.get("v")
    if type(version) is not int or version != WIRE_VERSION:
        raise DecodeError(f"unsupported wire version {version!r} (this axonbus reads 1)")
    id_ = _field(wire, "id", str)
    topic = _field(wire, "topic", str)
    timestamp = _field(wire, "timestamp", (int, float))
    kind = _field(wire, "kind", str)
    if "data" not in wire:
        raise DecodeError("envelope has no 'data' field")
    data = wire["data"]
    headers = wire.get("headers")
    if headers is not None and not (
        isinstance(headers, dict)
        and all(type(k) is str and type(v) is str for k, v in headers.items())
    ):
        raise DecodeError("envelope headers must map str to str")

    if kind == "value":
        event = data
    elif kind == "event":
        name = _field(wire, "type", str)
        if not isinstance(data, dict):
            raise DecodeError(f"data of event {name!r} must be a map, got {type(data).__name__}")
        cls = event_class(name)
        if cls is None:
            event = {"__event__": name, **data}
        else:
            try:
                # Lax on purpose: data is in JSON form (datetimes as strings...), which a strict
                # model would refuse; the sender's instance was validated when it was built.
                event = cls.model_validate(data, strict=False)
            except ValidationError as exc:
                raise DecodeError(f"invalid data for event {name!r}: {exc}") from exc
    elif kind == "bytes":
        event = decode_bytes(data)
    else:
        raise DecodeError(f"unknown payload kind {kind!r} (expected event, bytes or value)")
    return Envelope(
        topic,
        event,
        id=id_,
        headers=headers or None,
        timestamp=float(timestamp),
        correlation_id=_optional_str(wire, "correlation_id"),
        causation_id=_optional_str(wire, "causation_id"),
    )


def _event_json(event: Event) -> orjson.Fragment:
    # pydantic writes the JSON itself and orjson splices it in: no intermediate dict (~1.5x)
    return orjson.Fragment(event.__pydantic_serializer__.to_json(event, by_alias=True))


def _b64_encode(data: Any) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _b64_decode(data: Any) -> bytes:
    if not isinstance(data, str):
        raise DecodeError(f"bytes payload must be base64 text, got {type(data).__name__}")
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"bytes payload is not valid base64: {exc}") from exc


class JsonCodec:
    """UTF-8 JSON through orjson: readable in logs and in every language. The default."""

    name: str = "json"

    def encode(self, envelope: Envelope) -> bytes:
        wire = _to_wire(envelope, _event_json, _b64_encode)
        try:
            # No options: OPT_NON_STR_KEYS would turn int keys into strings, a silent change of
            # type on the other side; refusing them keeps the round trip exact.
            return orjson.dumps(wire, default=_json_default)
        except orjson.JSONEncodeError as exc:
            # orjson's own message is generic; the cause (from _json_default) names the problem
            raise _encode_error(envelope, exc.__cause__ or exc) from exc

    def decode(self, data: bytes) -> Envelope:
        try:
            wire = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"not a JSON envelope: {exc}") from exc
        return _from_wire(wire, _b64_decode)


class MsgpackCodec:
    """msgpack: smaller and faster than JSON; bytes travel natively.

    Needs the optional dependency: ``pip install 'axonbus[msgpack]'``.
    """

    name: str = "msgpack"

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError as exc:
            raise MissingDependency(
                "the msgpack codec needs the msgpack package: pip install 'axonbus[msgpack]'"
            ) from exc
        # Bound once here so encode/decode do no attribute lookups on the module.
        self._packb = msgpack.packb
        self._unpackb = msgpack.unpackb
        self._errors = (ValueError, TypeError, msgpack.UnpackException)

    def encode(self, envelope: Envelope) -> bytes:
        wire = _to_wire(envelope, _model_dict, bytes)  # packed as a msgpack bin
        if wire["kind"] == "value":
            _check_str_keys(wire["data"], envelope.topic)
        try:
            # packb, not a shared Packer: a Packer keeps a buffer and is not thread-safe
            data: bytes = self._packb(wire, default=_msgpack_default, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:  # UnicodeEncodeError: a ValueError
            raise _encode_error(envelope, exc) from exc
        return data

    def decode(self, data: bytes) -> Envelope:
        try:
            # ext types are refused (ext_hook); msgpack's built-in timestamp ext becomes a float
            wire = self._unpackb(data, raw=False, ext_hook=_refuse_ext, timestamp=1)
        except self._errors as exc:
            raise DecodeError(f"not a msgpack envelope: {exc}") from exc
        return _from_wire(wire, _bin_decode)


def _encode_error(envelope: Envelope, cause: BaseException) -> EncodeError:
    if isinstance(cause, EncodeError):
        return cause
    text = str(cause)
    if "surrogate" in text:
        # the wire is UTF-8, which has no form for a lone surrogate ("\udc80"): say so, and
        # what to do, rather than the encoder's words
        text = (
            "a str holds a lone surrogate, which is not valid UTF-8; send such data as bytes "
            "(e.g. text.encode('utf-8', 'surrogateescape'))"
        )
    return EncodeError(f"cannot encode payload on {envelope.topic!r}: {text}")


def _check_str_keys(value: Any, topic: str) -> None:
    """Refuse non-str map keys when encoding: every receiver would refuse them when decoding.

    Decoders accept only str keys (int keys would let a sender flood a dict with colliding
    hashes), so letting such a payload out would lose it silently on the other side.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            for key, inner in item.items():
                if type(key) is not str:
                    raise EncodeError(
                        f"cannot encode payload on {topic!r}: map keys must be str, "
                        f"got {type(key).__name__} {key!r}"
                    )
                if type(inner) in (dict, list, tuple):
                    stack.append(inner)
        elif type(item) in (list, tuple):
            stack.extend(x for x in item if type(x) in (dict, list, tuple))


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not part of the axonbus wire format")


def _bin_decode(data: Any) -> bytes:
    if not isinstance(data, bytes):
        raise DecodeError(f"bytes payload must be a msgpack bin, got {type(data).__name__}")
    return data


_CODECS: dict[str, type[JsonCodec] | type[MsgpackCodec]] = {
    "json": JsonCodec,
    "msgpack": MsgpackCodec,
}


def get_codec(name: str) -> Codec:
    """The codec called ``name`` (``"json"`` or ``"msgpack"``); ``ValueError`` otherwise."""
    cls = _CODECS.get(name)
    if cls is None:
        raise ValueError(f"unknown codec {name!r}; known codecs: {', '.join(sorted(_CODECS))}")
    return cls()


def encode_checked(codec: Codec, envelope: Envelope, limit: int) -> bytes:
    """Encode ``envelope``; :class:`MessageTooLarge` when the result exceeds ``limit`` bytes."""
    data = codec.encode(envelope)
    if len(data) > limit:
        raise MessageTooLarge(len(data), limit)
    return data

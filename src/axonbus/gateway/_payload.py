"""JSON in and out: HTTP / WebSocket bodies to bus payloads, envelopes to JSON records."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from .._events import Envelope, Event, event_class
from .._topics import match
from ._errors import InvalidEvent, TopicMismatch

__all__ = [
    "MAX_DEPTH",
    "EventTypes",
    "depth_exceeds",
    "dumps",
    "envelope_record",
    "jsonable",
]

#: the deepest nesting of lists and objects a payload may have: the wire formats (orjson,
#: msgpack) refuse about 255 levels, and the envelope around a payload takes a few
MAX_DEPTH = 128


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when ``value`` nests lists / dicts more than ``limit`` levels deep (iterative, so
    a hostile document cannot exhaust the stack while it is measured).

    >>> depth_exceeds([[[1]]], 2), depth_exceeds([[[1]]], 3)
    (True, False)
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list | tuple)
        )
    return False


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"$base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    # what orjson serialises natively, for the standard-library fallback in dumps()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | enum.Enum):
        return str(value.value if isinstance(value, enum.Enum) else value)
    return repr(value)


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON bytes; models, dataclasses, bytes and the rest made JSON-able."""
    try:
        return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        # what orjson refuses (ints over 64 bits, deep nesting): the slower standard encoder
        text = json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False)
        return text.encode()


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (dicts, lists, str, numbers, bools, None)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(dumps(value))


def envelope_record(env: Envelope) -> dict[str, Any]:
    """What clients receive for one event: ``{topic, id, timestamp, event}``, plus ``offset``
    (its position in the log, on sqlite:// and postgresql://) and ``type`` (the event class's
    registered name, for typed events) when known."""
    record: dict[str, Any] = {
        "topic": env.topic,
        "id": env.id,
        "timestamp": env.timestamp,
        "event": env.event,
    }
    if env.offset is not None:
        record["offset"] = env.offset
    if isinstance(env.event, Event):
        record["type"] = type(env.event).__event_name__
    return record


def _topic_fields(template: str, topic: str) -> dict[str, str] | None:
    """The placeholder values of ``template`` read back from ``topic`` (whole tokens only)."""
    parts = template.split(".")
    tokens = topic.split(".")
    if len(parts) != len(tokens):
        return None
    found: dict[str, str] = {}
    for part, token in zip(parts, tokens, strict=True):
        if part.startswith("{") and part.endswith("}") and part.count("{") == 1:
            found[part[1:-1]] = token
        elif "{" in part:
            return None  # a placeholder inside a token: not worth guessing
        elif part != token:
            return None
    return found


class EventTypes:
    """Turns JSON payloads into typed events.

    An explicit ``type`` (an event class's registered name, e.g. ``"axonbus.agent.UserInput"``)
    must validate, else :class:`InvalidEvent`. Without one, a JSON object sent to a topic that
    fits exactly one of the known classes' templates becomes that class when it validates
    (the template's fields are filled from the topic), so ``POST /v1/publish/agent.s1.user_input``
    with ``{"text": "hi"}`` publishes ``UserInput(session_id="s1", text="hi")``, which typed
    subscribers receive. Anything else is published as the plain JSON value.
    """

    def __init__(self, classes: Iterable[type[Event]] = ()) -> None:
        self.classes: tuple[type[Event], ...] = tuple(classes)

    def _candidates(self, topic: str) -> list[type[Event]]:
        return [c for c in self.classes if match(c.topic_pattern(), topic)]

    def build(self, topic: str, payload: Any, type_name: str | None = None) -> Any:
        """The payload to publish on ``topic``; :class:`InvalidEvent` when it cannot be."""
        if type_name is not None:
            cls = event_class(type_name)
            if cls is None:
                raise InvalidEvent(f"unknown event type {type_name!r}")
            event = self._validate(cls, topic, payload)
            if event is None:  # pragma: no cover - _validate raises when strict
                raise InvalidEvent(f"payload is not a {type_name}")
            return event
        if not isinstance(payload, dict):
            return payload
        candidates = self._candidates(topic)
        if len(candidates) != 1:
            return payload
        try:
            return self._validate(candidates[0], topic, payload)
        except TopicMismatch:
            raise  # which one wins would be a guess: refuse it (422)
        except InvalidEvent:
            return payload

    @staticmethod
    def _validate(cls: type[Event], topic: str, payload: Any) -> Event:
        if not isinstance(payload, dict):
            raise InvalidEvent(f"a {cls.__event_name__} payload must be a JSON object")
        template = cls.__event_topic__
        data = dict(payload)
        if template is not None:
            fields = _topic_fields(template, topic) or {}
            for key, value in fields.items():
                if key in data and str(data[key]) != value:
                    raise TopicMismatch(
                        f"{key}={data[key]!r} in the payload disagrees with the topic {topic!r}"
                    )
                data.setdefault(key, value)
        try:
            event = cls.model_validate(data)
        except ValidationError as exc:
            errors = orjson.loads(exc.json(include_url=False, include_input=False))
            raise InvalidEvent(f"payload is not a valid {cls.__event_name__}", errors) from exc
        if template is not None and event.topic != topic:
            raise InvalidEvent(f"a {cls.__event_name__} belongs on {event.topic!r}, not {topic!r}")
        return event

"""Events, envelopes and the handler context.

An :class:`Event` is a pydantic v2 model that knows its topic::

    class ToolCall(Event, topic="agent.{session_id}.tool_call"):
        session_id: str
        tool: str

Any other payload (dict, str, bytes, dataclass, model) travels with an explicit topic.
The bus wraps every payload in an :class:`Envelope`; handlers that take a second argument get a
:class:`Context` describing the delivery.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import string
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ._exceptions import InvalidTopic
from ._topics import split_pattern

if TYPE_CHECKING:
    from ._system_events import Tracker

__all__ = [
    "Envelope",
    "Event",
    "event_class",
    "log_fields",
    "new_event_id",
    "registered_events",
]

# Event ids: a random per-process prefix plus a counter in hex. Unique across processes and
# several times cheaper than uuid4 (or a zero-padded f-string) on the publish hot path.
_ID_PREFIX = os.urandom(6).hex() + "-"
_ID_COUNTER = itertools.count(1)


def new_event_id() -> str:
    return _ID_PREFIX + hex(next(_ID_COUNTER))[2:]


_REGISTRY: dict[str, type[Event]] = {}


def event_class(name: str) -> type[Event] | None:
    """The Event class registered under ``name`` (its ``__event_name__``), if any."""
    return _REGISTRY.get(name)


def registered_events() -> list[type[Event]]:
    """Every Event class defined so far, in definition order (the AsyncAPI generator's
    default catalogue)."""
    return list(_REGISTRY.values())


class Event(BaseModel):
    """Base class of typed events. The ``topic=`` class keyword sets the topic template.

    >>> class UserJoined(Event, topic="room.{room}.joined"):
    ...     room: str
    ...     user: str
    >>> UserJoined(room="lobby", user="ada").topic
    'room.lobby.joined'
    """

    model_config = ConfigDict(frozen=False, extra="forbid")

    __event_topic__: ClassVar[str | None] = None
    __event_name__: ClassVar[str] = ""
    __topic_fields__: ClassVar[tuple[str, ...]] = ()
    # the topic itself when the template has no placeholders (saves formatting per publish)
    __static_topic__: ClassVar[str | None] = None

    def __init_subclass__(
        cls, *, topic: str | None = None, name: str | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if topic is not None:
            fields = tuple(
                f for _, f, _, _ in string.Formatter().parse(topic) if f is not None and f != ""
            )
            try:
                split_pattern(topic_template_pattern(topic, fields))
            except InvalidTopic as exc:
                raise InvalidTopic(
                    topic, f"bad topic template on {cls.__qualname__}: {exc.reason}"
                ) from None
            cls.__event_topic__ = topic
            cls.__topic_fields__ = fields
            cls.__static_topic__ = None if fields else topic
        cls.__event_name__ = name or f"{cls.__module__}.{cls.__qualname__}"
        _REGISTRY[cls.__event_name__] = cls

    @classmethod
    def topic_pattern(cls) -> str:
        """The pattern that matches every topic of this class (placeholders become ``*``)."""
        template = cls.__event_topic__
        if template is None:
            raise InvalidTopic(cls.__qualname__, "event class has no topic= template")
        return topic_template_pattern(template, cls.__topic_fields__)

    @property
    def topic(self) -> str:
        """This event's concrete topic, with template fields filled in."""
        template = type(self).__event_topic__
        if template is None:
            raise InvalidTopic(type(self).__qualname__, "event class has no topic= template")
        fields = type(self).__topic_fields__
        if not fields:
            return template
        values = {f: getattr(self, f) for f in fields}
        for f, v in values.items():
            s = str(v)
            if not s or "." in s or "*" in s or ">" in s or any(c.isspace() for c in s):
                raise InvalidTopic(template, f"field {f}={s!r} cannot fill a topic token")
        return template.format(**values)


def topic_template_pattern(template: str, fields: tuple[str, ...]) -> str:
    return template.format(**dict.fromkeys(fields, "*")) if fields else template


class Envelope:
    """What the bus moves: the payload plus routing and tracing metadata.

    A plain slotted class with a hand-written ``__init__``: one is built per publish.
    """

    __slots__ = (
        "_headers",
        "_id",
        "causation_id",
        "correlation_id",
        "event",
        "offset",
        "reply",
        "timestamp",
        "topic",
        "tracker",
    )

    def __init__(
        self,
        topic: str,
        event: Any,
        id: str | None = None,
        headers: dict[str, str] | None = None,
        timestamp: float | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> None:
        self.topic = topic
        self.event = event
        self._id = id  # made on first read: most events are handled without anyone asking
        self._headers = headers  # a dict only once someone sets or reads headers
        self.timestamp = timestamp if timestamp is not None else time.time()
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        # in-process only, never serialized: outcomes for publish(wait=True), a request's reply
        self.tracker: Tracker | None = None
        self.reply: asyncio.Future[Any] | None = None
        #: the position in the event log, for events read back from one (``bus.replay``)
        self.offset: int | None = None

    @property
    def id(self) -> str:
        """The event id: unique across processes, stable once read."""
        i = self._id
        if i is None:
            i = self._id = new_event_id()
        return i

    @id.setter
    def id(self, value: str) -> None:
        self._id = value

    @property
    def headers(self) -> dict[str, str]:
        """String headers travelling with the event (tracing context, idempotency keys...)."""
        h = self._headers
        if h is None:
            h = self._headers = {}
        return h

    @headers.setter
    def headers(self, value: dict[str, str]) -> None:
        self._headers = value

    id_or_none: str | None
    """The id, or ``None`` while nobody has read :attr:`id` yet (reading it this way makes none).
    Code that builds an envelope without ``__init__`` (the bus's publish hot path) sets it to
    ``None``.

    >>> Envelope("a.b", {}).id_or_none is None
    True
    """

    headers_or_none: dict[str, str] | None
    """The headers, or ``None`` when none were ever set: reading them this way creates no dict
    on an envelope without headers (middleware that looks at every event uses it). Read-only
    by convention: set headers through :attr:`headers`.

    >>> Envelope("a.b", {}).headers_or_none is None
    True
    """

    def __repr__(self) -> str:
        return f"Envelope(topic={self.topic!r}, id={self.id!r}, event={self.event!r})"


# `headers_or_none` is the `_headers` slot itself under a public name: reading it costs what
# reading the slot costs (a property would add a call to every event a middleware looks at)
Envelope.headers_or_none = Envelope.__dict__["_headers"]
Envelope.id_or_none = Envelope.__dict__["_id"]  # the same for the `_id` slot


def log_fields(env: Envelope, subscription: str | None = None) -> dict[str, Any]:
    """The structured fields of a log line about ``env``: pass as ``extra=`` to stdlib logging
    (``axonbus.observability.JsonFormatter`` renders them)."""
    fields: dict[str, Any] = {
        "event_id": env.id,
        "topic": env.topic,
        "correlation_id": env.correlation_id or env.id,
    }
    if subscription is not None:
        fields["subscription"] = subscription
    return fields


# The envelope being handled by the current task: publishes made inside a handler inherit
# causation and correlation from it. Each worker task has its own context, and tasks a handler
# spawns copy it, so the value is always the delivery that caused them.
current_envelope: ContextVar[Envelope | None] = ContextVar("axonbus_current_envelope", default=None)
# The name of the subscription whose worker runs the current task: set once per worker task
# (not per delivery), so log lines written by a handler can name it.
current_subscription: ContextVar[str | None] = ContextVar(
    "axonbus_current_subscription", default=None
)

"""AsyncAPI 3.0 documents for a bus: its event classes, live subscriptions and server.

>>> doc = asyncapi_document(bus)                      # every registered event class
>>> doc["channels"]["axonbus_agent_Token"]["address"]
'agent.{session_id}.token'

Channels come from the event classes' topic templates (a ``{field}`` becomes a channel
parameter) and from the bus's live subscriptions; message payloads are the classes' pydantic
JSON Schemas, hoisted into ``components.schemas``; the server is the bus URL with its
credentials removed. With ``cloudevents=True`` each message carries the CloudEvents trait
(content type ``application/cloudevents+json`` and the ``ce-`` attribute headers).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic.json_schema import models_json_schema

from ._events import Event, registered_events
from ._version import __version__

if TYPE_CHECKING:
    from ._engine.bus import Bus

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document", "bus_server", "system_events"]

ASYNCAPI_VERSION = "3.0.0"
_ID = re.compile(r"[^A-Za-z0-9_\-]")
_REF = "#/components/schemas/{model}"

#: the CloudEvents 1.0 attributes sent as ``ce-`` headers in binary mode
_CE_HEADERS: dict[str, Any] = {
    "type": "object",
    "required": ["ce-specversion", "ce-id", "ce-source", "ce-type"],
    "properties": {
        "ce-specversion": {"type": "string", "const": "1.0"},
        "ce-id": {"type": "string", "description": "the event id"},
        "ce-source": {"type": "string", "format": "uri-reference"},
        "ce-type": {"type": "string", "description": "the event class's registered name"},
        "ce-subject": {"type": "string", "description": "the topic"},
        "ce-time": {"type": "string", "format": "date-time"},
    },
}


def system_events() -> list[type[Event]]:
    """The event classes axonbus itself defines: the agent vocabulary, channel messages and
    the bus's own ``$bus`` events (for an event catalogue)."""
    from ._system_events import DeadLetter, HandlerFailed
    from .agent import AGENT_EVENTS
    from .channels import ChannelMessage, ChannelReply, HeartbeatTick

    return [
        *AGENT_EVENTS.values(),
        ChannelMessage,
        ChannelReply,
        HeartbeatTick,
        HandlerFailed,
        DeadLetter,
    ]


def _ident(text: str) -> str:
    return _ID.sub("_", text)


def bus_server(url: str) -> dict[str, Any]:
    """An AsyncAPI server object for ``url``, without user, password or query.

    >>> bus_server("redis://app:s3cret@db:6379/0?token=x")
    {'host': 'db:6379', 'protocol': 'redis', 'pathname': '/0'}
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    server: dict[str, Any] = {
        "host": host or "localhost",
        "protocol": parts.scheme or "memory",
    }
    if parts.path and parts.path != "/":
        server["pathname"] = parts.path if parts.path.startswith("/") else "/" + parts.path
    if not host:
        server["description"] = "in-process or file-backed: no network host"
    return server


_ROLE = re.compile(r":\w+:`~?([^`]+)`")


def _summary(cls: type) -> str:
    """The docstring's first paragraph as plain text (reST roles and double backquotes go)."""
    doc = (cls.__doc__ or "").strip()
    if not doc:
        return cls.__name__
    text = _ROLE.sub(r"\1", doc.split("\n\n", 1)[0]).replace("``", "`")
    return " ".join(text.split())


def _parameters(fields: tuple[str, ...]) -> dict[str, Any]:
    return {f: {"description": f"the {f} token of the topic"} for f in fields}


def asyncapi_document(
    bus: Bus | None = None,
    *,
    event_types: Iterable[type[Event]] | None = None,
    subscriptions: Iterable[str] | None = None,
    title: str | None = None,
    url: str | None = None,
    cloudevents: bool = False,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document (a JSON-able dict) describing ``bus``.

    ``event_types``: the classes to describe (default: every registered class with a topic
    template). ``subscriptions``: the live patterns to list (default: ``bus.stats()``).
    ``url``: the server's URL (default: the bus's). ``cloudevents``: messages travel as
    CloudEvents (structured JSON or ``ce-`` headers).

    >>> asyncapi_document(event_types=[Token], url="nats://n1:4222")["asyncapi"]
    '3.0.0'
    """
    classes = [
        c
        for c in (registered_events() if event_types is None else event_types)
        if c.__event_topic__ is not None
    ]
    classes.sort(key=lambda c: c.__event_name__)
    if subscriptions is None:
        subscriptions = [s.pattern for s in bus.stats()] if bus is not None else []
    if url is None and bus is not None:
        url = bus.url
    ids = {c: _ident(c.__event_name__) for c in classes}
    refs, defs = models_json_schema([(c, "validation") for c in classes], ref_template=_REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for cls in classes:
        cid = ids[cls]
        name = cls.__name__
        message: dict[str, Any] = {
            "name": cls.__event_name__,
            "title": name,
            "summary": _summary(cls),
            "contentType": "application/json",
            "payload": refs[(cls, "validation")],
        }
        if cloudevents:
            message["traits"] = [{"$ref": "#/components/messageTraits/cloudevents"}]
        messages[cid] = message
        channel: dict[str, Any] = {
            "address": cls.__event_topic__,
            "title": name,
            "messages": {name: {"$ref": f"#/components/messages/{cid}"}},
        }
        if cls.__topic_fields__:
            channel["parameters"] = _parameters(cls.__topic_fields__)
        channels[cid] = channel
        operations[f"send_{cid}"] = {
            "action": "send",
            "summary": f"publish a {name}",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{name}"}],
        }

    typed = {c.topic_pattern() for c in classes}
    for pattern in sorted(set(subscriptions)):
        if pattern in typed:
            continue
        cid = "subscription_" + _ident(pattern)
        channels[cid] = {
            "address": pattern,
            "title": f"subscription {pattern}",
            "description": "a live subscription's pattern ('*' one token, '>' the rest)",
            "messages": {"any": {"$ref": "#/components/messages/any_event"}},
        }
        operations[f"receive_{cid}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/any"}],
        }
    if any(cid.startswith("subscription_") for cid in channels):
        messages["any_event"] = {
            "name": "any",
            "summary": "any payload: a typed event or plain JSON",
            "contentType": "application/json",
            "payload": {},
        }

    components: dict[str, Any] = {"schemas": schemas, "messages": messages}
    if cloudevents:
        components["messageTraits"] = {
            "cloudevents": {
                "contentType": "application/cloudevents+json",
                "headers": _CE_HEADERS,
                "description": "CloudEvents 1.0: structured (the event in 'data') or binary "
                "(attributes as ce- headers)",
            }
        }
    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title or (f"{bus.name} events" if bus is not None else "axonbus events"),
            "version": __version__,
            "description": "Events on an axonbus bus. Topics are dot-separated tokens; "
            "subscribers use '*' for one token and '>' for the rest.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": components,
    }
    if url:
        doc["servers"] = {"bus": bus_server(url)}
    return doc

"""CloudEvents at the gateway: ``POST /v1/publish`` takes one, ``GET /v1/events?format=
cloudevents`` streams them.

A request carries a CloudEvent in structured mode (``Content-Type:
application/cloudevents+json``, the event as one JSON object) or in binary mode (the
attributes as ``ce-`` headers, the data as the body with its ``Content-Type``)::

    curl -X POST localhost:8000/v1/publish -H 'content-type: application/cloudevents+json' \\
      -d '{"specversion": "1.0", "id": "1", "source": "/cli", "type": "chat.message",
           "subject": "chat.in", "data": {"text": "hi"}}'

The topic is the ``subject`` (``POST /v1/publish/{topic}``: the path's). The event is decoded
as the transports decode a CloudEvent (``axonbus._cloudevents``): its ``type`` names the class
it becomes, else it is the dict ``{"__event__": type, **data}``; extensions become headers, and
the CloudEvent's own ``id`` and ``source`` travel in the headers ``cloudeventid`` and
``cloudeventsource`` (the bus gives the event an id of its own, which the answer returns).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import orjson

from .._cloudevents import STRUCTURED, CloudEvents, make_source
from .._events import Envelope
from .._exceptions import DecodeError, EncodeError
from ._errors import ApiError

__all__ = [
    "ORIGINAL_ID",
    "ORIGINAL_SOURCE",
    "encode_for_sse",
    "is_cloudevent",
    "read_cloudevent",
    "sse_encoder",
]

ORIGINAL_ID = "cloudeventid"
ORIGINAL_SOURCE = "cloudeventsource"


def _media(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_cloudevent(headers: Mapping[str, str]) -> bool:
    """Whether an HTTP request carries a CloudEvent (header names lowercase, as Starlette's)."""
    return "ce-specversion" in headers or _media(headers) == STRUCTURED


def read_cloudevent(
    headers: Mapping[str, str], body: bytes, topic: str | None, wire: CloudEvents
) -> Envelope:
    """The envelope of the CloudEvent in a request; :class:`ApiError` (400 or 422) saying why
    it is not one."""
    try:
        if _media(headers) == STRUCTURED:
            env = wire.from_structured(body, topic)
        else:
            env = wire.from_binary(headers, body, topic)
    except DecodeError as exc:
        if str(exc).startswith("invalid data"):
            raise ApiError(422, "invalid_event", str(exc)) from None
        if "no subject" in str(exc):
            raise ApiError(
                400,
                "no_topic",
                "the CloudEvent has no subject: give one, or POST to /v1/publish/{topic}",
            ) from None
        raise ApiError(400, "invalid_cloudevent", str(exc)) from None
    original = _original(headers, body)
    env.headers.update(original)
    return env


def _original(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    """The CloudEvent's ``id`` and ``source`` (read again: the envelope keeps neither)."""
    if "ce-id" in headers:
        return {ORIGINAL_ID: headers["ce-id"], ORIGINAL_SOURCE: headers.get("ce-source", "")}
    attrs = orjson.loads(body)  # decoded once already: valid JSON
    return {ORIGINAL_ID: str(attrs.get("id", "")), ORIGINAL_SOURCE: str(attrs.get("source", ""))}


def sse_encoder(bus_name: str) -> CloudEvents:
    """The encoder of ``?format=cloudevents`` streams: the gateway's process is the source."""
    return CloudEvents(make_source(bus_name, f"gateway{os.getpid()}"))


def encode_for_sse(wire: CloudEvents, env: Envelope) -> tuple[bytes | None, str | None]:
    """A structured CloudEvent for an SSE ``data:`` line (JSON has no raw newline), or the
    reason it cannot be one."""
    try:
        return wire.structured(env), None
    except (EncodeError, TypeError, ValueError) as exc:
        return None, str(exc)

"""The ``amqp://`` transport's messages in both wires: what a delivery decodes to, and the
AMQP shape of a binary-mode CloudEvent.

With ``wire=cloudevents`` every event is one message in binary content mode as the CloudEvents
RabbitMQ binding (AMQP 0-9-1) has it, which the Python SDK's ``rabbitmq`` binding reads and
writes: each attribute a ``ce-`` header (a string), ``datacontenttype`` the ``content_type``
property, the data the body. On receipt, whatever the wire, a delivery is decoded as

- a binary-mode CloudEvent when its headers carry ``ce-specversion`` (or the AMQP 1.0
  binding's ``cloudEvents_specversion`` / ``cloudEvents:specversion``, which RabbitMQ passes
  on from AMQP 1.0 clients as headers),
- a structured CloudEvent when the body is a JSON object that is not a compact envelope,
- else an axonbus envelope of the bus's codec.

>>> headers = delivery_headers({"ce-id": "e1", "ce-specversion": "1.0"}, "application/json")
>>> headers["content-type"]
'application/json'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..._cloudevents import CloudEvents, is_binary, is_structured
from ..._events import Envelope

if TYPE_CHECKING:
    from ..._codec import Codec

__all__ = ["decode_delivery", "delivery_headers", "is_cloudevent"]

# the AMQP 1.0 binding's application-property prefixes (read, never written)
_AMQP10_PREFIXES = ("cloudEvents_", "cloudEvents:")


def _text(value: Any) -> str | None:
    """A header value as text (AMQP tables carry typed values; CloudEvents wants strings)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None  # tables, arrays, timestamps: not CloudEvent attributes


def delivery_headers(headers: Mapping[str, Any] | None, content_type: str | None) -> dict[str, str]:
    """A delivery's headers as strings, with its ``content_type`` property as
    ``content-type`` and AMQP 1.0 ``cloudEvents_`` names read as ``ce-`` ones."""
    out: dict[str, str] = {}
    if headers:
        for key, value in headers.items():
            text = _text(value)
            if text is None:
                continue
            if key.startswith(_AMQP10_PREFIXES):
                key = "ce-" + key[12:]
            out[key] = text
    if content_type:
        out["content-type"] = content_type
    return out


def decode_delivery(
    cloudevents: CloudEvents, codec: Codec, props: Any, body: bytes, topic: str | None = None
) -> tuple[Envelope, bool]:
    """The envelope of a delivery (``props``: its basic properties) and whether it was a
    CloudEvent; :class:`DecodeError` when it is neither a CloudEvent nor an envelope."""
    headers = props.headers
    if headers:
        found = delivery_headers(headers, props.content_type)
        if is_binary(found):
            return cloudevents.from_binary(found, body, topic), True
    if is_structured(body):
        return cloudevents.from_structured(body, topic), True
    return codec.decode(body), False


def is_cloudevent(props: Any, body: bytes) -> bool:
    """Whether a delivery is a CloudEvent (binary or structured), not an axonbus frame."""
    headers = props.headers
    if headers and is_binary(delivery_headers(headers, None)):
        return True
    return is_structured(body)

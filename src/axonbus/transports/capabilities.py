"""Optional capabilities a transport may offer beyond moving events.

Each is a :class:`typing.Protocol`: a transport has the capability when it has the methods,
and ``isinstance(transport, EventLog)`` tells at run time.

>>> from axonbus import Bus
>>> from axonbus.transports import EventLog, RequestReply
>>> isinstance(Bus("memory://").transport, EventLog)
False
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from .._events import Envelope

__all__ = ["EventLog", "RequestReply"]


@runtime_checkable
class EventLog(Protocol):
    """Keeps every event and reads it back: what ``Bus.replay`` and ``Bus.events`` need.

    A transport with a ``replay`` method of this shape makes ``bus.replay(...)`` work:

    >>> async for env in bus.replay("orders.>"):  # calls transport.replay("orders.>", ...)
    ...     print(env.topic, env.event)

    ``since`` / ``until`` take the forms ``Bus.replay`` documents (an offset, an event id, a
    time); ``follow=True`` keeps yielding new events as they are stored.
    """

    def replay(
        self, pattern: str, since: Any, until: Any, follow: bool, limit: int | None
    ) -> AsyncIterator[Envelope]: ...


@runtime_checkable
class RequestReply(Protocol):
    """Sends a request to one responder anywhere and returns its decoded reply.

    >>> reply = await transport.request(env, sink.wire_codec.encode(env), timeout=5.0)

    ``data`` is ``env`` encoded with the sink's codec; ``timeout`` (None: wait forever) is
    enforced by registering the reply with ``Sink.deadlines``.
    """

    async def request(self, env: Envelope, data: bytes, timeout: float | None) -> Any: ...

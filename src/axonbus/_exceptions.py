"""Every exception axonbus raises, named by the condition that causes it.

::

    AxonbusError
    ├── InvalidTopic            (also ValueError)
    ├── InvalidHandler          (also TypeError)
    ├── LifecycleError
    │   ├── BusNotStarted
    │   └── BusClosed
    ├── QueueFull
    ├── MessageTooLarge         (also ValueError)
    ├── DecodeError             (also ValueError)
    ├── RequestError
    │   ├── NoResponders
    │   ├── RequestTimeout      (also TimeoutError)
    │   └── RemoteError
    ├── TransportError
    │   ├── ConnectionLost
    │   └── NoEventLog
    └── RedeliveryExhausted
"""

from __future__ import annotations

__all__ = [
    "AxonbusError",
    "BusClosed",
    "BusNotStarted",
    "ConnectionLost",
    "DecodeError",
    "InvalidHandler",
    "InvalidTopic",
    "LifecycleError",
    "MessageTooLarge",
    "NoEventLog",
    "NoResponders",
    "QueueFull",
    "RedeliveryExhausted",
    "RemoteError",
    "RequestError",
    "RequestTimeout",
    "TransportError",
]


class AxonbusError(Exception):
    """Base class of every error raised by axonbus."""


class InvalidTopic(AxonbusError, ValueError):
    """A topic or pattern is malformed; the message names the offending token."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"invalid topic {topic!r}: {reason}")
        self.topic = topic
        self.reason = reason


class InvalidHandler(AxonbusError, TypeError):
    """A handler cannot be called as ``handler(event)`` or ``handler(event, ctx)``.

    Raised at subscribe time, never at delivery time.
    """


class LifecycleError(AxonbusError):
    """An operation does not fit the resource's lifecycle state."""


class BusNotStarted(LifecycleError):
    """Publishing on a bus that was never started.

    Use ``async with Bus() as bus`` or ``await bus.start()`` first.
    """


class BusClosed(LifecycleError):
    """Publishing on, or starting, a bus that is closing or closed."""


class QueueFull(AxonbusError):
    """A subscription's mailbox is full and its overflow policy is ``"error"``.

    Also raised by ``publish_nowait`` when a ``"block"`` mailbox is full; in that case the
    event was delivered to no subscription (all-or-nothing).
    """

    def __init__(self, subscription: str, maxsize: int) -> None:
        super().__init__(f"mailbox of subscription {subscription!r} is full ({maxsize} events)")
        self.subscription = subscription
        self.maxsize = maxsize


class MessageTooLarge(AxonbusError, ValueError):
    """An encoded event exceeds ``max_message_bytes``; nothing was sent."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class DecodeError(AxonbusError, ValueError):
    """Bytes from a transport could not be decoded into an envelope."""


class RequestError(AxonbusError):
    """Base class for request/reply failures."""


class NoResponders(RequestError):
    """``bus.request`` found no responder for the topic."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"no responder for {topic!r}")
        self.topic = topic


class RequestTimeout(RequestError, TimeoutError):
    """No reply arrived within the request's timeout."""

    def __init__(self, topic: str, timeout: float) -> None:
        super().__init__(f"no reply on {topic!r} within {timeout}s")
        self.topic = topic
        self.timeout = timeout


class RemoteError(RequestError):
    """The responder raised; carries the remote exception's type name and message."""

    def __init__(self, remote_type: str, remote_message: str, *, topic: str = "") -> None:
        where = f" on {topic!r}" if topic else ""
        super().__init__(f"responder{where} raised {remote_type}: {remote_message}")
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.topic = topic


class TransportError(AxonbusError):
    """A transport failed; the driver's error is the ``__cause__``."""


class ConnectionLost(TransportError):
    """The broker could not be reached within the allowed time."""


class RedeliveryExhausted(AxonbusError):
    """A broker delivered an event more times than the subscription's retry budget allows.

    Happens when consumers crash or stop mid-handler on the same event again and again; the
    event is dead-lettered with this error instead of being handled once more.
    """

    def __init__(self, deliveries: int, attempts: int) -> None:
        super().__init__(
            f"delivered {deliveries} times, over the retry budget of {attempts} attempts "
            "(consumers crashed or stopped mid-handler)"
        )
        self.deliveries = deliveries
        self.attempts = attempts


class NoEventLog(TransportError):
    """The bus's transport keeps no event log, so it cannot replay or query past events."""

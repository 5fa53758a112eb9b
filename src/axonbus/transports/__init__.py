"""Transports: how events leave the process. One transport per module.

The contract a transport is written against is public and lives here: the :class:`Transport`
and :class:`BrokerTransport` bases, the :class:`Sink` the Bus hands a transport at start (with
the :class:`Inbox` and :class:`SubscriptionInfo` views of what it feeds), the :class:`Inbound`
tracker of a delivery that must be acknowledged, the header keys, and the optional
capabilities :class:`EventLog` and :class:`RequestReply`.
"""

from .base import BrokerTransport, Transport, open_transport, register_transport
from .capabilities import EventLog, RequestReply
from .headers import DUPLICATE, IDEMPOTENCY_KEY
from .memory import MemoryTransport
from .sink import Inbox, RequestDeadlines, Sink, SubscriptionInfo
from .tracker import Inbound

# sorted as test_exports wants it (plain sort), not isort's constants-first order
__all__ = [  # noqa: RUF022
    "BrokerTransport",
    "DUPLICATE",
    "EventLog",
    "IDEMPOTENCY_KEY",
    "Inbound",
    "Inbox",
    "MemoryTransport",
    "RequestDeadlines",
    "RequestReply",
    "Sink",
    "SubscriptionInfo",
    "Transport",
    "open_transport",
    "register_transport",
]

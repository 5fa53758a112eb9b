"""axonbus: the event backbone for AI agents.

>>> from axonbus import Bus, Event
>>> class ToolCall(Event, topic="agent.{session_id}.tool_call"):
...     session_id: str
...     tool: str
>>> async with Bus() as bus:
...     bus.subscribe(ToolCall, on_tool)
...     await bus.publish(ToolCall(session_id="s1", tool="search"))
"""

from ._compose import Config, load_config
from ._engine.bus import Bus
from ._engine.context import Context
from ._engine.dead_letters import DeadLetters, StoredDeadLetter
from ._engine.middleware import Middleware
from ._engine.replay import fold
from ._engine.stream import EventStream, Waiter
from ._engine.subscription import Subscription, SubscriptionStats
from ._events import Envelope, Event
from ._exceptions import (
    AgentError,
    AgentNotBound,
    AgentNotFound,
    AxonbusError,
    BusClosed,
    BusNotStarted,
    CantHandle,
    ConfigError,
    ConnectionFailed,
    ConnectionLost,
    DeadlockDetected,
    DecodeError,
    EncodeError,
    InvalidHandler,
    InvalidTopic,
    LifecycleError,
    MessageDropped,
    MessageTooLarge,
    MissingDependency,
    NoEventLog,
    NoResponders,
    QueueFull,
    RedeliveryExhausted,
    RemoteError,
    RequestError,
    RequestTimeout,
    RuntimeClosed,
    RuntimeNotStarted,
    TransportError,
    Undeliverable,
)
from ._retry import Retry
from ._system_events import DeadLetter, HandlerFailed, Outcome, PublishResult
from ._topics import match
from ._version import __version__

__all__ = [
    "AgentError",
    "AgentNotBound",
    "AgentNotFound",
    "AxonbusError",
    "Bus",
    "BusClosed",
    "BusNotStarted",
    "CantHandle",
    "Config",
    "ConfigError",
    "ConnectionFailed",
    "ConnectionLost",
    "Context",
    "DeadLetter",
    "DeadLetters",
    "DeadlockDetected",
    "DecodeError",
    "EncodeError",
    "Envelope",
    "Event",
    "EventStream",
    "HandlerFailed",
    "InvalidHandler",
    "InvalidTopic",
    "LifecycleError",
    "MessageDropped",
    "MessageTooLarge",
    "Middleware",
    "MissingDependency",
    "NoEventLog",
    "NoResponders",
    "Outcome",
    "PublishResult",
    "QueueFull",
    "RedeliveryExhausted",
    "RemoteError",
    "RequestError",
    "RequestTimeout",
    "Retry",
    "RuntimeClosed",
    "RuntimeNotStarted",
    "StoredDeadLetter",
    "Subscription",
    "SubscriptionStats",
    "TransportError",
    "Undeliverable",
    "Waiter",
    "__version__",
    "fold",
    "load_config",
    "match",
]

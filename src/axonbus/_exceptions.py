"""Every exception axonbus raises, named by the condition that causes it.

::

    AxonbusError
    ├── InvalidTopic            (also ValueError)
    ├── InvalidHandler          (also TypeError)
    ├── ConfigError             (also ValueError)
    ├── LifecycleError
    │   ├── BusNotStarted
    │   ├── BusClosed
    │   ├── RuntimeNotStarted   (also RuntimeError)
    │   ├── RuntimeClosed       (also RuntimeError)
    │   └── AgentNotBound       (also RuntimeError)
    ├── QueueFull
    ├── MessageTooLarge         (also ValueError)
    ├── EncodeError             (also TypeError)
    ├── DecodeError             (also ValueError)
    ├── RequestError
    │   ├── NoResponders
    │   ├── RequestTimeout      (also TimeoutError)
    │   └── RemoteError
    ├── MissingDependency       (also ImportError)
    ├── TransportError
    │   ├── ConnectionLost
    │   ├── ConnectionFailed
    │   └── NoEventLog
    ├── RedeliveryExhausted
    └── AgentError
        ├── AgentNotFound       (also LookupError)
        ├── CantHandle
        ├── MessageDropped
        ├── Undeliverable
        └── DeadlockDetected

The actor runtime (``axonbus.runtime``) raises ``AgentError`` and its subclasses, the runtime
lifecycle errors, and reuses ``RequestTimeout`` and ``RemoteError`` for ``send_message``.

A subpackage's own errors live beside its code, under ``AxonbusError`` too: ``ModelError`` and
``MaxStepsExceeded`` in ``axonbus.agent``, ``ChannelNotStarted``, ``ChannelAlreadyAttached`` and
``ChannelApiError`` in ``axonbus.channels``, ``ApiError``, ``InvalidEvent``, ``InsecureBind`` and
``BindError`` in ``axonbus.gateway``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AgentError",
    "AgentNotBound",
    "AgentNotFound",
    "AxonbusError",
    "BusClosed",
    "BusNotStarted",
    "CantHandle",
    "ConfigError",
    "ConnectionFailed",
    "ConnectionLost",
    "DeadlockDetected",
    "DecodeError",
    "EncodeError",
    "InvalidHandler",
    "InvalidTopic",
    "LifecycleError",
    "MessageDropped",
    "MessageTooLarge",
    "MissingDependency",
    "NoEventLog",
    "NoResponders",
    "QueueFull",
    "RedeliveryExhausted",
    "RemoteError",
    "RequestError",
    "RequestTimeout",
    "RuntimeClosed",
    "RuntimeNotStarted",
    "TransportError",
    "Undeliverable",
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


class ConfigError(AxonbusError, ValueError):
    """A configuration file (``axonbus.toml``, ``[tool.axonbus]``) cannot be read or holds a
    value that is wrong where it is: raised by :func:`load_config`, ``Bus.from_config()`` and
    ``axonbus serve --config`` before anything starts.

    The message names the file, the dotted key and the expected form, one line per problem::

        axonbus.toml: channels[1].token: required key missing; expected the bot token ...

    ``problems`` holds ``(key, problem, expected)`` tuples; ``key`` and ``expected`` are the
    first one's.
    """

    def __init__(self, problems: Sequence[tuple[str, str, str]], where: str = "") -> None:
        self.problems = list(problems)
        self.where = where
        lines = [_config_line(*p) for p in self.problems]
        head = f"{where}: " if where else ""
        if len(lines) == 1:
            message = head + lines[0]
        else:
            message = f"{head}{len(lines)} problems:\n" + "\n".join(f"  {x}" for x in lines)
        super().__init__(message)
        self.key = self.problems[0][0] if self.problems else ""
        self.expected = self.problems[0][2] if self.problems else ""

    def located(self, where: str) -> ConfigError:
        """The same problems, said to be in ``where``."""
        return ConfigError(self.problems, where)


def _config_line(key: str, problem: str, expected: str) -> str:
    line = f"{key}: {problem}" if key else problem
    return f"{line}; expected {expected}" if expected else line


class LifecycleError(AxonbusError):
    """An operation does not fit the resource's lifecycle state."""


class BusNotStarted(LifecycleError):
    """Publishing on a bus that was never started.

    Use ``async with Bus() as bus`` or ``await bus.start()`` first.
    """


class BusClosed(LifecycleError):
    """Publishing on, or starting, a bus that is closing or closed."""


class RuntimeNotStarted(LifecycleError, RuntimeError):
    """``send_message`` / ``publish_message`` / ``stop_when_idle`` on an agent runtime that is not
    running: never started, stopping, or stopped.

    Call ``runtime.start()`` (or use ``async with AgentRuntime() as runtime``) first.
    """


class RuntimeClosed(LifecycleError, RuntimeError):
    """Starting, or registering on, an agent runtime after ``close()``; create a new one."""


class AgentNotBound(LifecycleError, RuntimeError):
    """An agent's ``id`` or ``runtime`` was read before a runtime bound it, or
    ``AgentInstantiationContext`` was read outside a factory call.

    Agents get their id when the runtime creates them through a registered factory, or when
    registered with ``register_agent_instance``; constructing one by hand binds nothing.
    """


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


class EncodeError(AxonbusError, TypeError):
    """A payload cannot be put on the wire; raised by ``publish`` (or ``request``) before
    anything is sent.

    The bus's codec does not carry the payload's type (JSON-like data, bytes, an Event,
    another pydantic model or a dataclass travel), or a str in the envelope is not valid
    Unicode text: a lone surrogate such as ``"\\udc80"`` (what ``os.fsdecode`` makes of
    undecodable bytes) has no UTF-8 form. Send such data as bytes instead.
    """


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


class ConnectionFailed(TransportError):
    """The broker answered but refused the bus: wrong user or password, a database or DB
    index that does not exist, or a server of another kind at that address.

    Raised by ``Bus.start()`` whatever ``on_unavailable`` says: waiting does not fix a URL.
    The message is one line and never shows the URL's password::

        redis://127.0.0.1:6379/99 refused the connection: DB index is out of range
    """


class MissingDependency(AxonbusError, ImportError):
    """A feature needs a package that is not installed; the message says what to install.

    >>> Bus("redis://localhost:6379")  # without redis-py
    MissingDependency: the redis:// transport needs redis-py: pip install 'axonbus[redis]'
    """


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


class AgentError(AxonbusError):
    """Base class of the actor runtime's delivery errors (``axonbus.runtime``)."""


class AgentNotFound(AgentError, LookupError):
    """``send_message`` (or ``get(..., lazy=False)``) to an agent type with no factory registered,
    or to a key of a type registered only with ``register_agent_instance``."""

    def __init__(self, agent_id: str, reason: str = "no agent type registered") -> None:
        super().__init__(f"agent {agent_id!r} not found: {reason}")
        self.agent_id = agent_id


class CantHandle(AgentError):
    """The recipient of ``send_message`` has no handler for the message's type (and its
    ``on_unhandled_message`` did not handle it), or a handler raised it on purpose."""


class MessageDropped(AgentError):
    """An intervention handler returned ``DropMessage`` for a ``send_message`` or for its
    response; the message (or the reply) went nowhere."""


class Undeliverable(AgentError, RuntimeError):
    """The message could not reach its recipient: the runtime stopped with the message still
    queued or being handled, (across processes) the worker hosting the agent left, or a
    publish's recipient could not be created (a ``RuntimeError``, as in autogen-core)."""


class DeadlockDetected(AgentError):
    """``send_message`` from inside a handler would wait forever: every handler slot of the
    recipient (one, unless it has ``concurrency`` > 1) is taken by a handler waiting, directly
    or through a chain of such agents, on the sender itself. Reply by ``publish_message``, or
    give the agents more ``concurrency``."""

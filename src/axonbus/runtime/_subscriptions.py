"""Which agents receive a publish: subscriptions map a ``TopicId`` to an ``AgentId``.

- ``TypeSubscription("orders", "clerk")``: ``TopicId("orders", s)`` -> ``AgentId("clerk", s)``.
- ``TypePrefixSubscription("orders.", "clerk")``: any topic type starting with ``orders.``.
- ``DefaultSubscription()``: ``TypeSubscription("default", <the type being registered>)``.

Class decorators (``@default_subscription``, ``@type_subscription("t")``) declare subscriptions
that ``Agent.register`` adds. :class:`SubscriptionIndex` answers "who gets this topic" with one
dict lookup after the first publish on a topic.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, overload, runtime_checkable

from .._exceptions import CantHandle
from ._ids import AgentId, AgentType, TopicId

if TYPE_CHECKING:
    from ._agent import Agent

__all__ = [
    "DefaultSubscription",
    "Subscription",
    "SubscriptionIndex",
    "TypePrefixSubscription",
    "TypeSubscription",
    "default_subscription",
    "subscription_factory",
    "subscription_from_data",
    "subscription_to_data",
    "type_subscription",
]

A = TypeVar("A", bound="type[Agent]")

# the agent type being registered, for DefaultSubscription() without an agent_type
_registering: ContextVar[AgentType] = ContextVar("axonbus_registering_agent_type")


@runtime_checkable
class Subscription(Protocol):
    """Anything with an ``id``, ``is_match(topic_id)`` and ``map_to_agent(topic_id)``."""

    @property
    def id(self) -> str: ...

    def is_match(self, topic_id: TopicId) -> bool: ...

    def map_to_agent(self, topic_id: TopicId) -> AgentId: ...


def _agent_type_name(agent_type: str | AgentType) -> str:
    name = agent_type.type if isinstance(agent_type, AgentType) else agent_type
    AgentId(name, "")  # validates the type name
    return name


class _BySource(abc.ABC):
    """A subscription that maps a matching topic to ``AgentId(agent_type, topic.source)``; the
    two kinds differ in how they match the topic type (``_key``)."""

    __slots__ = ("_agent_type", "_id", "_key")
    _key_name: ClassVar[str]  # the constructor argument ``_key`` comes from, for the repr

    def __init__(self, key: str, agent_type: str | AgentType, id: str | None) -> None:
        self._key = key
        self._agent_type = _agent_type_name(agent_type)
        self._id = id or str(uuid.uuid4())

    @property
    def id(self) -> str:
        return self._id

    @property
    def agent_type(self) -> str:
        return self._agent_type

    @abc.abstractmethod
    def is_match(self, topic_id: TopicId) -> bool:
        """Whether the subscription takes ``topic_id``."""

    def map_to_agent(self, topic_id: TopicId) -> AgentId:
        if not self.is_match(topic_id):
            raise CantHandle(f"{topic_id} does not match {self!r}")
        return AgentId(self._agent_type, topic_id.source)

    def __eq__(self, other: object) -> bool:
        kind = TypeSubscription if isinstance(self, TypeSubscription) else type(self)
        if not isinstance(other, kind):
            return NotImplemented
        return self._id == other._id or (
            self._agent_type == other._agent_type and self._key == other._key
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key, self._agent_type))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._key_name}={self._key!r}, "
            f"agent_type={self._agent_type!r})"
        )


class TypeSubscription(_BySource):
    """Topics of exactly ``topic_type`` go to ``AgentId(agent_type, topic.source)``: one agent
    instance per source.

    >>> await runtime.add_subscription(TypeSubscription("orders", "clerk"))
    """

    __slots__ = ()
    _key_name = "topic_type"

    def __init__(self, topic_type: str, agent_type: str | AgentType, id: str | None = None) -> None:
        TopicId(topic_type, "")  # validates the topic type
        super().__init__(topic_type, agent_type, id)

    @property
    def topic_type(self) -> str:
        return self._key

    def is_match(self, topic_id: TopicId) -> bool:
        return topic_id.type == self._key


class TypePrefixSubscription(_BySource):
    """Topics whose type starts with ``topic_type_prefix`` go to
    ``AgentId(agent_type, topic.source)``.

    >>> await runtime.add_subscription(TypePrefixSubscription("orders.", "auditor"))
    """

    __slots__ = ()
    _key_name = "topic_type_prefix"

    def __init__(
        self, topic_type_prefix: str, agent_type: str | AgentType, id: str | None = None
    ) -> None:
        if not isinstance(topic_type_prefix, str) or not topic_type_prefix:
            raise ValueError("topic_type_prefix must be a non-empty string")
        super().__init__(topic_type_prefix, agent_type, id)

    @property
    def topic_type_prefix(self) -> str:
        return self._key

    def is_match(self, topic_id: TopicId) -> bool:
        return topic_id.type.startswith(self._key)


class DefaultSubscription(TypeSubscription):
    """``TypeSubscription(topic_type, agent_type)`` where ``agent_type`` defaults to the type
    being registered (only known inside ``Agent.register``).
    """

    __slots__ = ()

    def __init__(
        self, topic_type: str = "default", agent_type: str | AgentType | None = None
    ) -> None:
        if agent_type is None:
            agent_type = _registering.get(None)
            if agent_type is None:
                raise ValueError(
                    "DefaultSubscription() without agent_type only works while an agent type "
                    "is being registered (in a class decorator's subscriptions)"
                )
        super().__init__(topic_type, agent_type)


def current_registering() -> AgentType | None:
    """The agent type being registered now, if any."""
    return _registering.get(None)


@contextmanager
def registering(agent_type: AgentType) -> Iterator[None]:
    """Let ``DefaultSubscription()`` know which type is being registered."""
    token = _registering.set(agent_type)
    try:
        yield
    finally:
        _registering.reset(token)


def subscription_factory(
    make: Callable[[], Sequence[Subscription]],
) -> Callable[[A], A]:
    """A class decorator: ``Agent.register`` adds ``make()``'s subscriptions for the new type."""

    def decorate(cls: A) -> A:
        cls._class_subscriptions.append(make)
        return cls

    return decorate


@overload
def default_subscription(cls: A, /) -> A: ...
@overload
def default_subscription() -> Callable[[A], A]: ...


def default_subscription(cls: A | None = None, /) -> A | Callable[[A], A]:
    """Class decorator: the type is subscribed to ``DefaultTopicId()`` (topic type "default").

    >>> @default_subscription
    ... class Checker(RoutedAgent): ...
    """
    decorate: Callable[[A], A] = subscription_factory(lambda: [DefaultSubscription()])
    return decorate if cls is None else decorate(cls)


def type_subscription(topic_type: str) -> Callable[[A], A]:
    """Class decorator: the type is subscribed to topics of type ``topic_type``."""
    TopicId(topic_type, "")
    return subscription_factory(lambda: [DefaultSubscription(topic_type=topic_type)])


# -- as data (saved runtime state, and part 2's replication) --------------------------------------


def subscription_to_data(sub: Subscription) -> dict[str, str] | None:
    """A JSON-native form of a built-in subscription; None for other kinds."""
    if isinstance(sub, TypeSubscription):
        return {"kind": "type", "id": sub.id, "topic": sub.topic_type, "agent_type": sub.agent_type}
    if isinstance(sub, TypePrefixSubscription):
        return {
            "kind": "prefix",
            "id": sub.id,
            "topic": sub.topic_type_prefix,
            "agent_type": sub.agent_type,
        }
    return None


def subscription_from_data(data: dict[str, Any]) -> Subscription:
    kind = data.get("kind")
    if kind == "type":
        return TypeSubscription(data["topic"], data["agent_type"], id=data["id"])
    if kind == "prefix":
        return TypePrefixSubscription(data["topic"], data["agent_type"], id=data["id"])
    raise ValueError(f"unknown subscription kind {kind!r}")


class SubscriptionIndex:
    """The runtime's subscriptions, and a cache of topic -> recipients.

    The cache is rebuilt lazily per topic after any change; it is cleared when it grows past
    ``max_topics`` entries (topics with per-session sources come and go).

    A distributed runtime also routes by the subscriptions other processes added
    (:meth:`set_remote`): they count for :meth:`recipients` only, while iterating, ``contains``
    and ``remove`` see this process's own.
    """

    __slots__ = ("_cache", "_remote", "_subs", "max_topics", "version")

    def __init__(self, max_topics: int = 10_000) -> None:
        self._subs: list[Subscription] = []
        self._remote: tuple[Subscription, ...] = ()
        self._cache: dict[TopicId, tuple[AgentId, ...]] = {}
        self.max_topics = max_topics
        self.version = 0  # bumped on every change, so derived caches know to drop their entries

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._subs))

    def __len__(self) -> int:
        return len(self._subs)

    def add(self, sub: Subscription) -> None:
        if not isinstance(sub, Subscription):
            raise TypeError(f"not a subscription: {sub!r}")
        if any(existing == sub for existing in self._subs):
            raise ValueError(f"Subscription already exists: {sub!r}")
        self._subs.append(sub)
        self._changed()

    def remove(self, id: str) -> Subscription:
        for i, sub in enumerate(self._subs):
            if sub.id == id:
                del self._subs[i]
                self._changed()
                return sub
        raise ValueError(f"no subscription with id {id!r}")

    def contains(self, sub: Subscription) -> bool:
        return any(existing == sub for existing in self._subs)

    def recipients(self, topic: TopicId) -> tuple[AgentId, ...]:
        found = self._cache.get(topic)
        if found is None:
            seen: dict[AgentId, None] = {}
            for sub in self._subs:
                if sub.is_match(topic):
                    seen[sub.map_to_agent(topic)] = None  # one delivery per agent
            for sub in self._remote:
                if sub.is_match(topic):
                    seen[sub.map_to_agent(topic)] = None
            found = tuple(seen)
            if len(self._cache) >= self.max_topics:
                self._cache.clear()
            self._cache[topic] = found
        return found

    def set_remote(self, subs: Sequence[Subscription]) -> None:
        """Route by ``subs`` too (other processes' subscriptions; replaces the previous set)."""
        remote = tuple(dict.fromkeys(subs))  # equal ones once; an own one may equal one too
        if remote != self._remote:
            self._remote = remote
            self._changed()

    def _changed(self) -> None:
        self._cache.clear()
        self.version += 1

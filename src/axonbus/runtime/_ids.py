"""Addresses: ``AgentId(type, key)``, ``TopicId(type, source)``, ``AgentType``, ``DefaultTopicId``.

Both ids are plain data: ``str(id)`` is ``"type/key"`` (``"type/source"``) and ``from_str``
parses it back, which is how they cross processes and how saved state is keyed. Both hash once
and cache it, because every send and publish looks them up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ._context import handling_agent

__all__ = ["AgentId", "AgentType", "DefaultTopicId", "TopicId"]

_AGENT_TYPE = re.compile(r"^[\w\-\.]+\Z")
_TOPIC_TYPE = re.compile(r"^[\w\-\.\:\=]+\Z")


@dataclass(eq=True, frozen=True, slots=True)
class AgentType:
    """The name a factory is registered under; what ``register`` returns.

    >>> agent_type = await MyAgent.register(runtime, "my_agent", MyAgent)
    >>> AgentId(agent_type, "default")
    """

    type: str

    def __str__(self) -> str:
        return self.type


class AgentId:
    """The address of one agent instance: its ``type`` (which factory) and ``key`` (which one).

    >>> AgentId("checker", "default")
    AgentId(type='checker', key='default')
    >>> str(AgentId("checker", "default")), AgentId.from_str("checker/default").key
    ('checker/default', 'default')

    ``type`` matches ``[\\w\\-\\.]+``; ``key`` is any string.
    """

    __slots__ = ("_hash", "_key", "_type")

    def __init__(self, type: str | AgentType, key: str) -> None:
        if isinstance(type, AgentType):
            type = type.type
        if not isinstance(type, str) or not _AGENT_TYPE.match(type):
            raise ValueError(f"invalid agent type {type!r}: use letters, digits, '_', '-' or '.'")
        if not isinstance(key, str):
            raise TypeError(f"agent key must be a str, got {key!r}")
        self._type = type
        self._key = key
        self._hash = hash((type, key))

    @classmethod
    def from_str(cls, agent_id: str) -> AgentId:
        """Parse ``"type/key"`` (the key may contain ``/``)."""
        type_, sep, key = agent_id.partition("/")
        if not sep:
            raise ValueError(f"invalid agent id {agent_id!r}: expected 'type/key'")
        return cls(type_, key)

    @property
    def type(self) -> str:
        return self._type

    @property
    def key(self) -> str:
        return self._key

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if not isinstance(other, AgentId):
            return NotImplemented
        return self._hash == other._hash and self._type == other._type and self._key == other._key

    def __str__(self) -> str:
        return f"{self._type}/{self._key}"

    def __repr__(self) -> str:
        return f"AgentId(type={self._type!r}, key={self._key!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (AgentId, (self._type, self._key))


class TopicId:
    """The scope of a publish: subscriptions match its ``type``; ``source`` usually becomes the
    key of the agent that receives it (``TypeSubscription``).

    >>> TopicId("orders", "customer-7")
    TopicId(type='orders', source='customer-7')

    ``type`` matches ``[\\w\\-\\.\\:\\=]+``; ``source`` is any string.
    """

    __slots__ = ("_hash", "_source", "_type")

    def __init__(self, type: str, source: str) -> None:
        if not isinstance(type, str) or not _TOPIC_TYPE.match(type):
            raise ValueError(
                f"invalid topic type {type!r}: use letters, digits, '_', '-', '.', ':' or '='"
            )
        if not isinstance(source, str):
            raise TypeError(f"topic source must be a str, got {source!r}")
        self._type = type
        self._source = source
        self._hash = hash((type, source))

    @classmethod
    def from_str(cls, topic_id: str) -> TopicId:
        """Parse ``"type/source"`` (the source may contain ``/``)."""
        type_, sep, source = topic_id.partition("/")
        if not sep:
            raise ValueError(f"invalid topic id {topic_id!r}: expected 'type/source'")
        return cls(type_, source)

    @property
    def type(self) -> str:
        return self._type

    @property
    def source(self) -> str:
        return self._source

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if not isinstance(other, TopicId):
            return NotImplemented
        return (
            self._hash == other._hash
            and self._type == other._type
            and self._source == other._source
        )

    def __str__(self) -> str:
        return f"{self._type}/{self._source}"

    def __repr__(self) -> str:
        return f"TopicId(type={self._type!r}, source={self._source!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (TopicId, (self._type, self._source))


class DefaultTopicId(TopicId):
    """``TopicId("default", source)``. Without a ``source``, inside a message handler it is the
    handling agent's key, elsewhere ``"default"``.

    >>> await self.publish_message(Message(1), DefaultTopicId())  # to @default_subscription
    """

    __slots__ = ()

    def __init__(self, type: str = "default", source: str | None = None) -> None:
        if source is None:
            agent = handling_agent.get(None)
            source = agent.key if agent is not None else "default"
        super().__init__(type, source)

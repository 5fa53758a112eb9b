"""The handler's view of the delivery it is handling, and of its bus."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._events import Envelope

if TYPE_CHECKING:
    from .bus import Bus

__all__ = ["Context"]


class Context:
    """What a handler knows about the delivery it is handling.

    >>> async def on_call(event, ctx: Context):
    ...     await ctx.publish("audit.tool", {"id": ctx.event_id})   # causation = this event
    """

    __slots__ = ("_bus", "attempt", "envelope", "subscription")

    def __init__(self, bus: Bus, envelope: Envelope, attempt: int, subscription: str) -> None:
        self._bus = bus
        self.envelope = envelope
        self.attempt = attempt
        self.subscription = subscription

    @property
    def bus(self) -> Bus:
        return self._bus

    @property
    def topic(self) -> str:
        return self.envelope.topic

    @property
    def event_id(self) -> str:
        return self.envelope.id

    @property
    def headers(self) -> dict[str, str]:
        return self.envelope.headers

    @property
    def timestamp(self) -> float:
        return self.envelope.timestamp

    @property
    def correlation_id(self) -> str:
        return self.envelope.correlation_id or self.envelope.id

    @property
    def causation_id(self) -> str | None:
        return self.envelope.causation_id

    async def publish(self, topic_or_event: Any, *args: Any, **kwargs: Any) -> Any:
        """Publish with causation set to this event and its correlation kept.

        Takes the same arguments as ``Bus.publish``: ``(event)`` or ``(topic, payload)``.
        """
        return await self._bus.publish(topic_or_event, *args, _parent=self.envelope, **kwargs)

    def __repr__(self) -> str:
        return (
            f"Context(topic={self.topic!r}, event_id={self.event_id!r}, attempt={self.attempt}, "
            f"subscription={self.subscription!r})"
        )

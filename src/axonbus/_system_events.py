"""System events on ``$bus.*`` topics, and the outcome of ``publish(wait=True)``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ._events import Event

__all__ = ["DeadLetter", "HandlerFailed", "Outcome", "PublishResult", "Tracker"]


class HandlerFailed(Event, topic="$bus.handler_failed", name="axonbus.HandlerFailed"):
    """A handler raised, timed out or was cancelled. Published once per failed delivery."""

    subscription: str
    handler: str
    event_id: str
    original_topic: str
    error_type: str
    error_message: str
    attempts: int
    kind: Literal["error", "timeout", "cancelled"]


class DeadLetter(Event, topic="$bus.dead_letter", name="axonbus.DeadLetter"):
    """A delivery that exhausted its retry budget. ``event`` is the original payload."""

    subscription: str
    event_id: str
    original_topic: str
    error_type: str
    error_message: str
    attempts: int
    event: Any = None
    headers: dict[str, str] = {}


Status = Literal["ok", "error", "timeout", "cancelled", "dropped", "filtered"]


@dataclass(slots=True)
class Outcome:
    """What one subscription did with one event."""

    subscription: str
    status: Status
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Tracker(Protocol):
    """Where the subscriptions an envelope reaches report what became of it.

    An envelope's ``tracker`` is one of these: a :class:`PublishResult` for
    ``publish(wait=True)``, or a transport's :class:`~axonbus.transports.Inbound` for a broker
    delivery that must be acknowledged. The bus counts ``expected`` up once per mailbox the
    envelope enters; every subscription then ``add``s exactly one :class:`Outcome`.
    """

    expected: int

    def add(self, outcome: Outcome) -> None: ...


@dataclass(eq=False)
class PublishResult:
    """Returned by ``await bus.publish(event, wait=True)``: one :class:`Outcome` per subscription.

    >>> result = await bus.publish(event, wait=True)
    >>> result.ok, [o.status for o in result]
    """

    event_id: str
    outcomes: list[Outcome] = field(default_factory=list)
    expected: int = 0
    _done: asyncio.Future[None] | None = field(default=None, repr=False)

    def __iter__(self) -> Any:
        return iter(self.outcomes)

    def __len__(self) -> int:
        return len(self.outcomes)

    def __getitem__(self, i: int) -> Outcome:
        return self.outcomes[i]

    @property
    def ok(self) -> bool:
        """True when no handler failed (drops and filtered-out subscriptions are not failures)."""
        return all(o.status in ("ok", "dropped", "filtered") for o in self.outcomes)

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("error", "timeout", "cancelled")]

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if len(self.outcomes) >= self.expected and self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def wait(self) -> PublishResult:
        if len(self.outcomes) < self.expected:
            self._done = asyncio.get_running_loop().create_future()
            await self._done
        return self

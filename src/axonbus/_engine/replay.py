"""Reading the event log back: ``Bus.replay``, ``Bus.events`` and :func:`fold`."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from .._events import Envelope
from .._exceptions import NoEventLog

if TYPE_CHECKING:
    from ..transports.base import Transport
    from ..transports.log._transport import LogTransport

__all__ = ["fold", "log_of"]

S = TypeVar("S")


def log_of(transport: Transport) -> LogTransport:
    """The transport, if it keeps an event log; :class:`NoEventLog` otherwise."""
    from ..transports.log._transport import LogTransport

    if not isinstance(transport, LogTransport):
        raise NoEventLog(
            f"{transport.scheme}:// keeps no event log to read back; "
            "use sqlite:///file.db or postgresql://... for replay and queries"
        )
    return transport


async def fold(
    source: AsyncIterable[Envelope] | Iterable[Envelope],
    reducer: Callable[[S, Any], S],
    initial: S,
) -> S:
    """Rebuild a state from events: ``reducer(state, event)`` over each one, in order.

    >>> def apply(cart: dict, event: dict) -> dict:
    ...     return {**cart, event["item"]: cart.get(event["item"], 0) + event["qty"]}
    >>> cart = await fold(bus.replay("cart.c1.>"), apply, {})
    """
    state = initial
    if isinstance(source, AsyncIterable):
        async for env in source:
            state = reducer(state, env.event)
    else:
        for env in source:
            state = reducer(state, env.event)
    return state

"""``memory://``: the in-process transport, and the default.

Nothing leaves the process: the Bus's local dispatch is the whole delivery path, so publishing
costs microseconds and needs no set-up. What it cannot promise: nothing survives the process
(``durable=`` subscriptions keep their queue across unsubscribe/resubscribe, not across a
restart), and no other process sees the events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Transport, register_transport

if TYPE_CHECKING:
    from .sink import Sink

__all__ = ["MemoryTransport"]


@register_transport
class MemoryTransport(Transport):
    scheme = "memory"
    local_only = True

    async def start(self, bus: Sink) -> None:
        # nothing to connect: local dispatch is all there is
        return None

    async def close(self) -> None:
        return None

"""MemoryChannel: an in-process channel for demos and tests."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._base import Channel, check_channel_type

if TYPE_CHECKING:
    from .._engine.bus import Bus
    from ._messages import ChannelReply

__all__ = ["MemoryChannel"]


class MemoryChannel(Channel):
    """A channel with no outside world: you call :meth:`receive`, replies land in ``outbox``.

    ``on_send`` (a plain or async callable) is called with every reply after it is stored.

    >>> telegram = MemoryChannel(bus, "telegram")
    >>> await manager.attach(telegram)
    >>> await telegram.receive("user_001", "what time is it?")
    >>> await bus.drain()
    >>> [r.content for r in telegram.outbox]
    ['It is 09:00.']
    """

    def __init__(
        self,
        bus: Bus,
        channel_type: str = "memory",
        *,
        on_send: Callable[[ChannelReply], Any] | None = None,
    ) -> None:
        super().__init__(bus)
        self._channel_type = check_channel_type(channel_type)
        self.on_send = on_send
        self.outbox: list[ChannelReply] = []

    @property
    def channel_type(self) -> str:
        return self._channel_type

    async def send(self, reply: ChannelReply) -> None:
        self.outbox.append(reply)
        if self.on_send is not None:
            result = self.on_send(reply)
            if inspect.isawaitable(result):
                await result

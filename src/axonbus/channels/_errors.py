"""Errors raised by channels and the channel manager.

They live here, not in ``axonbus._exceptions``, because only the channels layer raises them;
both still derive from :class:`axonbus.AxonbusError` so one ``except`` catches everything.
"""

from __future__ import annotations

from .. import AxonbusError, LifecycleError

__all__ = ["ChannelAlreadyAttached", "ChannelNotStarted"]


class ChannelNotStarted(LifecycleError, RuntimeError):
    """``channel.receive(...)`` was called before ``start()`` (or after ``stop()``).

    Attach the channel first: ``await manager.attach(channel)`` starts it.
    """

    def __init__(self, channel_type: str) -> None:
        super().__init__(
            f"channel {channel_type!r} is not started: attach it with "
            "'await manager.attach(channel)' or call 'await channel.start()' before receive()"
        )
        self.channel_type = channel_type


class ChannelAlreadyAttached(AxonbusError, ValueError):
    """``manager.attach(channel)`` for a channel type that is already attached.

    Detach the old one first: ``await manager.detach(channel_type)``.
    """

    def __init__(self, channel_type: str) -> None:
        super().__init__(
            f"a {channel_type!r} channel is already attached; "
            f"'await manager.detach({channel_type!r})' first"
        )
        self.channel_type = channel_type

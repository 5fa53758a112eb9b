"""Channels: hot-pluggable bridges between messaging systems and the bus.

Inbound messages are :class:`ChannelMessage` events on ``channel.{type}.in``; replies are
:class:`ChannelReply` events on ``channel.{type}.out``, delivered by the channel of that type.

>>> from axonbus.channels import ChannelManager, MemoryChannel
>>> async with Bus() as bus, ChannelManager(bus) as manager:
...     telegram = MemoryChannel(bus, "telegram")
...     await manager.attach(telegram)
...     await telegram.receive("user_001", "hello")

Built in: :class:`ConsoleChannel` (stdin / stdout), :class:`MemoryChannel` (tests, demos),
:class:`TelegramChannel` (Bot API long polling) and :class:`SlackChannel` (Events API and
``chat.postMessage``); the last two need httpx (the ``gateway`` extra) once started. The
gateway adds ``WebSocketChannel`` and ``WebhookChannel``.
"""

from ._base import Channel
from ._console import ConsoleChannel
from ._errors import ChannelAlreadyAttached, ChannelApiError, ChannelNotStarted
from ._heartbeat import Heartbeat, HeartbeatTick
from ._manager import ChannelManager, ChannelState, ChannelStatus
from ._memory import MemoryChannel
from ._messages import ChannelMessage, ChannelReply
from ._restart import RestartPolicy
from ._slack import SlackChannel, slack_signature
from ._telegram import FileOffsetStore, OffsetStore, TelegramChannel

__all__ = [
    "Channel",
    "ChannelAlreadyAttached",
    "ChannelApiError",
    "ChannelManager",
    "ChannelMessage",
    "ChannelNotStarted",
    "ChannelReply",
    "ChannelState",
    "ChannelStatus",
    "ConsoleChannel",
    "FileOffsetStore",
    "Heartbeat",
    "HeartbeatTick",
    "MemoryChannel",
    "OffsetStore",
    "RestartPolicy",
    "SlackChannel",
    "TelegramChannel",
    "slack_signature",
]

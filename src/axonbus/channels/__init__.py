"""Channels: hot-pluggable bridges between messaging systems and the bus (seed 000).

Inbound messages are :class:`ChannelMessage` events on ``channel.{type}.in``; replies are
:class:`ChannelReply` events on ``channel.{type}.out``, delivered by the channel of that type.

>>> from axonbus.channels import ChannelManager, MemoryChannel
>>> async with Bus() as bus, ChannelManager(bus) as manager:
...     telegram = MemoryChannel(bus, "telegram")
...     await manager.attach(telegram)
...     await telegram.receive("user_001", "hello")
"""

from ._base import Channel
from ._console import ConsoleChannel
from ._errors import ChannelAlreadyAttached, ChannelNotStarted
from ._heartbeat import Heartbeat, HeartbeatTick
from ._manager import ChannelManager, ChannelState, ChannelStatus
from ._memory import MemoryChannel
from ._messages import ChannelMessage, ChannelReply
from ._restart import RestartPolicy

__all__ = [
    "Channel",
    "ChannelAlreadyAttached",
    "ChannelManager",
    "ChannelMessage",
    "ChannelNotStarted",
    "ChannelReply",
    "ChannelState",
    "ChannelStatus",
    "ConsoleChannel",
    "Heartbeat",
    "HeartbeatTick",
    "MemoryChannel",
    "RestartPolicy",
]

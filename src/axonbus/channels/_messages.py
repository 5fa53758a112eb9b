"""The events channels exchange with the bus: inbound messages and outbound replies."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from .._events import Event

__all__ = ["ChannelMessage", "ChannelReply"]


def _new_id() -> str:
    return uuid.uuid4().hex


class ChannelMessage(
    Event, topic="channel.{channel_type}.in", name="axonbus.channels.ChannelMessage"
):
    """A message that arrived from the outside world, published on ``channel.{type}.in``.

    Channels publish it from :meth:`Channel.receive`; agents subscribe to ``channel.*.in``
    and answer with :meth:`reply`::

        @bus.on("channel.*.in")
        async def agent(msg: ChannelMessage) -> None:
            await bus.publish(msg.reply(f"you said {msg.content!r}"))  # causation: msg
    """

    channel_type: str
    user_id: str
    content: str
    id: str = Field(default_factory=_new_id)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def reply(self, content: str, **metadata: Any) -> ChannelReply:
        """A :class:`ChannelReply` to the same user on the same channel, linked by ``reply_to``."""
        return ChannelReply(
            channel_type=self.channel_type,
            user_id=self.user_id,
            content=content,
            reply_to=self.id,
            metadata=metadata,
        )


class ChannelReply(Event, topic="channel.{channel_type}.out", name="axonbus.channels.ChannelReply"):
    """A message for the outside world, published on ``channel.{type}.out``.

    The attached channel of that type receives it and delivers it with its ``send()``::

        await bus.publish(ChannelReply(channel_type="telegram", user_id="u1", content="hi"))
    """

    channel_type: str
    user_id: str
    content: str
    reply_to: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

"""The Channel base class: a bridge between one outside messaging system and the bus."""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._config_schema import check_channel_type
from ._errors import ChannelNotStarted
from ._messages import ChannelMessage, ChannelReply

if TYPE_CHECKING:
    from .._engine.bus import Bus
    from .._engine.subscription import Subscription

__all__ = ["Channel", "check_channel_type"]

logger = logging.getLogger("axonbus.channels")


class Channel(abc.ABC):
    """A hot-pluggable bridge between one outside messaging system and the bus.

    Inbound: the channel turns what it hears into a :class:`ChannelMessage` on
    ``channel.{type}.in`` via :meth:`receive`. Outbound: while started it is subscribed to
    ``channel.{type}.out`` and hands every :class:`ChannelReply` published there to
    :meth:`send`. A channel never holds a reference to a handler.

    Subclasses implement :attr:`channel_type` and, unless they only listen, :meth:`send`;
    they override :meth:`start` / :meth:`stop` to open and close their connection (call
    ``super()`` first in ``start`` and first in ``stop``), and :meth:`run` when they poll for
    input::

        class Telegram(Channel):
            channel_type = "telegram"  # a plain class attribute satisfies the property

            async def send(self, reply: ChannelReply) -> None:
                await self.api.send_message(reply.user_id, reply.content)

        async with ChannelManager(bus) as manager:
            await manager.attach(Telegram(bus))

    A failure in :meth:`send` is a handler failure like any other: the bus contains it, logs
    it and publishes ``HandlerFailed`` on ``$bus.handler_failed``.

    An inbound-only channel defines no :meth:`send`: a reply routed to it is logged (a warning
    the first time) and counted in :attr:`replies_dropped`, never raised::

        class Sensor(Channel):
            channel_type = "sensor"
    """

    #: seconds :meth:`stop` waits for replies already queued for :meth:`send` to go out
    flush_timeout: float = 5.0
    #: replies that reached this channel while it cannot send (its class defines no send())
    replies_dropped: int = 0

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._running = False
        self._reply_sub: Subscription | None = None
        self._send_task: asyncio.Task[Any] | None = None

    @property
    @abc.abstractmethod
    def channel_type(self) -> str:
        """The channel's unique name and topic token, e.g. ``"telegram"``."""

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<{type(self).__name__} {self.channel_type!r} {state}>"

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    @property
    def inbound_topic(self) -> str:
        """``channel.{type}.in``: where :meth:`receive` publishes."""
        return f"channel.{self.channel_type}.in"

    @property
    def outbound_topic(self) -> str:
        """``channel.{type}.out``: replies published here reach :meth:`send`."""
        return f"channel.{self.channel_type}.out"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to ``channel.{type}.out``. Idempotent. Subclasses connect after ``super()``."""
        if self._running:
            return
        check_channel_type(self.channel_type)
        self._reply_sub = self.bus.subscribe(
            self.outbound_topic, self._on_reply, name=f"channel:{self.channel_type}:send"
        )
        self._running = True

    async def stop(self) -> None:
        """Unsubscribe from ``.out``, then wait (up to :attr:`flush_timeout`) for replies that
        were already queued to be sent. Idempotent. Subclasses disconnect after ``super()``."""
        self._running = False
        sub, self._reply_sub = self._reply_sub, None
        if sub is None:
            return
        self.bus.unsubscribe(sub)
        # The bus still hands the queued replies to send(); wait for them, except when stop()
        # is called from inside send() itself (the worker would be waiting for itself).
        if self._send_task is None or self._send_task is not asyncio.current_task():
            try:
                async with asyncio.timeout(self.flush_timeout):
                    await sub.join()
            except TimeoutError:
                logger.warning(
                    "channel %r: replies still unsent after %ss; dropping them",
                    self.channel_type,
                    self.flush_timeout,
                )
                sub.cancel()

    async def run(self) -> None:
        """The receive loop of a polling channel; the manager runs it as a supervised task.

        Return when the source is exhausted; raise to have the manager restart the channel.
        The default does nothing (push-style channels call :meth:`receive` from callbacks).
        """
        return

    async def __aenter__(self) -> Channel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- traffic -------------------------------------------------------------------------------

    async def receive(self, user_id: str, content: str, **metadata: Any) -> ChannelMessage:
        """Publish what a user said as a :class:`ChannelMessage` on ``channel.{type}.in``.

        Raises :class:`ChannelNotStarted` if the channel is not started. Returns the message
        (its ``id`` is the ``reply_to`` of replies made with ``msg.reply(...)``).

        >>> await telegram.receive("user_001", "what time is it?", chat_id=42)
        """
        if not self._running:
            raise ChannelNotStarted(self.channel_type)
        message = ChannelMessage(
            channel_type=self.channel_type, user_id=user_id, content=content, metadata=metadata
        )
        await self.bus.publish(message)
        return message

    @property
    def can_send(self) -> bool:
        """False for an inbound-only channel: its class does not define :meth:`send`."""
        return type(self).send is not Channel.send

    async def send(self, reply: ChannelReply) -> None:
        """Deliver one reply to the outside world (called for each event on ``.out``).

        This default belongs to inbound-only channels: it drops the reply, counts it in
        :attr:`replies_dropped` and logs it (a warning the first time, then at DEBUG).
        """
        self.replies_dropped += 1
        level = logging.WARNING if self.replies_dropped == 1 else logging.DEBUG
        logger.log(
            level,
            "channel %r cannot send (%s defines no send()): reply to user %r dropped "
            "(%d dropped so far)",
            self.channel_type,
            type(self).__name__,
            reply.user_id,
            self.replies_dropped,
        )

    async def _on_reply(self, event: Any) -> None:
        reply = self._coerce_reply(event)
        self._send_task = asyncio.current_task()
        try:
            await self.send(reply)
        finally:
            self._send_task = None

    def _coerce_reply(self, event: Any) -> ChannelReply:
        if isinstance(event, ChannelReply):
            return event
        if isinstance(event, Mapping):
            # bus.publish("channel.telegram.out", {"user_id": "u1", "content": "hi"})
            return ChannelReply.model_validate({"channel_type": self.channel_type, **event})
        raise TypeError(
            f"channel {self.channel_type!r} can only send ChannelReply events or mappings with "
            f"user_id and content; got {type(event).__name__}"
        )

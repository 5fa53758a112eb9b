"""ChannelManager: attach and detach channels at run time, and keep them alive."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .._exceptions import LifecycleError
from ._base import Channel, check_channel_type
from ._errors import ChannelAlreadyAttached
from ._restart import RestartPolicy

if TYPE_CHECKING:
    from .._engine.bus import Bus

__all__ = ["ChannelManager", "ChannelState", "ChannelStatus"]

logger = logging.getLogger("axonbus.channels")

ChannelState = Literal["starting", "running", "restarting", "failed", "stopped"]


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """A snapshot of one attached channel, from :meth:`ChannelManager.status`.

    ``state`` is ``"starting"``, ``"running"``, ``"restarting"`` (waiting out a backoff),
    ``"failed"`` (gave up after ``max_restarts``; detach it to remove it) or ``"stopped"``
    (returned by :meth:`ChannelManager.attach` when detached while starting). ``restarts``
    counts restarts since attach; ``last_error`` is ``"Type: message"`` of the latest crash;
    ``replies_dropped`` counts replies an inbound-only channel (no ``send()``) could not send.

    >>> manager.status()["telegram"].state
    'running'
    """

    channel_type: str
    state: ChannelState
    restarts: int
    last_error: str | None
    replies_dropped: int = 0


class _Entry:
    __slots__ = ("channel", "detached", "failures", "last_error", "policy", "restarts", "state",
                 "task")  # fmt: skip

    def __init__(self, channel: Channel, policy: RestartPolicy) -> None:
        self.channel = channel
        self.policy = policy
        self.state: ChannelState = "starting"
        self.restarts = 0
        self.failures = 0  # consecutive; drives the backoff and max_restarts
        self.last_error: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.detached = False

    def status(self) -> ChannelStatus:
        c = self.channel
        return ChannelStatus(
            c.channel_type, self.state, self.restarts, self.last_error, c.replies_dropped
        )


class ChannelManager:
    """Attach and detach channels while the bus runs; a crashing channel is contained.

    ``attach`` starts the channel and, if it has a receive loop, runs :meth:`Channel.run` as a
    supervised task. If ``start()`` or ``run()`` raises, the error is logged with its traceback
    (logger ``axonbus.channels``), recorded in :meth:`status`, the channel is stopped and
    started again after an exponential backoff (:class:`RestartPolicy`). It never reaches the
    caller of ``attach`` nor any other channel. While a channel restarts, replies published on
    its ``.out`` topic have no receiver and are not delivered.

    >>> async with ChannelManager(bus) as manager:        # close() detaches everything
    ...     await manager.attach(MemoryChannel(bus, "telegram"))
    ...     await manager.attach(MemoryChannel(bus, "discord"))   # at run time
    ...     await manager.detach("telegram")
    ...     manager.list_channels()
    ['discord']
    """

    def __init__(self, bus: Bus, *, restart: RestartPolicy | None = None) -> None:
        self.bus = bus
        self.restart = restart if restart is not None else RestartPolicy()
        self._entries: dict[str, _Entry] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"<ChannelManager {self.list_channels()}>"

    async def __aenter__(self) -> ChannelManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- attach / detach -----------------------------------------------------------------------

    async def attach(
        self, channel: Channel, *, restart: RestartPolicy | None = None
    ) -> ChannelStatus:
        """Start ``channel`` and keep it running; returns its status once the first start ended.

        Raises :class:`ChannelAlreadyAttached` if its type is attached, and ``ValueError`` if
        its ``channel_type`` cannot be a topic token. A failing ``start()`` does not raise:
        the status says ``"restarting"`` and the manager retries. ``restart`` overrides the
        manager's policy for this channel.
        """
        if self._closed:
            raise LifecycleError("this ChannelManager is closed; create a new one")
        ct = check_channel_type(channel.channel_type)
        if ct in self._entries:
            raise ChannelAlreadyAttached(ct)
        entry = _Entry(channel, restart if restart is not None else self.restart)
        self._entries[ct] = entry
        try:
            started = await self._try_start(entry)
        except BaseException:  # the caller was cancelled mid-start: leave nothing behind
            if self._entries.get(ct) is entry:
                del self._entries[ct]
            await self._quiet_stop(entry)
            raise
        if entry.detached:
            return entry.status()
        delay: float | None = None
        if started:
            entry.state = "running"
            logger.info("channel %r attached", ct)
        else:
            delay = self._next_delay(entry)
            if delay is None:
                return entry.status()
        entry.task = asyncio.get_running_loop().create_task(
            self._supervise(entry, delay), name=f"axonbus:channel:{ct}"
        )
        return entry.status()

    async def detach(self, channel_type: str) -> bool:
        """Stop and remove a channel; False (and nothing happens) if none of that type is attached.

        An error raised by the channel's ``stop()`` is logged, not raised.
        """
        entry = self._entries.pop(channel_type, None)
        if entry is None:
            return False
        entry.detached = True
        task = entry.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._quiet_stop(entry)
        entry.state = "stopped"
        logger.info("channel %r detached", channel_type)
        return True

    async def close(self) -> None:
        """Detach every channel, most recently attached first. Idempotent."""
        self._closed = True
        for ct in reversed(list(self._entries)):
            await self.detach(ct)

    # -- introspection -------------------------------------------------------------------------

    def list_channels(self) -> list[str]:
        """The attached channel types, in attach order (failed ones included)."""
        return list(self._entries)

    def get(self, channel_type: str) -> Channel | None:
        """The attached channel of that type, if any."""
        entry = self._entries.get(channel_type)
        return entry.channel if entry is not None else None

    def __contains__(self, channel_type: object) -> bool:
        return channel_type in self._entries

    def status(self) -> dict[str, ChannelStatus]:
        """A snapshot per attached channel: state, restart count, last error."""
        return {ct: entry.status() for ct, entry in self._entries.items()}

    # -- supervision ---------------------------------------------------------------------------

    async def _supervise(self, entry: _Entry, delay: float | None) -> None:
        """Run the channel's loop; on a crash stop it, back off, start it again."""
        channel = entry.channel
        ct = channel.channel_type
        loop = asyncio.get_running_loop()
        while not entry.detached:
            if delay is not None:
                await asyncio.sleep(delay)
                entry.restarts += 1
                if not await self._try_start(entry):
                    delay = self._next_delay(entry)
                    if delay is None:
                        return
                    continue
                entry.state = "running"
                logger.info("channel %r restarted (restart %d)", ct, entry.restarts)
            began = loop.time()
            try:
                await channel.run()
            except asyncio.CancelledError as exc:
                if _cancelling():
                    raise  # detach() is stopping us
                error: BaseException = exc
            except Exception as exc:
                error = exc
            else:
                return  # the source is exhausted; the channel stays attached and can still send
            if entry.detached:
                return
            if loop.time() - began >= entry.policy.reset_after:
                entry.failures = 0
            self._record(entry, error, "run")
            await self._quiet_stop(entry)
            delay = self._next_delay(entry)
            if delay is None:
                return

    async def _try_start(self, entry: _Entry) -> bool:
        try:
            await entry.channel.start()
        except asyncio.CancelledError as exc:
            if _cancelling():
                raise
            error: BaseException = exc
        except Exception as exc:
            error = exc
        else:
            return True
        self._record(entry, error, "start")
        await self._quiet_stop(entry)  # release whatever a half-done start() opened
        return False

    def _record(self, entry: _Entry, error: BaseException, phase: str) -> None:
        entry.last_error = f"{type(error).__name__}: {error}"
        logger.error(
            "channel %r crashed in %s(): %s",
            entry.channel.channel_type,
            phase,
            entry.last_error,
            exc_info=(type(error), error, error.__traceback__),
        )

    def _next_delay(self, entry: _Entry) -> float | None:
        """Count one more consecutive failure; the backoff before restarting, or None to give up."""
        entry.failures += 1
        ct = entry.channel.channel_type
        if entry.policy.gives_up(entry.failures):
            entry.state = "failed"
            logger.error(
                "channel %r: giving up after %d restart(s); detach it to remove it",
                ct,
                entry.restarts,
            )
            return None
        entry.state = "restarting"
        delay = entry.policy.delay(entry.failures)
        logger.warning("channel %r: restarting in %.3gs", ct, delay)
        return delay

    @staticmethod
    async def _quiet_stop(entry: _Entry) -> None:
        try:
            await entry.channel.stop()
        except asyncio.CancelledError:
            if _cancelling():
                raise
            logger.warning("channel %r: stop() was cancelled", entry.channel.channel_type)
        except Exception as exc:
            logger.warning(
                "channel %r: stop() failed: %s: %s",
                entry.channel.channel_type,
                type(exc).__name__,
                exc,
                exc_info=True,
            )


def _cancelling() -> bool:
    """True when the current task itself is being cancelled (as opposed to a stray
    ``CancelledError`` escaping from a channel's own code)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0

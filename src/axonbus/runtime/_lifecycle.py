"""The runtime's lifecycle: new -> started <-> stopped -> closed.

- ``start()`` works as ``runtime.start()`` (autogen style) and as ``await runtime.start()``
  (which also waits for the bus the runtime owns to start).
- ``stop()``: queued sends fail with :class:`Undeliverable`, queued publishes are dropped,
  handlers already running finish (cancelled after ``timeout``; their callers then get
  ``Undeliverable``). Nothing waits forever. The runtime can be started again; agents are kept.
- ``stop_when_idle()``: wait until nothing is queued or running, then stop.
- ``close()``: like ``Bus.close``, handle what was accepted (up to ``timeout``), stop, call every
  agent's ``close()``, close the bus the runtime owns. ``async with`` calls ``start`` / ``close``.
- Before the first ``start()`` (in-process), sends and publishes are queued, as in autogen-core:
  ``start()`` handles them, or ``process_next()`` one at a time; ``close()`` without a start
  fails the waiting sends with :class:`Undeliverable`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Self

from .._engine.bus import Bus
from .._exceptions import RuntimeClosed, RuntimeNotStarted

if TYPE_CHECKING:
    from ._hosting import Hosts
    from ._runtime import Placement

__all__ = ["Lifecycle"]

logger = logging.getLogger("axonbus.runtime")


class _Started:
    """What ``start()`` returns: the runtime already runs; awaiting this also waits for its
    bus (when the runtime owns it) to be started."""

    __slots__ = ("_task",)

    def __init__(self, task: asyncio.Task[None] | None) -> None:
        self._task = task

    def __await__(self) -> Generator[Any, None, None]:
        if self._task is not None:
            yield from asyncio.shield(self._task).__await__()


class Lifecycle:
    """start / stop / stop_when_idle / stop_when / close of :class:`AgentRuntime`."""

    bus: Bus
    _hosts: Hosts
    _placement: Placement
    _owns_bus: bool
    _loop: asyncio.AbstractEventLoop | None

    def __init__(self) -> None:
        self._state = "new"
        self._boot: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        """``"new"``, ``"started"``, ``"stopping"``, ``"stopped"``, ``"closing"``, ``"closed"``."""
        return self._state

    def start(self) -> _Started:
        """Start handling messages (idempotent). Needs a running event loop.

        >>> runtime.start()            # as in autogen-core
        >>> await runtime.start()      # also waits until the runtime's own bus has started
        """
        if self._state in ("closing", "closed"):
            raise RuntimeClosed("the agent runtime is closed; create a new one")
        if self._state == "stopping":
            raise RuntimeNotStarted("the agent runtime is stopping; await stop() before start()")
        if self._state == "started":
            return _Started(self._boot)
        self._loop = asyncio.get_running_loop()
        self._hosts.start()
        self._state = "started"
        if (self._owns_bus and self.bus.state == "new") or not self._placement.local_only:
            self._boot = self._loop.create_task(self._start_bus(), name="axonbus-runtime-start")
        return _Started(self._boot)

    async def _start_bus(self) -> None:
        if self._owns_bus and self.bus.state == "new":
            await self.bus.start()
        await self._placement.start(self)  # type: ignore[arg-type]

    async def stop(self, *, timeout: float | None = 10.0) -> None:
        """Stop handling messages (see the module docstring); does nothing unless started.

        Re-raises the first publish-handler failure when the runtime was made with
        ``ignore_unhandled_exceptions=False``.
        """
        if self._state != "started":
            return
        self._state = "stopping"
        try:
            await self._hosts.stop(timeout)
            if self._boot is not None:
                await self._boot
                self._boot = None
            await self._placement.stop()
        finally:
            self._state = "stopped"
        failure, self._hosts.failure = self._hosts.failure, None
        if failure is not None:
            raise failure

    async def stop_when_idle(self) -> None:
        """Wait until no message is queued or being handled, then :meth:`stop`.

        >>> await runtime.publish_message(Number(10), DefaultTopicId())
        >>> await runtime.stop_when_idle()
        """
        if self._state != "started":
            raise RuntimeNotStarted(f"stop_when_idle: the agent runtime is {self._state}")
        await self._hosts.wait_idle()
        await self.stop()

    async def stop_when(self, condition: Callable[[], bool], check_period: float = 1.0) -> None:
        """Poll ``condition()`` every ``check_period`` seconds; :meth:`stop` once it holds."""
        if self._state != "started":
            raise RuntimeNotStarted(f"stop_when: the agent runtime is {self._state}")
        while not condition():  # noqa: ASYNC110  (a predicate to poll, as in autogen-core)
            await asyncio.sleep(check_period)
        await self.stop()

    async def close(self, timeout: float | None = 10.0) -> None:
        """Handle what was accepted (up to ``timeout`` seconds), stop, close every agent and
        the bus the runtime owns. Idempotent."""
        if self._state in ("closing", "closed"):
            return
        try:
            if self._state == "started":
                try:
                    await asyncio.wait_for(self._hosts.wait_idle(), timeout)
                except TimeoutError:
                    logger.warning("agent runtime: still busy after %ss; stopping anyway", timeout)
                await self.stop(timeout=0)
            elif self._state == "new":  # never started: queued sends must not wait forever
                await self._hosts.stop(0)
        finally:
            self._state = "closing"
            try:
                for host in list(self._hosts.by_id.values()):
                    try:
                        await host.agent.close()
                    except Exception:
                        logger.exception("agent %s failed to close", host.id)
                if self._boot is not None:
                    await self._boot
                if self._owns_bus:
                    await self.bus.close()
            finally:
                self._state = "closed"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

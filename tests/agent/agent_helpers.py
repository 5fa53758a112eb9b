"""Shared helpers of the agent toolkit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from axonbus import Bus, Context

Eventually = Callable[[Callable[[], bool]], Awaitable[None]]


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until ``predicate()`` holds; TimeoutError after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)


class Recorder:
    """Every event on ``agent.>``, in order, with its topic."""

    def __init__(self, bus: Bus) -> None:
        self.items: list[tuple[str, object]] = []
        bus.subscribe("agent.>", self._on, name="recorder")

    def _on(self, event: object, ctx: Context) -> None:
        self.items.append((ctx.topic, event))

    @property
    def kinds(self) -> list[str]:
        return [topic.rsplit(".", 1)[1] for topic, _ in self.items]

    def of(self, cls: type) -> list:  # type: ignore[type-arg]
        return [e for _, e in self.items if isinstance(e, cls)]

"""The agent and messages of the distributed-runtime tests, shared by the worker processes
(``tests.faults.runtime_worker``) and the tests: message classes cross processes by their
qualified name, so both sides import them from here (not from a ``__main__``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from axonbus.runtime import MessageContext, RoutedAgent, TopicId, event, rpc, type_subscription


@dataclass
class Inc:
    n: int = 1


@dataclass
class Count:
    key: str
    value: int
    pid: int


@dataclass
class Sleep:
    seconds: float


@dataclass
class Fail:
    text: str


@dataclass
class News:
    text: str


@dataclass
class Relay:
    """Publish ``News(text)`` on ``TopicId("news", key)`` for each key (from the agent)."""

    text: str
    keys: list[str] = field(default_factory=list)


@type_subscription("news")
class Counter(RoutedAgent):
    """Counts ``Inc`` per key; logs what a test must see from outside (one line each)."""

    def __init__(self, log: Callable[[str], None] = lambda line: None) -> None:
        super().__init__("counts per key")
        self.value = 0
        self._log = log

    @rpc
    async def inc(self, message: Inc) -> Count:
        self.value += message.n
        return Count(self.id.key, self.value, os.getpid())

    @rpc
    async def sleep(self, message: Sleep) -> Count:
        self._log(f"sleep_start {self.id.key}")
        try:
            await asyncio.sleep(message.seconds)
        except asyncio.CancelledError:
            self._log(f"sleep_cancelled {self.id.key}")
            raise
        self._log(f"sleep_done {self.id.key}")
        return Count(self.id.key, self.value, os.getpid())

    @rpc
    async def fail(self, message: Fail) -> None:
        raise ValueError(message.text)

    @rpc
    async def relay(self, message: Relay) -> int:
        for key in message.keys:
            await self.publish_message(News(message.text), TopicId("news", key))
        return os.getpid()

    @event
    async def news(self, message: News, ctx: MessageContext) -> None:
        self._log(f"news {self.id.key} {message.text} {ctx.sender}")

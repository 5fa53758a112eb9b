"""Token coalescing under backpressure (adaptive batching).

A reader that falls behind a token stream (a browser on a slow link, a busy dashboard) would
make a ``"block"`` mailbox stall the agent, or a ``"drop_*"`` one lose text. Here its events go
through a buffer instead: while the buffer holds fewer than ``watermark`` events nothing
changes; past it, a :class:`Token` is merged into the newest buffered event of the same run
when that one is a ``Token`` of the same step (text concatenated, ``tokens`` added). The
reader gets the whole text, in order, in fewer events; everything else is delivered as is.

Built on ``bus.stream`` alone, so the Bus's publish path is untouched and costs nobody else
anything. Order is kept within each run; a merged token takes the place of the first token it
absorbed, so against *other* runs' events it may arrive earlier than its last part was
published. A merged event's envelope has the id of its last part (resuming after it skips
nothing) and the timestamp, headers and causation of its first.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._events import Envelope
from ._events import AgentEvent, Token

if TYPE_CHECKING:
    from .._engine.bus import Bus

__all__ = ["CoalesceStats", "CoalescingStream", "TokenCoalescer", "coalesce_tokens"]

logger = logging.getLogger("axonbus.agent")


@dataclass(frozen=True, slots=True)
class CoalesceStats:
    """``received`` events from the bus, ``delivered`` to the reader, ``merged`` tokens folded
    into an earlier one (so received == delivered + merged + pending)."""

    received: int
    delivered: int
    merged: int
    pending: int


class _Slot:
    """One buffered event; a Token slot collects the text of the tokens merged into it."""

    __slots__ = ("first", "key", "last", "parts", "tokens")

    def __init__(self, env: Envelope, key: tuple[str, str] | None) -> None:
        self.first = env
        self.last = env
        self.key = key
        self.parts: list[str] | None = None
        self.tokens = 0

    def mergeable(self, token: Token) -> bool:
        head = self.first.event
        return isinstance(head, Token) and head.step == token.step

    def absorb(self, env: Envelope) -> None:
        if self.parts is None:
            head: Token = self.first.event
            self.parts = [head.text]
            self.tokens = head.tokens
        token: Token = env.event
        self.parts.append(token.text)
        self.tokens += token.tokens
        self.last = env

    def envelope(self) -> Envelope:
        if self.parts is None:
            return self.first
        first = self.first
        token = first.event.model_copy(update={"text": "".join(self.parts), "tokens": self.tokens})
        return Envelope(
            first.topic,
            token,
            id=self.last.id,
            headers=first.headers or None,
            timestamp=first.timestamp,
            correlation_id=first.correlation_id,
            causation_id=first.causation_id,
        )


class CoalescingStream:
    """An async iterator over the events on ``target`` that merges consecutive tokens of a
    run while the reader lags more than ``watermark`` events behind.

    >>> async with CoalescingStream(bus, "agent.s1.>", watermark=32) as events:
    ...     async for event in events:
    ...         await websocket.send_json(event.model_dump())   # slow: tokens get merged

    Registered when created (create it inside a running event loop). Nothing is dropped: when
    ``maxsize`` events that cannot be merged are waiting, the publisher waits (backpressure,
    as ``overflow="block"``). Ends when the bus closes or :meth:`close` is called, after the
    buffered events. ``envelopes=True`` yields :class:`axonbus.Envelope` objects.
    """

    def __init__(
        self,
        bus: Bus,
        target: str | type[Any] = "agent.>",
        *,
        watermark: int = 32,
        maxsize: int = 10_000,
        envelopes: bool = False,
    ) -> None:
        if not isinstance(watermark, int) or watermark < 1:
            raise ValueError(f"watermark must be a positive int, got {watermark!r}")
        if not isinstance(maxsize, int) or maxsize < watermark:
            raise ValueError(f"maxsize must be an int >= watermark, got {maxsize!r}")
        loop = asyncio.get_running_loop()  # before registering: nothing leaks if there is none
        self.watermark = watermark
        self.maxsize = maxsize
        self._envelopes = envelopes
        self._buffer: deque[_Slot] = deque()
        self._newest: dict[tuple[str, str], _Slot] = {}  # the newest buffered slot of each run
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._closed = False
        self._received = 0
        self._delivered = 0
        self._merged = 0
        self._feed = bus.stream(target, maxsize=min(maxsize, 1024), envelopes=True)
        self._pump = loop.create_task(self._run_pump())

    @property
    def stats(self) -> CoalesceStats:
        return CoalesceStats(self._received, self._delivered, self._merged, len(self._buffer))

    async def __aenter__(self) -> CoalescingStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving; what is buffered is still yielded, then the iteration ends."""
        self._feed.close()
        self._pump.cancel()
        self._finish()

    def _finish(self) -> None:
        self._closed = True
        self._readable.set()
        self._room.set()

    async def _run_pump(self) -> None:
        try:
            async for env in self._feed:
                await self._put(env)
        finally:
            self._finish()

    async def _put(self, env: Envelope) -> None:
        self._received += 1
        event = env.event
        key = (event.session_id, event.run_id) if isinstance(event, AgentEvent) else None
        if key is not None and not key[1]:
            key = None
        while True:
            if isinstance(event, Token) and key is not None and len(self._buffer) >= self.watermark:
                slot = self._newest.get(key)
                if slot is not None and slot.mergeable(event):
                    slot.absorb(env)
                    self._merged += 1
                    return
            if len(self._buffer) < self.maxsize:
                slot = _Slot(env, key)
                self._buffer.append(slot)
                if key is not None:
                    self._newest[key] = slot
                self._readable.set()
                return
            self._room.clear()
            await self._room.wait()  # full of events that cannot merge: backpressure

    def __aiter__(self) -> CoalescingStream:
        return self

    async def __anext__(self) -> Any:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        slot = self._buffer.popleft()
        if slot.key is not None and self._newest.get(slot.key) is slot:
            del self._newest[slot.key]
        self._room.set()
        self._delivered += 1
        env = slot.envelope()
        return env if self._envelopes else env.event


class TokenCoalescer:
    """Calls a handler with the events of a :class:`CoalescingStream`, one at a time, in a
    task of its own. Made by :func:`coalesce_tokens`; ``await close()`` stops it."""

    def __init__(self, stream: CoalescingStream, handler: Callable[[Any], Any]) -> None:
        self.stream = stream
        self.handler = handler
        self._task = asyncio.get_running_loop().create_task(self._consume())

    @property
    def stats(self) -> CoalesceStats:
        return self.stream.stats

    async def _consume(self) -> None:
        async for event in self.stream:
            try:
                result = self.handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a bulkhead, as for bus handlers: the next event still comes
                logger.exception("coalesced handler %r failed", self.handler)

    async def close(self) -> None:
        self.stream.close()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def __aenter__(self) -> TokenCoalescer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def coalesce_tokens(
    bus: Bus,
    target: str | type[Any],
    handler: Callable[[Any], Any],
    *,
    watermark: int = 32,
    maxsize: int = 10_000,
) -> TokenCoalescer:
    """Subscribe ``handler`` (``handler(event)``, async or not) to ``target`` with token
    coalescing: when it lags more than ``watermark`` events, consecutive tokens of a run reach
    it merged. Nothing is dropped.

    >>> coalescer = coalesce_tokens(bus, "agent.>", send_to_browser, watermark=32)
    >>> ...
    >>> await coalescer.close()
    """
    stream = CoalescingStream(bus, target, watermark=watermark, maxsize=maxsize)
    return TokenCoalescer(stream, handler)

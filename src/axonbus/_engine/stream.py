"""Pull-style consumers: ``bus.stream(...)`` and ``bus.wait_for(...)``.

Both read from a mailbox registered at call time (so nothing published after the call is
missed) and consumed by the caller instead of by worker tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .._events import Envelope
    from .bus import Bus
    from .mailbox import Mailbox

__all__ = ["EventStream", "Waiter"]

T = TypeVar("T")

#: ``Waiter(default=...)`` not given: a timeout raises ``TimeoutError``
NO_DEFAULT: Any = object()


class EventStream:
    """An async iterator over events matching a pattern; ends when the bus closes.

    >>> async with bus.stream("agent.s1.>") as events:
    ...     async for event in events:
    ...         print(event)

    ``envelopes=True`` yields :class:`Envelope` objects (topic, id, headers, ...) instead.
    """

    def __init__(
        self,
        bus: Bus,
        pattern: str,
        *,
        maxsize: int,
        overflow: str,
        type_filter: type | None,
        where: Callable[[Any], bool] | None,
        envelopes: bool,
    ) -> None:
        self._bus = bus
        self._type = type_filter
        self._where = where
        self._envelopes = envelopes
        self._mailbox: Mailbox = bus._open_stream(pattern, maxsize=maxsize, overflow=overflow)

    @property
    def dropped(self) -> int:
        return self._mailbox.dropped

    @property
    def pending(self) -> int:
        return len(self._mailbox.queue)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._bus._close_stream(self._mailbox)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Any:
        env = await self.next_envelope()
        if env is None:
            raise StopAsyncIteration
        return env if self._envelopes else env.event

    async def next_envelope(self) -> Envelope | None:
        """The next matching envelope, or ``None`` once the stream is closed and empty."""
        mb = self._mailbox
        while True:
            if mb.queue:
                env = mb.take()
                event = env.event
                if self._type is not None and not isinstance(event, self._type):
                    continue
                if self._where is not None and not self._where(event):
                    continue
                return env
            if mb.closed:
                return None
            await mb.wait_nonempty()


class Waiter(Generic[T]):
    """The first event matching a pattern (and ``where``); returned by ``bus.wait_for``.

    Registers at creation, so this is race-free::

        waiter = bus.wait_for(ToolResult, where=lambda e: e.call_id == cid, timeout=5)
        await bus.publish(ToolCall(...))
        result = await waiter          # TimeoutError after 5 s

    With ``default=`` (``bus.wait_for(..., default=None)``) a timeout returns it instead.
    """

    def __init__(
        self, stream: EventStream, timeout: float | None, default: Any = NO_DEFAULT
    ) -> None:
        self._stream = stream
        self._timeout = timeout
        self._default = default
        self._used = False

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait().__await__()

    async def _wait(self) -> T:
        if self._used:
            raise RuntimeError("a Waiter can be awaited once")
        self._used = True
        try:
            async with asyncio.timeout(self._timeout):
                env = await self._stream.next_envelope()
        except TimeoutError:
            if self._default is NO_DEFAULT:
                raise
            default: T = self._default
            return default
        finally:
            self._stream.close()
        if env is None:
            from .._exceptions import BusClosed

            raise BusClosed("the bus closed before a matching event arrived")
        result: T = env.event
        return result

    def cancel(self) -> None:
        """Stop waiting without awaiting (unregisters the underlying stream)."""
        self._used = True
        self._stream.close()

    def __del__(self) -> None:
        # a Waiter created but never awaited must not stay registered on the bus
        if not self._used:
            self._stream.close()

"""A blocking client for code without an event loop: Flask views, scripts, worker threads.

``axonbus.sync.Bus`` runs an ordinary :class:`axonbus.Bus` on an event loop in a background
thread and offers the same calls, blocking::

    from axonbus.sync import Bus

    with Bus("memory://") as bus:
        bus.subscribe("orders.>", lambda order: print("got", order))
        bus.respond("math.add", lambda req: req["a"] + req["b"])
        bus.publish("orders.new", {"id": 1})
        assert bus.request("math.add", {"a": 1, "b": 2}) == 3
        bus.drain()

Plain ``def`` handlers run in the loop's worker threads (``offload=True``), so a slow handler
never stalls the loop; ``async def`` handlers run on the loop. All calls are thread-safe.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar, overload

from ._engine.bus import Bus as AsyncBus
from ._engine.publishing import MISSING
from ._engine.stream import NO_DEFAULT
from ._engine.stream import EventStream as AsyncEventStream
from ._engine.subscription import HandlerSpec, Subscription, SubscriptionStats
from ._events import Envelope
from ._exceptions import BusClosed
from ._system_events import PublishResult

__all__ = ["Bus", "EventStream"]

T = TypeVar("T")
D = TypeVar("D")

_END = object()  # marks the end of a stream in its thread-safe queue


class Bus:
    """The blocking twin of :class:`axonbus.Bus`; same URL and options."""

    def __init__(self, url: str = "memory://", *, call_timeout: float = 30.0, **options: Any):
        self.call_timeout = call_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="axonbus-sync-loop", daemon=True
        )
        self._thread.start()
        try:
            # the async Bus is created on its loop thread, where it will live
            self._bus: AsyncBus = self._call(self._make(url, options))
            self._call(self._bus.start())
        except BaseException:
            self._stop_loop()
            raise

    @staticmethod
    async def _make(url: str, options: dict[str, Any]) -> AsyncBus:
        return AsyncBus(url, **options)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a blocking axonbus.sync call from inside one of its own handlers")
        if not self._loop.is_running():
            coro.close()
            raise BusClosed("this sync Bus is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(self.call_timeout if timeout is None else timeout)

    def _run(self, fn: Callable[[], T]) -> T:
        """Run a synchronous Bus method on the loop thread (the async Bus is not thread-safe)."""

        async def call() -> T:
            return fn()

        return self._call(call())

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._bus.state

    @property
    def async_bus(self) -> AsyncBus:
        """The :class:`axonbus.Bus` this wraps, running on this bus's loop thread: for code
        that schedules its own work on that loop (``async_bus.loop``)."""
        return self._bus

    @property
    def url(self) -> str:
        return self._bus.url

    def close(self, timeout: float | None = 10.0) -> None:
        """Drain, close the bus, and stop the loop thread. Idempotent."""
        if not self._loop.is_running():
            return
        try:
            wait = None if timeout is None else timeout + 5
            self._call(self._bus.close(timeout), timeout=wait)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- subscribing ---------------------------------------------------------------------------

    def subscribe(
        self, target: str | type[Any], handler: Callable[..., Any], **options: Any
    ) -> Subscription:
        """Like ``axonbus.Bus.subscribe``; plain ``def`` handlers default to ``offload=True``."""
        if not HandlerSpec.inspect(handler).is_async:
            options.setdefault("offload", True)
        return self._run(lambda: self._bus.subscribe(target, handler, **options))

    def subscribe_all(self, handler: Callable[..., Any], **options: Any) -> Subscription:
        return self.subscribe(">", handler, **options)

    def on(self, target: str | type[Any], **options: Any) -> Callable[[T], T]:
        def register(fn: T) -> T:
            self.subscribe(target, fn, **options)  # type: ignore[arg-type]
            return fn

        return register

    def respond(
        self, target: str | type[Any], handler: Callable[..., Any], **options: Any
    ) -> Subscription:
        """Like ``axonbus.Bus.respond``; a plain ``def`` responder runs in a worker thread."""
        fn = handler
        if not HandlerSpec.inspect(handler).is_async:
            fn = _in_thread(handler)
        return self._run(lambda: self._bus.respond(target, fn, **options))

    def unsubscribe(self, target: Any, handler: Callable[..., Any] | None = None) -> bool:
        if handler is None:
            return self._run(lambda: self._bus.unsubscribe(target))
        return self._run(lambda: self._bus.unsubscribe(target, handler))

    # -- publishing and requests ---------------------------------------------------------------

    def publish(self, topic_or_event: Any, payload: Any = MISSING, **kwargs: Any) -> Envelope:
        """Publish and block until accepted (backpressure applies); returns the Envelope."""
        envelope: Envelope = self._call(self._bus.publish(topic_or_event, payload, **kwargs))
        return envelope

    def publish_wait(self, topic_or_event: Any, payload: Any = MISSING, **kw: Any) -> PublishResult:
        """Publish and block until every local handler ran; returns the per-handler outcomes."""
        return self._call(self._bus.publish(topic_or_event, payload, wait=True, **kw))

    def request(
        self, topic: str, payload: Any = None, *, timeout: float | None = 30.0, **kw: Any
    ) -> Any:
        """Like ``axonbus.Bus.request``: the reply, or NoResponders / RequestTimeout /
        RemoteError."""
        wait = None if timeout is None else timeout + 5
        return self._call(self._bus.request(topic, payload, timeout=timeout, **kw), timeout=wait)

    @overload
    def wait_for(
        self,
        target: str | type[T],
        *,
        where: Callable[[Any], bool] | None = None,
        timeout: float | None = None,
    ) -> T: ...

    @overload
    def wait_for(
        self,
        target: str | type[T],
        *,
        where: Callable[[Any], bool] | None = None,
        timeout: float | None = None,
        default: D,
    ) -> T | D: ...

    def wait_for(
        self,
        target: str | type[T],
        *,
        where: Callable[[Any], bool] | None = None,
        timeout: float | None = None,
        default: Any = NO_DEFAULT,
    ) -> Any:
        """Block until a matching event arrives; ``TimeoutError`` after ``timeout`` seconds,
        or ``default`` when one is given (``default=None``: ``None`` if nothing came).

        Registered when called, so publish from another thread (or use :meth:`stream`) to wait
        for something triggered by this thread.
        """
        waiter = self._run(
            lambda: self._bus.wait_for(target, where=where, timeout=timeout, default=default)
        )

        async def wait() -> Any:
            return await waiter

        wait_timeout = None if timeout is None else timeout + 5
        return self._call(wait(), timeout=wait_timeout)

    def stream(
        self, target: str | type[Any], *, maxsize: int = 10_000, **options: Any
    ) -> EventStream:
        """A blocking iterator of matching events, registered from this call on."""
        return EventStream(self, target, maxsize=maxsize, options=options)

    # -- introspection -------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Block until the broker has everything this bus sent (see :meth:`axonbus.Bus.flush`)."""
        self._call(self._bus.flush(timeout))

    def drain(self, timeout: float | None = None) -> None:
        wait = None if timeout is None else timeout + 5
        self._call(self._bus.drain(timeout), timeout=wait)

    def stats(self) -> list[SubscriptionStats]:
        return self._run(self._bus.stats)

    def handler_count(self, pattern: str | None = None) -> int:
        return self._run(lambda: self._bus.handler_count(pattern))

    def history(self, pattern: str = ">", limit: int | None = None) -> list[Envelope]:
        return self._run(lambda: self._bus.history(pattern, limit))


class EventStream:
    """``with bus.stream("agent.>") as events: for event in events: ...`` (blocking).

    ``next(events)`` and iteration block until an event arrives; ``get(timeout)`` raises
    ``TimeoutError`` after ``timeout`` seconds. Iteration ends when the stream or bus closes.
    """

    def __init__(
        self, bus: Bus, target: str | type[Any], *, maxsize: int, options: dict[str, Any]
    ) -> None:
        self._bus = bus
        self._queue: queue.Queue[Any] = queue.Queue()
        self._done = False

        def open_stream() -> tuple[AsyncEventStream, asyncio.Task[None]]:
            stream = bus._bus.stream(target, maxsize=maxsize, **options)
            return stream, asyncio.get_running_loop().create_task(self._pump(stream))

        self._stream, self._task = bus._run(open_stream)

    async def _pump(self, stream: AsyncEventStream) -> None:
        # the async stream stays on the loop; events cross to the caller's thread via a queue
        try:
            async for event in stream:
                self._queue.put(event)
        finally:
            self._queue.put(_END)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._bus._loop.is_running():
            self._bus._run(self._stream.close)

    def get(self, timeout: float | None = None) -> Any:
        """The next event; ``TimeoutError`` after ``timeout``; ``StopIteration`` at the end."""
        if self._done:
            raise StopIteration
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no event within {timeout}s") from None
        if item is _END:
            self._done = True
            raise StopIteration
        return item

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self.get()


def _in_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a blocking responder so it runs in a worker thread and keeps its signature's arity."""
    takes_ctx = HandlerSpec.inspect(fn).takes_ctx
    if takes_ctx:

        async def with_ctx(event: Any, ctx: Any) -> Any:
            return await asyncio.to_thread(fn, event, ctx)

        return with_ctx

    async def plain(event: Any) -> Any:
        return await asyncio.to_thread(fn, event)

    return plain

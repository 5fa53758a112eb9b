"""The Bus: lifecycle, subscribing, streams and introspection (publishing is in _publishing)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from .._cloudevents import with_wire
from .._codec import Codec, get_codec
from .._events import Envelope
from .._exceptions import (
    AxonbusError,
    BusClosed,
    NoEventLog,
)
from .._retry import Retry
from .._topics import match, split_pattern
from ..transports import Transport, open_transport
from ..transports.base import BrokerTransport, redact_url
from ..transports.capabilities import EventLog
from .mailbox import Mailbox
from .middleware import Middleware, build_handle_chain, build_publish_chain
from .publishing import Deadlines, Publisher, State
from .replay import log_of
from .routing import RoutingTable, resolve_target
from .stream import NO_DEFAULT, EventStream, Waiter
from .subscription import HandlerSpec, Subscription, SubscriptionStats, check_options

if TYPE_CHECKING:
    from ..transports.sink import Inbox

if TYPE_CHECKING:
    from ..transports.log._transport import LogTransport

__all__ = ["Bus", "install_config_builder"]

# Building a bus from a configuration file needs the plugins the file may name (middleware),
# which sit above the engine. The composition layer hands its builder down when the package is
# imported (``axonbus/__init__`` runs before any of its modules), so the engine never imports
# upward for it.
_config_builder: Callable[..., Bus] | None = None


def install_config_builder(build: Callable[..., Bus]) -> None:
    """Make ``build(path, bus_class=..., **kwargs)`` what :meth:`Bus.from_config` calls."""
    global _config_builder
    _config_builder = build


logger = logging.getLogger("axonbus")

E = TypeVar("E")
D = TypeVar("D")
F = TypeVar("F", bound=Callable[..., Any])


class Bus(Publisher):
    """The event bus. In-process by default; the same API over Redis or NATS by URL.

    >>> async with Bus() as bus:
    ...     bus.subscribe("greet.*", hello)
    ...     await bus.publish("greet.ada", {"text": "hi"})

    ``history=N`` keeps the last N envelopes for :meth:`history`. ``max_message_bytes`` is
    enforced on the encoded size wherever events are encoded (broker transports); on the
    in-process transport only ``bytes`` and ``str`` payloads are measured.
    ``on_unavailable``: what a publish does when the broker stays unreachable for the URL's
    ``unavailable_timeout``: ``"raise"`` :class:`ConnectionLost` (default) or ``"log"`` it,
    count it in ``bus.transport.lost_publishes`` and carry on. With ``"log"``, :meth:`start`
    does not fail on an unreachable broker either: it connects in the background.
    ``wire``: how events travel on a broker (``redis://``, ``nats://``, ``amqp://``):
    ``"compact"`` (the default, axonbus's own framing) or ``"cloudevents"`` (one CloudEvent 1.0
    per message, which any client can read); the same as the URL option ``wire``.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        name: str | None = None,
        codec: str = "json",
        history: int = 0,
        max_message_bytes: int = 1_048_576,
        middleware: Sequence[Middleware] = (),
        on_unavailable: Literal["raise", "log"] = "raise",
        wire: Literal["compact", "cloudevents"] | None = None,
    ) -> None:
        url = with_wire(url, wire)
        if on_unavailable not in ("raise", "log"):
            raise ValueError(f"on_unavailable must be 'raise' or 'log', got {on_unavailable!r}")
        if not isinstance(history, int) or history < 0:
            raise ValueError(f"history must be an int >= 0, got {history!r}")
        if not isinstance(max_message_bytes, int) or max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be a positive int, got {max_message_bytes!r}")
        self.url = url
        self.name = name or "axonbus"
        self.codec = codec
        # the wire format for transports that encode; built now so a bad name fails here
        self._codec: Codec = get_codec(codec)
        self.max_message_bytes = max_message_bytes
        self.on_unavailable = on_unavailable
        self.transport: Transport = open_transport(url)
        # set when events leave the process: publishes also go out, groups come back in
        self._remote = self.transport if isinstance(self.transport, BrokerTransport) else None
        self._state = State.NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._routes = RoutingTable(remote=self._remote is not None)
        self._index = self._routes.index  # the publish hot path reads its cache directly
        self._pending = 0  # accepted deliveries not yet settled, for drain()
        self._idle: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._rr = 0
        self._deadlines = Deadlines()
        self._history: deque[Envelope] | None = deque(maxlen=history) if history else None
        self._middleware = tuple(middleware)
        for mw in self._middleware:
            mw.attach(self)
        self._publish_hook = build_publish_chain(self._middleware)
        self._handle_chain = build_handle_chain(self._middleware)
        self._event_topics = {}
        self._direct = False  # set by start()

    @classmethod
    def from_env(cls, **kwargs: Any) -> Bus:
        """A bus on ``$AXONBUS_URL`` (``memory://`` when unset)."""
        return cls(os.environ.get("AXONBUS_URL", "memory://"), **kwargs)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> Bus:
        """A bus from a configuration file's ``[bus]``, ``[retention]`` and ``[observability]``
        (see :func:`axonbus.load_config`: ``./axonbus.toml``, else ``[tool.axonbus]`` in
        ``./pyproject.toml``); keyword arguments override the file. :class:`ConfigError`
        names the key when the file is wrong.

        >>> async with Bus.from_config("axonbus.toml") as bus: ...
        """
        if _config_builder is None:  # pragma: no cover - `import axonbus` installs it first
            raise AxonbusError("Bus.from_config needs the axonbus package imported")
        return _config_builder(path, bus_class=cls, **kwargs)

    def __repr__(self) -> str:
        return f"<Bus {self.name!r} {redact_url(self.url)} {self._state.value}>"

    @property
    def state(self) -> str:
        """``"new"``, ``"started"``, ``"closing"`` or ``"closed"``."""
        return self._state.value

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> Bus:
        """Start the bus: connect the transport and start every subscription's workers.

        :class:`ConnectionLost` when the broker cannot be reached (with
        ``on_unavailable="log"``: logged, and connected to in the background);
        :class:`ConnectionFailed` when it refuses the bus (credentials, database, not that
        kind of server).
        """
        if self._state is State.STARTED:
            return self
        if self._state is not State.NEW:
            raise BusClosed(f"bus {self.name!r} is {self._state.value}; create a new Bus")
        self._loop = asyncio.get_running_loop()
        await self.transport.start(self)
        self._state = State.STARTED
        self._refresh_direct()
        for sub in self._routes.subs:
            sub.start()
        return self

    async def __aenter__(self) -> Bus:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, timeout: float | None = 10.0) -> None:
        """Stop accepting publishes, let handlers finish what was accepted, then cancel them.

        Handlers may still publish while the bus drains, so causal chains complete. After
        ``timeout`` seconds whatever is still running is cancelled and logged.
        """
        if self._state is State.CLOSED:
            return
        if self._state is State.CLOSING:
            assert self._closed is not None
            await asyncio.shield(self._closed)
            return
        was_started = self._state is State.STARTED
        self._state = State.CLOSING
        self._direct = False
        self._closed = asyncio.get_running_loop().create_future()
        try:
            if was_started and self._remote is not None:
                # what this bus published to its own durables was accepted: fetch it first
                timeout = await self._remote.hand_over(timeout)
                await self._remote.stop_receiving()  # else a broker could keep drain() busy
            if was_started:
                await self._drain_for_close(timeout)
            for sub in self._routes.subs:
                sub.active = False
                sub.cancel()
            await asyncio.gather(*(sub.join() for sub in self._routes.subs))
            for mb in self._routes.mailboxes():
                mb.closed = True
                self._fail_requests(mb)
                mb.wake_all()
            self._deadlines.cancel()  # every request has failed or finished by now
            await self.transport.close()
        finally:
            self._state = State.CLOSED
            self._direct = False
            self._closed.set_result(None)

    #: seconds close() waits for handlers before it says at INFO what it is waiting for
    close_quiet: float = 1.0

    async def _drain_for_close(self, timeout: float | None) -> None:
        """:meth:`drain` bounded by ``timeout``. A wait longer than :attr:`close_quiet` is
        said at INFO (which handlers, how long at most); what is left at the end, at WARNING."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        quiet = self.close_quiet if timeout is None else min(self.close_quiet, timeout)
        drained = asyncio.ensure_future(self.drain())
        try:
            await asyncio.wait({drained}, timeout=quiet)
            if not drained.done():
                limit = "without a time limit" if timeout is None else f"up to {timeout:g}s"
                logger.info(
                    "bus %r: close() is waiting %s for %s; then it cancels them "
                    "(close(timeout=...) sets how long)",
                    self.name,
                    limit,
                    self._busy(),
                )
                rest = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(asyncio.shield(drained), rest)
        except TimeoutError:
            logger.warning(
                "bus %r: %s still unfinished after %ss; cancelling them",
                self.name,
                self._busy(),
                timeout,
            )
        finally:
            drained.cancel()

    def _busy(self) -> str:
        """What :meth:`close` waits for, e.g. ``2 deliveries: 'rpc.slow' (1 running)``."""
        busy = []
        for sub in self._routes.subs:
            queued = len(sub.mailbox)
            if sub.in_flight or queued:
                counts = f"{sub.in_flight} running" + (f", {queued} queued" if queued else "")
                busy.append(f"{sub.name!r} on {sub.pattern!r} ({counts})")
        shown = ", ".join(busy[:5]) + (f" and {len(busy) - 5} more" if len(busy) > 5 else "")
        n = self._pending
        head = f"{n} {'delivery' if n == 1 else 'deliveries'}"
        return f"{head}: {shown}" if shown else head

    @staticmethod
    def _fail_requests(mb: Mailbox) -> None:
        for env in mb.queue:
            if env.reply is not None and not env.reply.done():
                env.reply.set_exception(BusClosed("the bus closed before the request was handled"))

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every subscription's mailbox is empty and its handlers are idle.

        Streams are not waited for: their readers decide when to read.
        """
        async with asyncio.timeout(timeout):
            while self._pending > 0:
                if self._idle is None or self._idle.done():
                    self._idle = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._idle)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until the broker has everything this bus sent: publishes, acknowledgements and
        subscriptions made so far. Returns at once on ``memory://``.

        Use it before telling another process "go ahead", e.g. in tests:

        >>> bus.subscribe("jobs.>", work, group="workers")
        >>> await bus.flush()   # the group is registered; other buses' publishes reach it
        """
        if self._remote is not None:
            async with asyncio.timeout(timeout):
                await self._remote.flush()

    def _settle(self, n: int) -> None:
        self._pending -= n
        self._wake_idle()

    def _wake_idle(self) -> None:
        if self._pending <= 0 and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    # -- subscribing ---------------------------------------------------------------------------

    def subscribe(
        self,
        target: str | type[Any],
        handler: Callable[..., Any],
        *,
        name: str | None = None,
        group: str | None = None,
        durable: str | None = None,
        maxsize: int = 10_000,
        overflow: Literal["block", "drop_oldest", "drop_newest", "error"] = "block",
        concurrency: int = 1,
        timeout: float | None = None,
        retry: Retry | None = None,
        filter: Callable[[Any], bool] | None = None,
        offload: bool = False,
    ) -> Subscription:
        """Call ``handler`` for every event whose topic matches ``target``.

        ``target`` is a pattern (``"agent.*.tool_call"``, ``"channel.>"``) or an Event class
        (its topic template with placeholders as ``*``; other payload types are skipped).
        Takes effect before the next publish.

        >>> sub = bus.subscribe("agent.*.tool_call", on_tool, concurrency=4, retry=Retry())
        """
        pattern, type_filter = resolve_target(target)
        spec = HandlerSpec.inspect(handler)
        if durable is not None and retry is None:
            retry = Retry()
        if group is not None and not group:
            raise ValueError("group name must be a non-empty string")
        if durable is not None and not durable:
            raise ValueError("durable name must be a non-empty string")
        check_options(spec, concurrency=concurrency, timeout=timeout, retry=retry, offload=offload)
        sub_name = name or durable or group or spec.name
        mb = self._routes.subscriber_mailbox(
            pattern, name=sub_name, group=group, durable=durable, maxsize=maxsize, overflow=overflow
        )
        self._refresh_direct()  # an overflow="error" mailbox turns the direct path off
        sub = Subscription(
            self, mb, spec, name=sub_name, pattern=pattern, group=group, durable=durable,
            concurrency=concurrency, timeout=timeout, retry=retry, filter=filter, offload=offload,
            type_filter=type_filter, handle_chain=self._handle_chain,
        )  # fmt: skip
        return self._attach(sub)

    def on(self, target: str | type[Any], **options: Any) -> Callable[[F], F]:
        """Decorator form of :meth:`subscribe`.

        >>> @bus.on("channel.>")
        ... async def inbound(event, ctx): ...
        """

        def register(fn: F) -> F:
            self.subscribe(target, fn, **options)
            return fn

        return register

    def subscribe_all(self, handler: Callable[..., Any], **options: Any) -> Subscription:
        """Subscribe to every application topic (``">"``; system ``$`` topics excluded)."""
        return self.subscribe(">", handler, **options)

    def respond(
        self,
        target: str | type[Any],
        handler: Callable[..., Any],
        *,
        name: str | None = None,
        concurrency: int = 1,
        maxsize: int = 10_000,
        timeout: float | None = None,
    ) -> Subscription:
        """Answer requests on ``target`` with ``handler``'s return value.

        Responders on the same pattern share one queue, so requests are load-balanced; an
        exception reaches the requester as :class:`RemoteError`.

        >>> bus.respond("math.add", lambda req: req["a"] + req["b"])
        """
        pattern, type_filter = resolve_target(target)
        spec = HandlerSpec.inspect(handler)
        check_options(spec, concurrency=concurrency, timeout=timeout, retry=None, offload=False)
        sub_name = name or spec.name
        mb = self._routes.responder_mailbox(pattern, maxsize=maxsize)
        sub = Subscription(
            self, mb, spec, name=sub_name, pattern=pattern, concurrency=concurrency,
            timeout=timeout, type_filter=type_filter, handle_chain=self._handle_chain,
        )  # fmt: skip
        return self._attach(sub)

    def _attach(self, sub: Subscription) -> Subscription:
        mb = sub.mailbox
        first = not mb.members
        self._pending += self._routes.attach(sub)
        if self._remote is not None:
            if mb.key is None:
                self._remote.watch(mb.pattern)
            elif first:
                self._remote.bind(mb, sub)
        if self._state is State.STARTED:
            sub.start()
        return sub

    @overload
    def unsubscribe(self, target: Subscription) -> bool: ...
    @overload
    def unsubscribe(self, target: str, handler: Callable[..., Any]) -> bool: ...

    def unsubscribe(
        self, target: Subscription | str, handler: Callable[..., Any] | None = None
    ) -> bool:
        """Remove a subscription, or every subscription of ``handler`` on exactly ``target``.

        Events already queued for a removed subscription are still handled; a durable
        subscription's queue is kept until a subscriber with the same durable name returns.
        Returns False when nothing matched.
        """
        if isinstance(target, Subscription):
            return self._detach(target)
        if handler is None:
            raise TypeError("unsubscribe(pattern, handler) needs the handler")
        split_pattern(target)
        found = [s for s in self._routes.subs if s.pattern == target and s.handler == handler]
        for sub in found:
            self._detach(sub)
        return bool(found)

    def _detach(self, sub: Subscription) -> bool:
        left = self._routes.detach(sub)
        if left is None:
            return False
        self._refresh_direct()
        if left == "parked":
            self._settle(len(sub.mailbox.queue))
        if self._remote is not None and left != "shared":
            if sub.mailbox.key is None:
                self._remote.unwatch(sub.pattern)
            else:
                self._remote.unbind(sub.mailbox)
        # a shared mailbox's queue belongs to the remaining members, a parked one to the durable
        sub.stop(finish_queue=left == "closed")
        return True

    # -- pull consumers ------------------------------------------------------------------------

    def stream(
        self,
        target: str | type[Any],
        *,
        maxsize: int = 10_000,
        overflow: Literal["block", "drop_oldest", "drop_newest", "error"] = "block",
        where: Callable[[Any], bool] | None = None,
        envelopes: bool = False,
    ) -> EventStream:
        """An async iterator of matching events, registered from this call on.

        >>> async with bus.stream("agent.s1.>") as events:
        ...     async for event in events: ...
        """
        pattern, type_filter = resolve_target(target)
        return EventStream(
            self,
            pattern,
            maxsize=maxsize,
            overflow=overflow,
            type_filter=type_filter,
            where=where,
            envelopes=envelopes,
        )

    @overload
    def wait_for(
        self,
        target: str | type[E],
        *,
        where: Callable[[Any], bool] | None = None,
        timeout: float | None = None,
    ) -> Waiter[E]: ...

    @overload
    def wait_for(
        self,
        target: str | type[E],
        *,
        where: Callable[[Any], bool] | None = None,
        timeout: float | None = None,
        default: D,
    ) -> Waiter[E | D]: ...

    def wait_for(
        self,
        target: str | type[E],
        *,
        where: Callable[[Any], bool] | None = None,
        timeout: float | None = None,
        default: Any = NO_DEFAULT,
    ) -> Waiter[Any]:
        """Await the first matching event; ``TimeoutError`` after ``timeout`` seconds, or
        ``default`` when one is given (``default=None`` returns ``None``, as an event bus
        returning "nothing came" does).

        Registered when called, so create it before triggering what you wait for.

        >>> result = await bus.wait_for(ToolResult, where=lambda e: e.call_id == cid, timeout=5)
        >>> late = await bus.wait_for("jobs.done", timeout=0.5, default=None)   # None: none came
        """
        stream = self.stream(target, maxsize=1024, overflow="drop_oldest", where=where)
        return Waiter(stream, timeout, default)

    def _open_stream(self, pattern: str, *, maxsize: int, overflow: str) -> Mailbox:
        mb = Mailbox(
            f"stream:{pattern}", pattern, maxsize=maxsize, overflow=overflow, counted=False
        )
        if self._state is State.CLOSED:
            mb.closed = True
        else:
            self._routes.add_stream(mb)
            self._refresh_direct()
            if self._remote is not None:
                self._remote.watch(pattern)
        return mb

    def _close_stream(self, mb: Mailbox) -> None:
        registered = self._routes.close_stream(mb)
        self._refresh_direct()
        if registered and self._remote is not None:
            self._remote.unwatch(mb.pattern)

    # -- what broker transports hand in --------------------------------------------------------

    @property
    def wire_codec(self) -> Codec:
        """The codec that encodes envelopes for the wire (``codec`` is its name)."""
        return self._codec

    @property
    def deadlines(self) -> Deadlines:
        """The one timer that fails pending requests at their deadline (for transports)."""
        return self._deadlines

    async def receive(self, pattern: str, env: Envelope) -> None:
        """An event another bus published, for the local mailboxes on exactly ``pattern``.

        Part of the :class:`~axonbus.transports.Sink` a transport gets at start: a transport
        calls it once per watched pattern that ``env``'s topic matches.
        """
        route = self._routes.broadcast.get(pattern)
        if route:
            blocked = self._enqueue(env, (), route=route, inbound=True)
            if blocked:
                for mb in blocked:
                    await self._put_blocking(mb, env)

    async def put(self, inbox: Inbox, env: Envelope) -> bool:
        """A broker delivery for a group, durable or responder mailbox; False if it is closed.

        Part of the :class:`~axonbus.transports.Sink`: ``inbox`` is one the Bus passed to the
        transport's ``bind``. Waits while the mailbox is full.
        """
        await self._put_blocking(inbox, env)  # type: ignore[arg-type]  # a Mailbox: ours
        return not inbox.closed

    # -- introspection -------------------------------------------------------------------------

    def handler_count(self, pattern: str | None = None) -> int:
        """Subscriptions on exactly ``pattern``; all subscriptions when ``pattern`` is None."""
        subs = self._routes.subs
        if pattern is None:
            return len(subs)
        return sum(1 for s in subs if s.pattern == pattern)

    def subscriptions(self) -> list[Subscription]:
        return list(self._routes.subs)

    def stats(self) -> list[SubscriptionStats]:
        """A snapshot of every subscription's counters (queued, delivered, failed, dropped...)."""
        return [s.stats() for s in self._routes.subs]

    # -- the event log (sqlite://, postgresql://) -----------------------------------------------

    def replay(
        self,
        target: str | type[Any],
        *,
        since: Any = None,
        until: Any = None,
        follow: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[Envelope]:
        """Stored events matching ``target``, oldest first, from the event log.

        ``since``: an offset (``int``, included), an event id (``str``: the events after it), a
        ``datetime`` or epoch seconds (``float``), a ``timedelta`` back from now, or None (the
        beginning). ``until`` takes the same forms (an offset or id is included, a time is not).
        ``follow=True`` then keeps yielding new events as they are committed, by offset: no gap
        and no duplicate between the stored part and the live part. Each envelope has its
        ``offset``; pass the last one + 1 as ``since`` to resume. :class:`NoEventLog` on a
        transport without a log.

        >>> async for env in bus.replay("orders.>", since=timedelta(hours=1)):
        ...     print(env.offset, env.topic, env.event)
        """
        self._check_open()
        pattern, _ = resolve_target(target)
        if follow and until is not None:
            raise ValueError("replay: follow=True reads on forever; it takes no until=")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive int or None, got {limit!r}")
        transport = self.transport
        if isinstance(transport, EventLog):  # any transport that keeps a log, not only ours
            return transport.replay(pattern, since, until, follow, limit)
        return log_of(transport).replay(pattern, since, until, follow, limit)  # NoEventLog

    async def events(
        self,
        target: str | type[Any] = ">",
        *,
        since: Any = None,
        until: Any = None,
        limit: int = 1000,
    ) -> list[Envelope]:
        """An audit query: up to ``limit`` stored events matching ``target``, oldest first
        (``since`` / ``until`` as in :meth:`replay`).

        >>> failed = await bus.events("$bus.dead_letter", since=timedelta(days=1))
        """
        return [env async for env in self.replay(target, since=since, until=until, limit=limit)]

    def history(self, pattern: str = ">", limit: int | None = None) -> list[Envelope]:
        """The most recent envelopes matching ``pattern``, oldest first (needs ``history=N``)."""
        if self._history is None:
            return []
        split_pattern(pattern)
        found = [env for env in self._history if match(pattern, env.topic)]
        return found[-limit:] if limit else found

    # -- what plugins (observability, integrations, the gateway) build on ----------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the bus was started on (``None`` before :meth:`start`): where code
        on another thread hands it work, e.g. with ``asyncio.run_coroutine_threadsafe``.

        >>> asyncio.run_coroutine_threadsafe(bus.publish("job.done", {}), bus.loop)
        """
        return self._loop

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The middleware given to the constructor, outermost first.

        >>> metrics = MetricsMiddleware()
        >>> Bus(middleware=[metrics]).middleware == (metrics,)
        True
        """
        return self._middleware

    @property
    def subscriptions_version(self) -> int:
        """A number that changes whenever a subscription comes or goes: what was built from
        :meth:`subscriptions` is current while this is unchanged (one int compare)."""
        return self._routes.version

    @property
    def event_log(self) -> LogTransport | None:
        """The transport when it keeps an event log (sqlite://, postgresql://), else ``None``:
        what :meth:`replay` and :meth:`events` read.

        >>> Bus("sqlite:///events.db").event_log is not None
        True
        """
        try:
            return log_of(self.transport)
        except NoEventLog:
            return None

"""What a transport is, and how a bus URL picks one.

A transport moves envelopes between processes. It never calls a handler: the Bus keeps all
local dispatch (mailboxes, workers, bulkhead) and hands the transport what must leave the
process. Each transport states in its docstring what it cannot promise.

Broker transports subclass :class:`BrokerTransport`. The contract with the Bus:

- **Outbound.** ``send(env, data)`` queues an encoded envelope; a writer task sends everything
  queued in one loop tick as one batch (a pipeline). ``flush()`` waits until the broker has
  everything sent so far. While the broker is unreachable, ``send`` waits up to
  ``unavailable_timeout`` seconds for it, then raises :class:`ConnectionLost` (or, with
  ``Bus(on_unavailable="log")``, logs and counts the event as lost).
- **Plain subscriptions and streams.** The Bus dispatches its own publishes locally and calls
  ``watch(pattern)`` / ``unwatch(pattern)`` when the first / last local mailbox on a pattern
  comes and goes. The transport hands events published by *other* buses to
  ``sink.receive(pattern, env)``, once per watched pattern that matches. So local subscribers
  receive each event once, wherever it was published.
- **Groups, durables and responders.** ``bind(mailbox, subscription)`` / ``unbind(mailbox)``
  when the shared mailbox of a ``group=``, ``durable=`` or ``respond`` appears or goes. The
  broker feeds it through ``sink.put(inbox, env)``; a broker delivery that must be
  acknowledged carries an :class:`Inbound` as its ``tracker``. Locally published events reach
  these mailboxes only through the broker, so one member in the whole system gets each one.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from .._events import Envelope
from .._exceptions import (
    AxonbusError,
    ConnectionFailed,
    ConnectionLost,
    MissingDependency,
    QueueFull,
)
from .._redact import redact_url as redact_url  # transports import it from here
from .tracker import Inbound

if TYPE_CHECKING:
    from .sink import Inbox, Sink, SubscriptionInfo

__all__ = [
    "BrokerTransport",
    "Inbound",
    "Transport",
    "open_transport",
    "register_transport",
]


logger = logging.getLogger("axonbus")


class Transport(abc.ABC):
    """Base class of transports. Lifecycle: ``start(sink)`` once, then ``close()`` once.

    ``start`` gets the :class:`~axonbus.transports.Sink` (the Bus). A transport that connects
    buses subclasses :class:`BrokerTransport` instead, which brings the outbox and outages.

    >>> @register_transport
    ... class Loopback(Transport):
    ...     scheme = "loopback"
    ...     local_only = True  # nothing leaves the process: the Bus dispatches locally
    ...     async def start(self, sink: Sink) -> None: ...
    ...     async def close(self) -> None: ...
    >>> Bus("loopback://")
    """

    #: URL scheme this transport serves, e.g. ``"redis"``.
    scheme: ClassVar[str]
    #: True when nothing leaves the process (the Bus then skips all transport work).
    local_only: ClassVar[bool] = False

    def __init__(self, url: str) -> None:
        self.url = url

    @abc.abstractmethod
    async def start(self, bus: Sink) -> None:
        """Connect; called by ``Bus.start``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; called by ``Bus.close`` after local handlers finished."""


#: a durable fetches ahead at most this many events per concurrent handler (at least
#: PREFETCH_MIN, at most its mailbox's maxsize): what a consumer that dies held unstarted is
#: small, and nothing waits in a healthy consumer long enough to be taken over
PREFETCH_PER_WORKER = 4
PREFETCH_MIN = 16


def prefetch_limit(mailbox: Inbox, subscription: SubscriptionInfo) -> int:
    """How many events a durable's consumer holds at most (fetched and not yet settled)."""
    wanted = max(PREFETCH_MIN, PREFETCH_PER_WORKER * subscription.concurrency)
    return max(1, min(mailbox.maxsize, wanted))


def url_options(url: str) -> tuple[str, dict[str, str]]:
    """Split ``url`` into the URL without its query and the query's options."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    return parts._replace(query="").geturl(), options


def float_option(options: dict[str, str], key: str, default: float) -> float:
    raw = options.pop(key, None)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"URL option {key}={raw!r} must be a number") from None
    if value < 0:
        raise ValueError(f"URL option {key}={raw!r} must be >= 0")
    return value


def int_option(options: dict[str, str], key: str, default: int) -> int:
    value = float_option(options, key, default)
    if value != int(value):
        raise ValueError(f"URL option {key}={value!r} must be a whole number")
    return int(value)


def backoff_delays(first: float = 0.05, cap: float = 2.0) -> Any:
    """Exponential reconnect delays with full jitter: 0.05 s doubling up to ``cap``."""
    delay = first
    while True:
        yield random.uniform(delay / 2, delay)
        delay = min(delay * 2, cap)


class BrokerTransport(Transport):
    """Shared machinery of broker transports: the outbox, its writer, and outage handling.

    A subclass implements :meth:`connect` and :meth:`write_batch`, plus the subscription hooks.
    Common URL options: ``unavailable_timeout`` (seconds a publish waits for a lost broker,
    default 5) and ``outbox`` (operations queued before publishers wait, default 10,000).
    """

    #: most operations written as one batch (0: everything queued)
    max_batch: ClassVar[int] = 0
    #: driver exceptions that mean "the connection is gone", set by each subclass
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (ConnectionError, OSError)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.address, self.options = url_options(url)
        self.unavailable_timeout = float_option(self.options, "unavailable_timeout", 5.0)
        self.outbox_size = int_option(self.options, "outbox", 10_000)
        if self.outbox_size < 1:
            raise ValueError("URL option outbox must be >= 1")
        self.bus: Sink | None = None
        self.connected = False
        self.lost_publishes = 0  # with on_unavailable="log": publishes given up on
        self._outbox: deque[Any] = deque()
        self._queued = 0  # operations ever queued
        self._written = 0  # operations the broker has confirmed
        self._flushers: list[tuple[int, asyncio.Future[None]]] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._room: list[asyncio.Future[None]] = []
        self._up: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._readers: set[asyncio.Task[Any]] = set()
        self.receiving = True  # False once the bus closes: no new deliveries are fetched
        self._closing = False

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<{type(self).__name__} {self.address} {state}>"

    # -- what a subclass implements ------------------------------------------------------------

    @abc.abstractmethod
    async def connect(self) -> None:
        """(Re)connect and restore every subscription; raise a connection error on failure."""

    @abc.abstractmethod
    async def write_batch(self, batch: list[Any]) -> None:
        """Send a batch of outbox operations; raise a connection error if it did not go."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Release every connection and stop the readers (at close or after a failure).

        Never raises. Runs in its own task, so it may cancel and await every reader.
        """

    @abc.abstractmethod
    def watch(self, pattern: str) -> None:
        """Start receiving other buses' events on ``pattern`` (first local mailbox on it)."""

    @abc.abstractmethod
    def unwatch(self, pattern: str) -> None:
        """Stop receiving ``pattern`` (its last local mailbox went)."""

    @abc.abstractmethod
    def bind(self, mailbox: Inbox, subscription: SubscriptionInfo) -> None:
        """Start feeding a group, durable or responder mailbox from the broker."""

    @abc.abstractmethod
    def unbind(self, mailbox: Inbox) -> None:
        """Stop feeding ``mailbox`` (a durable's position stays on the broker)."""

    @abc.abstractmethod
    async def request(self, env: Envelope, data: bytes, timeout: float | None) -> Any:
        """Send a request to one responder anywhere and return its decoded reply."""

    def publish_op(self, env: Envelope, data: bytes) -> Any:
        """The outbox operation that publishes ``env`` (subclasses may add fields)."""
        return ("pub", env.topic, data)

    #: True when the transport stores an event with an ``idempotency_key`` header only once
    dedupes: ClassVar[bool] = False

    async def publish_once(self, op: Any) -> str | None:
        """Send an idempotent publish and wait until it is stored: the id of the event stored
        first under its key if this one is a duplicate (then nothing is stored), else None."""
        await self.send(op)
        return None

    # -- lifecycle -----------------------------------------------------------------------------

    #: whether ``Bus(on_unavailable="log")`` starts without the broker and connects later
    connects_in_background: ClassVar[bool] = True

    async def start(self, bus: Sink) -> None:
        """Connect. A broker that refuses the bus raises :class:`ConnectionFailed`; one that
        cannot be reached raises :class:`ConnectionLost`, or, with ``on_unavailable="log"``,
        is connected to in the background (publishes meanwhile follow the outage rules)."""
        self.bus = bus
        self._up = asyncio.Event()
        try:
            await asyncio.wait_for(self.connect(), self.unavailable_timeout or None)
        except Exception as exc:
            await self.disconnect()
            if isinstance(exc, AxonbusError):
                raise
            refused = self.refusal(exc)
            if refused is not None:
                raise ConnectionFailed(refused) from exc
            reason = self._scrub(str(exc)) if str(exc) else self._silence()
            if bus.on_unavailable != "log" or not self.connects_in_background:
                raise ConnectionLost(f"cannot reach {self.address}: {reason}") from exc
            logger.warning(
                "%s: cannot reach the broker (%s); connecting in the background", self, reason
            )
            self._writer = self.spawn(self._write_loop(), "writer")
            self.spawn(self._reconnect(first=True), "reconnect")
            return
        self._set_connected(True)
        self._writer = self.spawn(self._write_loop(), "writer")

    def refusal(self, exc: BaseException) -> str | None:
        """The one-line error for a connect that failed with ``exc`` when the broker refused
        the bus (waiting would not help), or None for an outage (unreachable, timed out).

        Anything but a connection error is a refusal; transports add their own cases.
        """
        if isinstance(exc, (TimeoutError, *self.connection_errors)):
            return None
        return f"{self.address} refused the connection: {self._describe(exc)}"

    def _describe(self, exc: BaseException) -> str:
        """The driver's message for ``exc``: its first line, short, password hidden."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(text) > 120:
            text = text[:117] + "..."
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        """``text`` with the URL's password replaced (a driver may echo its connection string)."""
        secret = urlsplit(self.url).password
        return text.replace(secret, "***") if secret else text

    def _silence(self) -> str:
        return f"no answer within {self.unavailable_timeout}s"

    async def close(self) -> None:
        if self._up is None:
            return
        try:
            await asyncio.wait_for(self.flush(), self.unavailable_timeout or None)
        except (TimeoutError, ConnectionLost):
            logger.warning(
                "%s: %d queued operations not sent before close", self, len(self._outbox)
            )
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.disconnect()
        self._set_connected(False)
        self._fail_waiters(ConnectionLost(f"{self.address}: the bus closed"))

    #: the topic whose events a transport keeps as dead letters until they are dropped
    DEAD_LETTER_TOPIC: ClassVar[str] = "$bus.dead_letter"

    @abc.abstractmethod
    async def stored_dead_letters(self, limit: int) -> list[tuple[str, bytes]]:
        """Dead letters the broker keeps, oldest first: ``(key, encoded envelope)``. Several
        may share a key (stored as one message); :meth:`drop_dead_letter` drops them all."""

    @abc.abstractmethod
    async def drop_dead_letter(self, key: str) -> None:
        """Forget the dead letter(s) stored under ``key`` (once replayed)."""

    async def record_interrupted(self, mailboxes: list[Inbox]) -> None:
        """At close: charge the handler calls the bus cancelled (their deliveries went back to
        ``mailboxes``), so a handler that never finishes is dead-lettered in the end."""
        calls = [
            env.tracker.record_interrupted()
            for mb in mailboxes
            for env in mb.queue
            if isinstance(env.tracker, Inbound) and env.tracker.interrupted
        ]
        if not calls:
            return
        try:
            async with asyncio.timeout(self.unavailable_timeout or None):
                results = await asyncio.gather(*calls, return_exceptions=True)
        except TimeoutError:
            results = [TimeoutError("not recorded in time")]
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            logger.warning(
                "%s: %d cancelled handler calls not recorded at close: %r",
                self,
                len(failed),
                failed[0],
            )

    async def catch_up(self) -> None:
        """Fetch into their mailboxes, for the durables this bus holds, the events published
        (and flushed) before now. :meth:`hand_over` bounds it; transports without durable
        subscriptions have nothing to fetch."""

    async def hand_over(self, timeout: float | None) -> float | None:
        """At close, before receiving stops: :meth:`catch_up` within ``timeout`` seconds.

        An event this bus published before closing, to a durable it holds, was accepted: its
        handler runs here, not at the next start. Returns what is left of ``timeout``.
        """
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            async with asyncio.timeout(timeout):
                await self.catch_up()
        except TimeoutError:
            logger.warning(
                "%s: durable events published before close not all fetched within %ss",
                self,
                timeout,
            )
        except (ConnectionLost, *self.connection_errors) as exc:  # type: ignore[misc]
            logger.warning("%s: could not fetch durable events at close: %r", self, exc)
        if timeout is None:
            return None
        return max(0.0, timeout - (loop.time() - began))

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """A background task owned by the transport: cancelled at close, failures logged."""
        task = asyncio.get_running_loop().create_task(coro, name=f"axonbus:{self.scheme}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def spawn_reader(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """A task that fetches deliveries; :meth:`stop_receiving` cancels it."""
        task = self.spawn(coro, name)
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)
        return task

    async def stop_receiving(self) -> None:
        """Fetch nothing more from the broker (the bus is closing and drains what it has)."""
        self.receiving = False
        await self.stop_tasks(self._readers)

    #: seconds a reader gets to notice ``receiving`` is False and return by itself; some drivers
    #: leave a connection unusable when a command is cancelled midway, so cancelling is the
    #: last resort
    reader_grace: ClassVar[float] = 0.0

    async def stop_tasks(self, tasks: set[asyncio.Task[Any]]) -> None:
        current = asyncio.current_task()
        pending = [t for t in tasks if t is not current and not t.done()]
        if pending and self.reader_grace:
            _, still = await asyncio.wait(pending, timeout=self.reader_grace)
            pending = list(still)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            logger.error("%s: task %s crashed: %r", self, task.get_name(), exc, exc_info=exc)

    # -- outbound ------------------------------------------------------------------------------

    async def send(self, op: Any) -> None:
        """Queue ``op`` for the writer; waits while the outbox is full or the broker is down."""
        if self.connected and len(self._outbox) < self.outbox_size:
            self._push(op)
            if self.max_batch and not self._queued % self.max_batch:
                # a publisher that never yields would keep the writer from starting on the
                # first batch until the outbox is full: let it go once per batch
                await asyncio.sleep(0)
            return
        try:
            await asyncio.wait_for(self._wait_room(), self.unavailable_timeout or None)
        except TimeoutError:
            self._unavailable(op)
            return
        self._push(op)

    def send_nowait(self, op: Any) -> None:
        """Queue ``op`` without waiting: :class:`QueueFull` or :class:`ConnectionLost` instead."""
        if not self.connected:
            self._unavailable(op)
            return
        if len(self._outbox) >= self.outbox_size:
            raise QueueFull(f"{self.scheme} outbox", self.outbox_size)
        self._push(op)

    def send_control(self, op: Any) -> None:
        """Queue an internal operation (an ack, a registration): never refused, never waits."""
        self._push(op)

    def _push(self, op: Any) -> None:
        self._outbox.append(op)
        self._queued += 1
        wake = self._wakeup
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _wait_room(self) -> None:
        assert self._up is not None
        while not (self.connected and len(self._outbox) < self.outbox_size):
            if self._closing:
                raise ConnectionLost(f"{self.address}: the bus is closing")
            if not self.connected:
                await self._up.wait()
                continue
            fut = asyncio.get_running_loop().create_future()
            self._room.append(fut)
            await fut

    def durable_topic(self, topic: str) -> bool:
        """Whether a durable subscription is known to keep events on ``topic``.

        Such a publish raises :class:`ConnectionLost` during an outage even with
        ``on_unavailable="log"``: losing it quietly would break the durable's promise.
        """
        return False

    def _unavailable(self, op: Any) -> None:
        bus = self.bus
        topic = op[1] if isinstance(op, tuple) and len(op) > 1 else None
        durable = isinstance(topic, str) and self.durable_topic(topic)
        if bus is not None and bus.on_unavailable == "log" and not durable:
            self.lost_publishes += 1
            logger.warning(
                "%s: broker unreachable, publish on %r not sent (%d lost so far)",
                self,
                topic if isinstance(topic, str) else op,
                self.lost_publishes,
                extra={"topic": topic} if isinstance(topic, str) else None,
            )
            return
        state = "unreachable" if not self.connected else "not keeping up (outbox full)"
        kept = " (a durable subscription keeps this topic)" if durable else ""
        raise ConnectionLost(
            f"{self.address} {state} for {self.unavailable_timeout}s; the event was not sent{kept}"
        )

    async def flush(self) -> None:
        """Wait until the broker has confirmed every operation queued so far."""
        target = self._queued
        if self._written >= target:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushers.append((target, fut))
        await fut

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        outbox = self._outbox
        failures = 0
        while True:
            if not outbox:
                self._wakeup = loop.create_future()
                await self._wakeup
                self._wakeup = None
                continue
            # everything queued in the last loop tick(s): one pipeline (up to max_batch, so
            # publishers keep filling the outbox while a big batch is written)
            batch = list(outbox) if not self.max_batch else list(islice(outbox, self.max_batch))
            try:
                await self.write_batch(batch)
            except self.connection_errors as exc:
                await self._outage(exc)  # the batch stays queued; sent again once reconnected
                continue
            except Exception as exc:
                # not a lost connection, and not ours to drop: keep the batch, say why it is
                # stuck, and try again later (publishers see ConnectionLost once the outbox is
                # full) rather than let the writer die and every flush hang
                failures += 1
                logger.error(
                    "%s: writing a batch of %d operations failed (attempt %d): %r",
                    self, len(batch), failures, exc, exc_info=failures == 1,
                )  # fmt: skip
                await asyncio.sleep(min(0.05 * 2**failures, 2.0))
                continue
            failures = 0
            for _ in batch:
                outbox.popleft()
            self._written += len(batch)
            self._wake_room()
            self._wake_flushers()

    def _wake_room(self) -> None:
        while self._room and len(self._outbox) < self.outbox_size:
            fut = self._room.pop(0)
            if not fut.done():
                fut.set_result(None)

    def _wake_flushers(self) -> None:
        if not self._flushers:
            return
        still: list[tuple[int, asyncio.Future[None]]] = []
        for target, fut in self._flushers:
            if self._written >= target:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((target, fut))
        self._flushers = still

    def _fail_waiters(self, exc: BaseException) -> None:
        for _, fut in self._flushers:
            if not fut.done():
                fut.set_exception(exc)
        self._flushers = []
        for fut in self._room:
            if not fut.done():
                fut.set_exception(exc)
        self._room = []

    # -- outages -------------------------------------------------------------------------------

    def _set_connected(self, up: bool) -> None:
        self.connected = up
        assert self._up is not None
        if up:
            self._up.set()
        else:
            self._up.clear()

    def lost(self, exc: BaseException) -> None:
        """Whoever notices the broker is gone calls this; one task then reconnects."""
        if not self.connected or self._closing:
            return
        self._set_connected(False)
        logger.warning("%s: connection lost (%r); reconnecting", self, exc)
        self.spawn(self._reconnect(), "reconnect")

    async def _outage(self, exc: BaseException) -> None:
        """:meth:`lost`, then wait until the broker is back."""
        self.lost(exc)
        assert self._up is not None
        await self._up.wait()

    async def _reconnect(self, *, first: bool = False) -> None:
        """Connect again with backoff (``first``: the initial connect, started in the
        background). A refusal is logged and retried too: the broker may be fixed meanwhile."""
        await self.disconnect()
        refused: str | None = None
        for delay in backoff_delays():
            await asyncio.sleep(delay)
            try:
                await asyncio.wait_for(self.connect(), max(self.unavailable_timeout, 1.0))
            except Exception as again:
                await self.disconnect()
                reason = None if isinstance(again, AxonbusError) else self.refusal(again)
                if reason is not None and reason != refused:
                    logger.error("%s; retrying", reason)  # once per distinct refusal
                else:
                    logger.debug("%s: connect failed: %r", self, again)
                refused = reason or refused
                continue
            break
        self._set_connected(True)
        logger.warning("%s: %s", self, "connected" if first else "reconnected")
        self._wake_room()


_REGISTRY: dict[str, type[Transport]] = {}


def register_transport(cls: type[Transport]) -> type[Transport]:
    """Class decorator: make ``cls`` available under its URL ``scheme``.

    >>> @register_transport
    ... class HubTransport(BrokerTransport):
    ...     scheme = "hub"
    >>> Bus("hub:///tmp/hub.sock").transport  # a HubTransport
    """
    _REGISTRY[cls.scheme] = cls
    return cls


def open_transport(url: str) -> Transport:
    """The transport for ``url``; ``ValueError`` naming the schemes available otherwise."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"bus URL must look like 'scheme://...', got {url!r}")
    scheme = urlsplit(url).scheme
    if scheme in _LAZY and scheme not in _REGISTRY:
        module, driver, extra = _LAZY[scheme]
        try:
            __import__(module, fromlist=["_"])  # the driver is imported only when used
        except ImportError as exc:
            # the module's own guard re-raises with a hint; the missing name is on its cause
            missing = exc.name or getattr(exc.__cause__, "name", None) or ""
            if not extra or missing.split(".")[0] != driver:
                raise
            raise MissingDependency(
                f"the {scheme}:// transport needs the {driver!r} package: "
                f"pip install 'axonbus[{extra}]'"
            ) from None
    cls = _REGISTRY.get(scheme)
    if cls is None:
        known = ", ".join(f"{s}://" for s in sorted({*_REGISTRY, *_LAZY}))
        raise ValueError(f"no transport for {scheme}:// (available: {known})")
    return cls(url)


# transports whose driver is an optional dependency: imported on first use of their scheme
# (scheme -> module, the driver it imports, the extra that installs it)
_LAZY: dict[str, tuple[str, str, str]] = {
    "redis": ("axonbus.transports.redis", "redis", "redis"),
    "rediss": ("axonbus.transports.redis", "redis", "redis"),
    "redis+cluster": ("axonbus.transports.redis", "redis", "redis"),
    "rediss+cluster": ("axonbus.transports.redis", "redis", "redis"),
    "sqlite": ("axonbus.transports.sqlite", "sqlite3", ""),  # the standard library's
    "nats": ("axonbus.transports.nats", "nats", "nats"),
    "tls": ("axonbus.transports.nats", "nats", "nats"),
    "postgresql": ("axonbus.transports.postgres", "asyncpg", "postgres"),
    "postgres": ("axonbus.transports.postgres", "asyncpg", "postgres"),
    "amqp": ("axonbus.transports.amqp", "aio_pika", "amqp"),
    "amqps": ("axonbus.transports.amqp", "aio_pika", "amqp"),
}

"""Subscriptions: a handler, its options, and the worker tasks that feed it from a mailbox.

The worker is the bulkhead: whatever the handler does (raise, time out, cancel itself), the
worker catches it, logs it, counts it, reports it on ``$bus.handler_failed`` and moves on to the
next event. Only cancelling the worker itself (unsubscribe, close) stops it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._events import Envelope, current_envelope, current_subscription, log_fields
from .._exceptions import AxonbusError, BusClosed, InvalidHandler, RedeliveryExhausted, RemoteError
from .._retry import Retry
from .._system_events import Outcome
from ..transports.tracker import Inbound
from .context import Context

if TYPE_CHECKING:
    from .bus import Bus
    from .mailbox import Mailbox
    from .middleware import HandleChain

__all__ = ["HandlerSpec", "Subscription", "SubscriptionStats"]

logger = logging.getLogger("axonbus")

#: most events a worker handles in one go before it yields to the event loop
RUN_MAX = 256
RUN = range(1, RUN_MAX + 1)

Handler = Callable[..., Any]
HandleNext = Callable[[Any, Context], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """What subscribe learned about a handler by inspecting it once."""

    fn: Handler
    name: str  # short: the default subscription name in stats
    qualname: str  # full: used in logs, where the extra context helps
    is_async: bool
    takes_ctx: bool

    @classmethod
    def inspect(cls, fn: Handler) -> HandlerSpec:
        if not callable(fn):
            raise InvalidHandler(f"handler must be callable, got {type(fn).__name__}")
        qualname = str(
            getattr(fn, "__qualname__", None) or getattr(type(fn), "__qualname__", None) or fn
        )
        name = str(getattr(fn, "__name__", None) or type(fn).__name__)
        target = fn
        if not inspect.isfunction(fn) and not inspect.ismethod(fn):
            call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects
            if isinstance(fn, functools.partial):
                target = fn
            elif call is not None and not inspect.isbuiltin(fn):
                target = call
        is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(fn)
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise InvalidHandler(f"cannot inspect the signature of handler {name}: {exc}") from None
        positional = 0
        star = False
        second: inspect.Parameter | None = None  # the parameter the context would go to
        for p in sig.parameters.values():
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                positional += 1
                if positional == 2:
                    second = p
                if p.default is p.empty:
                    continue
            elif p.kind is p.VAR_POSITIONAL:
                star = True
            elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
                raise InvalidHandler(
                    f"handler {name}{sig} has a required keyword-only parameter {p.name!r}; "
                    "handlers are called as handler(event) or handler(event, ctx)"
                )
        required = sum(
            1
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        )
        if required > 2:
            raise InvalidHandler(
                f"handler {name}{sig} needs {required} arguments; "
                "handlers are called as handler(event) or handler(event, ctx)"
            )
        if positional == 0 and not star:
            raise InvalidHandler(
                f"handler {name}{sig} takes no arguments; "
                "handlers are called as handler(event) or handler(event, ctx)"
            )
        if second is not None:
            # a defaulted second parameter is the caller's (``lambda e, x=x: ...``), unless
            # its annotation says it is the context
            takes_ctx = second.default is second.empty or _is_context(second.annotation)
        else:
            takes_ctx = star
        return cls(fn=fn, name=name, qualname=qualname, is_async=is_async, takes_ctx=takes_ctx)


def _is_context(annotation: Any) -> bool:
    """Whether ``annotation`` names :class:`Context` (``Context``, ``Context | None``, or
    the same as a string under ``from __future__ import annotations``)."""
    if annotation is inspect.Parameter.empty:
        return False
    if isinstance(annotation, str):
        return re.search(r"\bContext\b", annotation) is not None
    if isinstance(annotation, type) and issubclass(annotation, Context):
        return True
    return any(_is_context(arg) for arg in typing.get_args(annotation))


def check_options(
    spec: HandlerSpec, *, concurrency: int, timeout: float | None, retry: Any, offload: bool
) -> None:
    """Reject bad subscription options; called before anything is registered on the bus."""
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"retry must be a Retry, got {type(retry).__name__}")
    if offload and spec.is_async:
        raise InvalidHandler(f"offload=True is for plain def handlers; {spec.name} is async")


@dataclass(frozen=True, slots=True)
class SubscriptionStats:
    """A snapshot of one subscription's counters, from ``bus.stats()``."""

    name: str
    pattern: str
    group: str | None
    durable: str | None
    queued: int
    in_flight: int
    delivered: int
    failed: int
    retried: int
    timed_out: int
    dropped: int
    filtered: int
    dead_lettered: int
    maxsize: int
    overflow: str
    concurrency: int


class Subscription:
    """A handler attached to a pattern. Returned by ``bus.subscribe``; pass it to ``unsubscribe``.

    Counters are plain ints updated by the workers; ``bus.stats()`` snapshots them.
    """

    def __init__(
        self,
        bus: Bus,
        mailbox: Mailbox,
        spec: HandlerSpec,
        *,
        name: str,
        pattern: str,
        concurrency: int,
        timeout: float | None,
        type_filter: type | None,
        handle_chain: HandleChain | None,
        group: str | None = None,
        durable: str | None = None,
        retry: Retry | None = None,
        filter: Callable[[Any], bool] | None = None,
        offload: bool = False,
    ) -> None:
        check_options(spec, concurrency=concurrency, timeout=timeout, retry=retry, offload=offload)
        self.bus = bus
        self.mailbox = mailbox
        self.spec = spec
        self.handler = spec.fn
        self.name = name
        self.pattern = pattern
        self.group = group
        self.durable = durable
        self.concurrency = concurrency
        self.timeout = timeout
        self.retry = retry
        self.filter = filter
        self.offload = offload
        self.type_filter = type_filter
        self.active = True
        self.delivered = 0
        self.failed = 0
        self.retried = 0
        self.timed_out = 0
        self.filtered = 0
        self.dead_lettered = 0
        self.in_flight = 0
        self._workers: list[asyncio.Task[None]] = []
        # a redelivered durable event runs alone (see _alone): calls running, and the
        # redelivery waiting for them or running
        self._calls = 0
        self._calls_idle: asyncio.Event | None = None
        self._alone: asyncio.Lock | None = None
        self._alone_done: asyncio.Event | None = None
        self._stop_when_empty = False  # set by unsubscribe: finish what is queued, then exit
        base: HandleNext = self._invoke
        self._call: HandleNext = handle_chain.wrap(base) if handle_chain is not None else base
        self._needs_ctx = spec.takes_ctx or handle_chain is not None
        # nothing between the worker and the handler: no filter, timeout, offload, nor a
        # durable's delivery count (a broker redelivery starts at attempt > 1)
        options_plain = filter is None and timeout is None and not offload and durable is None
        # ... and no middleware, or only middleware that can be idle: then the worker asks the
        # gate before each delivery and calls the handler directly while it says no
        self._gate = handle_chain.gate if handle_chain is not None and options_plain else None
        self._plain = options_plain and (handle_chain is None or self._gate is not None)

    def __repr__(self) -> str:
        extra = "".join(
            f" {k}={v!r}" for k, v in (("group", self.group), ("durable", self.durable)) if v
        )
        return f"<Subscription {self.name!r} on {self.pattern!r}{extra}>"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._workers or not self.active:
            return
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._work(), name=f"axonbus:{self.name}:{i}", context=self._context())
            for i in range(self.concurrency)
        ]

    def _context(self) -> contextvars.Context:
        # each worker its own copy: handlers' log lines name the subscription at no cost per
        # delivery (the worker sets current_envelope per delivery anyway)
        context = contextvars.copy_context()
        context.run(current_subscription.set, self.name)
        return context

    def stop(self, *, finish_queue: bool) -> None:
        """Stop taking events. With ``finish_queue`` the workers first handle what is queued."""
        self.active = False
        self._stop_when_empty = finish_queue
        if not finish_queue:
            for w in self._workers:
                w.cancel()
        self.mailbox.wake_all()

    async def join(self) -> None:
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)

    def cancel(self) -> None:
        for w in self._workers:
            w.cancel()

    def stats(self) -> SubscriptionStats:
        mb = self.mailbox
        return SubscriptionStats(
            name=self.name,
            pattern=self.pattern,
            group=self.group,
            durable=self.durable,
            queued=len(mb.queue),
            in_flight=self.in_flight,
            delivered=self.delivered,
            failed=self.failed,
            retried=self.retried,
            timed_out=self.timed_out,
            dropped=mb.dropped,
            filtered=self.filtered,
            dead_lettered=self.dead_lettered,
            maxsize=mb.maxsize,
            overflow=mb.overflow,
            concurrency=self.concurrency,
        )

    # -- the worker ----------------------------------------------------------------------------

    async def _work(self) -> None:
        mb = self.mailbox
        q = mb.queue
        take = q.popleft
        bus = self.bus
        set_current = current_envelope.set
        # the fast path: an async handler with no per-delivery options is awaited right here;
        # anything else, and every failure, goes through _deliver
        spec = self.spec
        fast = spec.is_async and self._plain
        gate = self._gate
        fn = spec.fn
        takes_ctx = spec.takes_ctx
        type_filter = self.type_filter
        getters = mb._getters
        loop = asyncio.get_running_loop()
        while True:
            if not q:
                if not self.active:
                    return
                # Mailbox.wait_nonempty written out (once per request on the RPC path)
                waiter: asyncio.Future[None] = asyncio.Future(loop=loop)
                getters.append(waiter)
                try:
                    await waiter
                finally:
                    if not waiter.done():
                        waiter.cancel()
                continue
            if not self.active and not self._stop_when_empty:
                return
            # A run: what is queued is handled without going back to the loop in between (a
            # handler that does not suspend never yields), at most RUN events, so one busy
            # subscription cannot hold the loop. Nothing outside can look at this worker while
            # it does not yield, so in_flight and the bus's pending count are updated once per
            # run: in_flight is 1 whenever a handler of the run is suspended, and drain() is
            # told when the run ends.
            self.in_flight += 1
            taken = 0
            try:
                for taken in RUN:  # noqa: B007 - read in the finally clause
                    env = take()
                    if mb._putters or mb.burst_drops:
                        mb.after_take()  # a blocked publisher must not wait for the run's end
                    try:
                        if not fast or (gate is not None and gate()):
                            await self._deliver(env, None)
                        elif type_filter is not None and not isinstance(env.event, type_filter):
                            self._filtered(env)
                        else:
                            set_current(env)
                            try:
                                if takes_ctx:
                                    result = await fn(env.event, Context(bus, env, 1, self.name))
                                else:
                                    result = await fn(env.event)
                            except BaseException as exc:
                                await self._deliver(env, exc)
                            else:
                                self.delivered += 1
                                if env.tracker is not None:
                                    self._succeeded(env, result)
                                elif env.reply is not None and not env.reply.done():
                                    env.reply.set_result(result)  # a request's answer
                    except asyncio.CancelledError:
                        if self.durable is not None:
                            mb.put_back(env)  # not acknowledged: the next consumer gets it again
                            bus._pending += 1
                        elif env.reply is not None and not env.reply.done():
                            env.reply.set_exception(
                                BusClosed("the responder was stopped mid-request")
                            )
                        raise
                    if not q or not self.active:
                        break
            finally:
                self.in_flight -= 1
                bus._pending -= taken
                if bus._pending <= 0 and bus._idle is not None:
                    bus._wake_idle()
            if taken == RUN_MAX:
                await asyncio.sleep(0)  # let the loop run other tasks before the next run

    async def _deliver(self, env: Envelope, first_error: BaseException | None) -> None:
        """Deliver with every option: filters, timeout, middleware, retry, failure reporting.

        ``first_error`` is the exception of a first attempt already made by the fast path.
        """
        event = env.event
        if first_error is None:
            current_envelope.set(env)
            if self.type_filter is not None and not isinstance(event, self.type_filter):
                self._filtered(env)
                return
        # a broker redelivery continues the count of handler calls the transport recorded
        # (fetches that no handler started are not charged)
        inbound = env.tracker if isinstance(env.tracker, Inbound) else None
        attempt = 1
        if inbound is not None:
            try:
                attempt = await inbound.resume()
            except Exception as exc:  # the record is unreachable: count from what we know
                attempt = inbound.attempt
                self._unrecorded(env, attempt, exc)
            if attempt == 0:  # settled in an earlier delivery (a pack that came back whole)
                inbound.add(Outcome(self.name, "filtered"))
                return
        retry = self.retry
        if retry is not None and attempt > retry.attempts and first_error is None:
            error: BaseException = RedeliveryExhausted(attempt, retry.attempts)
            await self._fail(env, error, "error", attempt)
            return
        while True:
            if first_error is not None:
                error, first_error = first_error, None
                kind = self._classify(error, None)
            else:
                ctx = Context(self.bus, env, attempt, self.name) if self._needs_ctx else None
                timer: asyncio.Timeout | None = None
                alone = inbound is not None and inbound.redelivered
                try:
                    if self.filter is not None and not self.filter(event):
                        self._filtered(env)
                        return
                    if inbound is not None:
                        await (self._enter_alone() if alone else self._enter())
                    try:
                        if inbound is not None:
                            try:
                                await inbound.begin(attempt)
                            except Exception as exc:
                                self._unrecorded(env, attempt, exc)
                        if self.timeout is None:
                            result = await self._call(event, ctx)  # type: ignore[arg-type]
                        else:
                            async with asyncio.timeout(self.timeout) as timer:
                                result = await self._call(event, ctx)  # type: ignore[arg-type]
                    finally:
                        if inbound is not None:
                            self._leave(alone)
                except BaseException as exc:
                    # one clause on purpose: on CPython 3.11 a separate `except TimeoutError`
                    # clause here made every delivery ~10x slower (measured), even without errors
                    error = exc
                    kind = self._classify(exc, timer)
                else:
                    self.delivered += 1
                    self._succeeded(env, result)
                    return
            self.failed += 1
            if kind == "timeout":
                self.timed_out += 1
            if retry is not None and attempt < retry.attempts:
                self.retried += 1
                delay = retry.delay(attempt + 1)
                if inbound is not None and inbound.defer(delay, attempt + 1):
                    return  # the broker redelivers after the delay, to whichever member is free
                logger.warning(
                    "handler %s failed on event %s (topic %s, attempt %d/%d), retrying: %s: %s",
                    self.spec.qualname,
                    env.id,
                    env.topic,
                    attempt,
                    retry.attempts,
                    type(error).__name__,
                    error,
                    extra=self._log_fields(env, attempt),
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            await self._fail(env, error, kind, attempt)
            return

    # -- a redelivery runs alone ----------------------------------------------------------------
    # A durable event handed out again was in a consumer that died or let go of it; if its
    # handler is what kills the process, every call running beside it would be charged too.
    # So it runs with no other call of this subscription in this process: a poison event is
    # charged (and dead-lettered) alone.

    async def _enter(self) -> None:
        while self._alone_done is not None:
            await self._alone_done.wait()
        self._calls += 1

    async def _enter_alone(self) -> None:
        if self._alone is None:
            self._alone = asyncio.Lock()
        await self._alone.acquire()
        self._alone_done = asyncio.Event()  # new calls wait from now on
        try:
            while self._calls:
                self._calls_idle = asyncio.Event()
                await self._calls_idle.wait()
        except BaseException:
            self._release_alone()
            raise
        self._calls += 1

    def _release_alone(self) -> None:
        done, self._alone_done = self._alone_done, None
        if self._alone is not None and self._alone.locked():
            self._alone.release()
        if done is not None:
            done.set()

    def _leave(self, alone: bool) -> None:
        self._calls -= 1
        if alone:
            self._release_alone()
        elif not self._calls and self._calls_idle is not None:
            self._calls_idle.set()

    def _unrecorded(self, env: Envelope, attempt: int, exc: Exception) -> None:
        # the handler runs anyway: an event must not be held up by its bookkeeping; at worst
        # this call is not charged to the retry budget
        logger.warning(
            "could not record handler call %d of event %s for %s: %r",
            attempt,
            env.id,
            self.name,
            exc,
            extra=self._log_fields(env, attempt),
        )

    @staticmethod
    def _classify(exc: BaseException, timer: asyncio.Timeout | None) -> str:
        """The failure kind of a handler's exception; re-raises what must not be contained."""
        if isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise exc  # the worker itself is being stopped (unsubscribe, close)
            return "cancelled"
        if not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt, SystemExit: not a handler failure
        return "timeout" if timer is not None and timer.expired() else "error"

    def _succeeded(self, env: Envelope, result: Any) -> None:
        if env.tracker is not None:
            env.tracker.add(Outcome(self.name, "ok", result))
        reply = env.reply
        if reply is not None and not reply.done():
            reply.set_result(result)

    async def _invoke(self, event: Any, ctx: Context | None) -> Any:
        spec = self.spec
        fn = spec.fn
        if spec.is_async:
            if spec.takes_ctx:
                return await fn(event, ctx)
            return await fn(event)
        args = (event, ctx) if spec.takes_ctx else (event,)
        if self.offload:
            result = await asyncio.to_thread(fn, *args)
        else:
            result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _filtered(self, env: Envelope) -> None:
        self.filtered += 1
        if env.tracker is not None:
            env.tracker.add(Outcome(self.name, "filtered"))

    def _log_fields(self, env: Envelope, attempt: int) -> dict[str, Any]:
        fields = log_fields(env, self.name)
        fields["attempt"] = attempt
        return fields

    async def _fail(self, env: Envelope, error: BaseException, kind: str, attempts: int) -> None:
        logger.error(
            "handler %s failed on event %s (topic %s, %s after %d attempt(s)): %s: %s",
            self.spec.qualname,
            env.id,
            env.topic,
            kind,
            attempts,
            type(error).__name__,
            error,
            exc_info=(type(error), error, error.__traceback__),
            extra=self._log_fields(env, attempts),
        )
        reply = env.reply
        if reply is not None and not reply.done():
            reply.set_exception(RemoteError(type(error).__name__, str(error), topic=env.topic))
        dead = self.retry is not None or self.durable is not None
        if dead:
            self.dead_lettered += 1
        # a failure while handling a system event is not published again
        if not env.topic.startswith("$"):
            try:
                await self.bus._report_failure(self, env, error, kind, attempts, dead)
            except (AxonbusError, TypeError) as exc:
                # the dead letter did not go out (broker down, payload not encodable): leave a
                # broker delivery unacknowledged so it comes back, rather than lose it
                logger.error(
                    "could not report the failure of event %s: %r",
                    env.id,
                    exc,
                    extra=self._log_fields(env, attempts),
                )
                if isinstance(env.tracker, Inbound):
                    return
        # last: for a broker delivery this acknowledges it, after the dead letter is out
        if env.tracker is not None:
            env.tracker.add(Outcome(self.name, kind, error=error))  # type: ignore[arg-type]

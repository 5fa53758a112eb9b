"""The agents that live in this process: one :class:`Host` (mailbox + workers) per instance.

A host's mailbox is an unbounded FIFO of ``(message, ctx, reply)``; ``reply`` is the caller's
future for a send and None for a publish. Its ``concurrency`` worker tasks (1 by default) live as
long as the runtime runs and await the agent's handler directly: no task per message. So one
instance handles one message at a time, in order, unless it opted into more.

Unbounded because every send's caller awaits its own reply (it cannot run ahead), and a
publisher is the one place that could: like autogen-core's queue, publishes are not throttled.

Before the runtime's first start, posted messages wait in the mailboxes, and ``Hosts.backlog``
remembers their order: ``start()`` lets the workers take them, or ``Hosts.step()`` (the
runtime's ``process_next``) hands the oldest to a worker of its own for that one message.

Cancelling a send (its token, its timeout, or the caller being cancelled) settles the caller's
future first, then cancels the worker task *while it is inside that handler*; the worker
absorbs that one cancellation (``Task.uncancel``) and goes on with the next message.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .._exceptions import (
    CantHandle,
    DeadlockDetected,
    RemoteError,
    RequestTimeout,
    Undeliverable,
)
from ._context import handling_agent

if TYPE_CHECKING:
    from ._agent import Agent
    from ._context import MessageContext
    from ._ids import AgentId

__all__ = ["Host", "Hosts", "Worker", "current_worker", "deadlock_error"]

logger = logging.getLogger("axonbus.runtime")

Item = tuple[Any, "MessageContext", "asyncio.Future[Any] | None"]

#: the worker whose handler is running in this task (None outside handlers)
current_worker: ContextVar[Worker | None] = ContextVar("axonbus_current_worker", default=None)


class Worker:
    __slots__ = ("cancel_current", "current", "host", "retired", "task", "waiting_on")

    def __init__(self, host: Host) -> None:
        self.host = host
        self.retired = False  # set at stop: finish the current message, take no more
        self.task: asyncio.Task[None] | None = None
        self.current: asyncio.Future[Any] | None = None  # the reply of the send being handled
        self.cancel_current = False  # we cancelled the task to cancel the current handler
        self.waiting_on: Host | None = None  # the host this handler awaits a reply from


class Host:
    """One local agent instance with its mailbox and workers."""

    __slots__ = (
        "agent",
        "busy",
        "concurrency",
        "hosts",
        "id",
        "idle",
        "queue",
        "workers",
    )

    def __init__(self, hosts: Hosts, agent: Agent, agent_id: AgentId, concurrency: int) -> None:
        self.hosts = hosts
        self.agent = agent
        self.id = agent_id
        self.concurrency = concurrency
        self.queue: deque[Item] = deque()
        self.idle: list[asyncio.Future[None]] = []  # workers waiting for mail
        self.workers: list[Worker] = []
        self.busy = 0  # handlers running now

    def __repr__(self) -> str:
        return f"<Host {self.id} queued={len(self.queue)} busy={self.busy}/{self.concurrency}>"

    # -- mail ----------------------------------------------------------------------------------

    def post(self, item: Item) -> None:
        self.queue.append(item)
        hosts = self.hosts
        hosts.pending += 1
        if self.idle:
            self.idle.pop().set_result(None)
        elif not hosts.running:  # before start(): held for start() or Hosts.step()
            hosts.held(self)

    def cancel_send(self, reply: asyncio.Future[Any]) -> None:
        """The send's token was cancelled: the caller sees CancelledError, the handler too."""
        if not reply.done():
            reply.cancel()
        self.abort(reply)

    def expire(self, reply: asyncio.Future[Any], timeout: float) -> None:
        """The send's timeout passed: the caller sees RequestTimeout; the handler is cancelled."""
        if not reply.done():
            reply.set_exception(RequestTimeout(str(self.id), timeout))
        self.abort(reply)

    def abort(self, reply: asyncio.Future[Any]) -> None:
        """Cancel the handler working on ``reply``, if one is (a queued one is skipped later,
        since its reply is already settled)."""
        for w in self.workers:
            if w.current is reply:
                if not w.cancel_current and w.task is not asyncio.current_task():
                    w.cancel_current = True
                    assert w.task is not None
                    w.task.cancel()
                return

    # -- workers -------------------------------------------------------------------------------

    def start(self) -> None:
        # retired workers (finishing after a stop, or a stepped message) take no new mail
        while sum(not w.retired for w in self.workers) < self.concurrency:
            w = Worker(self)
            w.task = asyncio.get_running_loop().create_task(
                self._work(w), name=f"axonbus-agent:{self.id}"
            )
            self.workers.append(w)

    def flush(self) -> None:
        """Stop taking mail: queued sends fail with Undeliverable, queued publishes are dropped,
        idle workers exit, busy ones after their current message."""
        for w in self.workers:
            w.retired = True
        dropped = 0
        while self.queue:
            message, _, reply = self.queue.popleft()
            self.hosts.pending -= 1
            if reply is None:
                dropped += 1
            elif not reply.done():
                reply.set_exception(
                    Undeliverable(
                        f"the runtime stopped before {self.id} handled {type(message).__qualname__}"
                    )
                )
        if dropped:
            logger.info("%s: dropped %d queued published messages at stop", self.id, dropped)
        for fut in self.idle:
            if not fut.done():
                fut.set_result(None)
        self.idle.clear()

    async def _work(self, w: Worker) -> None:
        handling_agent.set(self.id)
        current_worker.set(w)
        queue = self.queue
        loop = asyncio.get_running_loop()
        while not w.retired:
            if not queue:
                fut = loop.create_future()
                self.idle.append(fut)
                await fut
                continue
            await self._handle(w, queue.popleft())

    async def step(self, w: Worker, item: Item, started: asyncio.Future[None]) -> None:
        """Handle one message taken off the queue by :meth:`Hosts.step`."""
        handling_agent.set(self.id)
        current_worker.set(w)
        started.set_result(None)
        try:
            await self._handle(w, item)
        finally:
            if w in self.workers:  # not when a stop has cleared them already
                self.workers.remove(w)

    async def _handle(self, w: Worker, item: Item) -> None:
        message, ctx, reply = item
        hosts = self.hosts
        if reply is not None:
            if reply.done():  # cancelled or timed out while queued
                hosts.settle()
                return
            w.current = reply
        self.busy += 1
        try:
            result = await self.agent.on_message(message, ctx)
        except BaseException as exc:  # cancellations included: _failed sorts them out
            stop = self._failed(w, exc, message, reply)
            w.current = None
            self.busy -= 1
            hosts.settle()
            if stop:
                raise
        else:
            if reply is not None:
                w.current = None
                if not reply.done():
                    reply.set_result(result)
                if w.cancel_current:  # the handler swallowed our cancellation
                    w.cancel_current = False
                    assert w.task is not None
                    w.task.uncancel()
            self.busy -= 1
            hosts.settle()

    def _failed(
        self, w: Worker, exc: BaseException, message: Any, reply: asyncio.Future[Any] | None
    ) -> bool:
        """Settle a failed handler call; True when the worker itself was stopped."""
        task = w.task
        assert task is not None
        if isinstance(exc, asyncio.CancelledError):
            if w.cancel_current:
                w.cancel_current = False
                if task.uncancel() == 0:
                    return False  # only this send was cancelled; its caller already knows
            if task.cancelling():
                if reply is not None and not reply.done():
                    reply.set_exception(
                        Undeliverable(f"the runtime stopped while {self.id} was handling it")
                    )
                return True
            # the handler raised CancelledError of its own accord: a failure like any other
        if reply is not None:
            if not reply.done():
                reply.set_exception(self._remote(exc))
            return False
        logger.error(
            "%s failed handling published %s",
            self.id,
            type(message).__qualname__,
            exc_info=exc,
        )
        self.hosts.report(exc)
        return False

    def _remote(self, exc: BaseException) -> BaseException:
        if isinstance(exc, CantHandle):
            return exc
        err = RemoteError(type(exc).__name__, str(exc), topic=str(self.id))
        err.__cause__ = exc  # in-process only: the original traceback, for debugging
        return err


class Hosts:
    """Every local host, the count of messages queued or being handled, and idle waiting."""

    __slots__ = (
        "_idle",
        "_posted",
        "accepting",
        "added",
        "backlog",
        "by_id",
        "failure",
        "keep_failure",
        "pending",
        "running",
    )

    def __init__(self, *, keep_failure: bool) -> None:
        self.by_id: dict[AgentId, Host] = {}
        #: called with each new agent's id (a distributed placement keeps track of them)
        self.added: Callable[[AgentId], None] | None = None
        self.pending = 0
        self.running = False
        #: sends and publishes are taken (before the first start too: they wait for it)
        self.accepting = True
        #: before start: the host of each message posted, in order (what step() takes next)
        self.backlog: deque[Host] = deque()
        self._posted: asyncio.Future[None] | None = None
        self.keep_failure = keep_failure
        self.failure: BaseException | None = None
        self._idle: list[asyncio.Future[None]] = []

    def held(self, host: Host) -> None:
        self.backlog.append(host)
        self._wake_step()

    def _wake_step(self) -> None:
        posted, self._posted = self._posted, None
        if posted is not None and not posted.done():
            posted.set_result(None)

    @property
    def queued(self) -> int:
        """Messages waiting in mailboxes (not yet being handled)."""
        return sum(len(host.queue) for host in self.by_id.values())

    async def step(self) -> None:
        """Before start: take the oldest queued message (waiting for one), start its handler
        in a task of its own and return once the handler runs (not when it is done). Returns
        at once when the runtime starts or stops meanwhile: then nothing is held back."""
        loop = asyncio.get_running_loop()
        while not self.running and self.accepting:
            host = self._oldest_held()
            if host is None:
                if self._posted is None or self._posted.done():
                    self._posted = loop.create_future()
                await self._posted
                continue
            w = Worker(host)
            w.retired = True  # handles this one message only
            started: asyncio.Future[None] = loop.create_future()
            w.task = loop.create_task(
                host.step(w, host.queue.popleft(), started), name=f"axonbus-agent:{host.id}"
            )
            host.workers.append(w)
            await started
            return

    def _oldest_held(self) -> Host | None:
        """The host of the oldest message still waiting for a start, if any."""
        while self.backlog:
            host = self.backlog.popleft()
            if host.queue:  # empty when the message was flushed meanwhile
                return host
        return None

    def add(self, agent: Agent, agent_id: AgentId, concurrency: int) -> Host:
        host = Host(self, agent, agent_id, concurrency)
        self.by_id[agent_id] = host
        if self.running:
            host.start()
        if self.added is not None:
            self.added(agent_id)
        return host

    def settle(self) -> None:
        self.pending -= 1
        if self.pending <= 0 and self._idle:
            self._wake_idle()

    def _wake_idle(self) -> None:
        for fut in self._idle:
            if not fut.done():
                fut.set_result(None)
        self._idle.clear()

    def report(self, exc: BaseException) -> None:
        if self.keep_failure and self.failure is None:
            self.failure = exc

    async def wait_idle(self) -> None:
        while self.pending > 0:
            fut = asyncio.get_running_loop().create_future()
            self._idle.append(fut)
            await fut

    def start(self) -> None:
        self.running = True
        self.accepting = True
        self.backlog.clear()  # the workers take what is queued, in order
        self._wake_step()
        for host in list(self.by_id.values()):
            host.start()

    async def stop(self, timeout: float | None) -> None:
        """Fail or drop what is queued, let running handlers finish for up to ``timeout``
        seconds, then cancel them (their callers get Undeliverable)."""
        self.running = False
        self.accepting = False
        self.backlog.clear()
        self._wake_step()
        hosts = list(self.by_id.values())
        for host in hosts:
            host.flush()
        me = asyncio.current_task()  # a handler may stop the runtime: it cannot wait for itself
        tasks = [w.task for host in hosts for w in host.workers if w.task not in (None, me)]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            if late:
                logger.warning("cancelling %d agent handlers still running at stop", len(late))
                for task in late:
                    task.cancel()
                _, stuck = await asyncio.wait(late, timeout=5.0)
                for task in stuck:
                    logger.error("%s ignores cancellation; abandoning it", task.get_name())
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    logger.error("%s crashed", task.get_name(), exc_info=task.exception())
        for host in hosts:
            host.workers.clear()  # retired; one still running (abandoned, or ours) exits after
        # what is left is what retired workers still handle; they settle it when they finish
        self.pending = sum(host.busy for host in hosts)
        if not self.pending:
            self._wake_idle()


def _waits_on(host: Host, me: Worker, target: Host) -> list[Host] | None:
    """The hosts ``host``'s handlers wait on when every one of its slots is taken by a handler
    waiting for a reply (``me`` counted as waiting on ``target``); None when a slot is free or
    a handler is still working, since then ``host`` will take another message."""
    if host.busy < host.concurrency:
        return None
    waits = []
    for w in host.workers:
        on = target if w is me else w.waiting_on
        if on is not None:
            waits.append(on)
    return waits if len(waits) >= host.busy else None


def _stuck(target: Host, me: Worker) -> list[Host] | None:
    """The hosts that could never take another message once ``me`` waits on ``target``, if
    ``target`` is one of them: each slot of each is held by a handler waiting on one of them."""
    candidates: dict[Host, list[Host]] = {}
    frontier = [target]
    while frontier:
        host = frontier.pop()
        if host in candidates:
            continue
        waits = _waits_on(host, me, target)
        if waits is not None:
            candidates[host] = waits
            frontier.extend(waits)
    # a host with a handler waiting on one that can still make progress frees a slot later
    pruned = True
    while pruned:
        pruned = False
        for host, waits in list(candidates.items()):
            if any(on not in candidates for on in waits):
                del candidates[host]
                pruned = True
    return list(candidates) if target in candidates else None


def _wait_chain(target: Host, me: Host) -> list[Host]:
    """The path of single waits from ``target`` back to ``me`` (one-slot agents)."""
    chain: list[Host] = []
    host: Host | None = target
    for _ in range(len(target.hosts.by_id) + 1):
        if host is None:
            break
        chain.append(host)
        if host is me:
            break
        host = host.workers[0].waiting_on if host.workers else None
    return chain


def deadlock_error(target: Host, me: Worker) -> DeadlockDetected | None:
    """The error for a send from ``me`` to ``target`` that could never be answered, if so."""
    stuck = _stuck(target, me)
    if stuck is None:
        return None
    if (
        all(h.concurrency == 1 for h in stuck)
        and (chain := _wait_chain(target, me.host))[-1] is me.host
    ):
        if len(chain) == 1:
            what = f"{me.host.id} sent a message to itself while handling one"
        else:
            path = " -> ".join(str(h.id) for h in [me.host, *chain])
            what = f"{me.host.id} would wait for a reply that never comes: {path} all wait"
            what += " on each other"
        how = "each handles one message at a time"
    else:
        held = ", ".join(f"{h.id} {h.busy}/{h.concurrency}" for h in stuck)
        what = (
            f"{me.host.id} would wait for a reply from {target.id} that never comes: every "
            f"handler slot of {held} is taken by a handler waiting on these same agents"
        )
        how = "no slot is left to handle the message"
    return DeadlockDetected(
        f"{what} ({how}). Publish instead of sending, or register one of them with more "
        "concurrency."
    )

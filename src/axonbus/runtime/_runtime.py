"""``AgentRuntime``: routes sends and publishes to agents (registration is in ``_registry``,
the mailboxes in ``_hosting``, start/stop in ``_lifecycle``).

The seam for running one runtime across processes
-------------------------------------------------

Two decisions sit behind :class:`Placement`, and nothing else in the runtime knows whether an
agent is local:

1. **Where does AgentId X live?** ``placement.locate(agent_id)`` returns None for "this process"
   or the id of the worker process that hosts it. :class:`LocalPlacement` (every bus whose
   ``transport.local_only`` is True) always says "here", and the runtime then takes its fast
   path: the message object goes straight into the local :class:`~._hosting.Host`'s mailbox, with
   no encoding and no bus round trip. The distributed placement keeps a membership table fed by
   heartbeats on ``$rt.{name}.members`` (each worker announcing the agent types it can host)
   and picks the owner by rendezvous hashing over the live workers of X's type (with pins for
   agents already instantiated elsewhere), so every process agrees without coordination.
2. **Deliver to a host that is not here.** ``placement.send(worker, message, recipient, ctx,
   timeout)`` returns the reply or raises the mapped error; ``placement.publish(worker,
   message, recipients, ctx)`` hands a publish to the worker that owns those recipients. Over a
   broker these are ``bus.request`` to the worker's responder topic ``$rt.{name}.w.{worker}``
   and a publish to the worker. The receiving worker queues them at its hosts as local messages
   are (:meth:`AgentRuntime._receive_send` / :meth:`AgentRuntime._receive_publish` show how), and
   a worker that vanishes turns the waiting sends into :class:`Undeliverable`. ``__init__``
   selects the placement from the bus's transport: :class:`~._distributed.DistributedPlacement`
   for every bus that leaves the process (``_distributed`` describes membership, placement and
   delivery); ``tests/runtime/test_seam.py`` joins two runtimes with a placement that
   moves JSON bytes.

Everything that crosses is data (``_serialization``): messages as ``{"type", "data"}`` of
registered pydantic models / dataclasses / JSON values, ids as ``"type/key"``, the context as a
dict, errors as ``{"type", "message"}`` (handler errors arrive as :class:`RemoteError`).
Subscriptions are data too: a distributed placement replicates them in its members' state and
hears of changes through :meth:`Placement.changed`. Interventions run where the send or publish
starts (``on_response`` where the reply arrives).
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from .._engine.bus import Bus
from .._engine.middleware import Middleware
from .._exceptions import (
    AgentNotFound,
    RemoteError,
    RuntimeClosed,
    RuntimeNotStarted,
    Undeliverable,
)
from ._agent import Agent
from ._context import CancellationToken, MessageContext
from ._hosting import Host, Hosts, current_worker, deadlock_error
from ._ids import AgentId, TopicId
from ._interventions import (
    DropMessage,
    InterventionHandler,
    intervene_publish,
    intervene_response,
    intervene_send,
)
from ._lifecycle import Lifecycle
from ._registry import Registry
from ._serializers import MessageSerializer
from ._state import load_runtime_state, save_runtime_state
from ._subscriptions import Subscription, SubscriptionIndex

__all__ = ["AgentRuntime", "LocalPlacement", "Placement"]

logger = logging.getLogger("axonbus.runtime")

T = TypeVar("T", bound=Agent)


def _tracing(tracer_provider: Any) -> list[Middleware]:
    if tracer_provider is None:
        return []
    from ..observability import OpenTelemetryMiddleware  # needs the otel extra

    return [OpenTelemetryMiddleware(tracer_provider)]


class Placement(abc.ABC):
    """Where agents live and how messages reach the ones elsewhere (see the module docstring)."""

    #: True: every agent is in this process; the runtime never calls send / publish here
    local_only: ClassVar[bool] = True

    @abc.abstractmethod
    def locate(self, agent_id: AgentId) -> str | None:
        """The worker hosting ``agent_id``; None when it is (or will be created) here."""

    @abc.abstractmethod
    async def send(
        self,
        worker: str,
        message: Any,
        recipient: AgentId,
        ctx: MessageContext,
        timeout: float | None,
    ) -> Any:
        """Deliver a send to ``recipient`` at ``worker``; its reply, or the mapped error."""

    @abc.abstractmethod
    async def publish(
        self, worker: str, message: Any, recipients: Sequence[AgentId], ctx: MessageContext
    ) -> None:
        """Hand a publish to ``worker`` for ``recipients`` (which it hosts)."""

    async def start(self, runtime: AgentRuntime) -> None:
        return None

    async def stop(self) -> None:
        return None

    def changed(self) -> None:
        """This process's agent types or subscriptions changed."""
        return None


class LocalPlacement(Placement):
    """Every agent lives in this process (``memory://`` and any ``local_only`` transport)."""

    def __init__(self, runtime: AgentRuntime) -> None:
        self.runtime = runtime

    def locate(self, agent_id: AgentId) -> str | None:
        return None

    async def send(
        self,
        worker: str,
        message: Any,
        recipient: AgentId,
        ctx: MessageContext,
        timeout: float | None,
    ) -> Any:
        # never called (locate always says "here"); the one worker there is is this one
        return await self.runtime._receive_send(message, recipient, ctx, timeout)

    async def publish(
        self, worker: str, message: Any, recipients: Sequence[AgentId], ctx: MessageContext
    ) -> None:
        await self.runtime._receive_publish(message, recipients, ctx)


class AgentRuntime(Registry, Lifecycle):
    """Hosts agents and routes messages between them; in-process on ``memory://``.

    >>> runtime = AgentRuntime()
    >>> await Checker.register(runtime, "checker", lambda: Checker(limit=1))
    >>> runtime.start()
    >>> reply = await runtime.send_message(Number(10), AgentId("checker", "default"))
    >>> await runtime.publish_message(Number(3), DefaultTopicId())
    >>> await runtime.stop_when_idle()

    ``bus``: the bus it belongs to (a new in-process ``Bus()`` when None; the runtime then owns
    it). On a bus that leaves the process (``redis://``, ``nats://``) the runtime spans every
    process that starts a runtime of the same ``name`` on that bus (see ``_distributed``):
    agent types registered in several processes share the keys, and ``heartbeat`` is the
    seconds between membership heartbeats (a process is dead after 3 missed ones).
    ``intervention_handlers``: middleware over sends, publishes and replies.
    ``ignore_unhandled_exceptions=False`` re-raises the first failure of a publish (a handler
    raised, or a recipient could not be created) from ``stop`` / ``stop_when_idle`` (failures
    are always logged). ``tracer_provider``: an OpenTelemetry ``TracerProvider`` for the bus the
    runtime makes for itself (``OpenTelemetryMiddleware``: it traces what crosses the bus, so
    the sends and publishes between processes; in-process delivery opens no spans). With a bus
    of your own, give that bus the middleware instead.
    """

    def __init__(
        self,
        bus: Bus | None = None,
        *,
        intervention_handlers: Sequence[InterventionHandler] | None = None,
        ignore_unhandled_exceptions: bool = True,
        name: str = "default",
        heartbeat: float = 1.0,
        tracer_provider: Any = None,
    ) -> None:
        TopicId(name, "")  # a name usable in system topics ($rt.{name}...)
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float) or heartbeat <= 0:
            raise ValueError(f"heartbeat must be a number of seconds > 0, got {heartbeat!r}")
        self.name = name
        self._owns_bus = bus is None
        if bus is None:
            bus = Bus(middleware=_tracing(tracer_provider))
        elif tracer_provider is not None:
            raise ValueError(
                "tracer_provider is for the bus the runtime makes itself; give your bus "
                "middleware=[OpenTelemetryMiddleware(tracer_provider)] instead"
            )
        self.bus = bus
        self._placement: Placement = LocalPlacement(self)
        self._local = True  # the fast path: no placement decisions at all
        self._hosts = Hosts(keep_failure=not ignore_unhandled_exceptions)
        self._subscriptions = SubscriptionIndex()
        self._targets: dict[TopicId, tuple[Host, ...]] = {}  # topic -> local hosts
        self._interventions = tuple(intervention_handlers or ())
        self._loop: asyncio.AbstractEventLoop | None = None
        super().__init__()
        if not self.bus.transport.local_only:
            from ._distributed import DistributedPlacement

            self._use_placement(DistributedPlacement(self, float(heartbeat)))
            # across processes nothing can be placed before start() has met the others
            self._hosts.accepting = False

    def __repr__(self) -> str:
        return f"<AgentRuntime {self.name!r} {self.state} agents={len(self._hosts.by_id)}>"

    # -- stepping by hand, before start() --------------------------------------------------------

    @property
    def unprocessed_messages_count(self) -> int:
        """Messages queued in the agents' mailboxes and not yet being handled.

        >>> runtime.unprocessed_messages_count
        0
        """
        return self._hosts.queued

    async def process_next(self) -> None:
        """Before :meth:`start`, handle the oldest queued message: wait for one, start its
        handler in a task of its own and return once the handler runs (without waiting for it
        to finish); at once if the runtime starts or closes meanwhile. For tests that step the
        runtime by hand, as autogen-core's do.

        >>> call = asyncio.create_task(runtime.send_message(Job(), AgentId("worker", "a")))
        >>> await runtime.process_next()     # the worker is now inside its handler
        """
        if self.state != "new":
            raise RuntimeNotStarted(
                f"process_next: the agent runtime is {self.state}; it steps only before start()"
            )
        await self._hosts.step()

    #: autogen-core's name for :meth:`process_next` (its tests call it)
    _process_next = process_next

    # -- serializers ---------------------------------------------------------------------------

    def add_message_serializer(
        self, serializer: MessageSerializer[Any] | Sequence[MessageSerializer[Any]]
    ) -> None:
        """Use ``serializer`` (or each of a list) for its message class when a message crosses
        processes: it travels under the serializer's ``type_name``, so a class defined in a
        script's ``__main__`` works as long as every process adds the same serializer.

        >>> runtime.add_message_serializer(try_get_known_serializers_for_type(Order))
        """
        self.message_types.add_serializer(serializer)

    # -- subscriptions -------------------------------------------------------------------------

    async def add_subscription(self, subscription: Subscription) -> None:
        """Route matching publishes to the subscription's agents (ValueError if an equal
        subscription exists). Takes effect for the next publish."""
        self._subscriptions.add(subscription)
        self._registrations_changed()

    async def remove_subscription(self, id: str) -> None:
        """Remove the subscription with this id (ValueError if there is none; across
        processes, one this process added)."""
        self._subscriptions.remove(id)
        self._registrations_changed()

    def _registrations_changed(self) -> None:
        self._targets.clear()
        if not self._local:
            self._placement.changed()

    # -- messaging -----------------------------------------------------------------------------

    async def send_message(
        self,
        message: Any,
        recipient: AgentId,
        *,
        sender: AgentId | None = None,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Deliver ``message`` to ``recipient`` and return its handler's return value.

        Raises :class:`AgentNotFound`, :class:`CantHandle`, :class:`RemoteError` (the handler
        raised; ``remote_type`` / ``remote_message`` keep what), :class:`RequestTimeout` after
        ``timeout`` seconds, :class:`MessageDropped` (an intervention), or ``CancelledError``
        when ``cancellation_token`` is cancelled. A timeout or cancellation (also of the
        caller's task) cancels the handler as well.

        >>> total = await runtime.send_message(Add(2, 3), AgentId("calc", "default"), timeout=5)
        """
        if not self._hosts.accepting:
            raise self._not_running("send_message")
        ctx = MessageContext(sender, None, True, cancellation_token, message_id)
        if self._interventions:
            message = await intervene_send(self._interventions, message, ctx, recipient)
        host = self._hosts.by_id.get(recipient)
        if host is not None:
            result = await self._deliver_send(host, message, ctx, timeout)
        elif not isinstance(recipient, AgentId):
            raise TypeError(f"recipient must be an AgentId, got {recipient!r}")
        elif not self._local and (worker := self._placement.locate(recipient)) is not None:
            result = await self._placement.send(worker, message, recipient, ctx, timeout)
        else:
            try:
                host = await self._host(recipient)
            except AgentNotFound:
                raise
            except Exception as exc:  # the factory failed: an error on the recipient's side
                raise RemoteError(type(exc).__name__, str(exc), topic=str(recipient)) from exc
            result = await self._deliver_send(host, message, ctx, timeout)
        if self._interventions:
            return await intervene_response(self._interventions, result, recipient, sender)
        return result

    async def _deliver_send(
        self, host: Host, message: Any, ctx: MessageContext, timeout: float | None
    ) -> Any:
        """Queue a send at a local host and await the reply (also part 2's inbound path)."""
        loop = self._loop or asyncio.get_running_loop()  # None before the first start()
        reply: asyncio.Future[Any] = loop.create_future()
        me = current_worker.get()
        if me is not None and host.busy >= host.concurrency:
            error = deadlock_error(host, me)
            if error is not None:
                raise error
        if not self._hosts.accepting:  # stopped while this send awaited an intervention / factory
            raise self._not_running("send_message")
        host.post((message, ctx, reply))
        token = ctx._token
        if token is None and timeout is None and me is None:
            try:
                return await reply
            except asyncio.CancelledError:
                host.abort(reply)  # the caller was cancelled: so is the handler
                raise
        timer = None if timeout is None else loop.call_later(timeout, host.expire, reply, timeout)
        if token is not None:
            token._link(reply, lambda: host.cancel_send(reply))
        if me is not None:
            me.waiting_on = host
        try:
            return await reply
        except asyncio.CancelledError:
            host.abort(reply)
            raise
        finally:
            if me is not None:
                me.waiting_on = None
            if timer is not None:
                timer.cancel()
            if token is not None:
                token._unlink(reply)

    async def publish_message(
        self,
        message: Any,
        topic_id: TopicId,
        *,
        sender: AgentId | None = None,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
    ) -> None:
        """Queue ``message`` for every agent subscribed to ``topic_id`` (not ``sender``) and
        return; handlers' failures are logged, never raised here.

        >>> await runtime.publish_message(Number(3), DefaultTopicId())
        """
        if not self._hosts.accepting:
            raise self._not_running("publish_message")
        ctx = MessageContext(sender, topic_id, False, cancellation_token, message_id)
        if self._interventions:
            message = await intervene_publish(self._interventions, message, ctx)
            if message is DropMessage:
                return
            if not self._hosts.accepting:  # stopped while an intervention ran
                raise self._not_running("publish_message")
        targets = self._targets.get(topic_id)
        if targets is None:
            targets = await self._resolve(topic_id)
            if not self._hosts.accepting:  # stopped while agents were being created
                raise self._not_running("publish_message")
        item = (message, ctx, None)
        if sender is None:
            for host in targets:
                host.post(item)
        else:
            for host in targets:
                if host.id != sender:
                    host.post(item)
        if not self._local:
            await self._publish_elsewhere(message, topic_id, ctx)

    async def _publish_elsewhere(
        self, message: Any, topic_id: TopicId, ctx: MessageContext
    ) -> None:
        """Hand a publish to each worker that owns some of its recipients."""
        by_worker: dict[str, list[AgentId]] = {}
        for agent_id in self._subscriptions.recipients(topic_id):
            worker = self._placement.locate(agent_id)
            if worker is not None and agent_id != ctx.sender:
                by_worker.setdefault(worker, []).append(agent_id)
        for worker, recipients in by_worker.items():
            await self._placement.publish(worker, message, recipients, ctx)

    async def _resolve(self, topic_id: TopicId) -> tuple[Host, ...]:
        """The local hosts subscribed to ``topic_id`` (creating agents), cached until
        registrations or subscriptions change."""
        if not isinstance(topic_id, TopicId):
            raise TypeError(f"expected a TopicId, got {topic_id!r}")
        hosts: list[Host] = []
        failed = False
        for agent_id in self._subscriptions.recipients(topic_id):
            if not self._local and self._placement.locate(agent_id) is not None:
                continue  # another worker's: _publish_elsewhere
            try:
                hosts.append(await self._host(agent_id))
            except AgentNotFound as exc:  # e.g. a key of a type with instances only
                failed = True
                error = Undeliverable(f"publish on {topic_id}: cannot deliver to {exc}")
                error.__cause__ = exc
                logger.warning("%s", error)
                self._hosts.report(error)
            except Exception as exc:  # the factory raised (logged where it was called)
                failed = True
                self._hosts.report(exc)
        found = tuple(hosts)
        if failed:
            return found  # not cached: the next publish tries to create them again
        if len(self._targets) >= 10_000:
            self._targets.clear()
        self._targets[topic_id] = found
        return found

    # -- what another worker hands in (part 2) --------------------------------------------------

    async def _receive_send(
        self, message: Any, recipient: AgentId, ctx: MessageContext, timeout: float | None
    ) -> Any:
        """A send another worker routed here: handled like a local one (no interventions:
        they ran where the send started)."""
        if not self._hosts.running:
            raise self._not_running("send_message")
        return await self._deliver_send(await self._host(recipient), message, ctx, timeout)

    async def _receive_publish(
        self, message: Any, recipients: Sequence[AgentId], ctx: MessageContext
    ) -> None:
        """A publish another worker routed here, for ``recipients`` it says live here."""
        if not self._hosts.running:
            raise self._not_running("publish_message")
        hosts = [await self._host(agent_id) for agent_id in recipients]
        if not self._hosts.running:
            raise self._not_running("publish_message")
        item = (message, ctx, None)
        for host in hosts:
            host.post(item)

    def _use_placement(self, placement: Placement) -> None:
        self._placement = placement
        self._local = placement.local_only
        self._targets.clear()

    # -- state ---------------------------------------------------------------------------------

    async def save_state(self) -> dict[str, Any]:
        """Every instantiated agent's ``save_state()`` keyed by ``"type/key"``, and the
        subscriptions; JSON-native (see ``_state``)."""
        return await save_runtime_state(self)

    async def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`save_state`'s result (or autogen-core's flat form): subscriptions
        are merged, agents are created as needed and given their state."""
        await load_runtime_state(self, state)

    def _not_running(self, operation: str) -> Exception:
        if self.state == "closed":
            return RuntimeClosed(f"{operation}: the agent runtime is closed")
        return RuntimeNotStarted(
            f"{operation}: the agent runtime is {self.state}; call runtime.start() first"
        )

"""``Agent``: the base class of actors, bound to an id and a runtime when created.

The runtime calls a registered factory inside :class:`AgentInstantiationContext`, so
``Agent.__init__`` (and the factory itself) already knows the new agent's id and runtime.
"""

from __future__ import annotations

import builtins
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict, TypeVar

from .._exceptions import AgentNotBound, CantHandle
from ._context import CancellationToken, MessageContext
from ._ids import AgentId, AgentType, TopicId
from ._subscriptions import Subscription, TypePrefixSubscription, registering

if TYPE_CHECKING:
    from ._runtime import AgentRuntime

__all__ = ["Agent", "AgentInstantiationContext", "AgentMetadata", "BaseAgent"]

logger = logging.getLogger("axonbus.runtime")

AgentT = TypeVar("AgentT", bound="Agent")

_instantiating: ContextVar[tuple[AgentRuntime, AgentId]] = ContextVar("axonbus_instantiating")


class AgentMetadata(TypedDict):
    type: str
    key: str
    description: str


class AgentInstantiationContext:
    """Inside a factory call (and so in ``__init__``): the runtime and the id being created.

    >>> def make() -> Worker:
    ...     return Worker(name=AgentInstantiationContext.current_agent_id().key)
    """

    def __init__(self) -> None:
        raise TypeError("AgentInstantiationContext is not instantiable; use its classmethods")

    @classmethod
    @contextmanager
    def populate_context(cls, ctx: tuple[AgentRuntime, AgentId]) -> Iterator[None]:
        token = _instantiating.set(ctx)
        try:
            yield
        finally:
            _instantiating.reset(token)

    @classmethod
    def current_runtime(cls) -> AgentRuntime:
        return cls._current()[0]

    @classmethod
    def current_agent_id(cls) -> AgentId:
        return cls._current()[1]

    @classmethod
    def is_in_factory_call(cls) -> bool:
        return _instantiating.get(None) is not None

    @staticmethod
    def _current() -> tuple[AgentRuntime, AgentId]:
        try:
            return _instantiating.get()
        except LookupError:
            raise AgentNotBound(
                "not inside an agent factory call: the runtime sets the id and runtime while "
                "it creates an agent from a registered factory"
            ) from None


class Agent:
    """Base class of agents. Subclass :class:`RoutedAgent` for typed handlers, or override
    ``on_message_impl(message, ctx)`` to handle everything in one place.

    >>> class Echo(Agent):
    ...     async def on_message_impl(self, message, ctx):
    ...         return message
    >>> await Echo.register(runtime, "echo", Echo)
    >>> await runtime.send_message("hi", AgentId("echo", "default"))
    'hi'

    ``concurrency`` (class attribute, or ``register(..., concurrency=)``): how many messages
    one instance handles at a time; 1 (the default) handles them one by one, in order.
    """

    #: messages one instance handles at once; 1 keeps them in order, one at a time
    concurrency: ClassVar[int] = 1
    _class_subscriptions: ClassVar[list[Callable[[], Sequence[Subscription]]]] = []

    _id: AgentId
    _runtime: AgentRuntime

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # each class declares its own subscriptions; a subclass does not inherit them (autogen)
        cls._class_subscriptions = []

    def __init__(self, description: str = "") -> None:
        bound = _instantiating.get(None)
        if bound is not None:
            self._runtime, self._id = bound
        if not isinstance(description, str):
            raise TypeError(f"description must be a str, got {description!r}")
        self._description = description

    # -- identity ------------------------------------------------------------------------------

    @property
    def id(self) -> AgentId:
        try:
            return self._id
        except AttributeError:
            raise AgentNotBound(
                f"{type(self).__name__} has no id yet: create it through a registered factory "
                "or register it with runtime.register_agent_instance"
            ) from None

    @property
    def type(self) -> str:
        return self.id.type

    @property
    def runtime(self) -> AgentRuntime:
        try:
            return self._runtime
        except AttributeError:
            raise AgentNotBound(f"{type(self).__name__} is not bound to a runtime") from None

    @property
    def metadata(self) -> AgentMetadata:
        agent_id = self.id
        return {"type": agent_id.type, "key": agent_id.key, "description": self._description}

    async def bind_id_and_runtime(self, id: AgentId, runtime: AgentRuntime) -> None:
        """Called by ``register_agent_instance``; an agent is bound once."""
        if getattr(self, "_id", id) != id:
            raise ValueError(f"agent is already bound to {self._id}, not {id}")
        if getattr(self, "_runtime", runtime) is not runtime:
            raise ValueError("agent is already bound to another runtime")
        self._id = id
        self._runtime = runtime

    def __repr__(self) -> str:
        where = getattr(self, "_id", None)
        return f"<{type(self).__name__} {where if where is not None else '(unbound)'}>"

    # -- handling ------------------------------------------------------------------------------

    async def on_message(self, message: Any, ctx: MessageContext) -> Any:
        """Called by the runtime for every message; the return value of a send is the reply."""
        return await self.on_message_impl(message, ctx)

    async def on_message_impl(self, message: Any, ctx: MessageContext) -> Any:
        return await self.on_unhandled_message(message, ctx)

    async def on_unhandled_message(self, message: Any, ctx: MessageContext) -> Any:
        """No handler took ``message``. For a send this raises :class:`CantHandle` (the caller
        sees it); a publish is logged at INFO (``Unhandled message: …``, as autogen-core does)
        and dropped. Override to do otherwise."""
        if ctx.is_rpc:
            raise CantHandle(f"{self.id} has no handler for {type(message).__qualname__}")
        logger.info("Unhandled message: %r (at %s)", message, self.id)
        return None

    # -- talking to others ---------------------------------------------------------------------

    async def send_message(
        self,
        message: Any,
        recipient: AgentId,
        *,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """``runtime.send_message`` with this agent as the sender."""
        return await self.runtime.send_message(
            message,
            recipient,
            sender=self.id,
            cancellation_token=cancellation_token,
            message_id=message_id,
            timeout=timeout,
        )

    async def publish_message(
        self,
        message: Any,
        topic_id: TopicId,
        *,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
    ) -> None:
        """``runtime.publish_message`` with this agent as the sender (it does not receive it)."""
        await self.runtime.publish_message(
            message,
            topic_id,
            sender=self.id,
            cancellation_token=cancellation_token,
            message_id=message_id,
        )

    # -- state and lifecycle -------------------------------------------------------------------

    async def save_state(self) -> Mapping[str, Any]:
        """This agent's state as JSON-native data; ``{}`` unless overridden."""
        return {}

    async def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`save_state` returned; does nothing unless overridden."""
        return None

    async def close(self) -> None:
        """Called once by ``runtime.close()``."""
        return None

    # -- registration --------------------------------------------------------------------------

    @classmethod
    def _handled_types(cls) -> tuple[builtins.type, ...]:
        """Message types this class declares handlers for (used to register serializers)."""
        return ()

    @classmethod
    async def register(
        cls: builtins.type[AgentT],
        runtime: AgentRuntime,
        type: str,
        factory: Callable[[], AgentT | Awaitable[AgentT]],
        *,
        skip_class_subscriptions: bool = False,
        skip_direct_message_subscription: bool = False,
        concurrency: int | None = None,
    ) -> AgentType:
        """Register ``factory`` under ``type`` and add this class's declared subscriptions.

        >>> await Checker.register(runtime, "checker", lambda: Checker(limit=1))

        Also subscribes the type to topics of type ``"{type}:"`` (any source), like autogen,
        unless ``skip_direct_message_subscription``.
        """
        agent_type = await runtime.register_factory(
            type, factory, expected_class=cls, concurrency=concurrency
        )
        if not skip_class_subscriptions:
            for sub in await made_subscriptions(cls._class_subscriptions, agent_type):
                await runtime.add_subscription(sub)
        if not skip_direct_message_subscription:
            await runtime.add_subscription(TypePrefixSubscription(f"{type}:", type))
        return agent_type

    async def register_instance(
        self,
        runtime: AgentRuntime,
        agent_id: AgentId,
        *,
        skip_class_subscriptions: bool = True,
        skip_direct_message_subscription: bool = False,
        concurrency: int | None = None,
    ) -> AgentId:
        """Register this instance as ``agent_id`` (``runtime.register_agent_instance``)."""
        await runtime.register_agent_instance(self, agent_id, concurrency=concurrency)
        subs: list[Subscription] = []
        if not skip_class_subscriptions:
            declared = type(self)._class_subscriptions
            subs.extend(await made_subscriptions(declared, AgentType(agent_id.type)))
        if not skip_direct_message_subscription:
            subs.append(TypePrefixSubscription(f"{agent_id.type}:", agent_id.type))
        for sub in subs:
            try:
                await runtime.add_subscription(sub)
            except ValueError:
                pass  # another instance of the type added it already
        return agent_id


async def made_subscriptions(
    makers: Sequence[Callable[[], Any]], agent_type: AgentType
) -> list[Subscription]:
    """Call the declared subscription makers for ``agent_type`` (they may be async)."""
    subs: list[Subscription] = []
    with registering(agent_type):
        for make in makers:
            made: Any = make()
            if inspect.isawaitable(made):
                made = await made
            subs.extend(made)
    return subs


#: autogen-core's name for the base class with ``on_message_impl``
BaseAgent = Agent

"""``ClosureAgent``: an agent made from one async function, e.g. to collect results in a test.

>>> results: asyncio.Queue[Answer] = asyncio.Queue()
>>> async def collect(agent: ClosureContext, answer: Answer, ctx: MessageContext) -> None:
...     await results.put(answer)
>>> await ClosureAgent.register_closure(
...     runtime, "collector", collect, subscriptions=lambda: [DefaultSubscription()]
... )
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .._exceptions import CantHandle, InvalidHandler
from ._agent import Agent, made_subscriptions
from ._context import CancellationToken, MessageContext
from ._ids import AgentId, AgentType, TopicId
from ._routed import _message_types, defining_scope
from ._subscriptions import Subscription, TypePrefixSubscription

if TYPE_CHECKING:
    from ._runtime import AgentRuntime

__all__ = ["ClosureAgent", "ClosureContext"]

logger = logging.getLogger("axonbus.runtime")

Closure = Callable[..., Awaitable[Any]]
UnknownTypePolicy = Literal["error", "warn", "ignore"]


class ClosureContext(Protocol):
    """What the closure gets as its first argument: the agent's id and its send / publish."""

    @property
    def id(self) -> AgentId: ...

    async def send_message(
        self,
        message: Any,
        recipient: AgentId,
        *,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> Any: ...

    async def publish_message(
        self,
        message: Any,
        topic_id: TopicId,
        *,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
    ) -> None: ...


def _checked_policy(policy: Any) -> UnknownTypePolicy:
    if policy not in ("error", "warn", "ignore"):
        raise ValueError(f"unknown_type_policy must be 'error', 'warn' or 'ignore', got {policy!r}")
    return policy  # type: ignore[no-any-return]


class ClosureAgent(Agent):
    """Calls ``closure(agent, message, ctx)`` for messages of the type its second parameter is
    annotated with (``Any`` for all). Other messages, by ``unknown_type_policy``: ``"warn"``
    (the default) logs a warning and then does what ``on_unhandled_message`` does (a send
    raises :class:`CantHandle`), ``"error"`` raises :class:`CantHandle` for publishes too,
    ``"ignore"`` drops them (a send gets None)."""

    def __init__(
        self,
        description: str,
        closure: Closure,
        *,
        unknown_type_policy: UnknownTypePolicy = "warn",
        localns: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(description)
        self._policy = _checked_policy(unknown_type_policy)
        if not inspect.iscoroutinefunction(closure):
            raise InvalidHandler(f"closure {closure!r} must be an 'async def' function")
        params = list(inspect.signature(closure).parameters)
        if len(params) != 3:
            raise InvalidHandler("a closure takes (agent, message, ctx)")
        self._closure = closure
        self._types = _message_types(closure, localns)  # its 2nd parameter, as for a method

    async def on_message_impl(self, message: Any, ctx: MessageContext) -> Any:
        if isinstance(message, self._types):
            return await self._closure(self, message, ctx)
        if self._policy == "ignore":
            return None
        what = f"{self.id} takes {' | '.join(t.__qualname__ for t in self._types)}, "
        what += f"not {type(message).__qualname__}"
        if self._policy == "error":
            raise CantHandle(what)
        logger.warning("closure agent %s", what)
        return await self.on_unhandled_message(message, ctx)

    @classmethod
    async def register_closure(
        cls,
        runtime: AgentRuntime,
        type: str,
        closure: Closure,
        *,
        skip_direct_message_subscription: bool = False,
        description: str = "",
        subscriptions: Callable[[], Sequence[Subscription] | Awaitable[Sequence[Subscription]]]
        | None = None,
        concurrency: int | None = None,
        unknown_type_policy: UnknownTypePolicy = "warn",
    ) -> AgentType:
        """Register a closure agent type and its subscriptions (``DefaultSubscription()`` works
        inside ``subscriptions``)."""
        _checked_policy(unknown_type_policy)
        scope = defining_scope()  # the closure's message type may be a local class
        agent_type = await runtime.register_factory(
            type,
            lambda: cls(
                description, closure, unknown_type_policy=unknown_type_policy, localns=scope
            ),
            expected_class=cls,
            concurrency=concurrency,
        )
        subs: list[Subscription] = []
        if subscriptions is not None:
            subs.extend(await made_subscriptions([subscriptions], agent_type))
        if not skip_direct_message_subscription:
            subs.append(TypePrefixSubscription(f"{type}:", type))
        for sub in subs:
            await runtime.add_subscription(sub)
        return agent_type

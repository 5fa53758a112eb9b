"""Where code runs, as autogen-core's static context classes tell it: inside a handler
(``MessageHandlerContext``) or inside a subscription maker while an agent type is being
registered (``SubscriptionInstantiationContext``).

>>> MessageHandlerContext.agent_id()        # inside a handler
AgentId(type='clerk', key='default')
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .._exceptions import AgentNotBound
from ._context import handling_agent
from ._ids import AgentId, AgentType
from ._subscriptions import current_registering, registering

__all__ = ["MessageHandlerContext", "SubscriptionInstantiationContext"]


class MessageHandlerContext:
    """The id of the agent whose handler is running in this task."""

    def __init__(self) -> None:
        raise TypeError("MessageHandlerContext is not instantiable; use its classmethods")

    @classmethod
    @contextmanager
    def populate_context(cls, ctx: AgentId) -> Iterator[None]:
        token = handling_agent.set(ctx)
        try:
            yield
        finally:
            handling_agent.reset(token)

    @classmethod
    def agent_id(cls) -> AgentId:
        agent_id = handling_agent.get()
        if agent_id is None:
            raise AgentNotBound("MessageHandlerContext.agent_id() is only known inside a handler")
        return agent_id


class SubscriptionInstantiationContext:
    """The agent type being registered, inside its subscription makers."""

    def __init__(self) -> None:
        raise TypeError(
            "SubscriptionInstantiationContext is not instantiable; use its classmethods"
        )

    @classmethod
    @contextmanager
    def populate_context(cls, ctx: AgentType) -> Iterator[None]:
        with registering(ctx):
            yield

    @classmethod
    def agent_type(cls) -> AgentType:
        agent_type = current_registering()
        if agent_type is None:
            raise AgentNotBound(
                "SubscriptionInstantiationContext.agent_type() is only known while an agent "
                "type is being registered (in its subscription makers)"
            )
        return agent_type

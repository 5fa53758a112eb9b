"""The actor runtime: agents addressed by ``AgentId(type, key)``, created on their first
message, each handling one message at a time; ``send_message`` (request/reply) and
``publish_message`` (topics and subscriptions). It mirrors autogen-core's API.

>>> from axonbus.runtime import AgentRuntime, DefaultTopicId, RoutedAgent, handler
>>> from axonbus.runtime import MessageContext, default_subscription
>>> @default_subscription
... class Checker(RoutedAgent):
...     @handler
...     async def check(self, message: Number, ctx: MessageContext) -> None: ...
>>> async with AgentRuntime() as runtime:
...     await Checker.register(runtime, "checker", Checker)
...     await runtime.publish_message(Number(10), DefaultTopicId())
...     await runtime.stop_when_idle()
"""

from .._exceptions import (
    AgentError,
    AgentNotBound,
    AgentNotFound,
    CantHandle,
    DeadlockDetected,
    MessageDropped,
    RemoteError,
    RequestTimeout,
    RuntimeClosed,
    RuntimeNotStarted,
    Undeliverable,
)
from ._agent import Agent, AgentInstantiationContext, AgentMetadata, BaseAgent
from ._closure import ClosureAgent, ClosureContext
from ._context import CancellationToken, MessageContext
from ._handler_context import MessageHandlerContext, SubscriptionInstantiationContext
from ._ids import AgentId, AgentType, DefaultTopicId, TopicId
from ._interventions import DefaultInterventionHandler, DropMessage, InterventionHandler
from ._proxy import AgentProxy
from ._routed import RoutedAgent, event, handler, message_handler, rpc
from ._runtime import AgentRuntime
from ._serializers import (
    MessageSerializer,
    UnknownPayload,
    try_get_known_serializers_for_type,
)
from ._subscriptions import (
    DefaultSubscription,
    Subscription,
    TypePrefixSubscription,
    TypeSubscription,
    default_subscription,
    type_subscription,
)

__all__ = [
    "Agent",
    "AgentError",
    "AgentId",
    "AgentInstantiationContext",
    "AgentMetadata",
    "AgentNotBound",
    "AgentNotFound",
    "AgentProxy",
    "AgentRuntime",
    "AgentType",
    "BaseAgent",
    "CancellationToken",
    "CantHandle",
    "ClosureAgent",
    "ClosureContext",
    "DeadlockDetected",
    "DefaultInterventionHandler",
    "DefaultSubscription",
    "DefaultTopicId",
    "DropMessage",
    "InterventionHandler",
    "MessageContext",
    "MessageDropped",
    "MessageHandlerContext",
    "MessageSerializer",
    "RemoteError",
    "RequestTimeout",
    "RoutedAgent",
    "RuntimeClosed",
    "RuntimeNotStarted",
    "Subscription",
    "SubscriptionInstantiationContext",
    "TopicId",
    "TypePrefixSubscription",
    "TypeSubscription",
    "Undeliverable",
    "UnknownPayload",
    "default_subscription",
    "event",
    "handler",
    "message_handler",
    "rpc",
    "try_get_known_serializers_for_type",
    "type_subscription",
]

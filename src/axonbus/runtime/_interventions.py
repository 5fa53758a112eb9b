"""Interventions: middleware that sees every send, publish and reply, and may change or drop it.

>>> class Redact(InterventionHandler):
...     async def on_publish(self, message, *, message_context):
...         return DropMessage if isinstance(message, Secret) else message
>>> runtime = AgentRuntime(intervention_handlers=[Redact()])

They run in the caller's task, in list order: ``on_send`` and ``on_publish`` before the message
is queued (a dropped message is never queued, so ``stop_when_idle`` does not wait for it),
``on_response`` when the reply comes back. Dropping a send, or its reply, raises
:class:`MessageDropped` to the caller; dropping a publish is silent. An exception raised by an
intervention reaches the caller.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, final

from .._exceptions import MessageDropped

if TYPE_CHECKING:
    from ._context import MessageContext
    from ._ids import AgentId

__all__ = ["DefaultInterventionHandler", "DropMessage", "InterventionHandler"]


@final
class DropMessage:
    """Return this class (or an instance) from an intervention to drop the message."""


class InterventionHandler:
    """Base class: every hook returns the message unchanged. Override the ones you need and
    return the (possibly new) message, or ``DropMessage``."""

    async def on_send(
        self, message: Any, *, message_context: MessageContext, recipient: AgentId
    ) -> Any:
        return message

    async def on_publish(self, message: Any, *, message_context: MessageContext) -> Any:
        return message

    async def on_response(self, message: Any, *, sender: AgentId, recipient: AgentId | None) -> Any:
        return message


#: autogen-core's name for the pass-through base class
DefaultInterventionHandler = InterventionHandler


def _dropped(value: Any) -> bool:
    return value is DropMessage or isinstance(value, DropMessage)


def _checked(value: Any, original: Any, hook: str, handler: InterventionHandler) -> Any:
    if value is None and original is not None:
        warnings.warn(
            f"{type(handler).__name__}.{hook} returned None; treated as 'no change'. "
            "Return the message, or DropMessage to drop it.",
            RuntimeWarning,
            stacklevel=4,
        )
        return original
    return value


async def intervene_send(
    handlers: Sequence[InterventionHandler], message: Any, ctx: MessageContext, recipient: AgentId
) -> Any:
    """The message after every ``on_send``; raises :class:`MessageDropped` on a drop."""
    for h in handlers:
        out = await h.on_send(message, message_context=ctx, recipient=recipient)
        out = _checked(out, message, "on_send", h)
        if _dropped(out):
            raise MessageDropped(f"{type(h).__name__} dropped the message to {recipient}")
        message = out
    return message


async def intervene_publish(
    handlers: Sequence[InterventionHandler], message: Any, ctx: MessageContext
) -> Any:
    """The message after every ``on_publish``, or ``DropMessage``."""
    for h in handlers:
        out = await h.on_publish(message, message_context=ctx)
        out = _checked(out, message, "on_publish", h)
        if _dropped(out):
            return DropMessage
        message = out
    return message


async def intervene_response(
    handlers: Sequence[InterventionHandler],
    reply: Any,
    sender: AgentId,
    recipient: AgentId | None,
) -> Any:
    """The reply after every ``on_response``; raises :class:`MessageDropped` on a drop.

    ``sender`` is the agent that replied, ``recipient`` the one the reply goes to (None when
    the send came from outside any agent), as in autogen-core.
    """
    for h in handlers:
        out = await h.on_response(reply, sender=sender, recipient=recipient)
        out = _checked(out, reply, "on_response", h)
        if _dropped(out):
            raise MessageDropped(f"{type(h).__name__} dropped the reply of {sender}")
        reply = out
    return reply

"""What a handler is told about a message: ``MessageContext``; and ``CancellationToken``.

``handling_agent`` is the id of the agent whose handler is running in the current task (each
agent's worker task sets it once), for ``DefaultTopicId()`` and for telling a nested
``send_message`` who is waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .._events import new_event_id

if TYPE_CHECKING:
    from ._ids import AgentId, TopicId

__all__ = ["CancellationToken", "MessageContext", "handling_agent"]

handling_agent: ContextVar[AgentId | None] = ContextVar("axonbus_handling_agent", default=None)


class CancellationToken:
    """Cancels what it is linked to: pass it to ``send_message`` and ``cancel()`` cancels the
    recipient's handler task (the handler sees ``CancelledError``) and the caller's wait.

    >>> token = CancellationToken()
    >>> call = asyncio.create_task(runtime.send_message(Job(), worker, cancellation_token=token))
    >>> token.cancel()          # the handler is cancelled; ``await call`` raises CancelledError

    Handlers read it as ``ctx.cancellation_token`` and may pass it on to their own sends. Use it
    from the event loop's thread (from another thread: ``loop.call_soon_threadsafe(token.cancel)``).
    """

    __slots__ = ("_callbacks", "_cancelled")

    def __init__(self) -> None:
        self._cancelled = False
        self._callbacks: dict[object, Callable[[], None]] | None = None

    def cancel(self) -> None:
        """Cancel once; later calls do nothing. Runs the linked callbacks in link order."""
        if self._cancelled:
            return
        self._cancelled = True
        callbacks, self._callbacks = self._callbacks, None
        if callbacks:
            for callback in callbacks.values():
                callback()

    def is_cancelled(self) -> bool:
        return self._cancelled

    def add_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on cancel (at once if already cancelled)."""
        self._link(object(), callback)

    def link_future(self, future: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """Cancel ``future`` on cancel (at once if already cancelled); returns it."""
        self._link(object(), future.cancel)
        return future

    def _link(self, key: object, callback: Callable[[], Any]) -> None:
        if self._cancelled:
            callback()
            return
        if self._callbacks is None:
            self._callbacks = {}
        self._callbacks[key] = callback

    def _unlink(self, key: object) -> None:
        # a token reused for many sends must not keep every finished one alive
        if self._callbacks is not None:
            self._callbacks.pop(key, None)

    def __repr__(self) -> str:
        return f"<CancellationToken {'cancelled' if self._cancelled else 'active'}>"


class MessageContext:
    """What a handler learns about the message it handles.

    - ``sender``: the sending agent's id, or None when sent from outside any agent.
    - ``topic_id``: the topic of a publish; None for ``send_message``.
    - ``is_rpc``: True for ``send_message`` (the return value is the reply).
    - ``cancellation_token``: the caller's token (a fresh one when the caller gave none).
    - ``message_id``: unique per send or publish (shared by every recipient of a publish).
    """

    __slots__ = ("_message_id", "_token", "is_rpc", "sender", "topic_id")

    def __init__(
        self,
        sender: AgentId | None = None,
        topic_id: TopicId | None = None,
        is_rpc: bool = False,
        cancellation_token: CancellationToken | None = None,
        message_id: str | None = None,
    ) -> None:
        self.sender = sender
        self.topic_id = topic_id
        self.is_rpc = is_rpc
        # both made on first read: most handlers never look at them
        self._token = cancellation_token
        self._message_id = message_id

    @property
    def cancellation_token(self) -> CancellationToken:
        if self._token is None:
            self._token = CancellationToken()
        return self._token

    @cancellation_token.setter
    def cancellation_token(self, token: CancellationToken) -> None:
        self._token = token

    @property
    def message_id(self) -> str:
        if self._message_id is None:
            self._message_id = new_event_id()
        return self._message_id

    @message_id.setter
    def message_id(self, message_id: str) -> None:
        self._message_id = message_id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MessageContext):
            return NotImplemented
        return (
            self.sender == other.sender
            and self.topic_id == other.topic_id
            and self.is_rpc == other.is_rpc
            and self.message_id == other.message_id
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like autogen's dataclass

    def __repr__(self) -> str:
        return (
            f"MessageContext(sender={self.sender!r}, topic_id={self.topic_id!r}, "
            f"is_rpc={self.is_rpc!r}, message_id={self.message_id!r})"
        )

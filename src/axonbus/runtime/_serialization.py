"""Messages, contexts and errors as JSON-native data: what crosses processes (part 2).

Nothing here runs on the in-process path; a runtime on ``memory://`` passes objects as they are.

- A message is ``{"type": name, "data": …}``: ``name`` is a registered class (pydantic model,
  dataclass, or any type pydantic can validate) or ``"json"`` for str / int / float / bool /
  None / list / dict. ``Agent.register`` registers the types the class has handlers for.
- A context is a dict of strings (``AgentId`` / ``TopicId`` as ``"type/key"``); the receiver
  gives it a fresh ``CancellationToken`` (cancellation travels as its own message).
- An error is ``{"type": …, "message": …}``; runtime errors come back as themselves, anything
  else as :class:`RemoteError` with the type name and message kept.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from .._exceptions import (
    AgentNotFound,
    CantHandle,
    DeadlockDetected,
    MessageDropped,
    RemoteError,
    Undeliverable,
)
from ._context import CancellationToken, MessageContext
from ._ids import AgentId, TopicId

__all__ = [
    "MessageTypes",
    "context_from_data",
    "context_to_data",
    "error_from_data",
    "error_to_data",
]

_JSON_NATIVE = (str, int, float, bool, type(None), list, dict)


class MessageTypes:
    """Registered message classes by name, and their JSON form.

    >>> types = MessageTypes()
    >>> types.register(Order)
    >>> types.load(types.dump(Order(id=1))) == Order(id=1)
    True
    """

    def __init__(self) -> None:
        self._by_name: dict[str, type] = {}
        self._names: dict[type, str] = {}
        self._adapters: dict[type, TypeAdapter[Any]] = {}

    @staticmethod
    def name_of(cls: type) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    def register(self, cls: type) -> None:
        if cls in self._names or cls in _JSON_NATIVE or cls is object:
            return
        name = self.name_of(cls)
        other = self._by_name.get(name)
        if other is not None and other is not cls:
            raise ValueError(f"two message classes are named {name!r}")
        self._by_name[name] = cls
        self._names[cls] = name

    def __contains__(self, cls: type) -> bool:
        return cls in self._names

    def _adapter(self, cls: type) -> TypeAdapter[Any]:
        adapter = self._adapters.get(cls)
        if adapter is None:
            adapter = self._adapters[cls] = TypeAdapter(cls)
        return adapter

    def dump(self, message: Any) -> dict[str, Any]:
        cls = type(message)
        if cls in _JSON_NATIVE:
            return {"type": "json", "data": message}
        name = self._names.get(cls)
        if name is None:
            raise TypeError(
                f"{cls.__qualname__} is not a registered message type: register an agent that "
                "handles it, or call register() (pydantic models, dataclasses, JSON values)"
            )
        return {"type": name, "data": self._adapter(cls).dump_python(message, mode="json")}

    def load(self, data: dict[str, Any]) -> Any:
        name = data["type"]
        if name == "json":
            return data["data"]
        cls = self._by_name.get(name)
        if cls is None:
            raise TypeError(f"unknown message type {name!r}")
        return self._adapter(cls).validate_python(data["data"])


def context_to_data(ctx: MessageContext) -> dict[str, Any]:
    return {
        "sender": None if ctx.sender is None else str(ctx.sender),
        "topic_id": None if ctx.topic_id is None else str(ctx.topic_id),
        "is_rpc": ctx.is_rpc,
        "message_id": ctx.message_id,
    }


def context_from_data(
    data: dict[str, Any], token: CancellationToken | None = None
) -> MessageContext:
    sender, topic = data.get("sender"), data.get("topic_id")
    return MessageContext(
        sender=None if sender is None else AgentId.from_str(sender),
        topic_id=None if topic is None else TopicId.from_str(topic),
        is_rpc=bool(data["is_rpc"]),
        cancellation_token=token,
        message_id=data["message_id"],
    )


_KEPT: dict[str, type[Exception]] = {
    cls.__name__: cls for cls in (CantHandle, MessageDropped, Undeliverable, DeadlockDetected)
}


def error_to_data(exc: BaseException) -> dict[str, str]:
    """The error a remote caller should see: a RemoteError keeps the original type name."""
    if isinstance(exc, RemoteError):
        return {"type": exc.remote_type, "message": exc.remote_message}
    if isinstance(exc, AgentNotFound):
        return {"type": "AgentNotFound", "message": exc.agent_id}
    return {"type": type(exc).__name__, "message": str(exc)}


def error_from_data(data: dict[str, str], recipient: AgentId) -> Exception:
    kind, message = data["type"], data["message"]
    if kind == "AgentNotFound":
        return AgentNotFound(message)
    kept = _KEPT.get(kind)
    if kept is not None:
        return kept(message)
    return RemoteError(kind, message, topic=str(recipient))

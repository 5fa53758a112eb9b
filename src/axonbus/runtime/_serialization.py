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

import base64
from collections.abc import Sequence
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
from ._serializers import JSON_DATA_CONTENT_TYPE, MessageSerializer, SerializationRegistry

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
        #: serializers added with ``runtime.add_message_serializer``, which take precedence
        self.serializers = SerializationRegistry()
        self._serializer_of: dict[type, MessageSerializer[Any]] = {}

    @staticmethod
    def name_of(cls: type) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    def register(self, cls: type, name: str | None = None) -> None:
        """Know ``cls`` by ``name`` (default: its module path and qualified name). Give a class
        defined in a script's ``__main__`` the same explicit name in every process."""
        if cls in _JSON_NATIVE or cls is object:
            return
        if cls in self._names and (name is None or self._names[cls] == name):
            return
        name = name or self.name_of(cls)
        other = self._by_name.get(name)
        if other is not None and other is not cls:
            raise ValueError(f"two message classes are named {name!r}")
        old = self._names.get(cls)
        if old is not None:
            del self._by_name[old]
        self._by_name[name] = cls
        self._names[cls] = name

    def add_serializer(
        self, serializer: MessageSerializer[Any] | Sequence[MessageSerializer[Any]]
    ) -> None:
        """Use ``serializer`` for its class: it travels as ``serializer.type_name`` (the class
        name for the built-in ones), so processes agree without sharing a module path."""
        serializers = serializer if isinstance(serializer, Sequence) else [serializer]
        self.serializers.add_serializer(serializers)
        for one in serializers:
            cls = getattr(one, "cls", None)  # the built-in ones know their class
            if isinstance(cls, type):
                self._serializer_of[cls] = one

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
        serializer = self._serializer_of.get(cls)
        if serializer is not None:
            payload = serializer.serialize(message)
            content_type = serializer.data_content_type
            text = payload.decode() if content_type == JSON_DATA_CONTENT_TYPE else b64(payload)
            return {"type": serializer.type_name, "ct": content_type, "data": text}
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
        content_type = data.get("ct")
        if content_type is not None:
            serializer = self.serializers.get(name, content_type)
            if serializer is None:
                raise TypeError(
                    f"unknown message type {name!r} ({content_type}): add its serializer here "
                    "too, runtime.add_message_serializer(try_get_known_serializers_for_type(cls))"
                )
            text = data["data"]
            raw = text.encode() if content_type == JSON_DATA_CONTENT_TYPE else unb64(text)
            return serializer.deserialize(raw)
        cls = self._by_name.get(name)
        if cls is None:
            raise TypeError(self._unknown(name))
        return self._adapter(cls).validate_python(data["data"])

    def _unknown(self, name: str) -> str:
        short = name.rpartition(".")[2]
        fix = (
            f"give the class one name in every process, runtime.message_types.register({short}, "
            f"name={short!r}), or define it in a module every process imports"
        )
        if name.startswith("__main__."):
            return (
                f"unknown message type {name!r}: it was defined in the sending process's "
                f"__main__ (a script), a module path no other process has; {fix}"
            )
        namesakes = [n for n in self._by_name if n.rpartition(".")[2] == short]
        if namesakes:
            return (
                f"unknown message type {name!r}: this process knows {short} as "
                f"{', '.join(map(repr, namesakes))} (a class defined in a script's __main__ is "
                f"named after __main__ there); {fix}"
            )
        return (
            f"unknown message type {name!r}: no agent here handles it; register it with "
            "runtime.message_types.register(cls) (same class, same module path in every process)"
        )


def b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


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

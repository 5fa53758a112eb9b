"""Message serializers, as in autogen-core: each turns one class into bytes and back under a
``type_name`` and a ``data_content_type``; a :class:`SerializationRegistry` holds them.

>>> runtime.add_message_serializer(try_get_known_serializers_for_type(Order))
>>> [s] = try_get_known_serializers_for_type(Order)
>>> s.deserialize(s.serialize(Order(id=1))) == Order(id=1)
True

Built in: JSON for pydantic models and dataclasses, Protobuf (a packed ``google.protobuf.Any``,
the bytes autogen-core uses) when ``protobuf`` is installed. A runtime that has a serializer for
a class sends it across processes under the serializer's ``type_name`` (see ``MessageTypes``).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar, Union, get_args, get_origin

import orjson
from pydantic import BaseModel, TypeAdapter

try:  # Protobuf messages are optional
    from google.protobuf import any_pb2
    from google.protobuf.message import Message as ProtobufMessage
except ImportError:  # pragma: no cover - protobuf is in the dev extra
    any_pb2 = None
    ProtobufMessage = None

__all__ = [
    "JSON_DATA_CONTENT_TYPE",
    "PROTOBUF_DATA_CONTENT_TYPE",
    "DataclassJsonMessageSerializer",
    "MessageSerializer",
    "ProtobufMessageSerializer",
    "PydanticJsonMessageSerializer",
    "SerializationRegistry",
    "UnknownPayload",
    "has_nested_base_model",
    "try_get_known_serializers_for_type",
]

T = TypeVar("T")

JSON_DATA_CONTENT_TYPE = "application/json"
PROTOBUF_DATA_CONTENT_TYPE = "application/x-protobuf"


class MessageSerializer(Protocol[T]):
    """Turns messages of one class into bytes and back."""

    @property
    def data_content_type(self) -> str: ...

    @property
    def type_name(self) -> str: ...

    def deserialize(self, payload: bytes) -> T: ...

    def serialize(self, message: T) -> bytes: ...


@dataclasses.dataclass
class UnknownPayload:
    """What :meth:`SerializationRegistry.deserialize` gives for a type it has no serializer for."""

    type_name: str
    data_content_type: str
    payload: bytes


def type_name_of(cls: type[Any]) -> str:
    """The name a serializer registers ``cls`` under: a Protobuf message's full name, else the
    class name (autogen-core's convention, so both sides agree on it)."""
    if ProtobufMessage is not None and issubclass(cls, ProtobufMessage):
        return str(cls.DESCRIPTOR.full_name)
    return cls.__name__


def _mentions(annotation: Any, wanted: type) -> bool:
    """Whether ``annotation`` is, or has among its arguments at any depth, a ``wanted``."""
    if isinstance(annotation, type) and issubclass(annotation, wanted):
        return True
    return any(_mentions(arg, wanted) for arg in get_args(annotation))


def has_nested_base_model(cls: type[Any]) -> bool:
    """Whether a field of dataclass ``cls`` holds a pydantic model (also inside ``list[...]``,
    unions, and so on)."""
    return any(_mentions(f.type, BaseModel) for f in dataclasses.fields(cls))


def _flat(cls: type[Any]) -> bool:
    """A dataclass whose fields ``cls(**json)`` restores: no models, dataclasses or unions."""
    if has_nested_base_model(cls):
        return False
    for f in dataclasses.fields(cls):
        if isinstance(f.type, str):
            return False
        if get_origin(f.type) in (Union, types.UnionType):
            return False
        if dataclasses.is_dataclass(f.type) or any(
            dataclasses.is_dataclass(a) for a in get_args(f.type)
        ):
            return False
    return True


class _Serializer(Generic[T]):
    data_content_type = JSON_DATA_CONTENT_TYPE

    def __init__(self, cls: type[T]) -> None:
        self.cls = cls

    @property
    def type_name(self) -> str:
        return type_name_of(self.cls)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type_name!r} {self.data_content_type}>"


class PydanticJsonMessageSerializer(_Serializer[T]):
    """A pydantic model as its JSON."""

    def deserialize(self, payload: bytes) -> T:
        return self.cls.model_validate_json(payload)  # type: ignore[attr-defined,no-any-return]

    def serialize(self, message: T) -> bytes:
        return message.model_dump_json().encode()  # type: ignore[attr-defined,no-any-return]


class DataclassJsonMessageSerializer(_Serializer[T]):
    """A dataclass as the JSON object of its fields. Nested dataclasses, pydantic models and
    unions are validated by pydantic (autogen-core refuses them); flat ones take a fast path."""

    def __init__(self, cls: type[T]) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        super().__init__(cls)
        self._adapter: TypeAdapter[T] | None = None if _flat(cls) else TypeAdapter(cls)

    def deserialize(self, payload: bytes) -> T:
        if self._adapter is not None:
            return self._adapter.validate_json(payload)
        return self.cls(**orjson.loads(payload))

    def serialize(self, message: T) -> bytes:
        if self._adapter is not None:
            return self._adapter.dump_json(message)
        return orjson.dumps(message)


class ProtobufMessageSerializer(_Serializer[T]):
    """A Protobuf message packed in a ``google.protobuf.Any``."""

    data_content_type = PROTOBUF_DATA_CONTENT_TYPE

    def __init__(self, cls: type[T]) -> None:
        if ProtobufMessage is None:
            raise ImportError("Protobuf messages need the protobuf package: pip install protobuf")
        super().__init__(cls)

    def deserialize(self, payload: bytes) -> T:
        packed = any_pb2.Any()
        packed.ParseFromString(payload)
        message = self.cls()
        if not packed.Unpack(message):
            raise ValueError(f"the payload is a {packed.TypeName()!r}, not a {self.type_name!r}")
        return message

    def serialize(self, message: T) -> bytes:
        packed = any_pb2.Any()
        packed.Pack(message)
        return bytes(packed.SerializeToString())


def try_get_known_serializers_for_type(cls: type[Any]) -> list[MessageSerializer[Any]]:
    """The built-in serializers for ``cls`` (none for a class they do not cover)."""
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return [PydanticJsonMessageSerializer(cls)]
    if dataclasses.is_dataclass(cls) and isinstance(cls, type):
        return [DataclassJsonMessageSerializer(cls)]
    if ProtobufMessage is not None and isinstance(cls, type) and issubclass(cls, ProtobufMessage):
        return [ProtobufMessageSerializer(cls)]
    return []


class SerializationRegistry:
    """Serializers by ``(type_name, data_content_type)``."""

    def __init__(self) -> None:
        self._serializers: dict[tuple[str, str], MessageSerializer[Any]] = {}

    def add_serializer(
        self, serializer: MessageSerializer[Any] | Sequence[MessageSerializer[Any]]
    ) -> None:
        if isinstance(serializer, Sequence):
            for one in serializer:
                self.add_serializer(one)
            return
        self._serializers[(serializer.type_name, serializer.data_content_type)] = serializer

    def get(self, type_name: str, data_content_type: str) -> MessageSerializer[Any] | None:
        return self._serializers.get((type_name, data_content_type))

    def is_registered(self, type_name: str, data_content_type: str) -> bool:
        return (type_name, data_content_type) in self._serializers

    def deserialize(self, payload: bytes, *, type_name: str, data_content_type: str) -> Any:
        """The message, or an :class:`UnknownPayload` when no serializer has that name."""
        serializer = self.get(type_name, data_content_type)
        if serializer is None:
            return UnknownPayload(type_name, data_content_type, payload)
        return serializer.deserialize(payload)

    def serialize(self, message: Any, *, type_name: str, data_content_type: str) -> bytes:
        serializer = self.get(type_name, data_content_type)
        if serializer is None:
            raise ValueError(f"no serializer for {type_name!r} as {data_content_type}")
        return serializer.serialize(message)

    def type_name(self, message: Any) -> str:
        return type_name_of(type(message))

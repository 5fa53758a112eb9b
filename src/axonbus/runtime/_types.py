"""What a handler's annotations name: ``get_types`` and the ``AnyType`` marker.

>>> get_types(int | str)
(<class 'int'>, <class 'str'>)
>>> get_types(Any)
(<class 'axonbus.runtime._types.AnyType'>,)
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any, Union, get_args, get_origin

__all__ = ["AnyType", "get_types"]


class AnyType:
    """Stands for ``typing.Any`` in a handler's ``target_types`` / ``produces_types`` (``Any``
    is not a class; autogen-core uses the same marker)."""


def get_types(annotation: object) -> Sequence[type[Any]] | None:
    """The classes an annotation names: a union's members, ``(AnyType,)`` for ``Any``,
    ``(NoneType,)`` for ``None``, ``(cls,)`` for a class; None for anything else."""
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    if annotation is Any:
        return (AnyType,)
    if annotation is None or annotation is types.NoneType:
        return (types.NoneType,)
    if isinstance(annotation, type):
        return (annotation,)
    return None

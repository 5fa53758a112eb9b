"""Pydantic's validation errors, said in the words of a configuration file: the dotted key
(``channels[1].token``), what is wrong, and the form expected there (the field's description).
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from ._redact import redact_url

__all__ = ["ConfigProblem", "problems_from"]


class ConfigProblem(NamedTuple):
    """One wrong value: where (dotted key), what is wrong, the expected form."""

    key: str
    problem: str
    expected: str


def problems_from(exc: ValidationError, root: type[BaseModel]) -> list[ConfigProblem]:
    """One :class:`ConfigProblem` per error of ``exc`` (raised validating ``root``)."""
    problems = [_problem(error, root) for error in exc.errors(include_url=False)]
    return list(dict.fromkeys(problems))  # a union can report one mistake twice


class _Place(NamedTuple):
    key: str
    field: FieldInfo | None  # the field the last key part names (or the list holding it)
    parent: type[BaseModel] | None  # the model the last key part is looked up in
    union: dict[str, type[BaseModel]] | None  # tag -> model, when the place is a tagged union


def _problem(error: Any, root: type[BaseModel]) -> ConfigProblem:
    place = _locate(error["loc"], root)
    kind: str = error["type"]
    given = error.get("input")
    ctx = error.get("ctx") or {}
    expected = (place.field.description or "") if place.field is not None else ""
    secret = place.field is not None and _is_secret(place.field)
    if kind == "missing":
        return ConfigProblem(place.key, "required key missing", expected)
    if kind == "extra_forbidden":
        known = ", ".join(place.parent.model_fields) if place.parent is not None else ""
        return ConfigProblem(place.key, "unknown key", f"one of: {known}" if known else "")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = f"{place.key}.type"
        tags = ", ".join(repr(t) for t in (place.union or {})) or str(ctx.get("expected_tags"))
        if kind == "union_tag_not_found":
            return ConfigProblem(key, "required key missing", f"one of {tags}")
        return ConfigProblem(key, f"unknown type {ctx.get('tag')!r}", f"one of {tags}")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return ConfigProblem(place.key, f"got {_shown(given, secret)}", expected or "a table")
    if kind == "literal_error":
        return ConfigProblem(place.key, f"got {_shown(given, secret)}", expected)
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = message[:1].lower() + message[1:]
    return ConfigProblem(place.key, f"{message}, got {_shown(given, secret)}", expected)


def _locate(loc: tuple[Any, ...], root: type[BaseModel]) -> _Place:
    key = ""
    model: type[BaseModel] | None = root
    parent: type[BaseModel] | None = None
    field: FieldInfo | None = None
    current: Any = None  # the type at this place
    for item in loc:
        union = _tagged_union(current)
        if isinstance(item, int):
            key += f"[{item}]"
            current = _item_type(current)
            model = _model_of(current)
            continue
        if union is not None and item in union:
            model = union[item]  # the tag pydantic adds to the location: not a key
            current = model
            continue
        name = str(item)
        key = f"{key}.{name}" if key else name
        parent = model
        if model is not None and name in model.model_fields:
            field = model.model_fields[name]
            current = field.annotation
            model = _model_of(current)
        else:
            field, current, model = None, None, None
    return _Place(key, field, parent, _tagged_union(current))


def _strip(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and without ``| None``."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
            continue
        if _is_union(tp):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _item_type(tp: Any) -> Any:
    tp = _strip(tp)
    if get_origin(tp) in (list, tuple, set, frozenset):
        args = get_args(tp)
        return args[0] if args else None
    if get_origin(tp) is dict:
        args = get_args(tp)
        return args[1] if len(args) == 2 else None
    return None


def _model_of(tp: Any) -> type[BaseModel] | None:
    tp = _strip(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _tagged_union(tp: Any) -> dict[str, type[BaseModel]] | None:
    """``{tag: model}`` when ``tp`` is a union of models told apart by a ``type`` literal."""
    tp = _strip(tp)
    if not _is_union(tp):
        return None
    tags: dict[str, type[BaseModel]] = {}
    for member in get_args(tp):
        if not (isinstance(member, type) and issubclass(member, BaseModel)):
            return None
        tag_field = member.model_fields.get("type")
        if tag_field is None or get_origin(tag_field.annotation) is not Literal:
            return None
        for tag in get_args(tag_field.annotation):
            tags[str(tag)] = member
    return tags


def _is_secret(field: FieldInfo) -> bool:
    return _strip(field.annotation) is SecretStr


_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}


def _shown(value: Any, secret: bool = False) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if secret:
        return _KINDS.get(type(value), "a value")  # never the value itself
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and "://" in value:
        value = redact_url(value)  # a URL may carry a password interpolated from ${VAR}
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

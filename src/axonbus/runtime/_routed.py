"""``RoutedAgent``: typed handlers chosen by the message's type.

``@handler`` (alias ``@message_handler``) takes sends and publishes, ``@event`` only publishes,
``@rpc`` only sends. The message type is the annotation of the first parameter after ``self``
(a union handles each member; ``Any``/``object`` handles everything); parameter names are free
and ``ctx`` is optional::

    class Clerk(RoutedAgent):
        @rpc
        async def price(self, order: Order) -> float: ...

        @event
        async def audit(self, event: OrderEvent, ctx: MessageContext) -> None: ...

Routing walks the message type's MRO, so a handler for a base class receives subclasses and
the most specific applicable handler wins. Among handlers for the same type, the first (in
method-name order, as autogen) whose ``match(message, ctx)`` predicate holds is called.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, overload

from .._exceptions import InvalidHandler
from ._agent import Agent
from ._context import MessageContext
from ._types import AnyType, get_types

__all__ = ["Handler", "RoutedAgent", "event", "handler", "message_handler", "rpc"]

F = TypeVar("F", bound=Callable[..., Any])
Kind = Literal["any", "event", "rpc"]
Match = Callable[[Any, MessageContext], bool]


class Handler:
    """A decorated method: what it accepts, for which kind of delivery, how to call it.

    The method itself also gets ``target_types`` and ``produces_types`` (as in autogen-core).
    """

    __slots__ = ("func", "kind", "localns", "match", "name", "pass_ctx", "types")

    def __init__(
        self,
        func: Callable[..., Any],
        kind: Kind,
        match: Match | None,
        localns: dict[str, Any] | None = None,
    ) -> None:
        if not callable(func):
            raise InvalidHandler(f"@{kind}: {func!r} is not callable")
        if not inspect.iscoroutinefunction(func):
            raise InvalidHandler(f"handler {func.__qualname__} must be an 'async def' method")
        params = [
            p
            for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(params) not in (2, 3):
            raise InvalidHandler(
                f"handler {func.__qualname__} must take (self, message) or (self, message, ctx)"
            )
        self.func = func
        self.kind = kind
        self.match = match
        self.name = func.__name__
        self.pass_ctx = len(params) == 3
        self.localns = localns
        self.types: tuple[type, ...] | None = None  # resolved when the class is first used

    def resolve(self) -> tuple[type, ...]:
        """The message types, from the first parameter's annotation (resolved lazily so it may
        name classes defined after the agent)."""
        if self.types is None:
            self.types = _message_types(self.func, self.localns)
            if not getattr(self.func, "target_types", None):  # not described when decorated
                self.describe()
            self.localns = None
        return self.types

    def describe(self) -> None:
        """Give the method autogen-core's ``target_types`` (the message classes) and
        ``produces_types`` (the return annotation's classes; ``AnyType`` for ``Any`` or none).
        Raises while an annotation names a class not defined yet (``resolve`` does it later)."""
        hints = typing.get_type_hints(self.func, localns=self.localns)
        first = list(inspect.signature(self.func).parameters)[1]
        target = get_types(hints[first]) if first in hints else None
        produces = get_types(hints["return"]) if "return" in hints else (AnyType,)
        func: Any = self.func
        func.target_types = list(target) if target is not None else list(self.types or ())
        func.produces_types = list(produces) if produces is not None else [AnyType]

    def __repr__(self) -> str:
        return f"<Handler {self.func.__qualname__} {self.kind}>"


_PACKAGE = __name__.rpartition(".")[0] + "."


def defining_scope() -> dict[str, Any] | None:
    """The local names where a decorator was applied (the class body and the function around
    it), so annotations naming local classes resolve later; None at module level."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(_PACKAGE):
        frame = frame.f_back
    if frame.f_locals is frame.f_globals:
        return None
    scope: dict[str, Any] = {}
    outer = frame.f_back
    if outer is not None and outer.f_locals is not outer.f_globals:
        scope.update(outer.f_locals)
    scope.update(frame.f_locals)
    return scope


def _message_types(
    func: Callable[..., Any], localns: dict[str, Any] | None = None
) -> tuple[type, ...]:
    first = list(inspect.signature(func).parameters)[1]
    try:
        hints = typing.get_type_hints(func, localns=localns)
    except Exception as exc:
        raise InvalidHandler(
            f"cannot resolve the annotations of handler {func.__qualname__}: {exc}"
        ) from exc
    if first not in hints:
        raise InvalidHandler(
            f"handler {func.__qualname__}: annotate parameter {first!r} with the message type"
        )
    found: list[type] = []
    for t in _flatten(hints[first]):
        if t is Any:
            found.append(object)
        elif isinstance(t, type):
            found.append(t)
        elif isinstance(get_origin(t), type):  # list[int] -> list
            found.append(get_origin(t))
        else:
            raise InvalidHandler(f"handler {func.__qualname__}: cannot route on {t!r}")
    return tuple(found)


def _flatten(annotation: Any) -> list[Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        return [t for arg in get_args(annotation) for t in _flatten(arg)]
    if annotation is None or annotation is type(None):
        return [type(None)]
    return [annotation]


def _decorator(
    kind: Kind, func: F | None, match: Match | None, strict: bool
) -> F | Callable[[F], F]:
    def decorate(f: F) -> F:
        handler = Handler(f, kind, match, defining_scope())
        f.__axonbus_handler__ = handler  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):  # a forward reference: described on first use
            handler.describe()
        return f

    return decorate if func is None else decorate(func)


@overload
def handler(func: F, /) -> F: ...
@overload
def handler(*, match: Match | None = None, strict: bool = True) -> Callable[[F], F]: ...


def handler(
    func: F | None = None, /, *, match: Match | None = None, strict: bool = True
) -> F | Callable[[F], F]:
    """Handle this message type whether it was sent (``send_message``) or published.

    >>> @handler
    ... async def on_order(self, order: Order, ctx: MessageContext) -> Receipt: ...
    >>> @handler(match=lambda msg, ctx: msg.priority == "high")
    ... async def on_urgent(self, order: Order) -> Receipt: ...

    ``strict`` is accepted for autogen compatibility; return types are not checked.
    """
    return _decorator("any", func, match, strict)


message_handler = handler


@overload
def event(func: F, /) -> F: ...
@overload
def event(*, match: Match | None = None, strict: bool = True) -> Callable[[F], F]: ...


def event(
    func: F | None = None, /, *, match: Match | None = None, strict: bool = True
) -> F | Callable[[F], F]:
    """Handle this message type only when published (the return value is ignored)."""
    return _decorator("event", func, match, strict)


@overload
def rpc(func: F, /) -> F: ...
@overload
def rpc(*, match: Match | None = None, strict: bool = True) -> Callable[[F], F]: ...


def rpc(
    func: F | None = None, /, *, match: Match | None = None, strict: bool = True
) -> F | Callable[[F], F]:
    """Handle this message type only from ``send_message``; the return value is the reply."""
    return _decorator("rpc", func, match, strict)


class _Routes:
    """One class's handlers, and per message type the candidates for sends and for publishes."""

    __slots__ = ("by_type", "cache")

    def __init__(self, handlers: list[Handler]) -> None:
        self.by_type: dict[type, list[Handler]] = {}
        for h in handlers:
            for t in h.resolve():
                self.by_type.setdefault(t, []).append(h)
        # message type -> (handlers for publishes, handlers for sends), most specific first
        self.cache: dict[type, tuple[tuple[Handler, ...], tuple[Handler, ...]]] = {}

    def candidates(self, message_type: type) -> tuple[tuple[Handler, ...], tuple[Handler, ...]]:
        found = self.cache.get(message_type)
        if found is None:
            ordered = [h for t in message_type.__mro__ for h in self.by_type.get(t, ())]
            found = (
                tuple(h for h in ordered if h.kind != "rpc"),
                tuple(h for h in ordered if h.kind != "event"),
            )
            self.cache[message_type] = found
        return found


class RoutedAgent(Agent):
    """An agent whose decorated methods handle messages by type (see the module docstring).

    >>> @default_subscription
    ... class Checker(RoutedAgent):
    ...     @handler
    ...     async def check(self, message: Number, ctx: MessageContext) -> None: ...
    """

    _routes: ClassVar[_Routes | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for reserved in ("on_message", "on_message_impl"):
            if isinstance(
                getattr(cls.__dict__.get(reserved), "__axonbus_handler__", None), Handler
            ):
                raise TypeError(
                    f"{cls.__qualname__}.{reserved} is decorated as a message handler, but that "
                    "name is the agent's routing entry point: name the handler something else"
                )
        cls._routes = None  # built on first use, when forward references resolve
        if "on_message_impl" in cls.__dict__ and "on_message" not in cls.__dict__:
            # an autogen-style override of on_message_impl must still be what runs
            cls.on_message = Agent.on_message  # type: ignore[method-assign]

    @classmethod
    def _discover_handlers(cls) -> list[Handler]:
        found = []
        for name in sorted(dir(cls)):
            h = getattr(getattr(cls, name, None), "__axonbus_handler__", None)
            if isinstance(h, Handler):
                found.append(h)
        return found

    @classmethod
    def _handler_routes(cls) -> _Routes:
        routes = cls.__dict__.get("_routes")
        if routes is None:
            routes = _Routes(cls._discover_handlers())
            cls._routes = routes
        return routes

    @classmethod
    def _handled_types(cls) -> tuple[type, ...]:
        return tuple(cls._handler_routes().by_type)

    def __init__(self, description: str = "") -> None:
        super().__init__(description)
        type(self)._handler_routes()  # a wrong annotation fails here, not on the first message

    async def on_message(self, message: Any, ctx: MessageContext) -> Any:
        routes = type(self)._routes or type(self)._handler_routes()
        found = routes.cache.get(type(message)) or routes.candidates(type(message))
        for h in found[ctx.is_rpc]:
            if h.match is None or h.match(message, ctx):
                if h.pass_ctx:
                    return await h.func(self, message, ctx)
                return await h.func(self, message)
        return await self.on_unhandled_message(message, ctx)

    async def on_message_impl(self, message: Any, ctx: MessageContext) -> Any:
        return await RoutedAgent.on_message(self, message, ctx)

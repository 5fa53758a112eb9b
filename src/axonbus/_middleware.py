"""Middleware: a hook before publish, and a wrapper around every handler call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._events import Context, Envelope

__all__ = ["Middleware", "build_handle_chain", "build_publish_chain"]

HandleNext = Callable[[Any, Context], Awaitable[Any]]
PublishHook = Callable[[Envelope], "Envelope | None"]


class Middleware:
    """Subclass and override either method; the bus calls only the ones you override.

    ``on_publish`` runs synchronously in the publisher, before the event is routed, so it also
    runs for ``publish_nowait``: return the envelope (possibly with extra headers) to go on, or
    ``None`` to drop the event. ``on_handle`` wraps each handler call; call ``call_next`` to run
    the handler and return its value.

    >>> class Stamp(Middleware):
    ...     def on_publish(self, envelope):
    ...         envelope.headers["x-origin"] = "svc-a"
    ...         return envelope
    ...     async def on_handle(self, event, ctx, call_next):
    ...         started = time.perf_counter()
    ...         try:
    ...             return await call_next(event, ctx)
    ...         finally:
    ...             metrics.observe(ctx.subscription, time.perf_counter() - started)
    >>> bus = Bus(middleware=[Stamp()])
    """

    def on_publish(self, envelope: Envelope) -> Envelope | None:
        return envelope

    async def on_handle(self, event: Any, ctx: Context, call_next: HandleNext) -> Any:
        return await call_next(event, ctx)


def _overrides(mw: object, name: str) -> bool:
    own = getattr(type(mw), name, None)
    return own is not None and own is not getattr(Middleware, name)


def build_publish_chain(middleware: Sequence[Middleware]) -> PublishHook | None:
    """One function running every ``on_publish`` in order; ``None`` when there are none."""
    hooks = [mw.on_publish for mw in middleware if _overrides(mw, "on_publish")]
    if not hooks:
        return None

    def run(envelope: Envelope) -> Envelope | None:
        env = envelope
        for hook in hooks:
            out = hook(env)
            if out is None:
                return None
            env = out
        return env

    return run


def build_handle_chain(
    middleware: Sequence[Middleware],
) -> Callable[[HandleNext], HandleNext] | None:
    """A function that wraps a handler call in every ``on_handle``, first middleware outermost."""
    wrappers = [mw for mw in middleware if _overrides(mw, "on_handle")]
    if not wrappers:
        return None

    def wrap(inner: HandleNext) -> HandleNext:
        call = inner
        for mw in reversed(wrappers):
            call = _bind(mw, call)
        return call

    return wrap


def _bind(mw: Middleware, call_next: HandleNext) -> HandleNext:
    async def call(event: Any, ctx: Context) -> Any:
        return await mw.on_handle(event, ctx, call_next)

    return call
